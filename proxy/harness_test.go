package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cordon-gw/cordon/categorizer"
	"github.com/cordon-gw/cordon/policies"
)

// testPolicy is the policy of the end-to-end tests. %s is alice's
// password hash.
const testPolicy = `
settings:
  default_action: allow
  warn_ttl: 1h
  safe_search:
    enabled: true
    groups: [staff]
groups:
  - name: staff
users:
  - name: alice
    groups: [staff]
    password_hash: %q
rules:
  - id: block-threats
    threats: [any]
    action: block
  - id: block-gambling
    categories: [gambling]
    action: block
  - id: warn-social
    categories: [social]
    action: warn
  - id: monitor-news
    categories: [news]
    action: block
    monitor: true
  - id: block-listed
    domains: [blocked.test]
    action: block
  - id: block-path
    domains: ["other.test/secret"]
    action: block
`

// testFeeds are the categorizer feeds of the tests: feed name, categories,
// threat, domains.
var testFeeds = []struct {
	name    string
	cats    []string
	threat  bool
	domains []string
}{
	{"test-gambling", []string{"gambling"}, false, []string{"casino.test", "gone-casino.test"}},
	{"test-social", []string{"social"}, false, []string{"social.test"}},
	{"test-news", []string{"news"}, false, []string{"news.test"}},
	{"test-finance", []string{"banking"}, false, []string{"bank.test"}},
	{"urlhaus", []string{"malware"}, true, []string{"malware.test"}},
}

// testHosts are every name the tests use; the resolver maps them to
// loopback.
var testHosts = []string{
	"allowed.test", "casino.test", "social.test", "news.test", "bank.test",
	"malware.test", "www.malware.test", "blocked.test", "other.test",
	"pinned.test", "badcert.test", "www.google.com",
}

var (
	aliceHashOnce sync.Once
	aliceHash     string
)

