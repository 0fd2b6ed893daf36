package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/cordon-gw/cordon/categorizer"
	"github.com/cordon-gw/cordon/internal/testutil"
	"github.com/cordon-gw/cordon/policies"
)

// testPolicy blocks threats and crypto-mining, warns on a list, and runs
// one rule in monitor mode.
const testPolicy = `
settings:
  default_action: allow
  dns_block_mode: nxdomain
lists:
  - name: warn-list
    kind: deny
    entries: [warn.test]
  - name: monitor-list
    kind: deny
    entries: [monitor.test]
rules:
  - id: block-threats
    threats: [any]
    action: block
  - id: block-mining
    categories: [cryptomining]
    action: block
  - id: warn-some
    lists: [warn-list]
    action: warn
  - id: trial
    lists: [monitor-list]
    action: block
    monitor: true
`

// firstEntry returns the first listed name of a committed feed sample.
func firstEntry(t *testing.T, rel string) string {
	t.Helper()
	f, err := os.Open(testutil.Data(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		fields := strings.Fields(line)
		return fields[len(fields)-1]
	}
	t.Fatalf("%s: no entry", rel)
	return ""
}

// startUpstream is a local authoritative resolver answering 127.0.0.1 for
// every A question.
func startUpstream(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		if q := r.Question[0]; q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(127, 0, 0, 1)})
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

type testGateway struct {
	*gateway
	origin  *httptest.Server
	tlsOrig *httptest.Server
	token   string
	threat  string // a host listed by a threat feed
	mining  string // a host in the cryptomining category
}

// startGateway runs the whole gateway in-process on loopback ports with
// real feed files, a real policy file and a local DNS upstream.
func startGateway(t *testing.T, mutate func(*Config)) *testGateway {
	t.Helper()
	tg := &testGateway{
		threat: firstEntry(t, "urlhaus/hosts"),
		mining: firstEntry(t, "blocklistproject/alt-version/crypto-nl.txt"),
	}
	tg.origin = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "origin says hello to %s", r.Host)
	}))
	t.Cleanup(tg.origin.Close)
	tg.tlsOrig = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls origin")
	}))
	t.Cleanup(tg.tlsOrig.Close)

	dir := t.TempDir()
	polFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(polFile, []byte(testPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Proxy.Listen = "127.0.0.1:0"
	cfg.DNS.Listen = "127.0.0.1:0"
	cfg.DNS.Upstreams = []string{"udp://" + startUpstream(t)}
	cfg.Policy.File = polFile
	cfg.Proxy.AllowPrivateDestinations = []string{"127.0.0.0/8"}
	cfg.Proxy.ResolveOverrides = map[string]string{}
	for _, h := range []string{"allowed.test", "warn.test", "monitor.test", tg.threat, tg.mining} {
		cfg.Proxy.ResolveOverrides[h] = "127.0.0.1"
	}
	cfg.Categorizer.Feeds = []categorizer.FeedConfig{
		{Name: "urlhaus", Source: testutil.Data(t, "urlhaus/hosts"), Format: "hosts", Categories: []string{"malware"}, Threat: true},
		{Name: "blp-crypto", Source: testutil.Data(t, "blocklistproject/alt-version/crypto-nl.txt"), Format: "domains", Categories: []string{"cryptomining"}},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	cfg.applyDataDir()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// Everything the gateway writes stays in the test's folder (a test run
	// once left cordon-data/reports/access.log in this package).
	for _, p := range []string{cfg.DataDir, cfg.Reports.Dir, cfg.Reports.AccessLog.Path, cfg.Proxy.TLSInspection.CADir} {
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			t.Fatalf("gateway path %s is outside the test's folder %s", p, dir)
		}
	}
	t.Setenv("CORDON_ADMIN_TOKEN", "test-admin-token-0123456789")
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	g, err := newGateway(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	g.start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.close(ctx)
	})
	tg.gateway = g
	tg.token = "test-admin-token-0123456789"
	return tg
}

