package dnsfilter

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/cordon-gw/cordon/categorizer"
	"github.com/cordon-gw/cordon/internal/testutil"
	"github.com/cordon-gw/cordon/policies"
)

// benchEntries is the blocklist size of the benchmarks (DESIGN.md: a
// 2M-entry blocklist).
const benchEntries = 2_000_000

// blocklist is the benchmark index: every real domain of the bundled
// lists, then generated names until there are benchEntries distinct
// names, all in one feed of category "malware".
// Only a sample of the names is kept, so the benchmark heap is the index
// (as in production), not two million strings.
type blocklist struct {
	ix     *categorizer.Index
	sample []string // every 200th listed name
}

var (
	blOnce sync.Once
	bl     blocklist
)

func loadBlocklist(tb testing.TB) *blocklist {
	tb.Helper()
	blOnce.Do(func() {
		names := blocklistNames(tb)
		ix := buildIndex(tb, names)
		for i := 0; i < len(names); i += 200 {
			bl.sample = append(bl.sample, names[i])
		}
		bl.ix = ix
		names = nil
		runtime.GC() // collect the loading garbage before anything is timed
	})
	if bl.ix == nil {
		tb.Fatal("blocklist did not load")
	}
	return &bl
}

// blocklistNames returns benchEntries distinct names: every domain name
// of the bundled default lists, extended by testutil.BenchNames (the
// corpus of the categorizer benchmarks, see categorizer/BENCHMARKS.md).
func blocklistNames(tb testing.TB) []string {
	tb.Helper()
	seen := make(map[string]struct{})
	add := func(e categorizer.Entry) {
		if e.Kind == categorizer.KindDomain && !e.Wildcard && !e.Exception {
			seen[e.Host] = struct{}{}
		}
	}
	for _, f := range categorizer.DefaultFeeds() {
		text := testutil.Bundled(tb, strings.TrimPrefix(f.Source, "bundled:"))
		if _, err := categorizer.Parse(f.Format, f.Name, bytes.NewReader(text), add); err != nil {
			tb.Fatalf("parse %s: %v", f.Name, err)
		}
	}
	base := make([]string, 0, len(seen))
	for n := range seen {
		base = append(base, n)
	}
	return testutil.BenchNames(base, benchEntries, 1)
}

func buildIndex(tb testing.TB, names []string) *categorizer.Index {
	tb.Helper()
	b := categorizer.NewBuilder()
	feed, err := b.AddFeed("bench-blocklist", []string{"malware"}, false)
	if err != nil {
		tb.Fatal(err)
	}
	for _, n := range names {
		if err := b.Add(feed, categorizer.Entry{Kind: categorizer.KindDomain, Host: n}); err != nil {
			tb.Fatalf("add %q: %v", n, err)
		}
	}
	ix, err := b.Build(1)
	if err != nil {
		tb.Fatal(err)
	}
	return ix
}

// wildcardZone answers every A query with one address (TTL 1h), every
// other type with NODATA: a local upstream for cache misses. A name under
// "chain." is answered with a CNAME chain of two hops, then the address.
type wildcardZone struct{}

func (wildcardZone) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	if name := r.Question[0].Name; strings.HasPrefix(name, "chain.") && r.Question[0].Qtype == dns.TypeA {
		hops := []string{name, "hop1.cdn.example.", "hop2.cdn.example."}
		for i := 1; i < len(hops); i++ {
			m.Answer = append(m.Answer, &dns.CNAME{
				Hdr:    dns.RR_Header{Name: hops[i-1], Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 3600},
				Target: hops[i],
			})
		}
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: hops[len(hops)-1], Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600},
			A:   net.IPv4(192, 0, 2, 2).To4(),
		})
	} else if r.Question[0].Qtype == dns.TypeA {
		m.Answer = []dns.RR{&dns.A{
			Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600},
			A:   net.IPv4(192, 0, 2, 1).To4(),
		}}
	} else {
		m.Ns = []dns.RR{zoneSOA}
	}
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), opt.Do())
	}
	_ = w.WriteMsg(m)
}

const benchPolicy = `
rules:
  - id: block-malware
    categories: [malware]
    action: block
`

// benchServer is a filter with the 2M blocklist and a local wildcard
// upstream; events go nowhere (as with no reports pipeline), rate limiting
// is off.
func benchServer(b *testing.B) *Server {
	b.Helper()
	list := loadBlocklist(b)
	up := startDNS(b, wildcardZone{})
	eng := policies.NewEngine(policies.EngineConfig{Logger: slog.New(slog.DiscardHandler)})
	if err := eng.SetIndex(list.ix); err != nil {
		b.Fatal(err)
	}
	setPolicy(b, eng, benchPolicy, 1)
	s, err := New(Config{Upstreams: []string{up}, RateLimit: RateLimitConfig{Disabled: true}},
		Deps{Engine: eng, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Shutdown(b.Context()) })
	return s
}