// testEngine builds a real Engine with the test feeds and policy.
// trusted nil trusts loopback (and the private ranges).
func testEngine(t testing.TB, trusted []netip.Prefix) *policies.Engine {
	t.Helper()
	aliceHashOnce.Do(func() {
		h, err := policies.HashPassword("wonderland")
		if err != nil {
			panic(err)
		}
		aliceHash = h
	})
	b := categorizer.NewBuilder()
	for _, f := range testFeeds {
		id, err := b.AddFeed(f.name, f.cats, f.threat)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.domains {
			if err := b.Add(id, categorizer.Entry{Kind: categorizer.KindDomain, Host: d}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A threat feed of destination addresses: names resolving into it are
	// blocked whatever the name.
	ipFeed, err := b.AddFeed("test-badips", []string{"malware"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ipFeed, categorizer.Entry{Kind: categorizer.KindCIDR, Prefix: netip.MustParsePrefix("127.0.0.66/32")}); err != nil {
		t.Fatal(err)
	}
	ix, err := b.Build(1)
	if err != nil {
		t.Fatal(err)
	}
	e := policies.NewEngine(policies.EngineConfig{
		TrustedNetworks: trusted,
		Logger:          slog.New(slog.DiscardHandler),
		Registerer:      prometheus.NewRegistry(),
	})
	if err := e.SetIndex(ix); err != nil {
		t.Fatal(err)
	}
	p, err := policies.Parse(fmt.Appendf(nil, testPolicy, aliceHash))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetPolicy(p, 7); err != nil {
		t.Fatal(err)
	}
	return e
}

// eventLog is an EventSink keeping every event.
type eventLog struct {
	mu  sync.Mutex
	evs []policies.AccessEvent
}

func (l *eventLog) Record(ev *policies.AccessEvent) {
	l.mu.Lock()
	l.evs = append(l.evs, *ev)
	l.mu.Unlock()
}

// wait returns the first event matching pred, waiting (bounded) for the
// proxy to finish the exchange: events are recorded after the response.
func (l *eventLog) wait(t testing.TB, pred func(*policies.AccessEvent) bool) policies.AccessEvent {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		for i := range l.evs {
			if pred(&l.evs[i]) {
				ev := l.evs[i]
				l.mu.Unlock()
				return ev
			}
		}
		n := len(l.evs)
		l.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no matching access event among %d", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *eventLog) forHost(t testing.TB, host string) policies.AccessEvent {
	t.Helper()
	return l.wait(t, func(ev *policies.AccessEvent) bool { return ev.Host == host })
}

// reviewLog is a ReviewSink keeping every review.
type reviewLog struct {
	mu sync.Mutex
	rs []policies.Review
}

func (l *reviewLog) SubmitReview(_ context.Context, r policies.Review) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rs = append(l.rs, r)
	return fmt.Sprintf("rev-%d", len(l.rs)), nil
}

// harness is a running proxy with a real Engine and loopback origins.
type harness struct {
	t       testing.TB
	engine  *policies.Engine
	srv     *Server
	addr    string
	url     *url.URL
	events  *eventLog
	reviews *reviewLog
	reg     *prometheus.Registry
	// origin serves plain HTTP, tlsOrigin HTTPS with a certificate for
	// every test host from originCA.
	origin, tlsOrigin *httptest.Server
	originCA          *x509.CertPool
	clients           []*http.Client
}

type harnessOpt struct {
	cfg     Config
	trusted []netip.Prefix
	handler http.Handler
	// noAllow keeps the default SSRF guard (no loopback allowed).
	noAllow bool
}

func newHarness(t testing.TB, o harnessOpt) *harness {
	t.Helper()
	h := &harness{t: t, events: &eventLog{}, reviews: &reviewLog{}, reg: prometheus.NewRegistry()}
	h.engine = testEngine(t, o.trusted)
	handler := o.handler
	if handler == nil {
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Origin-Host", r.Host)
			w.Header().Set("X-Origin-Via", r.Header.Get("Via"))
			w.Header().Set("X-Origin-XFF", r.Header.Get("X-Forwarded-For"))
			w.Header().Set("X-Origin-Proxy-Auth", r.Header.Get("Proxy-Authorization"))
			fmt.Fprintf(w, "hello from %s%s", r.Host, r.URL.Path)
		})
	}
	h.origin = httptest.NewServer(handler)
	t.Cleanup(h.origin.Close)

	// TLS origin with a certificate from a private CA for the test names.
	dir := filepath.Join(t.TempDir(), "origin-ca")
	ca, err := InitCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	h.originCA = x509.NewCertPool()
	h.originCA.AddCert(ca.Certificate())
	minter := newMITM(ca, InspectConfig{LeafCacheSize: 100})
	h.tlsOrigin = httptest.NewUnstartedServer(handler)
	h.tlsOrigin.TLS = &tls.Config{GetCertificate: func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
		name := hi.ServerName
		if name == "" {
			name = "127.0.0.1"
		}
		return minter.leaf(name)
	}}
	// Tests close tunnels mid-handshake on purpose; keep the origin quiet.
	h.tlsOrigin.Config.ErrorLog = log.New(io.Discard, "", 0)
	h.tlsOrigin.StartTLS()
	t.Cleanup(h.tlsOrigin.Close)

	cfg := o.cfg
	cfg.Listen = "127.0.0.1:0"
	if cfg.ResolveOverrides == nil {
		cfg.ResolveOverrides = map[string]string{}
	}
	for _, n := range testHosts {
		cfg.ResolveOverrides[n] = "127.0.0.1"
	}
	cfg.ResolveOverrides["ipthreat.test"] = "127.0.0.66"
	if cfg.ConnectPorts == nil {
		cfg.ConnectPorts = []int{0} // origins listen on random ports
	}
	if !o.noAllow && cfg.AllowPrivateDestinations == nil {
		cfg.AllowPrivateDestinations = []string{"127.0.0.1/32", "127.0.0.66/32"}
	}
	h.srv, err = New(cfg, Deps{
		Engine:          h.engine,
		Events:          h.events,
		Reviews:         h.reviews,
		Logger:          slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Registerer:      h.reg,
		Resolver:        mapResolver{}, // names resolve only through the overrides
		UpstreamRootCAs: h.originCA,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	h.url = &url.URL{Scheme: "http", Host: h.addr}
	done := make(chan error, 1)
	go func() { done <- h.srv.Serve(ln) }()
	t.Cleanup(func() {
		for _, c := range h.clients {
			c.CloseIdleConnections()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	return h
}

// testWriter sends logs to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// client returns an HTTP client using the proxy; user:pass when given.
func (h *harness) client(userinfo *url.Userinfo) *http.Client {
	u := *h.url
	u.User = userinfo
	c := &http.Client{
		Transport: &http.Transport{
			Proxy:             http.ProxyURL(&u),
			TLSClientConfig:   &tls.Config{RootCAs: h.originCA},
			DisableKeepAlives: false,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       20 * time.Second,
	}
	h.clients = append(h.clients, c)
	return c
}

// httpURL is the plain origin's URL under a test host name.
func (h *harness) httpURL(host, path string) string {
	_, port, _ := net.SplitHostPort(h.origin.Listener.Addr().String())
	return "http://" + net.JoinHostPort(host, port) + path
}

func (h *harness) httpsURL(host, path string) string {
	_, port, _ := net.SplitHostPort(h.tlsOrigin.Listener.Addr().String())
	return "https://" + net.JoinHostPort(host, port) + path
}
