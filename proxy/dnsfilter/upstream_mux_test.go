package dnsfilter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The udpMux tests run the filter against upstreams on loopback UDP
// sockets: a raw one (rawUpstream) whose handler decides what, if
// anything, goes back for each query, so forged, late, SERVFAIL and
// dropped answers can be sent exactly; a miekg/dns one for truncation;
// a closed port for ICMP port unreachable.

// rawUpstream is a UDP upstream on loopback: reply is called for every
// query with the unpacked query and a function that sends one datagram
// back to its source.
type rawUpstream struct {
	addr string

	mu      sync.Mutex
	sources map[string]int // query source address -> queries
	names   map[string]int // lower-case FQDN -> queries
}

func startRawUpstream(t *testing.T, reply func(q *dns.Msg, send func(*dns.Msg))) *rawUpstream {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{addr: pc.LocalAddr().String(), sources: map[string]int{}, names: map[string]int{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil || len(q.Question) != 1 {
				continue
			}
			u.mu.Lock()
			u.sources[from.String()]++
			u.names[strings.ToLower(q.Question[0].Name)]++
			u.mu.Unlock()
			reply(q, func(m *dns.Msg) {
				b, err := m.Pack()
				if err != nil {
					t.Errorf("pack upstream answer: %v", err)
					return
				}
				_, _ = pc.WriteTo(b, from)
			})
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return u
}

func (u *rawUpstream) count(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.names[name]
}

func (u *rawUpstream) total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, c := range u.names {
		n += c
	}
	return n
}

func (u *rawUpstream) sourceSet() map[string]int {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[string]int, len(u.sources))
	for k, v := range u.sources {
		out[k] = v
	}
	return out
}

// addrFor is the address the answering upstreams give name: distinct for
// every hN.test. name, so a mixed-up answer shows.
func addrFor(name string) net.IP {
	var n int
	if _, err := fmt.Sscanf(name, "h%d.", &n); err != nil {
		return net.IPv4(192, 0, 2, 250)
	}
	return net.IPv4(10, byte(n>>16), byte(n>>8), byte(n))
}

// answerA is the correct answer to q: A addrFor(name), TTL 300.
func answerA(q *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(q)
	name := q.Question[0].Name
	if q.Question[0].Qtype == dns.TypeA {
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: addrFor(strings.ToLower(name))}}
	}
	if opt := q.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), opt.Do())
	}
	return m
}

func answering(q *dns.Msg, send func(*dns.Msg)) { send(answerA(q)) }

func dropping(*dns.Msg, func(*dns.Msg)) {}

func servfailing(q *dns.Msg, send func(*dns.Msg)) {
	m := new(dns.Msg)
	m.SetRcode(q, dns.RcodeServerFailure)
	send(m)
}

// wantA fails the test unless r answers name with addrFor(name).
func wantA(t testing.TB, r *dns.Msg, name string) {
	t.Helper()
	if err := checkA(r, name); err != nil {
		t.Fatal(err)
	}
}

func checkA(r *dns.Msg, name string) error {
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		return fmt.Errorf("%s: %v, want one A record", name, r)
	}
	a, ok := r.Answer[0].(*dns.A)
	if !ok || !a.A.Equal(addrFor(name)) {
		return fmt.Errorf("%s: answer %v, want A %v", name, r.Answer[0], addrFor(name))
	}
	return nil
}

// askA asks name's A record over UDP (EDNS on) and reports a transport
// error or a wrong answer with t.Errorf: it may run on any goroutine.
func askA(t testing.TB, addr, name string) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.SetEdns0(1232, false)
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err == nil && r.Id != m.Id {
		err = fmt.Errorf("answer ID %d, want %d", r.Id, m.Id)
	}
	if err == nil {
		err = checkA(r, name)
	}
	if err != nil {
		t.Errorf("%s: %v", name, err)
	}
}

// muxOf is the multiplexer of the filter's i-th upstream.
func muxOf(t testing.TB, f *filter, i int) *udpMux {
	t.Helper()
	m := f.srv.pool.list[i].mux
	if m == nil {
		t.Fatalf("upstream %d has no multiplexer", i)
	}
	return m
}

// muxSources is the local addresses of m's open sockets.
func muxSources(m *udpMux) map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]bool{}
	for _, sk := range m.sockets {
		out[sk.conn.LocalAddr().String()] = true
	}
	return out
}

