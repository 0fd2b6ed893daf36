// Package loadtest drives load at a forward proxy and a DNS server over the
// wire, and runs a local origin for them to reach: an HTTP and HTTPS server
// (self-signed certificate made at start) with 1 KiB and 64 KiB bodies for
// any host, and an authoritative DNS server that answers every name with a
// fixed loopback address.
//
// The HTTP generator speaks HTTP/1.1 with the request and response codecs
// of github.com/valyala/fasthttp on connections it owns: absolute-form
// requests for http URLs through the proxy, a CONNECT tunnel then TLS for
// https URLs, optional Basic Proxy-Authorization. It runs closed-loop (a
// fixed number of connections, each sending its next request when the last
// one is answered) or open-loop at a fixed rate, where latency is measured
// from the time a request was scheduled to be sent, so a stalled server
// cannot hide its stall (coordinated omission). The DNS generator does the
// same over UDP or TCP with github.com/miekg/dns.
//
// Latencies go into log-linear histograms (HdrHistogram layout, 0.4 %
// precision); results print as a table or as JSON. Main is the entry point
// of `cordon loadtest http|dns|origin`.
//
// The package speaks only the wire: it imports nothing of the Cordon
// server, so it measures Squid, Unbound or Cordon the same way.
package loadtest
