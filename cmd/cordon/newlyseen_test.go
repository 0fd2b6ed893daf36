package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/cordon-gw/cordon/categorizer"
	"github.com/cordon-gw/cordon/policies"
)

// blockNewPolicy blocks newly seen domains: on a fresh install that must
// not block the web.
const blockNewPolicy = `
settings:
  default_action: allow
  dns_block_mode: nxdomain
rules:
  - id: block-threats
    threats: [any]
    action: block
  - id: block-new
    categories: [newly_seen]
    action: block
`

// newlySeenGateway runs a whole gateway in-process on loopback ports, in a
// fresh data directory, with the block-new policy. Hosts in resolve go to
// the returned origin. feeds nil means the bundled feeds (a fresh install
// with no configuration).
func newlySeenGateway(t *testing.T, feeds []categorizer.FeedConfig, resolve ...string) (*gateway, *httptest.Server) {
	t.Helper()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "origin says hello to %s", r.Host)
	}))
	t.Cleanup(origin.Close)
	dir := t.TempDir()
	polFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(polFile, []byte(blockNewPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Admin.Listen, cfg.Proxy.Listen, cfg.DNS.Listen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.DNS.Upstreams = []string{"udp://" + startUpstream(t)}
	cfg.Policy.File = polFile
	cfg.Proxy.AllowPrivateDestinations = []string{"127.0.0.0/8"}
	cfg.Proxy.ResolveOverrides = map[string]string{}
	for _, h := range resolve {
		cfg.Proxy.ResolveOverrides[h] = "127.0.0.1"
	}
	cfg.Categorizer.Feeds = feeds
	cfg.applyDataDir()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CORDON_ADMIN_TOKEN", "test-admin-token-0123456789")
	g, err := newGateway(context.Background(), cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	g.start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.close(ctx)
	})
	// The tracker starts its learning period in the background (Run).
	for i := 0; ; i++ {
		if _, _, ok, _ := g.seen.Learning(); ok {
			break
		}
		if i == 1000 {
			t.Fatal("the learning period did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return g, origin
}

// adminGet sends an authenticated GET to the admin listener.
func adminGet(t *testing.T, g *gateway, path string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+g.adminLn.Addr().String()+path, nil)
	req.Header.Set("Authorization", "Bearer test-admin-token-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func lookupURL(t *testing.T, g *gateway, u string) (int, policies.LookupResult, string) {
	t.Helper()
	resp, b := adminGet(t, g, "/api/v1/lookup?url="+url.QueryEscape(u))
	var lr policies.LookupResult
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(b, &lr); err != nil {
			t.Fatalf("lookup %s: %v", u, err)
		}
		if lr.NewlySeen == nil {
			t.Fatalf("lookup %s: no newly_seen explanation: %s", u, b)
		}
	}
	return resp.StatusCode, lr, string(b)
}

// TestFreshInstallNewlySeen: a fresh install with the bundled feeds and a
// policy that blocks newly seen domains blocks neither a popular domain
// nor, during the learning period, any other; the lookup says why and
// records nothing; the feed status says when learning ends.
func TestFreshInstallNewlySeen(t *testing.T) {
	g, origin := newlySeenGateway(t, nil, "www.bet365.com", "www.proxied-first-day.example")
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	wantEnd := time.Now().Add(categorizer.DefaultLearning)
	near := func(at *time.Time) bool {
		return at != nil && at.Sub(wantEnd).Abs() < time.Minute
	}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: g.proxyLn.Addr().String()})}, Timeout: 10 * time.Second}
	dnsQuery := func(name string) int {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, g.dnsUDP.LocalAddr().String())
		if err != nil {
			t.Fatalf("dns %s: %v", name, err)
		}
		return r.Rcode
	}

	t.Run("popular domain", func(t *testing.T) {
		code, lr, body := lookupURL(t, g, "http://www.bet365.com/")
		ns := lr.NewlySeen
		if code != 200 || ns.NewlySeen || ns.Reason != categorizer.ReasonEstablished || !slices.Contains(ns.Baseline, "popular") ||
			!slices.Contains(ns.Baseline, "feeds") || slices.Contains(lr.Verdict.Categories, "newly_seen") || lr.Decision.Action != "allow" {
			t.Fatalf("lookup of http://www.bet365.com/ on a fresh install: %d %s", code, body)
		}
		resp, err := client.Get("http://www.bet365.com:" + port + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), "origin says hello") {
			t.Errorf("proxy, www.bet365.com on a fresh install: %d %.200q", resp.StatusCode, b)
		}
		if rc := dnsQuery("www.bet365.com"); rc != dns.RcodeSuccess {
			t.Errorf("dns, www.bet365.com on a fresh install: %s", dns.RcodeToString[rc])
		}
	})

	t.Run("learning period", func(t *testing.T) {
		code, lr, body := lookupURL(t, g, "http://never-seen-4711.example/")
		ns := lr.NewlySeen
		if code != 200 || ns.NewlySeen || ns.Reason != categorizer.ReasonLearning || !ns.Learning || !near(ns.LearningUntil) || lr.Decision.Action != "allow" {
			t.Fatalf("lookup of a never-seen domain during learning: %d %s", code, body)
		}
		resp, err := client.Get("http://www.proxied-first-day.example:" + port + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("proxy, a never-seen domain during learning: %d, want 200", resp.StatusCode)
		}
		if rc := dnsQuery("www.dns-first-day.example"); rc != dns.RcodeSuccess {
			t.Errorf("dns, a never-seen domain during learning: %s, want NOERROR", dns.RcodeToString[rc])
		}
		// Recorded, not flagged.
		if _, lr, body := lookupURL(t, g, "dns-first-day.example"); lr.NewlySeen.FirstSeen == nil || lr.NewlySeen.NewlySeen || lr.NewlySeen.Reason != categorizer.ReasonLearning {
			t.Errorf("lookup after a DNS query during learning: %s", body)
		}
	})

	t.Run("feeds api", func(t *testing.T) {
		resp, b := adminGet(t, g, "/api/v1/feeds")
		until, err := time.Parse(time.RFC3339, resp.Header.Get(categorizer.LearningUntilHeader))
		if resp.StatusCode != 200 || err != nil || !near(&until) {
			t.Errorf("GET /api/v1/feeds: %d, %s %q (%v), want about %v", resp.StatusCode, categorizer.LearningUntilHeader, resp.Header.Get(categorizer.LearningUntilHeader), err, wantEnd)
		}
		var feeds []categorizer.FeedStatusJSON
		if err := json.Unmarshal(b, &feeds); err != nil || len(feeds) < 40 {
			t.Errorf("GET /api/v1/feeds: %d feeds, %v", len(feeds), err)
		}
		resp, b = adminGet(t, g, "/api/v1/feeds/newly_seen")
		var in categorizer.NewlySeenInfo
		if err := json.Unmarshal(b, &in); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /api/v1/feeds/newly_seen: %d %s", resp.StatusCode, b)
		}
		if !in.Enabled || !in.Learning || !near(in.LearningUntil) || in.Baseline["popular"] < 9000 || in.Baseline["feeds"] < 100000 {
			t.Errorf("GET /api/v1/feeds/newly_seen = %s", b)
		}
	})

	t.Run("lookup records nothing", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			if code, lr, body := lookupURL(t, g, "http://only-looked-up.example/"); code != 200 || lr.NewlySeen.FirstSeen != nil {
				t.Fatalf("lookup #%d: %s", i, body)
			}
		}
		// Traffic is written to the first-seen file; the lookups are not.
		log := g.cfg.path("firstseen.log")
		for i := 0; ; i++ {
			b, _ := os.ReadFile(log)
			if strings.Contains(string(b), "dns-first-day.example ") {
				if strings.Contains(string(b), "only-looked-up") {
					t.Fatalf("the lookup recorded a sighting: %s", b)
				}
				break
			}
			if i == 1000 {
				t.Fatalf("the DNS query's sighting never reached %s", log)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// TestHostNamesRefusedAlike: the lookup API, the proxy and the DNS filter
// refuse the same names that are not host names, and the lookup answers
// an IDN host in punycode.
func TestHostNamesRefusedAlike(t *testing.T) {
	dir := t.TempDir()
	feed := filepath.Join(dir, "shops.txt")
	if err := os.WriteFile(feed, []byte("shop.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g, _ := newlySeenGateway(t, []categorizer.FeedConfig{{Name: "shops", Source: feed, Format: "domains", Categories: []string{"shopping"}}})
	long := strings.Repeat("abcdefgh.", 28) + "example" // 259 bytes
	for _, c := range []struct{ host, why string }{
		{"a..b", "empty label"},
		{strings.Repeat("x", 300) + ".example", "longer than 253 bytes"},
		{strings.Repeat("x", 64) + ".example", "label longer than 63 bytes"},
		{long, "longer than 253 bytes"},
	} {
		code, _, body := lookupURL(t, g, "http://"+c.host+"/")
		if code != 400 || !strings.Contains(body, c.why) {
			t.Errorf("lookup of %.40q: %d %s, want 400 saying %q", c.host, code, body, c.why)
		}
		// The proxy: the same name as an absolute URL and as a CONNECT
		// target.
		for _, req := range []string{
			"GET http://" + c.host + "/ HTTP/1.1\r\nHost: " + c.host + "\r\n\r\n",
			"CONNECT " + c.host + ":443 HTTP/1.1\r\nHost: " + c.host + ":443\r\n\r\n",
		} {
			if code := rawProxy(t, g, req); code != http.StatusBadRequest {
				t.Errorf("proxy %.50q: %d, want 400", req, code)
			}
		}
	}
	// The DNS filter: the wire format cannot carry such names; a message
	// that tries is a format error, answered without a decision.
	for name, labels := range map[string][]string{
		"label of 64 bytes": {strings.Repeat("x", 64), "example"},
		"name of 321 bytes": {strings.Repeat("a", 63), strings.Repeat("b", 63), strings.Repeat("c", 63), strings.Repeat("d", 63), strings.Repeat("e", 63)},
	} {
		if rc := rawDNS(t, g, labels); rc != dns.RcodeFormatError {
			t.Errorf("dns, %s: %s, want FORMERR", name, dns.RcodeToString[rc])
		}
	}
	if rc := rawDNS(t, g, []string{"www", "shop", "example"}); rc != dns.RcodeSuccess {
		t.Errorf("dns, a valid raw query: %s", dns.RcodeToString[rc])
	}
	// IDN: answered in punycode.
	code, lr, body := lookupURL(t, g, "http://Bücher.example/")
	if code != 200 || lr.Host != "xn--bcher-kva.example" || lr.URL != "http://xn--bcher-kva.example/" || lr.NewlySeen.Domain != "xn--bcher-kva.example" {
		t.Errorf("lookup of an IDN host: %d %s", code, body)
	}
}

// rawProxy sends one raw request to the proxy and returns the status.
func rawProxy(t *testing.T, g *gateway, req string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", g.proxyLn.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("proxy answer to %.50q: %v", req, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// rawDNS sends an A query for labels, encoded by hand (miekg/dns refuses
// to pack invalid names), over UDP and returns the answer's rcode.
func rawDNS(t *testing.T, g *gateway, labels []string) int {
	t.Helper()
	msg := []byte{0x47, 0x11, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range labels {
		msg = append(msg, byte(len(l)))
		msg = append(msg, l...)
	}
	msg = append(msg, 0)
	msg = binary.BigEndian.AppendUint16(msg, dns.TypeA)
	msg = binary.BigEndian.AppendUint16(msg, dns.ClassINET)
	c, err := net.Dial("udp", g.dnsUDP.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("dns %v: no answer: %v", labels, err)
	}
	if n < 12 || buf[0] != 0x47 || buf[1] != 0x11 || buf[2]&0x80 == 0 {
		t.Fatalf("dns %v: not an answer to the query: % x", labels, buf[:n])
	}
	return int(buf[3] & 0x0f)
}