func benchQuery(name string) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	m.SetEdns0(1232, false)
	return m
}

// serveOnce runs one query through the pipeline as the UDP listener does
// (everything but the socket and miekg's unpack of the request).
func serveOnce(s *Server, m *dns.Msg, client netip.Addr) int {
	q := getQuery()
	q.start = time.Now()
	q.msg = m
	q.transport = transportUDP
	q.client = client
	s.handle(q)
	n := len(q.out)
	s.record(q)
	putQuery(q)
	return n
}

// BenchmarkServe measures the serve path with the 2M-entry blocklist:
// a cached allowed name, a blocked name, and a cache miss answered by a
// local upstream over UDP.
func BenchmarkServe(b *testing.B) {
	s := benchServer(b)
	client := netip.MustParseAddr("127.0.0.1")
	b.Run("cached_allowed", func(b *testing.B) {
		m := benchQuery("www.example.org")
		serveOnce(s, m, client) // fill the cache
		b.ReportAllocs()
		for b.Loop() {
			if serveOnce(s, m, client) == 0 {
				b.Fatal("no answer")
			}
		}
	})
	b.Run("blocked", func(b *testing.B) {
		m := benchQuery(bl.sample[len(bl.sample)/2])
		b.ReportAllocs()
		for b.Loop() {
			serveOnce(s, m, client)
		}
	})
	b.Run("cache_miss", func(b *testing.B) {
		msgs := make([]*dns.Msg, 0, 1<<16)
		for i := range cap(msgs) {
			msgs = append(msgs, benchQuery(fmt.Sprintf("n%d-%d.miss.example.org", i, time.Now().UnixNano())))
		}
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			serveOnce(s, msgs[i%len(msgs)], client)
			i++
		}
		if i > len(msgs) {
			b.Logf("%d iterations over %d distinct names: later ones were cache hits", i, len(msgs))
		}
	})
	b.Run("cached_allowed_parallel", func(b *testing.B) {
		m := benchQuery("www.example.net")
		serveOnce(s, m, client)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			mm := m.Copy()
			for pb.Next() {
				serveOnce(s, mm, client)
			}
		})
	})
}

// BenchmarkUDP measures a full round trip over loopback UDP (client and
// server in one process: the client's allocations count too).
func BenchmarkUDP(b *testing.B) {
	s := benchServer(b)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = s.Serve(pc, nil) }()
	addr := pc.LocalAddr().String()
	for _, tt := range []struct{ name, host string }{{"cached_allowed", "www.example.org"}, {"blocked", bl.sample[7]}} {
		b.Run(tt.name, func(b *testing.B) {
			conn, err := dns.Dial("udp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			m := benchQuery(tt.host)
			b.ReportAllocs()
			for b.Loop() {
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				if err := conn.WriteMsg(m); err != nil {
					b.Fatal(err)
				}
				if _, err := conn.ReadMsg(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCacheHit measures one cached answer on the UDP reader's path
// from the datagram to the packed answer: parse of the request, policy
// decision, one cache lookup (the entry holds the whole answer, a CNAME
// chain included, so its targets need no lookup of their own), the
// decision on each CNAME target and address, the answer packed into the
// query's pooled buffer, metrics and the access event. Only the socket
// system calls are left out. The target is 0 allocs/op.
func BenchmarkCacheHit(b *testing.B) {
	s := benchServer(b)
	s.events = nil // the sink is the reports pipeline's budget (BenchmarkCacheHitEvent)
	for _, tt := range []struct{ name, host string }{
		{"answer", "www.example.org"},
		{"cname_chain", "chain.bench.example"},
	} {
		b.Run(tt.name, func(b *testing.B) { cacheHitLoop(b, s, tt.host) })
	}
}

// cacheHitLoop answers a query for host from s's cache b.N times through
// a UDP reader's path (the first query, a miss, fills the cache).
func cacheHitLoop(b *testing.B, s *Server, host string) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	u := newUDPServer(s, pc)
	r := newUDPReader(u)
	from := netip.MustParseAddrPort("127.0.0.1:40000")
	m := benchQuery(host)
	m.Id = 4321
	wire, err := m.Pack()
	if err != nil {
		b.Fatal(err)
	}
	serve := func() int {
		q := u.serveOne(r, wire, from, nil, time.Now())
		if q == nil {
			return 0
		}
		n := len(q.out)
		s.record(q)
		putQuery(q)
		return n
	}
	// The first one is a miss: it waits for the upstream.
	for range 200 {
		if serve() > 0 {
			break
		}
		r.flushUpstream() // as the reader does at the end of a batch
		time.Sleep(5 * time.Millisecond)
		u.s.pool.poll(r)
		r.flush()
	}
	if serve() == 0 {
		b.Fatal("no cached answer")
	}
	b.ReportAllocs()
	for b.Loop() {
		if serve() == 0 {
			b.Fatal("no answer")
		}
	}
}
