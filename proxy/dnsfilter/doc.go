// Package dnsfilter is Cordon's DNS filter: it answers DNS over UDP, TCP
// and DNS over HTTPS (RFC 8484), identifies each client (address →
// location through policies.Engine.ClientPrincipal, or a per-user DoH token
// through TokenPrincipal), decides on the query name with the same
// policies.Engine.Check the HTTP proxy uses (protocol "dns"), and either
// answers a block or forwards the query to upstream resolvers through a
// shared answer cache.
//
// What it owns:
//
//   - Listeners: UDP and TCP on Config.Listen (default ":5353", no
//     privileges needed; ":53" needs root or CAP_NET_BIND_SERVICE), and the
//     DoH handler the admin listener mounts at /dns-query and
//     /dns-query/{token}.
//   - Message hygiene: exactly one question, opcode QUERY, class IN, EDNS
//     version 0; a panic in the pipeline answers SERVFAIL and counts
//     cordon_dns_panics_total. EDNS0 buffer sizes are honoured: UDP answers
//     are cut to min(client size, Config.MaxUDPSize) with TC set so the
//     client retries over TCP. IDs and the question's spelling (case) are
//     echoed; every record type is forwarded, and DNSSEC records pass
//     through untouched when the client sets DO. ANY is answered with one
//     HINFO record (RFC 8482) or refused.
//   - Unknown clients get a minimal REFUSED (the question echoed, nothing
//     else), so the filter is never an open resolver or an amplifier.
//     Identified clients are rate-limited per IPv4 address or IPv6 /64
//     (token bucket), and upstream resolutions in flight are bounded.
//   - Blocks follow the policy's DNS block mode: NXDOMAIN, the null address
//     (0.0.0.0 / ::) or a sinkhole A/AAAA at the edge's block page, with a
//     short TTL (Config.BlockTTL) and an Extended DNS Error (RFC 8914):
//     15 "Blocked" for operator policy, 17 "Filtered" for rules the client
//     opted into (Config.FilteredRules), with the rule and reason as text.
//   - Warn cannot be shown over DNS (there is no page to show): warn is
//     enforced as allow, and the access event says Action "allow" with
//     RuleAction "warn".
//   - CNAME inspection: every CNAME target in an allowed answer is decided
//     on too (CNAME cloaking), and every A/AAAA address is checked through
//     Request.DestIP (IP threat feeds); a blocked one blocks the answer.
//     This runs on every answer, cached or not, because the decision
//     depends on the client while the cache is shared.
//   - Safe search: when the decision says so, Google, Bing, DuckDuckGo and
//     YouTube names are answered with a CNAME to their safe endpoints.
//   - Upstreams: UDP (TCP on truncation), TCP, DNS over TLS and DNS over
//     HTTPS, with health probes, failover, a fastest or round-robin
//     strategy, and a query deadline so a dead upstream gives SERVFAIL
//     fast instead of a hang.
//   - The answer cache: sharded (no global lock), bounded in entries,
//     TTLs clamped and decremented on hits, negative answers cached per
//     RFC 2308, popular names prefetched before they expire, and
//     concurrent misses of one name coalesced into one upstream query.
//     Answers are kept packed; a hit copies and patches bytes.
//   - The UDP path: long-lived readers take queries in batches
//     (recvmmsg), answer hits and blocks in line without allocating (the
//     common query shape is parsed into the pooled query, its name
//     interned per reader; BenchmarkCacheHit), send the answers in one
//     batch (sendmmsg). Their cache misses
//     go to a UDP upstream without a goroutine or a socket per query
//     (udpMux: shared connected sockets, answers matched by ID and
//     question, polled by the readers after each batch); a timeout,
//     truncation, SERVFAIL or REFUSED hands the query to the blocking
//     path (TCP retry, the other upstreams). Misses whose first upstream
//     is not UDP wait on goroutines of their own. TCP is served by
//     miekg/dns.
//   - Access events (one per query, through EventSink, after the answer is
//     written) and the cordon_dns_* metrics.
//
// What it does not own: the policy and who a client is (policies), the
// feeds and the index (categorizer), where events go (reports), and the
// HTTP listener DoH is served on (cmd/cordon).
package dnsfilter
