package dnsfilter

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cordon-gw/cordon/policies"
)

// zone is the local upstream's data: answers by "name type" (lower case,
// FQDN), counting every query it gets.
type zone struct {
	mu     sync.Mutex
	counts map[string]int
	rrs    map[string][]dns.RR
	nx     map[string]bool
}

func newZone(t testing.TB, records ...string) *zone {
	t.Helper()
	z := &zone{counts: map[string]int{}, rrs: map[string][]dns.RR{}, nx: map[string]bool{}}
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("dns.NewRR(%q): %v", s, err)
		}
		k := strings.ToLower(rr.Header().Name) + " " + dns.TypeToString[rr.Header().Rrtype]
		z.rrs[k] = append(z.rrs[k], rr)
		if rr.Header().Rrtype == dns.TypeCNAME {
			// answer any type with the CNAME chain
			z.rrs[strings.ToLower(rr.Header().Name)+" *"] = append(z.rrs[strings.ToLower(rr.Header().Name)+" *"], rr)
		}
	}
	return z
}

func (z *zone) count(name string, qtype uint16) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.counts[dns.Fqdn(name)+" "+dns.TypeToString[qtype]]
}

var zoneSOA = func() dns.RR {
	rr, _ := dns.NewRR("test. 3600 IN SOA ns.test. hostmaster.test. 1 1800 900 604800 60")
	return rr
}()

func (z *zone) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	qn := r.Question[0]
	name := strings.ToLower(qn.Name)
	z.mu.Lock()
	z.counts[name+" "+dns.TypeToString[qn.Qtype]]++
	z.mu.Unlock()
	// follow CNAMEs inside the zone
	for hops := 0; hops < 8; hops++ {
		if rrs := z.rrs[name+" "+dns.TypeToString[qn.Qtype]]; len(rrs) > 0 {
			m.Answer = append(m.Answer, rrs...)
			break
		}
		c := z.rrs[name+" *"]
		if len(c) == 0 {
			break
		}
		m.Answer = append(m.Answer, c[0])
		name = strings.ToLower(c[0].(*dns.CNAME).Target)
	}
	if opt := r.IsEdns0(); opt != nil && opt.Do() && len(m.Answer) > 0 {
		m.Answer = append(m.Answer, z.rrs[name+" RRSIG"]...)
	}
	if len(m.Answer) == 0 {
		if strings.HasPrefix(name, "nx") {
			m.Rcode = dns.RcodeNameError
		}
		m.Ns = []dns.RR{zoneSOA}
	}
	if opt := r.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), opt.Do())
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// startDNS serves h on UDP and TCP on one 127.0.0.1 port and returns
// "127.0.0.1:port".
func startDNS(t testing.TB, h dns.Handler) string {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen udp: %v", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			continue
		}
		for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
			started := make(chan struct{})
			srv.NotifyStartedFunc = func() { close(started) }
			go func() { _ = srv.ActivateAndServe() }()
			<-started
			t.Cleanup(func() { _ = srv.Shutdown() })
		}
		return pc.LocalAddr().String()
	}
	t.Fatal("no free UDP+TCP port pair")
	return ""
}

// newEngine builds a real policies.Engine with the policy in YAML.
func newEngine(t testing.TB, trusted []netip.Prefix, policyYAML string) *policies.Engine {
	t.Helper()
	eng := policies.NewEngine(policies.EngineConfig{TrustedNetworks: trusted, Logger: slog.New(slog.DiscardHandler)})
	setPolicy(t, eng, policyYAML, 1)
	return eng
}

func setPolicy(t testing.TB, eng *policies.Engine, policyYAML string, version int64) {
	t.Helper()
	doc, err := policies.Parse([]byte(policyYAML))
	if err != nil {
		t.Fatalf("policies.Parse: %v", err)
	}
	if err := eng.SetPolicy(doc, version); err != nil {
		t.Fatalf("SetPolicy: %v", err)
	}
}

// events collects access events (copies).
type events struct {
	mu  sync.Mutex
	evs []policies.AccessEvent
}

func (e *events) Record(ev *policies.AccessEvent) {
	e.mu.Lock()
	e.evs = append(e.evs, *ev)
	e.mu.Unlock()
}

// find returns the latest event matching pred, waiting for it (events are
// recorded just after the answer is written).
func (e *events) find(t testing.TB, pred func(policies.AccessEvent) bool) policies.AccessEvent {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.mu.Lock()
		for i := len(e.evs) - 1; i >= 0; i-- {
			if pred(e.evs[i]) {
				ev := e.evs[i]
				e.mu.Unlock()
				return ev
			}
		}
		e.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("no matching access event recorded")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func host(h string) func(policies.AccessEvent) bool {
	return func(ev policies.AccessEvent) bool { return ev.Host == h }
}

func hostUser(h, user string) func(policies.AccessEvent) bool {
	return func(ev policies.AccessEvent) bool { return ev.Host == h && ev.User == user }
}

type filter struct {
	srv    *Server
	addr   string
	events *events
	reg    *prometheus.Registry
}

// startFilter starts a Server on UDP and TCP of one loopback port.
func startFilter(t testing.TB, cfg Config, eng *policies.Engine) *filter {
	t.Helper()
	return startFilterWith(t, cfg, eng, nil)
}

// startFilterWith is startFilter with a hook on the Server before it
// serves.
func startFilterWith(t testing.TB, cfg Config, eng *policies.Engine, hook func(*Server)) *filter {
	t.Helper()
	f := &filter{events: &events{}, reg: prometheus.NewRegistry()}
	var logger *slog.Logger
	if tt, ok := t.(*testing.T); ok {
		logger = slog.New(slog.NewTextHandler(tt.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	} else {
		logger = slog.New(slog.DiscardHandler)
	}
	srv, err := New(cfg, Deps{Engine: eng, Events: f.events, Logger: logger, Registerer: f.reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.srv = srv
	if hook != nil {
		hook(srv)
	}
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen udp: %v", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			continue
		}
		f.addr = pc.LocalAddr().String()
		done := make(chan error, 1)
		go func() { done <- srv.Serve(pc, ln) }()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			if err := <-done; err != ErrServerClosed {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		})
		return f
	}
	t.Fatal("no free UDP+TCP port pair")
	return nil
}

// ask sends one query and fails the test on a transport error.
func ask(t testing.TB, addr, net string, name string, qtype uint16, edns bool) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns {
		m.SetEdns0(1232, false)
	}
	return exchange(t, addr, net, m)
}

func exchange(t testing.TB, addr, net string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: net, Timeout: 5 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("exchange %s %s over %s: %v", m.Question[0].Name, dns.TypeToString[m.Question[0].Qtype], net, err)
	}
	if r.Id != m.Id {
		t.Fatalf("answer ID %d, want %d", r.Id, m.Id)
	}
	return r
}

func ede(m *dns.Msg) *dns.EDNS0_EDE {
	opt := m.IsEdns0()
	if opt == nil {
		return nil
	}
	for _, o := range opt.Option {
		if e, ok := o.(*dns.EDNS0_EDE); ok {
			return e
		}
	}
	return nil
}
