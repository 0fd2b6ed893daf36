package dnsfilter

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cordon-gw/cordon/categorizer"
	"github.com/cordon-gw/cordon/policies"
)

const testPolicy = `
settings:
  dns_block_mode: %s
users:
  - name: alice
    doh_token: alice-token-0123456789
  - name: bob
    doh_token: bob-token-0123456789ab
rules:
  - id: block-bad
    domains: [bad.test]
    action: block
  - id: alice-no-social
    users: [alice]
    domains: [social.test]
    action: block
  - id: warn-games
    domains: [games.test]
    action: warn
  - id: monitor-ads
    domains: [ads.test]
    action: block
    monitor: true
  - id: parental
    domains: [kids.test]
    action: block
`

func policyFor(mode string) string { return fmt.Sprintf(testPolicy, mode) }

var testRecords = []string{
	"allowed.test. 300 IN A 192.0.2.1",
	"allowed.test. 300 IN AAAA 2001:db8::1",
	"www.bad.test. 300 IN A 192.0.2.66",
	"social.test. 300 IN A 192.0.2.7",
	"games.test. 300 IN A 192.0.2.8",
	"ads.test. 300 IN A 192.0.2.9",
	"cloaked.test. 300 IN CNAME metrics.cloaked.test.",
	"metrics.cloaked.test. 300 IN CNAME tracker.bad.test.",
	"tracker.bad.test. 300 IN A 192.0.2.99",
	"alias.test. 300 IN CNAME allowed.test.",
	"forcesafesearch.google.com. 300 IN A 216.239.38.120",
	"short.test. 2 IN A 192.0.2.2",
	"signed.test. 300 IN A 192.0.2.3",
	"signed.test. 300 IN RRSIG A 13 2 300 20300101000000 20200101000000 12345 test. dGVzdHNpZ25hdHVyZQ==",
}

func bigRecords() []string {
	var out []string
	for i := range 40 {
		out = append(out, fmt.Sprintf("big.test. 300 IN TXT \"record %02d %s\"", i, strings.Repeat("x", 40)))
	}
	return out
}

type env struct {
	zone *zone
	eng  *policies.Engine
	f    *filter
	up   string
}

func newEnv(t *testing.T, mode string, mutate func(*Config)) *env {
	t.Helper()
	z := newZone(t, append(testRecords, bigRecords()...)...)
	up := startDNS(t, z)
	eng := newEngine(t, nil, policyFor(mode))
	cfg := Config{Upstreams: []string{up}, FilteredRules: []string{"parental"},
		SinkholeIPv4: []string{"198.51.100.10"}, SinkholeIPv6: []string{"2001:db8::10"}}
	if mutate != nil {
		mutate(&cfg)
	}
	return &env{zone: z, eng: eng, f: startFilter(t, cfg, eng), up: up}
}

func TestAllowed(t *testing.T) {
	e := newEnv(t, "nxdomain", nil)
	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			r := ask(t, e.f.addr, proto, "AlLoWeD.TeSt.", dns.TypeA, true)
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("answer = %v, want one A record", r)
			}
			a, ok := r.Answer[0].(*dns.A)
			if !ok || !a.A.Equal(net.ParseIP("192.0.2.1")) {
				t.Fatalf("answer = %v, want A 192.0.2.1", r.Answer[0])
			}
			if r.Question[0].Name != "AlLoWeD.TeSt." {
				t.Errorf("question = %q, want the client's spelling AlLoWeD.TeSt.", r.Question[0].Name)
			}
			if !r.RecursionAvailable || !r.RecursionDesired || r.Authoritative {
				t.Errorf("flags RA=%v RD=%v AA=%v, want RA, RD, not AA", r.RecursionAvailable, r.RecursionDesired, r.Authoritative)
			}
			if r.IsEdns0() == nil {
				t.Errorf("no OPT record in the answer to an EDNS query")
			}
		})
	}
	ev := e.f.events.find(t, host("allowed.test"))
	if ev.Action != "allow" || ev.Host != "allowed.test" || ev.Method != "A" || ev.Status != dns.RcodeSuccess ||
		ev.Proto != "dns" || ev.ClientIP != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("event = %+v, want allow of allowed.test A from 127.0.0.1", ev)
	}
	// Without EDNS the answer has no OPT.
	r := ask(t, e.f.addr, "udp", "allowed.test.", dns.TypeAAAA, false)
	if r.IsEdns0() != nil || len(r.Answer) != 1 {
		t.Errorf("answer to a plain query = %v, want one AAAA and no OPT", r)
	}
}

func TestBlockModes(t *testing.T) {
	tests := []struct {
		mode  string
		qtype uint16
		want  func(*dns.Msg) error
	}{
		{"nxdomain", dns.TypeA, func(r *dns.Msg) error {
			if r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 || len(r.Ns) != 1 {
				return fmt.Errorf("want NXDOMAIN with an SOA")
			}
			if soa := r.Ns[0].(*dns.SOA); soa.Hdr.Ttl != 10 || soa.Minttl != 10 {
				return fmt.Errorf("SOA TTL %d minimum %d, want 10", soa.Hdr.Ttl, soa.Minttl)
			}
			return nil
		}},
		{"null_ip", dns.TypeA, wantAddr("0.0.0.0")},
		{"null_ip", dns.TypeAAAA, wantAddr("::")},
		{"null_ip", dns.TypeMX, func(r *dns.Msg) error {
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
				return fmt.Errorf("want NODATA")
			}
			return nil
		}},
		{"sinkhole", dns.TypeA, wantAddr("198.51.100.10")},
		{"sinkhole", dns.TypeAAAA, wantAddr("2001:db8::10")},
	}
	for _, tt := range tests {
		t.Run(tt.mode+"/"+dns.TypeToString[tt.qtype], func(t *testing.T) {
			e := newEnv(t, tt.mode, nil)
			r := ask(t, e.f.addr, "udp", "www.Bad.test.", tt.qtype, true)
			if err := tt.want(r); err != nil {
				t.Fatalf("answer %v: %v", r, err)
			}
			x := ede(r)
			if x == nil || x.InfoCode != dns.ExtendedErrorCodeBlocked || !strings.Contains(x.ExtraText, "block-bad") {
				t.Errorf("EDE = %v, want 15 Blocked naming rule block-bad", x)
			}
			if n := e.zone.count("www.bad.test", tt.qtype); n != 0 {
				t.Errorf("upstream asked %d times for a blocked name, want 0", n)
			}
			ev := e.f.events.find(t, host("www.bad.test"))
			if ev.Action != "block" || ev.RuleID != "block-bad" || ev.Status != r.Rcode {
				t.Errorf("event = %+v, want block by block-bad", ev)
			}
		})
	}
}