// waitIdle waits (bounded) until m has nothing in flight and returns
// what is left.
func waitIdle(m *udpMux) int64 {
	for range 500 {
		if m.pending.Load() == 0 {
			return 0
		}
		time.Sleep(10 * time.Millisecond)
	}
	return m.pending.Load()
}

// parallel runs fn(i) for i in [0, n) on workers goroutines.
func parallel(n, workers int, fn func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

func TestMuxAnswersConcurrentMisses(t *testing.T) {
	up := startRawUpstream(t, answering)
	eng := newEngine(t, nil, policyFor("nxdomain"))
	f := startFilter(t, Config{Upstreams: []string{up.addr}}, eng)
	const names = 600
	parallel(names, 16, func(i int) {
		askA(t, f.addr, fmt.Sprintf("h%d.test.", i))
	})
	// Every miss went upstream once, from the multiplexer's socket.
	if n := up.total(); n != names {
		t.Errorf("upstream got %d queries for %d names, want one each", n, names)
	}
	mux := muxOf(t, f, 0)
	socks := muxSources(mux)
	for src, n := range up.sourceSet() {
		if !socks[src] {
			t.Errorf("%d upstream queries came from %s, not from a multiplexer socket %v", n, src, socks)
		}
	}
	if left := waitIdle(mux); left != 0 {
		t.Errorf("%d attempts still pending after every answer", left)
	}
	if n := f.srv.inflight.Load(); n != 0 {
		t.Errorf("inflight = %d after every answer, want 0", n)
	}
	// The answers were cached: asked again, nothing goes upstream.
	for i := range 20 {
		name := fmt.Sprintf("h%d.test.", i)
		wantA(t, ask(t, f.addr, "udp", name, dns.TypeA, true), name)
	}
	if n := up.total(); n != names {
		t.Errorf("upstream got %d queries after cached repeats, want %d", n, names)
	}
}

func TestMuxCoalescesOneName(t *testing.T) {
	var mu sync.Mutex
	var held []func()
	up := startRawUpstream(t, func(q *dns.Msg, send func(*dns.Msg)) {
		mu.Lock()
		held = append(held, func() { send(answerA(q)) })
		mu.Unlock()
	})
	eng := newEngine(t, nil, policyFor("nxdomain"))
	f := startFilter(t, Config{Upstreams: []string{up.addr}, UpstreamTimeout: Duration(time.Minute), QueryTimeout: Duration(2 * time.Minute)}, eng)
	const clients = 8
	answers := make(chan *dns.Msg, clients)
	for range clients {
		go func() {
			m := new(dns.Msg)
			m.SetQuestion("h7.test.", dns.TypeA)
			c := &dns.Client{Net: "udp", Timeout: 10 * time.Second}
			r, _, err := c.Exchange(m, f.addr)
			if err != nil {
				t.Errorf("exchange: %v", err)
			}
			answers <- r
		}()
	}
	// The upstream holds its answer until every client's query has
	// missed the cache (and so waits on the one flight) and the one
	// upstream query has reached it (it is sent at the end of the
	// reader's batch, after the misses are counted).
	heldQueries := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(held)
	}
	for i := 0; i < 500 && (testutil.ToFloat64(f.srv.metrics.cacheMisses) < clients || heldQueries() == 0); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if got := testutil.ToFloat64(f.srv.metrics.cacheMisses); got != clients {
		t.Fatalf("%v cache misses, want %d", got, clients)
	}
	mu.Lock()
	for _, send := range held {
		send()
	}
	mu.Unlock()
	for range clients {
		if r := <-answers; r != nil {
			wantA(t, r, "h7.test.")
		}
	}
	if n := up.count("h7.test."); n != 1 {
		t.Errorf("upstream got %d queries for one name asked by %d clients at once, want 1", n, clients)
	}
}

