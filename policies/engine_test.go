package policies

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cordon-gw/cordon/categorizer"
)

func testEngine(t testing.TB) (*Engine, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	e := NewEngine(EngineConfig{Logger: slog.New(slog.DiscardHandler), Registerer: reg})
	return e, reg
}

func TestEngineIdentity(t *testing.T) {
	hash, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`
groups: [{name: staff}]
users:
  - name: alice
    groups: [staff]
    password_hash: %q
    doh_token: alice-token-0123456789
locations:
  - name: branch
    cidrs: [203.0.113.0/24]
`, hash)
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	e, reg := testEngine(t)
	if err := e.SetPolicy(p, 3); err != nil {
		t.Fatal(err)
	}
	if v := e.PolicyVersion(); v != 3 {
		t.Errorf("PolicyVersion() = %d, want 3", v)
	}
	pr, ok := e.Authenticate("alice", "s3cret")
	if !ok || pr.User != "alice" || len(pr.Groups) != 1 || pr.Groups[0] != "staff" {
		t.Fatalf("Authenticate(alice, right) = %+v, %v", pr, ok)
	}
	if _, ok := e.Authenticate("alice", "s3cret"); !ok {
		t.Fatal("second Authenticate failed")
	}
	if got := promtest.ToFloat64(e.m.auth.WithLabelValues("cached")); got != 1 {
		t.Errorf("cached authentications = %v, want 1", got)
	}
	if _, ok := e.Authenticate("alice", "wrong"); ok {
		t.Error("Authenticate(alice, wrong) succeeded")
	}
	if _, ok := e.Authenticate("mallory", "s3cret"); ok {
		t.Error("Authenticate(unknown user) succeeded")
	}
	if pr, ok := e.TokenPrincipal("alice-token-0123456789"); !ok || pr.User != "alice" {
		t.Errorf("TokenPrincipal = %+v, %v", pr, ok)
	}
	if _, ok := e.TokenPrincipal("nope"); ok {
		t.Error("TokenPrincipal(unknown) succeeded")
	}
	tests := []struct {
		ip      string
		ok      bool
		locName string
	}{
		{"203.0.113.9", true, "branch"},
		{"127.0.0.1", true, ""},
		{"192.168.1.1", true, ""},
		{"::ffff:10.0.0.1", true, ""},
		{"198.51.100.1", false, ""},
	}
	for _, tt := range tests {
		pr, ok := e.ClientPrincipal(netip.MustParseAddr(tt.ip))
		if ok != tt.ok || (ok && pr.Location != tt.locName) {
			t.Errorf("ClientPrincipal(%s) = %+v, %v; want location %q, %v", tt.ip, pr, ok, tt.locName, tt.ok)
		}
	}
	// A new policy without alice: the cached credential no longer works.
	p2, _ := Parse([]byte("rules: []\n"))
	if err := e.SetPolicy(p2, 4); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.Authenticate("alice", "s3cret"); ok {
		t.Error("Authenticate after alice was removed succeeded")
	}
	if n, err := promtest.GatherAndLint(reg); err != nil || len(n) > 0 {
		t.Errorf("metric lint: %v %v", n, err)
	}
}