func wantAddr(ip string) func(*dns.Msg) error {
	return func(r *dns.Msg) error {
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			return fmt.Errorf("want one address record")
		}
		var got net.IP
		switch a := r.Answer[0].(type) {
		case *dns.A:
			got = a.A
		case *dns.AAAA:
			got = a.AAAA
		}
		if !got.Equal(net.ParseIP(ip)) {
			return fmt.Errorf("address %v, want %s", got, ip)
		}
		if ttl := r.Answer[0].Header().Ttl; ttl != 10 {
			return fmt.Errorf("TTL %d, want the block TTL 10", ttl)
		}
		return nil
	}
}

func TestFilteredEDE(t *testing.T) {
	e := newEnv(t, "nxdomain", nil)
	r := ask(t, e.f.addr, "udp", "kids.test.", dns.TypeA, true)
	if x := ede(r); r.Rcode != dns.RcodeNameError || x == nil || x.InfoCode != dns.ExtendedErrorCodeFiltered {
		t.Fatalf("answer %v, want NXDOMAIN with EDE 17 Filtered", r)
	}
}

func TestCNAMECloaking(t *testing.T) {
	e := newEnv(t, "nxdomain", nil)
	for i := range 2 { // the second answer comes from the cache
		r := ask(t, e.f.addr, "udp", "cloaked.test.", dns.TypeA, true)
		x := ede(r)
		if r.Rcode != dns.RcodeNameError || len(r.Answer) != 0 || x == nil || !strings.Contains(x.ExtraText, "tracker.bad.test") {
			t.Fatalf("query %d: answer %v, want NXDOMAIN naming tracker.bad.test", i, r)
		}
	}
	if n := e.zone.count("cloaked.test", dns.TypeA); n != 1 {
		t.Errorf("upstream asked %d times, want 1 (second answer cached, decided again)", n)
	}
	// A CNAME into an allowed name passes.
	r := ask(t, e.f.addr, "udp", "alias.test.", dns.TypeA, true)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 2 {
		t.Fatalf("alias answer %v, want CNAME + A", r)
	}
}

func TestWarnAndMonitorAllowed(t *testing.T) {
	e := newEnv(t, "nxdomain", nil)
	for _, tt := range []struct{ name, ruleAction string }{{"games.test.", "warn"}, {"ads.test.", "block"}} {
		r := ask(t, e.f.addr, "udp", tt.name, dns.TypeA, true)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("%s: answer %v, want the real address", tt.name, r)
		}
		ev := e.f.events.find(t, host(strings.TrimSuffix(tt.name, ".")))
		if ev.Action != "allow" || ev.RuleAction != tt.ruleAction {
			t.Errorf("%s: event action %q rule action %q, want allow / %s", tt.name, ev.Action, ev.RuleAction, tt.ruleAction)
		}
	}
}

func TestTruncationRetryTCP(t *testing.T) {
	e := newEnv(t, "nxdomain", nil)
	// Without EDNS the client takes 512 bytes: the answer is cut, TC set.
	m := new(dns.Msg)
	m.SetQuestion("big.test.", dns.TypeTXT)
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, e.f.addr)
	if err != nil {
		t.Fatalf("udp exchange: %v", err)
	}
	if !r.Truncated || len(r.Answer) >= 40 {
		t.Fatalf("udp answer TC=%v with %d records, want TC and fewer than 40", r.Truncated, len(r.Answer))
	}
	r.Compress = true
	packed, _ := r.Pack()
	if len(packed) > dns.MinMsgSize {
		t.Errorf("udp answer is %d bytes, want ≤ 512", len(packed))
	}
	// The client retries over TCP and gets everything.
	r = exchange(t, e.f.addr, "tcp", m)
	if r.Truncated || len(r.Answer) != 40 {
		t.Fatalf("tcp answer TC=%v with %d records, want all 40", r.Truncated, len(r.Answer))
	}
	// With EDNS 1232 the UDP answer is cut at 1232.
	r = ask(t, e.f.addr, "udp", "big.test.", dns.TypeTXT, true)
	r.Compress = true
	packed, _ = r.Pack()
	if !r.Truncated || len(packed) > 1232 {
		t.Errorf("edns udp answer TC=%v %d bytes, want TC and ≤ 1232", r.Truncated, len(packed))
	}
}

func TestUpstreamDownServfail(t *testing.T) {
	// A closed loopback port: the upstream refuses at once.
	ln, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.LocalAddr().String()
	ln.Close()
	eng := newEngine(t, nil, policyFor("nxdomain"))
	f := startFilter(t, Config{Upstreams: []string{dead, "tcp://" + dead}, QueryTimeout: Duration(2 * time.Second), UpstreamTimeout: Duration(time.Second)}, eng)
	for range 3 {
		r := ask(t, f.addr, "udp", "allowed.test.", dns.TypeA, true)
		if r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
		}
		if x := ede(r); x == nil || x.InfoCode != dns.ExtendedErrorCodeNoReachableAuthority {
			t.Errorf("EDE = %v, want 22 No Reachable Authority", x)
		}
	}
	if got := testutil.ToFloat64(f.srv.metrics.upstreamErrors.WithLabelValues(dead)); got < 1 {
		t.Errorf("upstream errors = %v, want ≥ 1", got)
	}
	// A silent upstream (reads, never answers) hits the deadline.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	f2 := startFilter(t, Config{Upstreams: []string{silent.LocalAddr().String()},
		QueryTimeout: Duration(300 * time.Millisecond), UpstreamTimeout: Duration(200 * time.Millisecond)}, eng)
	m := new(dns.Msg)
	m.SetQuestion("allowed.test.", dns.TypeA)
	r := exchange(t, f2.addr, "udp", m)
	if r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("silent upstream: rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
}