func (tg *testGateway) proxyClient() *http.Client {
	pu := &url.URL{Scheme: "http", Host: tg.proxyLn.Addr().String()}
	return &http.Client{
		Transport:     &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (tg *testGateway) query(t *testing.T, name string, qtype uint16, network string) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	addr := tg.dnsUDP.LocalAddr().String()
	if network == "tcp" {
		addr = tg.dnsTCP.Addr().String()
	}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("dns %s %s: %v", network, name, err)
	}
	return r
}

// TestParity runs one table through Decide, the running HTTP proxy and the
// running DNS filter: the three must agree on every host.
func TestParity(t *testing.T) {
	tg := startGateway(t, nil)
	_, originPort, _ := net.SplitHostPort(tg.origin.Listener.Addr().String())
	table := []struct {
		host    string
		want    policies.Action // enforced
		rule    string
		monitor bool
	}{
		{"allowed.test", policies.ActionAllow, "", false},
		{tg.threat, policies.ActionBlock, "block-threats", false},
		{tg.mining, policies.ActionBlock, "block-mining", false},
		{"warn.test", policies.ActionWarn, "warn-some", false},
		{"monitor.test", policies.ActionAllow, "trial", true},
	}
	client := tg.proxyClient()
	for _, tc := range table {
		t.Run(tc.host, func(t *testing.T) {
			// 1. the decision function
			d, _ := tg.engine.Check(&policies.Request{
				Time: time.Now(), ClientIP: netip.MustParseAddr("127.0.0.1"), Protocol: policies.ProtoHTTP, Host: tc.host, Path: "/",
			})
			if d.Action != tc.want || d.RuleID != tc.rule || d.Monitor != tc.monitor {
				t.Fatalf("Decide(%s) = %v rule %q monitor %v, want %v rule %q monitor %v", tc.host, d.Action, d.RuleID, d.Monitor, tc.want, tc.rule, tc.monitor)
			}

			// 2. the HTTP proxy
			resp, err := client.Get("http://" + net.JoinHostPort(tc.host, originPort) + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch tc.want {
			case policies.ActionAllow:
				if resp.StatusCode != 200 || !strings.Contains(string(body), "origin says hello") {
					t.Fatalf("proxy: %d %q, want the origin's answer", resp.StatusCode, body)
				}
			case policies.ActionBlock:
				if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), tc.rule) {
					t.Fatalf("proxy: %d, want 403 block page naming rule %s; body %.300q", resp.StatusCode, tc.rule, body)
				}
			case policies.ActionWarn:
				if resp.StatusCode == 200 && strings.Contains(string(body), "origin says hello") {
					t.Fatalf("proxy: warn rule let the request through without a warning page")
				}
			}

			// 3. the DNS filter, over UDP and TCP
			for _, network := range []string{"udp", "tcp"} {
				r := tg.query(t, tc.host, dns.TypeA, network)
				blocked := r.Rcode == dns.RcodeNameError
				// DNS enforces warn as allow: no page can be shown.
				wantBlocked := tc.want == policies.ActionBlock
				if blocked != wantBlocked {
					t.Fatalf("dns %s: rcode %s, blocked=%v want %v", network, dns.RcodeToString[r.Rcode], blocked, wantBlocked)
				}
				if !blocked && (len(r.Answer) == 0 || r.Rcode != dns.RcodeSuccess) {
					t.Fatalf("dns %s: allowed name got %s with %d answers", network, dns.RcodeToString[r.Rcode], len(r.Answer))
				}
			}
		})
	}
}

// TestConnectBlockedSNI: an HTTPS tunnel to a threat host is refused with
// 403 before any byte reaches the origin.
func TestConnectBlockedSNI(t *testing.T) {
	tg := startGateway(t, nil)
	_, port, _ := net.SplitHostPort(tg.tlsOrig.Listener.Addr().String())
	c, err := net.DialTimeout("tcp", tg.proxyLn.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	target := net.JoinHostPort(tg.threat, port)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("CONNECT to threat host: %d, want 403", resp.StatusCode)
	}
}

