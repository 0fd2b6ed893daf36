// Package proxy is Cordon's HTTP/HTTPS forward proxy.
//
// It owns the wire side of the web gateway: absolute-form HTTP requests and
// CONNECT tunnels, client identity (proxy Basic authentication or the
// client's network), the SSRF dial guard (decide on the name first so
// blocked names are never resolved, then resolve once, refuse loopback,
// link-local, private and the proxy's own addresses, decide again with the
// address and dial exactly that address), TLS ClientHello/SNI peeking on
// uninspected tunnels, optional TLS inspection with a locally generated CA,
// block/warn/error pages with "continue" and "request a review" forms,
// PAC/WPAD files, access events and metrics.
//
// The front end (front.go) serves client connections itself: a strict
// HTTP/1.1 head parser over per-connection buffers (wire.go), origin
// connections pooled per checked address (upstream.go), bodies spliced
// socket to socket where both ends are TCP (forward.go, body.go), tunnels
// relayed with splice(2) and an idle watchdog on the sockets' byte
// counters (tunnel.go). Tunnels chosen for TLS inspection are handed to
// github.com/elazarl/goproxy (bridge.go), with none of goproxy's defaults
// kept (its transport skips TLS verification and its MITM CA is a
// published key).
//
// The parser refuses, with a 400 naming the fault and the connection
// closed, every shape two parsers may frame differently (request
// smuggling): Content-Length with Transfer-Encoding, differing or
// malformed lengths, codings other than chunked, obsolete line folding,
// bare CR, control characters, a second Host, and in chunk framing a bare
// LF, a malformed size or extension, or an over-long line. Heads larger
// than max_header_bytes get a 431. Heads are rebuilt field by field
// before they go on, never copied through.
//
// It deliberately holds no policy: every request becomes one
// policies.Request and policies.Engine.Check decides; the proxy only
// renders the Decision. DNS filtering lives in proxy/dnsfilter, reports in
// reports (reached through EventSink), review storage in policies (reached
// through ReviewSink).
package proxy