func TestFailover(t *testing.T) {
	z := newZone(t, testRecords...)
	good := startDNS(t, z)
	ln, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.LocalAddr().String()
	ln.Close()
	eng := newEngine(t, nil, policyFor("nxdomain"))
	for _, strategy := range []string{StrategyFastest, StrategyRoundRobin} {
		f := startFilter(t, Config{Upstreams: []string{dead, good}, Strategy: strategy, Cache: CacheConfig{Disabled: true}}, eng)
		for i := range 8 {
			r := ask(t, f.addr, "udp", "allowed.test.", dns.TypeA, true)
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("%s query %d: %v, want the answer from the live upstream", strategy, i, r)
			}
		}
		if f.srv.pool.list[0].healthy.Load() {
			t.Errorf("%s: dead upstream still marked healthy after failures", strategy)
		}
	}
}

func TestRefusedUnknownClient(t *testing.T) {
	z := newZone(t, testRecords...)
	up := startDNS(t, z)
	// Trust only 10/8: 127.0.0.1 is unknown.
	eng := newEngine(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, policyFor("nxdomain"))
	f := startFilter(t, Config{Upstreams: []string{up}}, eng)
	for _, proto := range []string{"udp", "tcp"} {
		m := new(dns.Msg)
		m.SetQuestion("allowed.test.", dns.TypeA)
		r := exchange(t, f.addr, proto, m)
		if r.Rcode != dns.RcodeRefused || len(r.Answer)+len(r.Ns)+len(r.Extra) != 0 {
			t.Fatalf("%s: %v, want a bare REFUSED", proto, r)
		}
		q, _ := m.Pack()
		a, _ := r.Pack()
		if len(a) > len(q) {
			t.Errorf("%s: answer %d bytes for a %d-byte query: amplification", proto, len(a), len(q))
		}
	}
	if n := z.count("allowed.test", dns.TypeA); n != 0 {
		t.Errorf("upstream asked %d times for an unknown client, want 0", n)
	}
	if ev := f.events.find(t, host("allowed.test")); ev.Action != "block" || ev.Reason != "unknown_client" || ev.Status != dns.RcodeRefused {
		t.Errorf("event = %+v, want block/unknown_client/REFUSED", ev)
	}
}

func TestCacheDecrementsTTL(t *testing.T) {
	e := newEnv(t, "nxdomain", nil)
	r := ask(t, e.f.addr, "udp", "allowed.test.", dns.TypeA, true)
	if ttl := r.Answer[0].Header().Ttl; ttl != 300 {
		t.Fatalf("first TTL %d, want 300", ttl)
	}
	time.Sleep(1100 * time.Millisecond) // TTLs are whole seconds
	r = ask(t, e.f.addr, "udp", "ALLOWED.test.", dns.TypeA, true)
	if ttl := r.Answer[0].Header().Ttl; ttl >= 300 || ttl < 290 {
		t.Errorf("cached TTL %d, want decremented below 300", ttl)
	}
	if r.Question[0].Name != "ALLOWED.test." {
		t.Errorf("cached answer question %q, want the client's spelling", r.Question[0].Name)
	}
	if n := e.zone.count("allowed.test", dns.TypeA); n != 1 {
		t.Errorf("upstream asked %d times, want 1", n)
	}
	if hits := testutil.ToFloat64(e.f.srv.metrics.cacheHits); hits != 1 {
		t.Errorf("cache hits = %v, want 1", hits)
	}
}

func TestNegativeCaching(t *testing.T) {
	e := newEnv(t, "nxdomain", func(c *Config) { c.Cache.MaxNegativeTTL = Duration(30 * time.Second) })
	for range 3 {
		r := ask(t, e.f.addr, "udp", "nx.test.", dns.TypeA, true)
		if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 {
			t.Fatalf("answer %v, want NXDOMAIN with SOA", r)
		}
		if ttl := r.Ns[0].Header().Ttl; ttl > 30 {
			t.Errorf("negative TTL %d, want ≤ 30 (clamped, RFC 2308 min(SOA TTL, MINIMUM))", ttl)
		}
		r = ask(t, e.f.addr, "udp", "allowed.test.", dns.TypeMX, true) // NODATA
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
			t.Fatalf("answer %v, want NODATA", r)
		}
	}
	if n := e.zone.count("nx.test", dns.TypeA); n != 1 {
		t.Errorf("NXDOMAIN asked upstream %d times, want 1", n)
	}
	if n := e.zone.count("allowed.test", dns.TypeMX); n != 1 {
		t.Errorf("NODATA asked upstream %d times, want 1", n)
	}
}