func TestMuxIgnoresMismatchedAnswers(t *testing.T) {
	wrong := net.IPv4(192, 0, 2, 13)
	up := startRawUpstream(t, func(q *dns.Msg, send func(*dns.Msg)) {
		bad := func(mutate func(m *dns.Msg)) {
			m := answerA(q)
			m.Answer[0].(*dns.A).A = wrong
			mutate(m)
			send(m)
		}
		bad(func(m *dns.Msg) { m.Id ^= 0x5a5a })                     // another ID
		bad(func(m *dns.Msg) { m.Question[0].Name = "other.test." }) // another question
		bad(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAAAA }) // another type
		bad(func(m *dns.Msg) { m.Response = false })                 // not an answer
		send(answerA(q))
		// A late duplicate: late enough that the right answer has been
		// taken. (Two datagrams that arrive back to back may be read by
		// two goroutines at once — a reader's poll and the socket's own —
		// and be matched in either order; both passed every check, so
		// either may win, as the first of two valid answers would.)
		go func() {
			time.Sleep(20 * time.Millisecond)
			bad(func(*dns.Msg) {})
		}()
	})
	eng := newEngine(t, nil, policyFor("nxdomain"))
	f := startFilter(t, Config{Upstreams: []string{up.addr}}, eng)
	for i := range 20 {
		name := fmt.Sprintf("h%d.test.", i)
		wantA(t, ask(t, f.addr, "udp", name, dns.TypeA, true), name)
	}
	// The cache holds the right answers, not the late duplicates.
	for i := range 20 {
		name := fmt.Sprintf("h%d.test.", i)
		wantA(t, ask(t, f.addr, "udp", name, dns.TypeA, true), name)
	}
	if n := up.total(); n != 20 {
		t.Errorf("upstream got %d queries, want 20", n)
	}
}

func TestMuxDroppingUpstreamFailsOver(t *testing.T) {
	drop := startRawUpstream(t, dropping)
	good := startRawUpstream(t, answering)
	eng := newEngine(t, nil, policyFor("nxdomain"))
	f := startFilter(t, Config{Upstreams: []string{drop.addr, good.addr}, Strategy: StrategyFastest,
		UpstreamTimeout: Duration(200 * time.Millisecond), QueryTimeout: Duration(3 * time.Second)}, eng)
	for i := range 6 {
		name := fmt.Sprintf("h%d.test.", i)
		wantA(t, ask(t, f.addr, "udp", name, dns.TypeA, true), name)
	}
	if f.srv.pool.list[0].healthy.Load() {
		t.Error("the dropping upstream is still marked healthy")
	}
	if n := drop.total(); n < 3 || n > 4 {
		t.Errorf("dropping upstream got %d queries, want 3 (then it is marked down; 4 when a probe raced)", n)
	}
	if n := good.total(); n != 6 {
		t.Errorf("answering upstream got %d queries, want 6", n)
	}
	if left := waitIdle(muxOf(t, f, 0)); left != 0 {
		t.Errorf("%d attempts still pending on the dropping upstream", left)
	}
}

func TestMuxServfailFallsBack(t *testing.T) {
	sf := startRawUpstream(t, servfailing)
	good := startRawUpstream(t, answering)
	eng := newEngine(t, nil, policyFor("nxdomain"))
	f := startFilter(t, Config{Upstreams: []string{sf.addr, good.addr}, Strategy: StrategyRoundRobin, Cache: CacheConfig{Disabled: true}}, eng)
	for i := range 6 {
		name := fmt.Sprintf("h%d.test.", i)
		wantA(t, ask(t, f.addr, "udp", name, dns.TypeA, true), name)
	}
	if sf.total() == 0 {
		t.Error("the SERVFAIL upstream was never asked")
	}
	// Alone, the SERVFAIL upstream's answer is passed on.
	f2 := startFilter(t, Config{Upstreams: []string{sf.addr}, Cache: CacheConfig{Disabled: true}}, eng)
	r := ask(t, f2.addr, "udp", "h1.test.", dns.TypeA, true)
	if r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	if left := waitIdle(muxOf(t, f2, 0)); left != 0 {
		t.Errorf("%d attempts still pending", left)
	}
}

func TestMuxTruncatedRetriesTCP(t *testing.T) {
	var mu sync.Mutex
	overTCP := 0
	up := startDNS(t, dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := answerA(q)
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			m.Answer = nil
			m.Truncated = true
		} else {
			mu.Lock()
			overTCP++
			mu.Unlock()
		}
		_ = w.WriteMsg(m)
	}))
	eng := newEngine(t, nil, policyFor("nxdomain"))
	f := startFilter(t, Config{Upstreams: []string{up}}, eng)
	for i := range 4 {
		name := fmt.Sprintf("h%d.test.", i)
		r := ask(t, f.addr, "udp", name, dns.TypeA, true)
		if r.Truncated {
			t.Fatalf("%s: answer truncated, want the upstream's TCP answer", name)
		}
		wantA(t, r, name)
	}
	mu.Lock()
	defer mu.Unlock()
	if overTCP != 4 {
		t.Errorf("upstream answered %d queries over TCP, want 4", overTCP)
	}
}