// TestAdminSurface: health, readiness, metrics, PAC, the token-protected API
// and the report pages behind the login.
func TestAdminSurface(t *testing.T) {
	tg := startGateway(t, nil)
	base := "http://" + tg.adminLn.Addr().String()
	get := func(path, token string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	if r, b := get("/healthz", ""); r.StatusCode != 200 || b != "ok\n" {
		t.Fatalf("healthz: %d %q", r.StatusCode, b)
	}
	if r, b := get("/readyz", ""); r.StatusCode != 200 {
		t.Fatalf("readyz: %d %q", r.StatusCode, b)
	}
	if r, b := get("/metrics", ""); r.StatusCode != 200 || !strings.Contains(b, "cordon_") {
		t.Fatalf("metrics: %d, no cordon_ metrics", r.StatusCode)
	}
	if r, b := get("/proxy.pac", ""); r.StatusCode != 200 || !strings.Contains(b, "FindProxyForURL") ||
		r.Header.Get("Content-Type") != "application/x-ns-proxy-autoconfig" {
		t.Fatalf("proxy.pac: %d %s %.200q", r.StatusCode, r.Header.Get("Content-Type"), b)
	}
	if r, _ := get("/api/v1/policy", ""); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API without token: %d, want 401", r.StatusCode)
	}
	if r, _ := get("/api/v1/policy", "wrong-token-wrong-token"); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API with a wrong token: %d, want 401", r.StatusCode)
	}
	if r, b := get("/api/v1/policy", tg.token); r.StatusCode != 200 || !strings.Contains(b, "block-threats") {
		t.Fatalf("API policy: %d %.200q", r.StatusCode, b)
	}
	if r, b := get("/api/v1/feeds", tg.token); r.StatusCode != 200 || !strings.Contains(b, "blp-crypto") {
		t.Fatalf("API feeds: %d %.200q", r.StatusCode, b)
	}
	if r, _ := get("/reports", ""); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("report page without token: %d, want 401", r.StatusCode)
	}
	if r, b := get("/reports", tg.token); r.StatusCode != 200 || !strings.Contains(b, "<svg") && !strings.Contains(b, "Cordon") {
		t.Fatalf("report page: %d %.200q", r.StatusCode, b)
	}
}

// TestProxyRefusesOwnListeners: even with loopback destinations allowed,
// the proxy does not carry clients to its own admin API.
func TestProxyRefusesOwnListeners(t *testing.T) {
	tg := startGateway(t, nil)
	resp, err := tg.proxyClient().Get("http://" + tg.adminLn.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == 200 || strings.Contains(string(body), "ok\n") && len(body) == 3 {
		t.Fatalf("proxy reached its own admin listener: %d %q", resp.StatusCode, body)
	}
}

// TestOpenAPICoversEveryRoute: every route of the admin API, the mounted
// reports and feeds routes included, is in /api/v1/openapi.json.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	tg := startGateway(t, nil)
	if n := len(tg.api.Routes()); n < 30 {
		t.Fatalf("only %d routes registered", n)
	}
	if missing := tg.api.UndocumentedRoutes(); len(missing) > 0 {
		t.Fatalf("routes missing from the OpenAPI document: %+v", missing)
	}
}

// TestStarterPolicyFitsCustomFeeds: with feeds that lack the starter
// policy's categories and no policy file, the gateway still starts and
// blocks threats.
func TestStarterPolicyFitsCustomFeeds(t *testing.T) {
	tg := startGateway(t, func(c *Config) { c.Policy.File = "" })
	d, _ := tg.engine.Check(&policies.Request{
		Time: time.Now(), ClientIP: netip.MustParseAddr("127.0.0.1"), Protocol: policies.ProtoDNS, Host: tg.threat,
	})
	if d.Action != policies.ActionBlock || d.RuleID != "block-threats" {
		t.Fatalf("threat host: %v by %q, want block by block-threats", d.Action, d.RuleID)
	}
	d, _ = tg.engine.Check(&policies.Request{
		Time: time.Now(), ClientIP: netip.MustParseAddr("127.0.0.1"), Protocol: policies.ProtoDNS, Host: tg.mining,
	})
	if d.Action != policies.ActionBlock || d.RuleID != "block-malicious-categories" {
		t.Fatalf("crypto-mining host: %v by %q, want block by block-malicious-categories", d.Action, d.RuleID)
	}
}