func TestPrefetch(t *testing.T) {
	e := newEnv(t, "nxdomain", func(c *Config) { c.Cache.MinTTL = Duration(10 * time.Second); c.Cache.PrefetchHits = 1 })
	ask(t, e.f.addr, "udp", "short.test.", dns.TypeA, true) // TTL 2 raised to 10
	// Hit within the last tenth of the lifetime: make it look old by
	// asking after 9s would be slow; instead age the entry directly.
	key := cacheKey{name: "short.test", qtype: dns.TypeA}
	ent := e.f.srv.cache.get(key, time.Now().UnixNano())
	if ent == nil || ent.ttl != 10 {
		t.Fatalf("cached entry %+v, want TTL 10 (raised by min_ttl)", ent)
	}
	age := int64(9500 * time.Millisecond)
	e.f.srv.cache.put(key, &entry{wire: ent.wire, qEnd: ent.qEnd, ttlOffs: ent.ttlOffs, ttls: ent.ttls,
		stored: ent.stored - age, expires: ent.expires - age, ttl: ent.ttl, rcode: ent.rcode})
	ask(t, e.f.addr, "udp", "short.test.", dns.TypeA, true)
	deadline := time.Now().Add(5 * time.Second)
	for e.zone.count("short.test", dns.TypeA) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := e.zone.count("short.test", dns.TypeA); n != 2 {
		t.Fatalf("upstream asked %d times, want 2 (one prefetch)", n)
	}
	for time.Now().Before(deadline) && testutil.ToFloat64(e.f.srv.metrics.prefetches) < 1 {
		time.Sleep(10 * time.Millisecond)
	}
	if ent := e.f.srv.cache.get(key, time.Now().UnixNano()); ent == nil || ent.remaining(time.Now().UnixNano()) < 5 {
		t.Errorf("entry after prefetch %+v, want a fresh lifetime", ent)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, "nxdomain", func(c *Config) { c.RateLimit = RateLimitConfig{QPS: 0.001, Burst: 3} })
	var refused int
	for range 6 {
		r := ask(t, e.f.addr, "udp", "allowed.test.", dns.TypeA, true)
		if r.Rcode == dns.RcodeRefused {
			refused++
		}
	}
	if refused != 3 {
		t.Errorf("%d of 6 queries refused, want 3 (burst 3)", refused)
	}
	if got := testutil.ToFloat64(e.f.srv.metrics.rateLimited); got != 3 {
		t.Errorf("rate limited counter = %v, want 3", got)
	}
}