func TestEngineCheck(t *testing.T) {
	tb := newTable()
	tb.set("casino.example", []string{"gambling"}, nil)
	e, _ := testEngine(t)
	e.setIndex(tb)
	p, err := Parse([]byte("rules:\n  - id: g\n    categories: [gambling]\n    action: block\n  - id: new\n    categories: [newly_seen]\n    action: warn\n  - id: kp\n    countries: [KP]\n    action: block\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetPolicy(p, 1); err != nil {
		t.Fatal(err)
	}
	e.setNewlySeen(newlySeenFunc(func(h string) bool { return h == "fresh.example" }))
	e.setGeo(countryFunc(func(ip netip.Addr) string {
		if ip == netip.MustParseAddr("175.45.176.1") {
			return "KP"
		}
		return ""
	}))
	tests := []struct {
		r    Request
		want string
	}{
		{Request{Host: "casino.example"}, "g"},
		{Request{Host: "fresh.example"}, "new"},
		{Request{Host: "x.example", DestIP: netip.MustParseAddr("175.45.176.1")}, "kp"},
		{Request{Host: "x.example"}, ""},
	}
	for _, tt := range tests {
		d, _ := e.Check(&tt.r)
		if d.RuleID != tt.want || d.Version != 1 {
			t.Errorf("Check(%q).RuleID = %q (version %d), want %q", tt.r.Host, d.RuleID, d.Version, tt.want)
		}
	}
	r := Request{Host: "www.casino.example", Time: time.Now()}
	if n := testing.AllocsPerRun(100, func() { e.Check(&r) }); n != 0 {
		t.Errorf("Check allocates %v times per call, want 0", n)
	}
	cats, thr := e.Names(categorizer.Verdict{Categories: categorizer.Set(0).With(2).With(0)})
	if len(cats) != 2 || cats[0] != "newly_seen" || cats[1] != "gambling" || len(thr) != 0 {
		t.Errorf("Names = %v, %v", cats, thr)
	}
}

// TestEngineSwapConsistent swaps policies while requests run: every
// decision must be the one its policy version gives.
func TestEngineSwapConsistent(t *testing.T) {
	tb := newTable()
	tb.set("casino.example", []string{"gambling"}, nil)
	e, _ := testEngine(t)
	e.setIndex(tb)
	block, _ := Parse([]byte("rules:\n  - id: g\n    categories: [gambling]\n    action: block\n"))
	allow, _ := Parse([]byte("settings: {default_action: allow}\n"))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan string, 8)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := Request{Host: "casino.example"}
				d, _ := e.Check(&r)
				if wantBlock := d.Version%2 == 1; d.Blocked() != wantBlock {
					select {
					case errs <- fmt.Sprintf("version %d decided %v", d.Version, d.Action):
					default:
					}
					return
				}
			}
		}()
	}
	for v := int64(1); v <= 200; v++ {
		doc := allow
		if v%2 == 1 {
			doc = block
		}
		if err := e.SetPolicy(doc, v); err != nil {
			t.Fatal(err)
		}
		if v%50 == 0 {
			e.setIndex(tb)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for s := range errs {
		t.Error(s)
	}
}

type newlySeenFunc func(string) bool

func (f newlySeenFunc) Check(h string, _ time.Time) bool { return f(h) }

func (f newlySeenFunc) Explain(_ context.Context, h string, _ time.Time) categorizer.NewlySeenExplanation {
	return categorizer.NewlySeenExplanation{NewlySeen: f(h)}
}

func (f newlySeenFunc) SetIndex(*categorizer.Index) {}

type countryFunc func(netip.Addr) string

func (f countryFunc) Country(ip netip.Addr) categorizer.Country {
	c, _ := categorizer.ParseCountry(f(ip))
	return c
}

func TestEngineRealIndex(t *testing.T) {
	b := categorizer.NewBuilder()
	f, err := b.AddFeed("urlhaus", []string{"malware"}, true)
	if err != nil {
		t.Fatal(err)
	}
	g, err := b.AddFeed("ut1-gambling", []string{"gambling"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Add(f, categorizer.Entry{Kind: categorizer.KindDomain, Host: "bad.example"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(g, categorizer.Entry{Kind: categorizer.KindDomain, Host: "casino.example"}); err != nil {
		t.Fatal(err)
	}
	ix, err := b.Build(1)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := testEngine(t)
	p, err := Parse([]byte("rules:\n  - id: threats\n    threats: [urlhaus]\n    action: block\n  - id: gambling\n    categories: [gambling]\n    action: warn\n"))
	if err != nil {
		t.Fatal(err)
	}
	// Policy first (against no index: names unknown, criteria match
	// nothing), then the index: SetIndex recompiles.
	if err := e.SetPolicy(p, 2); err != nil {
		t.Fatal(err)
	}
	if err := e.SetIndex(ix); err != nil {
		t.Fatal(err)
	}
	if err := Validate(p, e.Index()); err != nil {
		t.Fatalf("Validate against the index: %v", err)
	}
	for host, want := range map[string]string{"www.bad.example": "threats", "casino.example": "gambling", "fine.example": ""} {
		r := Request{Host: host}
		d, v := e.Check(&r)
		if d.RuleID != want {
			t.Errorf("Check(%q).RuleID = %q, want %q (verdict %+v)", host, d.RuleID, want, v)
		}
	}
	r := Request{Host: "www.bad.example", Time: time.Now()}
	if n := testing.AllocsPerRun(100, func() { e.Check(&r) }); n != 0 {
		t.Errorf("Check allocates %v times per call with a real index, want 0", n)
	}
}

func TestEngineAuthenticateConcurrent(t *testing.T) {
	hash, err := HashPassword("pw-0123")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse([]byte(fmt.Sprintf("users:\n  - name: u\n    password_hash: %q\n", hash)))
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(EngineConfig{Logger: slog.New(slog.DiscardHandler), AuthCacheTTL: -1})
	if err := e.SetPolicy(p, 1); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	fails := make(chan string, 32)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pw := "pw-0123"
			if i%2 == 1 {
				pw = "wrong"
			}
			if _, ok := e.Authenticate("u", pw); ok != (i%2 == 0) {
				fails <- fmt.Sprintf("goroutine %d: Authenticate = %v", i, ok)
			}
		}()
	}
	wg.Wait()
	close(fails)
	for f := range fails {
		t.Error(f)
	}
	if n := len(e.hashSlots); n != 0 {
		t.Errorf("%d hash slots still held", n)
	}
}
