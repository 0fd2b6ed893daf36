package dnsfilter

import (
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/reports"
)

// BenchmarkCacheHitEvent is BenchmarkCacheHit/answer with the access event
// going into a real reports pipeline (aggregates in a local store, the
// JSON access log on), as `cordon serve` runs it: the event path's share
// of a query's CPU.
func BenchmarkCacheHitEvent(b *testing.B) {
	s := benchServer(b)
	dir := b.TempDir()
	cfg := reports.Defaults()
	cfg.Dir = dir
	cfg.AccessLog.Path = filepath.Join(dir, "access.log")
	store, err := reports.OpenLocal(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	p, err := reports.New(cfg, reports.Deps{Store: store})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(b.Context())
	s.events = p
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	u := newUDPServer(s, pc)
	r := newUDPReader(u)
	from := netip.MustParseAddrPort("127.0.0.1:40000")
	m := benchQuery("www.example.org")
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
	for range 200 {
		if serve() > 0 {
			break
		}
		r.flushUpstream()
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