func TestAnyMinimized(t *testing.T) {
	e := newEnv(t, "nxdomain", nil)
	r := ask(t, e.f.addr, "udp", "allowed.test.", dns.TypeANY, true)
	if len(r.Answer) != 1 {
		t.Fatalf("ANY answer %v, want one HINFO", r)
	}
	if h, ok := r.Answer[0].(*dns.HINFO); !ok || h.Cpu != "RFC8482" {
		t.Fatalf("ANY answer %v, want HINFO RFC8482", r.Answer[0])
	}
	if n := e.zone.count("allowed.test", dns.TypeANY); n != 0 {
		t.Errorf("ANY forwarded %d times, want 0", n)
	}
	e2 := newEnv(t, "nxdomain", func(c *Config) { c.Any = AnyRefuse })
	if r := ask(t, e2.f.addr, "udp", "allowed.test.", dns.TypeANY, true); r.Rcode != dns.RcodeRefused {
		t.Errorf("ANY with any: refuse = %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
}

func TestDNSSECPassthrough(t *testing.T) {
	e := newEnv(t, "nxdomain", nil)
	m := new(dns.Msg)
	m.SetQuestion("signed.test.", dns.TypeA)
	m.SetEdns0(1232, true)
	r := exchange(t, e.f.addr, "udp", m)
	var sig bool
	for _, rr := range r.Answer {
		if _, ok := rr.(*dns.RRSIG); ok {
			sig = true
		}
	}
	if !sig || r.IsEdns0() == nil || !r.IsEdns0().Do() {
		t.Fatalf("DO answer %v, want the RRSIG passed through and DO echoed", r)
	}
}

func TestSafeSearch(t *testing.T) {
	z := newZone(t, testRecords...)
	up := startDNS(t, z)
	eng := newEngine(t, nil, "settings:\n  safe_search:\n    enabled: true\n")
	f := startFilter(t, Config{Upstreams: []string{up}}, eng)
	r := ask(t, f.addr, "udp", "www.google.com.", dns.TypeA, true)
	if len(r.Answer) != 2 {
		t.Fatalf("answer %v, want CNAME + A", r)
	}
	if c, ok := r.Answer[0].(*dns.CNAME); !ok || c.Target != "forcesafesearch.google.com." || c.Hdr.Name != "www.google.com." {
		t.Errorf("first record %v, want www.google.com CNAME forcesafesearch.google.com", r.Answer[0])
	}
	if a, ok := r.Answer[1].(*dns.A); !ok || !a.A.Equal(net.ParseIP("216.239.38.120")) {
		t.Errorf("second record %v, want the safe endpoint's address", r.Answer[1])
	}
	if n := z.count("www.google.com", dns.TypeA); n != 0 {
		t.Errorf("the search engine name went upstream %d times, want 0", n)
	}
}

func TestMalformed(t *testing.T) {
	e := newEnv(t, "nxdomain", nil)
	// Two questions: FORMERR.
	m := new(dns.Msg)
	m.SetQuestion("allowed.test.", dns.TypeA)
	m.Question = append(m.Question, m.Question[0])
	r := exchange(t, e.f.addr, "udp", m)
	if r.Rcode != dns.RcodeFormatError {
		t.Errorf("two questions: %s, want FORMERR", dns.RcodeToString[r.Rcode])
	}
	// Opcode STATUS: NOTIMP.
	m = new(dns.Msg)
	m.SetQuestion("allowed.test.", dns.TypeA)
	m.Opcode = dns.OpcodeStatus
	r = exchange(t, e.f.addr, "tcp", m)
	if r.Rcode != dns.RcodeNotImplemented {
		t.Errorf("opcode STATUS: %s, want NOTIMP", dns.RcodeToString[r.Rcode])
	}
	// Class CHAOS: REFUSED.
	m = new(dns.Msg)
	m.SetQuestion("version.bind.", dns.TypeTXT)
	m.Question[0].Qclass = dns.ClassCHAOS
	if r = exchange(t, e.f.addr, "udp", m); r.Rcode != dns.RcodeRefused {
		t.Errorf("class CH: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	// EDNS version 1: BADVERS.
	m = new(dns.Msg)
	m.SetQuestion("allowed.test.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	if r = exchange(t, e.f.addr, "udp", m); r.Rcode != dns.RcodeBadVers {
		t.Errorf("EDNS version 1: %s, want BADVERS", dns.RcodeToString[r.Rcode])
	}
	// Garbage: no answer, server still serves.
	c, err := net.Dial("udp", e.f.addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte{1, 2, 3})
	c.Close()
	if r := ask(t, e.f.addr, "udp", "allowed.test.", dns.TypeA, true); r.Rcode != dns.RcodeSuccess {
		t.Errorf("after garbage: %s, want NOERROR", dns.RcodeToString[r.Rcode])
	}
}

func TestDoH(t *testing.T) {
	e := newEnv(t, "nxdomain", nil)
	mux := http.NewServeMux()
	mux.Handle("/dns-query", e.f.srv.DoHHandler())
	mux.Handle("/dns-query/{token}", e.f.srv.DoHHandler())
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)

	post := func(t *testing.T, path, name string) (*dns.Msg, *http.Response) {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		m.Id = 0
		b, _ := m.Pack()
		resp, err := http.Post(hs.URL+path, dohMediaType, bytes.NewReader(b))
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return nil, resp
		}
		if ct := resp.Header.Get("Content-Type"); ct != dohMediaType {
			t.Fatalf("content type %q", ct)
		}
		r := new(dns.Msg)
		if err := r.Unpack(body); err != nil {
			t.Fatalf("unpack DoH answer: %v", err)
		}
		return r, resp
	}
	t.Run("per-user policy", func(t *testing.T) {
		r, _ := post(t, "/dns-query/alice-token-0123456789", "social.test.")
		if r.Rcode != dns.RcodeNameError {
			t.Errorf("alice social.test: %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
		}
		if ev := e.f.events.find(t, hostUser("social.test", "alice")); ev.User != "alice" || ev.RuleID != "alice-no-social" {
			t.Errorf("event user %q rule %q, want alice / alice-no-social", ev.User, ev.RuleID)
		}
		r, resp := post(t, "/dns-query/bob-token-0123456789ab", "social.test.")
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Errorf("bob social.test: %v, want the address", r)
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.HasPrefix(cc, "private, max-age=") {
			t.Errorf("Cache-Control %q, want max-age", cc)
		}
		if ev := e.f.events.find(t, hostUser("social.test", "bob")); ev.User != "bob" || ev.Action != "allow" {
			t.Errorf("event user %q action %q, want bob / allow", ev.User, ev.Action)
		}
	})
	t.Run("unknown token", func(t *testing.T) {
		if _, resp := post(t, "/dns-query/not-a-token-000000000", "allowed.test."); resp.StatusCode != http.StatusNotFound {
			t.Errorf("status %d, want 404", resp.StatusCode)
		}
	})
	t.Run("GET", func(t *testing.T) {
		m := new(dns.Msg)
		m.SetQuestion("allowed.test.", dns.TypeA)
		m.Id = 0
		b, _ := m.Pack()
		resp, err := http.Get(hs.URL + "/dns-query?dns=" + base64.RawURLEncoding.EncodeToString(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		r := new(dns.Msg)
		if resp.StatusCode != http.StatusOK || r.Unpack(body) != nil || len(r.Answer) != 1 {
			t.Fatalf("GET: status %d answer %v", resp.StatusCode, r)
		}
	})
	t.Run("bad requests", func(t *testing.T) {
		for _, tt := range []struct {
			method, url, ct string
			body            []byte
			want            int
		}{
			{"GET", "/dns-query", "", nil, http.StatusBadRequest},
			{"GET", "/dns-query?dns=!!!", "", nil, http.StatusBadRequest},
			{"POST", "/dns-query", "text/plain", []byte("x"), http.StatusUnsupportedMediaType},
			{"POST", "/dns-query", dohMediaType, []byte{1, 2, 3}, http.StatusBadRequest},
			{"PUT", "/dns-query", dohMediaType, nil, http.StatusMethodNotAllowed},
			{"POST", "/dns-query", dohMediaType, make([]byte, 70000), http.StatusRequestEntityTooLarge},
		} {
			req, _ := http.NewRequest(tt.method, hs.URL+tt.url, bytes.NewReader(tt.body))
			if tt.ct != "" {
				req.Header.Set("Content-Type", tt.ct)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("%s %s (%s): status %d, want %d", tt.method, tt.url, tt.ct, resp.StatusCode, tt.want)
			}
		}
	})
}

func TestDoHUpstream(t *testing.T) {
	// A second filter serves DoH over TLS; the first uses it as upstream.
	z := newZone(t, testRecords...)
	up := startDNS(t, z)
	eng := newEngine(t, nil, policyFor("nxdomain"))
	back := startFilter(t, Config{Upstreams: []string{up}}, eng)
	hs := httptest.NewTLSServer(back.srv.DoHHandler())
	t.Cleanup(hs.Close)
	pool := hs.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	front, err := New(Config{Upstreams: []string{hs.URL + "/dns-query"}}, Deps{Engine: eng, RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = front.Shutdown(context.Background()) })
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = front.Serve(pc, nil) }()
	r := ask(t, pc.LocalAddr().String(), "udp", "allowed.test.", dns.TypeA, true)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("answer via DoH upstream %v", r)
	}
}

func TestConcurrentMissesCoalesce(t *testing.T) {
	e := newEnv(t, "nxdomain", nil)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := new(dns.Msg)
			m.SetQuestion("alias.test.", dns.TypeA)
			c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
			if r, _, err := c.Exchange(m, e.f.addr); err != nil || r.Rcode != dns.RcodeSuccess {
				t.Errorf("exchange: %v %v", r, err)
			}
		}()
	}
	wg.Wait()
	if n := e.zone.count("alias.test", dns.TypeA); n < 1 || n > 20 {
		t.Errorf("upstream asked %d times", n)
	}
}

func TestMetricsLint(t *testing.T) {
	e := newEnv(t, "nxdomain", nil)
	ask(t, e.f.addr, "udp", "allowed.test.", dns.TypeA, true)
	problems, err := testutil.GatherAndLint(e.f.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	if got := testutil.ToFloat64(e.f.srv.metrics.query(transportUDP, maAllow, dns.RcodeSuccess)); got != 1 {
		t.Errorf("queries{udp,allow,NOERROR} = %v, want 1", got)
	}
}

func TestShutdownBeforeServe(t *testing.T) {
	eng := newEngine(t, nil, policyFor("nxdomain"))
	s, err := New(Config{Upstreams: []string{"127.0.0.1:1"}}, Deps{Engine: eng})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(pc, nil); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown = %v, want ErrServerClosed", err)
	}
}

func TestListenAndServe(t *testing.T) {
	z := newZone(t, testRecords...)
	up := startDNS(t, z)
	eng := newEngine(t, nil, policyFor("nxdomain"))
	var addr string
	for range 10 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = pc.LocalAddr().String()
		pc.Close()
		s, err := New(Config{Listen: addr, Upstreams: []string{up}}, Deps{Engine: eng})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.ListenAndServe(ctx) }()
		var r *dns.Msg
		for range 50 {
			m := new(dns.Msg)
			m.SetQuestion("allowed.test.", dns.TypeA)
			c := &dns.Client{Net: "tcp", Timeout: time.Second}
			if r, _, err = c.Exchange(m, addr); err == nil {
				break
			}
			select {
			case err := <-done:
				cancel()
				t.Logf("port %s taken (%v), trying another", addr, err)
				r = nil
			case <-time.After(20 * time.Millisecond):
				continue
			}
			break
		}
		if r == nil {
			continue
		}
		if r.Rcode != dns.RcodeSuccess {
			t.Errorf("rcode %s", dns.RcodeToString[r.Rcode])
		}
		cancel()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ListenAndServe = %v, want ErrServerClosed", err)
		}
		return
	}
	t.Fatal("could not start ListenAndServe on a free port")
}