func TestMuxClosedPort(t *testing.T) {
	ln, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.LocalAddr().String()
	ln.Close()
	good := startRawUpstream(t, answering)
	eng := newEngine(t, nil, policyFor("nxdomain"))
	// Attempt and query timeouts far beyond the client's 5 s: only the
	// port unreachable can end the dead upstream's attempts in time.
	slow := func(ups ...string) Config {
		return Config{Upstreams: ups, Strategy: StrategyFastest,
			UpstreamTimeout: Duration(time.Minute), QueryTimeout: Duration(2 * time.Minute)}
	}
	f := startFilter(t, slow(dead, good.addr), eng)
	for i := range 6 {
		name := fmt.Sprintf("h%d.test.", i)
		wantA(t, ask(t, f.addr, "udp", name, dns.TypeA, true), name)
	}
	if f.srv.pool.list[0].healthy.Load() {
		t.Error("the closed port is still marked healthy")
	}
	if left := waitIdle(muxOf(t, f, 0)); left != 0 {
		t.Errorf("%d attempts still pending on the closed port", left)
	}
	f2 := startFilter(t, slow(dead), eng)
	r := ask(t, f2.addr, "udp", "h1.test.", dns.TypeA, true)
	if x := ede(r); r.Rcode != dns.RcodeServerFailure || x == nil || x.InfoCode != dns.ExtendedErrorCodeNoReachableAuthority {
		t.Fatalf("%v, want SERVFAIL with EDE 22", r)
	}
}

func TestMuxSocketRotation(t *testing.T) {
	up := startRawUpstream(t, answering)
	eng := newEngine(t, nil, policyFor("nxdomain"))
	f := startFilter(t, Config{Upstreams: []string{up.addr}, RateLimit: RateLimitConfig{Disabled: true}}, eng)
	const names = muxSocketUses*2 + 100
	parallel(names, 8, func(i int) {
		askA(t, f.addr, fmt.Sprintf("h%d.test.", i))
	})
	srcs := up.sourceSet()
	if len(srcs) < 3 {
		t.Fatalf("%d queries came from %d source ports, want ≥ 3 (%d a socket)", names, len(srcs), muxSocketUses)
	}
	for src, n := range srcs {
		if n > muxSocketUses {
			t.Errorf("%s carried %d queries, more than %d", src, n, muxSocketUses)
		}
	}
	mux := muxOf(t, f, 0)
	if left := waitIdle(mux); left != 0 {
		t.Fatalf("%d attempts still pending", left)
	}
	// The retired sockets closed with their last answer.
	if open := muxSources(mux); len(open) != 1 {
		t.Errorf("%d sockets open after every answer, want 1 (the active one): %v", len(open), open)
	}
}

func TestMuxShutdownWithAttemptsInFlight(t *testing.T) {
	before := runtime.NumGoroutine()
	silent := startRawUpstream(t, dropping)
	eng := newEngine(t, nil, policyFor("nxdomain"))
	s, err := New(Config{Upstreams: []string{silent.addr}, UpstreamTimeout: Duration(time.Minute), QueryTimeout: Duration(2 * time.Minute)},
		Deps{Engine: eng, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(pc, nil) }()
	const n = 5
	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range n {
		m := new(dns.Msg)
		m.SetQuestion(fmt.Sprintf("h%d.test.", i), dns.TypeA)
		b, _ := m.Pack()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	mux := s.pool.list[0].mux
	for i := 0; i < 500 && mux.pending.Load() < n; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if got := mux.pending.Load(); got != n {
		t.Fatalf("%d attempts pending, want %d", got, n)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want the deadline (attempts were in flight)", err)
	}
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v", err)
	}
	if got := mux.pending.Load(); got != 0 {
		t.Errorf("%d attempts pending after Shutdown", got)
	}
	if got := s.inflight.Load(); got != 0 {
		t.Errorf("inflight = %d after Shutdown", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+1 && time.Now().Before(deadline) { // +1: the upstream's reader
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > before+1 {
		t.Errorf("%d goroutines after Shutdown, %d before", got, before)
	}
}