func TestAnswerIPThreatFeed(t *testing.T) {
	z := newZone(t, append(testRecords, "c2.test. 300 IN A 203.0.113.66", "fine.test. 300 IN A 203.0.113.1")...)
	up := startDNS(t, z)
	b := categorizer.NewBuilder()
	feed, err := b.AddFeed("feodo", []string{"malware"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Add(feed, categorizer.Entry{Kind: categorizer.KindCIDR, Prefix: netip.MustParsePrefix("203.0.113.64/30")}); err != nil {
		t.Fatal(err)
	}
	ix, err := b.Build(1)
	if err != nil {
		t.Fatal(err)
	}
	eng := newEngine(t, nil, "rules:\n  - id: no-c2\n    threats: [feodo]\n    action: block\n")
	if err := eng.SetIndex(ix); err != nil {
		t.Fatal(err)
	}
	f := startFilter(t, Config{Upstreams: []string{up}}, eng)
	r := ask(t, f.addr, "udp", "c2.test.", dns.TypeA, true)
	if x := ede(r); r.Rcode != dns.RcodeNameError || x == nil || !strings.Contains(x.ExtraText, "203.0.113.66") {
		t.Fatalf("answer %v, want NXDOMAIN naming the listed address", r)
	}
	if ev := f.events.find(t, host("c2.test")); ev.Action != "block" || len(ev.Threats) != 1 || ev.Threats[0] != "feodo" {
		t.Errorf("event = %+v, want block with threat feodo", ev)
	}
	if r := ask(t, f.addr, "udp", "fine.test.", dns.TypeA, true); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("fine.test answer %v, want the address", r)
	}
}

func TestDoTUpstream(t *testing.T) {
	z := newZone(t, testRecords...)
	hs := httptest.NewUnstartedServer(nil)
	hs.StartTLS() // only for its certificate (SANs 127.0.0.1 and example.com)
	defer hs.Close()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", hs.TLS.Clone())
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Net: "tcp-tls", Handler: z}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	roots := hs.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	eng := newEngine(t, nil, policyFor("nxdomain"))
	for _, up := range []string{"tls://" + ln.Addr().String(), "tls://" + ln.Addr().String() + "#example.com"} {
		s, err := New(Config{Upstreams: []string{up}}, Deps{Engine: eng, RootCAs: roots, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = s.Serve(pc, nil) }()
		r := ask(t, pc.LocalAddr().String(), "udp", "allowed.test.", dns.TypeA, true)
		_ = s.Shutdown(context.Background())
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("%s: answer %v, want the address over DoT", up, r)
		}
	}
	// The same roots from a PEM file named in the config.
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	sf, err := New(Config{Upstreams: []string{"tls://" + ln.Addr().String()}, UpstreamCAFile: caFile}, Deps{Engine: eng, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	pcf, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = sf.Serve(pcf, nil) }()
	r := ask(t, pcf.LocalAddr().String(), "udp", "allowed.test.", dns.TypeA, true)
	_ = sf.Shutdown(context.Background())
	if r.Rcode != dns.RcodeSuccess {
		t.Fatalf("upstream_ca_file: %s, want NOERROR", dns.RcodeToString[r.Rcode])
	}
	// A certificate the roots do not trust fails: SERVFAIL, not an answer.
	s, err := New(Config{Upstreams: []string{"tls://" + ln.Addr().String()}}, Deps{Engine: eng, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(pc, nil) }()
	if r := ask(t, pc.LocalAddr().String(), "udp", "allowed.test.", dns.TypeA, true); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("untrusted DoT upstream: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
}

func TestHealthProbes(t *testing.T) {
	z := newZone(t, testRecords...)
	good := startDNS(t, z)
	ln, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.LocalAddr().String()
	ln.Close()
	eng := newEngine(t, nil, policyFor("nxdomain"))
	f := startFilter(t, Config{Upstreams: []string{dead, good}, HealthCheckInterval: Duration(20 * time.Millisecond),
		HealthCheckName: "allowed.test"}, eng)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && (f.srv.pool.list[0].healthy.Load() || f.srv.pool.list[1].rtt.Load() == 0) {
		time.Sleep(10 * time.Millisecond)
	}
	if f.srv.pool.list[0].healthy.Load() {
		t.Fatal("dead upstream still healthy after probes")
	}
	if !f.srv.pool.list[1].healthy.Load() || f.srv.pool.list[1].rtt.Load() == 0 {
		t.Error("live upstream not healthy or RTT not measured")
	}
	if got := testutil.ToFloat64(f.srv.metrics.upstreamHealthy.WithLabelValues(dead)); got != 0 {
		t.Errorf("upstream_healthy{dead} = %v, want 0", got)
	}
	// The healthy upstream goes first: the answer needs no failover.
	before := testutil.ToFloat64(f.srv.metrics.upstreamErrors.WithLabelValues(dead))
	if r := ask(t, f.addr, "udp", "allowed.test.", dns.TypeA, true); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	if after := testutil.ToFloat64(f.srv.metrics.upstreamErrors.WithLabelValues(dead)); after != before {
		t.Errorf("the unhealthy upstream was tried first (%v → %v errors)", before, after)
	}
}

func TestCacheBounded(t *testing.T) {
	up := startDNS(t, wildcardZone{})
	eng := newEngine(t, nil, policyFor("nxdomain"))
	f := startFilter(t, Config{Upstreams: []string{up}, Cache: CacheConfig{MaxEntries: 64}, RateLimit: RateLimitConfig{Disabled: true}}, eng)
	for i := range 300 {
		if r := ask(t, f.addr, "udp", fmt.Sprintf("n%d.example.", i), dns.TypeA, false); r.Rcode != dns.RcodeSuccess {
			t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
		}
	}
	if n := f.srv.cache.len(); n > 64 {
		t.Errorf("cache holds %d entries, want ≤ 64", n)
	}
	if ev := testutil.ToFloat64(f.srv.metrics.cacheEvictions); ev < 200 {
		t.Errorf("evictions = %v, want ≥ 200", ev)
	}
}

func TestDoHGetPaddedAndHead(t *testing.T) {
	e := newEnv(t, "nxdomain", nil)
	hs := httptest.NewServer(e.f.srv.DoHHandler())
	t.Cleanup(hs.Close)
	m := new(dns.Msg)
	m.SetQuestion("allowed.test.", dns.TypeA)
	b, _ := m.Pack()
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req, _ := http.NewRequest(method, hs.URL+"/dns-query?dns="+base64.URLEncoding.EncodeToString(b), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != dohMediaType {
			t.Fatalf("%s: status %d type %q", method, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if method == http.MethodHead && len(body) != 0 {
			t.Errorf("HEAD returned a %d-byte body", len(body))
		}
	}
}

func TestShutdownStopsGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	z := newZone(t, testRecords...)
	up := startDNS(t, z)
	eng := newEngine(t, nil, policyFor("nxdomain"))
	s, err := New(Config{Upstreams: []string{up}}, Deps{Engine: eng, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(pc, ln) }()
	ask(t, pc.LocalAddr().String(), "udp", "allowed.test.", dns.TypeA, true)
	ask(t, ln.Addr().String(), "tcp", "allowed.test.", dns.TypeA, true)
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+4 && time.Now().Before(deadline) { // +4: the upstream's servers
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+4 {
		t.Errorf("%d goroutines after Shutdown, %d before", n, before)
	}
}

// TestWildcardBindAnswersFromQueriedAddress binds the UDP socket to the
// unspecified address: answers must leave from the address the query went
// to, or a connected client never sees them.
func TestWildcardBindAnswersFromQueriedAddress(t *testing.T) {
	z := newZone(t, testRecords...)
	up := startDNS(t, z)
	eng := newEngine(t, nil, policyFor("nxdomain"))
	for _, tt := range []struct{ bind, dial string }{
		{"0.0.0.0:0", "127.0.0.1"},
		{"[::]:0", "127.0.0.1"},
		{"[::]:0", "::1"},
	} {
		pc, err := net.ListenPacket("udp", tt.bind)
		if err != nil {
			t.Logf("%s: %v (no such family here)", tt.bind, err)
			continue
		}
		s, err := New(Config{Upstreams: []string{up}}, Deps{Engine: eng, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = s.Serve(pc, nil) }()
		_, port, _ := net.SplitHostPort(pc.LocalAddr().String())
		addr := net.JoinHostPort(tt.dial, port)
		conn, err := net.Dial("udp", addr)
		if err != nil {
			_ = s.Shutdown(context.Background())
			t.Logf("dial %s: %v (no such family here)", addr, err)
			continue
		}
		conn.Close()
		r := ask(t, addr, "udp", "allowed.test.", dns.TypeA, true)
		_ = s.Shutdown(context.Background())
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Errorf("bind %s, query to %s: %v", tt.bind, tt.dial, r)
		}
	}
}

func TestUDPMalformedBody(t *testing.T) {
	e := newEnv(t, "nxdomain", nil)
	conn, err := net.Dial("udp", e.f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A header claiming one question, then a label running past the end.
	if _, err := conn.Write([]byte{0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 9, 'a'}); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 512)
	n, err := conn.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(b[:n]); err != nil || r.Id != 0xABCD || r.Rcode != dns.RcodeFormatError || !r.RecursionDesired || n != headerLen {
		t.Fatalf("answer %v (%d bytes, %v), want a bare FORMERR header echoing ID and RD", r, n, err)
	}
	// A response is dropped: nothing comes back, the server still serves.
	m := new(dns.Msg)
	m.SetQuestion("allowed.test.", dns.TypeA)
	m.Response = true
	wire, _ := m.Pack()
	if _, err := conn.Write(wire); err != nil {
		t.Fatal(err)
	}
	if r := ask(t, e.f.addr, "udp", "allowed.test.", dns.TypeA, true); r.Rcode != dns.RcodeSuccess {
		t.Errorf("after a reflected response: %s", dns.RcodeToString[r.Rcode])
	}
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	mu sync.Mutex
	n  int
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.n++
		l.mu.Unlock()
	}
	return c, err
}

func (l *countingListener) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func TestUpstreamConnectionReuse(t *testing.T) {
	for _, tt := range []struct {
		name       string
		maxQueries int // upstream closes a connection after this many
		want       int // connections for three queries
	}{
		{"kept", 0, 1},
		{"closed by upstream, retried", 1, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			z := newZone(t, testRecords...)
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := &countingListener{Listener: inner}
			srv := &dns.Server{Listener: ln, Handler: z, MaxTCPQueries: tt.maxQueries}
			started := make(chan struct{})
			srv.NotifyStartedFunc = func() { close(started) }
			go func() { _ = srv.ActivateAndServe() }()
			<-started
			t.Cleanup(func() { _ = srv.Shutdown() })
			eng := newEngine(t, nil, policyFor("nxdomain"))
			f := startFilter(t, Config{Upstreams: []string{"tcp://" + inner.Addr().String()}}, eng)
			for _, name := range []string{"allowed.test.", "social.test.", "games.test."} {
				if r := ask(t, f.addr, "udp", name, dns.TypeA, true); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
					t.Fatalf("%s: %v", name, r)
				}
				time.Sleep(20 * time.Millisecond) // let the upstream close its side
			}
			if n := ln.count(); n != tt.want {
				t.Errorf("upstream accepted %d connections, want %d", n, tt.want)
			}
			if errs := testutil.ToFloat64(f.srv.metrics.upstreamErrors.WithLabelValues("tcp://" + inner.Addr().String())); errs != 0 {
				t.Errorf("upstream errors = %v, want 0 (a closed kept connection is retried, not failed)", errs)
			}
		})
	}
}

// TestUpstreamEDEPassedOn: an upstream's Extended DNS Error (here a
// DNSSEC failure) reaches the client.
func TestUpstreamEDEPassedOn(t *testing.T) {
	up := startDNS(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		m.SetEdns0(1232, false)
		m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeDNSBogus, ExtraText: "signature expired"})
		_ = w.WriteMsg(m)
	}))
	eng := newEngine(t, nil, policyFor("nxdomain"))
	f := startFilter(t, Config{Upstreams: []string{up}}, eng)
	r := ask(t, f.addr, "udp", "bogus.test.", dns.TypeA, true)
	if x := ede(r); r.Rcode != dns.RcodeServerFailure || x == nil || x.InfoCode != dns.ExtendedErrorCodeDNSBogus || x.ExtraText != "signature expired" {
		t.Fatalf("answer %v, want SERVFAIL with the upstream's EDE 6", r)
	}
}

func TestMaxInflight(t *testing.T) {
	arrived := make(chan struct{}, 4)
	release := make(chan struct{})
	up := startDNS(t, dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		arrived <- struct{}{}
		<-release
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}}
		_ = w.WriteMsg(m)
	}))
	eng := newEngine(t, nil, policyFor("nxdomain"))
	f := startFilter(t, Config{Upstreams: []string{up}, MaxInflight: 1}, eng)
	first := make(chan *dns.Msg, 1)
	go func() {
		m := new(dns.Msg)
		m.SetQuestion("slow.test.", dns.TypeA)
		c := &dns.Client{Net: "tcp", Timeout: 10 * time.Second}
		r, _, err := c.Exchange(m, f.addr)
		if err != nil {
			t.Errorf("first query: %v", err)
		}
		first <- r
	}()
	<-arrived // the first query holds the only slot
	r := ask(t, f.addr, "udp", "other.test.", dns.TypeA, true)
	if x := ede(r); r.Rcode != dns.RcodeServerFailure || x == nil || x.InfoCode != dns.ExtendedErrorCodeOther {
		t.Errorf("second query: %v, want SERVFAIL (overloaded)", r)
	}
	close(release)
	if r := <-first; r == nil || r.Rcode != dns.RcodeSuccess {
		t.Errorf("first query: %v, want the answer", r)
	}
	if got := testutil.ToFloat64(f.srv.metrics.inflight); got != 0 {
		t.Errorf("upstream_inflight = %v after the answers, want 0", got)
	}
}

// TestParityWithEngine runs one table through Engine.Check and through the
// running filter: the DNS answer must enforce what the Engine decided
// (warn enforced as allow, monitor passes).
func TestParityWithEngine(t *testing.T) {
	e := newEnv(t, "nxdomain", nil)
	for _, tt := range []struct {
		host string
		want policies.Action // enforced over DNS
	}{
		{"allowed.test", policies.ActionAllow},
		{"www.bad.test", policies.ActionBlock},
		{"games.test", policies.ActionAllow}, // warn
		{"ads.test", policies.ActionAllow},   // monitor
		{"kids.test", policies.ActionBlock},
		{"social.test", policies.ActionAllow}, // blocked for alice only
	} {
		p, _ := e.eng.ClientPrincipal(netip.MustParseAddr("127.0.0.1"))
		d, _ := e.eng.Check(&policies.Request{ClientIP: netip.MustParseAddr("127.0.0.1"), Principal: p, Protocol: policies.ProtoDNS, Host: tt.host})
		engine := d.Action
		if engine == policies.ActionWarn {
			engine = policies.ActionAllow
		}
		if engine != tt.want {
			t.Errorf("Check(%q).Action = %v, want %v", tt.host, d.Action, tt.want)
		}
		r := ask(t, e.f.addr, "udp", tt.host+".", dns.TypeA, true)
		got := policies.ActionAllow
		if r.Rcode == dns.RcodeNameError && ede(r) != nil {
			got = policies.ActionBlock
		}
		if got != tt.want {
			t.Errorf("DNS %s: %v (rcode %s), want %v", tt.host, got, dns.RcodeToString[r.Rcode], tt.want)
		}
	}
}

func TestMaxTCPConns(t *testing.T) {
	z := newZone(t, testRecords...)
	up := startDNS(t, z)
	eng := newEngine(t, nil, policyFor("nxdomain"))
	f := startFilterWith(t, Config{Upstreams: []string{up}}, eng, func(s *Server) { s.maxTCPConns = 1 })
	m := new(dns.Msg)
	m.SetQuestion("allowed.test.", dns.TypeA)
	first, err := dns.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if err := first.WriteMsg(m); err != nil {
		t.Fatal(err)
	}
	if _, err := first.ReadMsg(); err != nil { // accepted: it holds the only slot
		t.Fatal(err)
	}
	second, err := dns.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := second.WriteMsg(m); err != nil {
		t.Fatal(err)
	}
	_ = second.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if r, err := second.ReadMsg(); err == nil {
		t.Fatalf("second connection answered (%v) while the first held the only slot", r)
	}
	first.Close()
	_ = second.SetReadDeadline(time.Now().Add(10 * time.Second))
	if r, err := second.ReadMsg(); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("second connection after the first closed: %v %v", r, err)
	}
}
