package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cordon-gw/cordon/policies"
)

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", u, err)
	}
	return resp, string(b)
}

func TestHTTPAllowed(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.client(nil)
	resp, body := get(t, c, h.httpURL("allowed.test", "/hello"))
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "hello from allowed.test") {
		t.Fatalf("GET allowed = %d %q, want 200 hello", resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Origin-Via"); got != "1.1 cordon" {
		t.Errorf("Via at origin = %q, want %q", got, "1.1 cordon")
	}
	if got := resp.Header.Get("Via"); !strings.Contains(got, "cordon") {
		t.Errorf("Via to client = %q, want it to name cordon", got)
	}
	if got := resp.Header.Get("X-Origin-XFF"); got != "" {
		t.Errorf("X-Forwarded-For at origin = %q, want none (strip)", got)
	}
	ev := h.events.forHost(t, "allowed.test")
	if ev.Action != "allow" || ev.Status != 200 || ev.Path != "/hello" || ev.Method != "GET" ||
		ev.PolicyVersion != 7 || ev.BytesDown != int64(len(body)) || ev.Proto != "http" ||
		ev.ClientIP != netip.MustParseAddr("127.0.0.1") || ev.ID == "" || ev.Latency <= 0 || ev.Upstream <= 0 {
		t.Errorf("event = %+v", ev)
	}
}

func TestHopByHopAndForwardedFor(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: Config{XForwardedFor: "append"}})
	req, _ := http.NewRequest("GET", h.httpURL("allowed.test", "/"), nil)
	req.Header.Set("Connection", "X-Secret")
	req.Header.Set("X-Secret", "must not pass")
	req.Header.Set("X-Forwarded-For", "192.0.2.1")
	var seen http.Header
	h.origin.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Clone()
		w.Header().Set("Connection", "X-Upstream-Hop")
		w.Header().Set("X-Upstream-Hop", "drop me")
		w.Header().Set("Keep-Alive", "timeout=5")
	})
	resp, err := h.client(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if seen.Get("X-Secret") != "" {
		t.Errorf("header named in Connection reached the origin")
	}
	if got := seen.Get("X-Forwarded-For"); got != "192.0.2.1, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want appended client address", got)
	}
	if resp.Header.Get("X-Upstream-Hop") != "" || resp.Header.Get("Keep-Alive") != "" {
		t.Errorf("response hop-by-hop headers reached the client: %v", resp.Header)
	}
}

var hiddenField = regexp.MustCompile(`<input type="hidden" name="([a-z]+)" value="([^"]*)">`)

// formFields returns the hidden fields of the form posting to action.
func formFields(body, action string) url.Values {
	i := strings.Index(body, `action="`+action+`"`)
	if i < 0 {
		return url.Values{}
	}
	body = body[i:]
	if j := strings.Index(body, "</form>"); j >= 0 {
		body = body[:j]
	}
	v := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(body, -1) {
		v.Set(m[1], html.UnescapeString(m[2]))
	}
	return v
}

func TestHTTPBlockedPage(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.client(nil)
	for _, tc := range []struct {
		host, rule, title, want string
	}{
		{"casino.test", "block-gambling", "This site is blocked", "gambling"},
		{"www.malware.test", "block-threats", "blocked for your security", "urlhaus"},
		{"blocked.test", "block-listed", "This site is blocked", "blocked.test"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			resp, body := get(t, c, h.httpURL(tc.host, "/page?q=1"))
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status = %d, want 403", resp.StatusCode)
			}
			id := resp.Header.Get("X-Cordon-Request-Id")
			for _, want := range []string{tc.title, tc.want, tc.rule, "Policy version", ">7<", id, "Request a review", tc.host} {
				if !strings.Contains(body, want) {
					t.Errorf("block page lacks %q", want)
				}
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
				t.Errorf("Content-Type = %q", resp.Header.Get("Content-Type"))
			}
			ev := h.events.forHost(t, tc.host)
			if ev.Action != "block" || ev.RuleID != tc.rule || ev.Status != 403 || ev.ID != id {
				t.Errorf("event = %+v", ev)
			}
		})
	}
}

// TestDestinationIPThreat: the decision sees the resolved address, so an
// unlisted name resolving into an IP threat feed is blocked before any
// connection is made.
func TestDestinationIPThreat(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	resp, body := get(t, h.client(nil), "http://ipthreat.test:9/")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "test-badips") {
		t.Fatalf("name resolving to a listed address = %d, want the block page naming the IP feed", resp.StatusCode)
	}
	ev := h.events.forHost(t, "ipthreat.test")
	if ev.RuleID != "block-threats" || len(ev.Threats) != 1 || ev.Threats[0] != "test-badips" {
		t.Errorf("event = %+v", ev)
	}
	resp, _, _ = connect(t, h, "ipthreat.test:443")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("CONNECT to a name resolving to a listed address = %d, want 403", resp.StatusCode)
	}
}

// TestBlockedNameNeverResolved: a blocked name gets its block page (or
// 403 on CONNECT) even though it does not resolve: the decision on the
// name comes before any DNS lookup.
func TestBlockedNameNeverResolved(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	resp, body := get(t, h.client(nil), "http://gone-casino.test/")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "This site is blocked") {
		t.Errorf("unresolvable blocked name = %d, want the block page", resp.StatusCode)
	}
	cresp, _, _ := connect(t, h, "gone-casino.test:443")
	if cresp.StatusCode != http.StatusForbidden {
		t.Errorf("CONNECT to an unresolvable blocked name = %d, want 403", cresp.StatusCode)
	}
	// An allowed name that does not resolve is the site's failure.
	resp, body = get(t, h.client(nil), "http://nowhere.test/")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "Site not found") {
		t.Errorf("unresolvable allowed name = %d, want 502 site not found", resp.StatusCode)
	}
}

func TestReviewRequest(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.client(nil)
	_, body := get(t, c, h.httpURL("casino.test", "/poker?session=secret"))
	f := formFields(body, "/.cordon/review")
	f.Set("comment", "I need it for work")
	resp, err := c.PostForm(h.httpURL("casino.test", "/.cordon/review"), f)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "rev-1") {
		t.Fatalf("review post = %d %s", resp.StatusCode, b)
	}
	h.reviews.mu.Lock()
	defer h.reviews.mu.Unlock()
	if len(h.reviews.rs) != 1 {
		t.Fatalf("reviews = %d, want 1", len(h.reviews.rs))
	}
	r := h.reviews.rs[0]
	if r.URL != h.httpURL("casino.test", "/poker") {
		t.Errorf("review URL = %q, want it without the query string", r.URL)
	}
	if r.Host != "casino.test" || r.RuleID != "block-gambling" || r.Message != "I need it for work" ||
		r.PolicyVersion != 7 || len(r.Categories) != 1 || r.Categories[0] != "gambling" || r.ClientIP != "127.0.0.1" {
		t.Errorf("review = %+v", r)
	}
	// A tampered form is refused.
	f.Set("rule", "something-else")
	resp, err = c.PostForm(h.httpURL("casino.test", "/.cordon/review"), f)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("tampered review = %d, want 400", resp.StatusCode)
	}
}

func TestWarnThenContinue(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.client(nil)
	target := h.httpURL("social.test", "/feed")
	resp, body := get(t, c, target)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Continue to social.test") {
		t.Fatalf("warn page = %d, want 403 with a continue button", resp.StatusCode)
	}
	f := formFields(body, "/.cordon/continue")
	if f.Get("return") != target || f.Get("ttl") != "3600" {
		t.Fatalf("continue form fields = %v", f)
	}
	// A forged token does not continue.
	bad := url.Values{"host": {"social.test"}, "ttl": {"3600"}, "return": {target}, "token": {"forged"}}
	resp, err := c.PostForm(h.httpURL("social.test", "/.cordon/continue"), bad)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("forged continue = %d, want 400", resp.StatusCode)
	}
	resp, err = c.PostForm(h.httpURL("social.test", "/.cordon/continue"), url.Values{
		"host": {f.Get("host")}, "ttl": {f.Get("ttl")}, "return": {f.Get("return")}, "token": {f.Get("token")}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != target {
		t.Fatalf("continue = %d Location %q, want 303 to %s", resp.StatusCode, resp.Header.Get("Location"), target)
	}
	resp, body = get(t, c, target)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "hello from social.test") {
		t.Fatalf("after continue = %d %q, want the site", resp.StatusCode, body)
	}
	ev := h.events.wait(t, func(ev *policies.AccessEvent) bool { return ev.Host == "social.test" && ev.Status == 200 })
	if ev.RuleID != "warn-social" || ev.Action != "allow" || ev.RuleAction != "warn" {
		t.Errorf("continued event = %+v, want rule warn-social, action allow, rule action warn", ev)
	}
	shown := h.events.wait(t, func(ev *policies.AccessEvent) bool { return ev.Host == "social.test" && ev.Status == 403 })
	if shown.Action != "warn" {
		t.Errorf("warn page event = %+v, want action warn", shown)
	}
	form := h.events.wait(t, func(ev *policies.AccessEvent) bool { return ev.Path == "/.cordon/continue" && ev.Status == 303 })
	if form.Action != "allow" || form.Reason != "page" {
		t.Errorf("continue post event = %+v", form)
	}
	// The acknowledgement is per user (here: client address) and host.
	if !h.srv.warns.acknowledged("ip:127.0.0.1", "social.test") || h.srv.warns.acknowledged("ip:127.0.0.2", "social.test") {
		t.Errorf("warn memory not keyed by client and host")
	}
	// CONNECT to the acknowledged host passes; to an unacknowledged warn
	// host it is refused (connect_warn: block).
	resp, _ = get(t, c, h.httpsURL("social.test", "/"))
	if resp.StatusCode != 200 {
		t.Errorf("HTTPS after continue = %d, want 200", resp.StatusCode)
	}
}

func TestMonitorPasses(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	resp, _ := get(t, h.client(nil), h.httpURL("news.test", "/today"))
	if resp.StatusCode != 200 {
		t.Fatalf("monitored request = %d, want 200", resp.StatusCode)
	}
	ev := h.events.forHost(t, "news.test")
	if ev.Action != "allow" || ev.RuleAction != "block" || !ev.Monitor || ev.RuleID != "monitor-news" ||
		len(ev.Categories) != 1 || ev.Categories[0] != "news" {
		t.Errorf("event = %+v, want allow, would block by monitor-news", ev)
	}
}

func TestAuthentication(t *testing.T) {
	// Loopback is not trusted here: clients must authenticate.
	h := newHarness(t, harnessOpt{trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	target := h.httpURL("allowed.test", "/")

	resp, _ := get(t, h.client(nil), target)
	if resp.StatusCode != http.StatusProxyAuthRequired || !strings.HasPrefix(resp.Header.Get("Proxy-Authenticate"), "Basic ") {
		t.Fatalf("anonymous = %d %q, want 407 with Basic challenge", resp.StatusCode, resp.Header.Get("Proxy-Authenticate"))
	}
	resp, _ = get(t, h.client(url.UserPassword("alice", "wrong")), target)
	if resp.StatusCode != http.StatusProxyAuthRequired {
		t.Fatalf("wrong password = %d, want 407", resp.StatusCode)
	}
	resp, body := get(t, h.client(url.UserPassword("alice", "wonderland")), target)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("alice = %d %s, want 200", resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Origin-Proxy-Auth"); got != "" {
		t.Errorf("Proxy-Authorization reached the origin: %q", got)
	}
	ev := h.events.wait(t, func(ev *policies.AccessEvent) bool { return ev.User == "alice" })
	if len(ev.Groups) != 1 || ev.Groups[0] != "staff" || ev.Status != 200 {
		t.Errorf("event = %+v, want alice in staff", ev)
	}
	refused := h.events.wait(t, func(ev *policies.AccessEvent) bool { return ev.Status == 407 })
	if refused.Reason != "auth" || refused.Action != "block" {
		t.Errorf("refusal event = %+v", refused)
	}

	// CONNECT without credentials is refused the same way.
	conn := dialProxy(t, h)
	fmt.Fprintf(conn, "CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
	r, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.StatusCode != http.StatusProxyAuthRequired {
		t.Errorf("anonymous CONNECT = %d, want 407", r.StatusCode)
	}
	// HTTPS with credentials works.
	resp, _ = get(t, h.client(url.UserPassword("alice", "wonderland")), h.httpsURL("allowed.test", "/"))
	if resp.StatusCode != 200 {
		t.Errorf("alice HTTPS = %d, want 200", resp.StatusCode)
	}
	if n := promtest.ToFloat64(h.srv.m.refused.WithLabelValues("auth")); n < 3 {
		t.Errorf("refused{auth} = %v, want >= 3", n)
	}
}

func dialProxy(t *testing.T, h *harness) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// connect sends CONNECT target and returns the response and the
// connection's reader.
func connect(t *testing.T, h *harness, target string) (*http.Response, net.Conn, *bufio.Reader) {
	t.Helper()
	c := dialProxy(t, h)
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	return resp, c, br
}

func TestSSRFRefusedByDefault(t *testing.T) {
	h := newHarness(t, harnessOpt{noAllow: true})
	c := h.client(nil)
	_, originPort, _ := net.SplitHostPort(h.origin.Listener.Addr().String())
	for _, target := range []string{
		"http://127.0.0.1:" + originPort + "/",
		"http://169.254.169.254/latest/meta-data/",
		"http://[::1]:" + originPort + "/",
		"http://0.0.0.0:" + originPort + "/",
		"http://10.1.2.3/",
		"http://allowed.test:" + originPort + "/", // a name pointing at loopback
		"http://" + h.addr + "/x",                 // the proxy itself
	} {
		resp, body := get(t, c, target)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Destination not allowed") {
			t.Errorf("GET %s = %d, want 403 destination not allowed", target, resp.StatusCode)
		}
	}
	for _, target := range []string{"127.0.0.1:" + originPort, "169.254.169.254:443", h.addr} {
		resp, _, _ := connect(t, h, target)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("CONNECT %s = %d, want 403", target, resp.StatusCode)
		}
	}
	ev := h.events.wait(t, func(ev *policies.AccessEvent) bool { return ev.Host == "169.254.169.254" })
	if ev.Action != "block" || ev.Reason != "destination" || ev.Status != 403 {
		t.Errorf("refused destination event = %+v", ev)
	}
	if n := promtest.ToFloat64(h.srv.m.refused.WithLabelValues("destination")); n != 10 {
		t.Errorf("refused{destination} = %v, want 10", n)
	}
}

func TestConnectPorts(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: Config{ConnectPorts: []int{443}}})
	_, port, _ := net.SplitHostPort(h.tlsOrigin.Listener.Addr().String())
	resp, _, _ := connect(t, h, "allowed.test:"+port)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("X-Cordon-Block"), "action=port") {
		t.Errorf("CONNECT to port %s = %d %q, want 403 (port not allowed)", port, resp.StatusCode, resp.Header.Get("X-Cordon-Block"))
	}
	ev := h.events.forHost(t, "allowed.test")
	if ev.Reason != "port" || ev.Status != 403 {
		t.Errorf("event = %+v", ev)
	}
}

func TestSSRFOwnListenerAlwaysRefused(t *testing.T) {
	// Even with loopback allowed, the proxy never dials itself.
	h := newHarness(t, harnessOpt{})
	resp, _ := get(t, h.client(nil), "http://"+h.addr+"/loop")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET own listener = %d, want 403", resp.StatusCode)
	}
}

func TestDenyDestination(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	h.srv.DenyDestination(h.origin.Listener.Addr())
	resp, _ := get(t, h.client(nil), h.httpURL("allowed.test", "/admin"))
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET a denied listener = %d, want 403", resp.StatusCode)
	}
}

func TestSlowClientCutOff(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: Config{ReadHeaderTimeout: 200 * time.Millisecond}})
	c := dialProxy(t, h)
	// Half a request head, then silence.
	if _, err := io.WriteString(c, "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the proxy kept a slow client's connection open")
	}
	if len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 408") && !strings.HasPrefix(string(b), "HTTP/1.1 400") {
		t.Errorf("slow client got %q", b)
	}
}

func TestSlowUploadCutOff(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: Config{IdleTimeout: 300 * time.Millisecond},
		handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
		})})
	c := dialProxy(t, h)
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 1000\r\n\r\n0123456789", h.httpURL("allowed.test", "/upload"))
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	b, err := io.ReadAll(c)
	if isTimeout(err) {
		t.Fatalf("a stalled upload held the connection")
	}
	t.Logf("stalled upload answer: %.40q", b)
	if len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 408") {
		t.Errorf("stalled upload got %.60q, want 408 or a closed connection", b)
	}
}

func TestConnectBlockedSNIAndHost(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	_, tlsPort, _ := net.SplitHostPort(h.tlsOrigin.Listener.Addr().String())

	// Blocked CONNECT host: 403 with an explanation header.
	resp, _, _ := connect(t, h, "casino.test:"+tlsPort)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("X-Cordon-Block"), "rule=block-gambling") ||
		!strings.Contains(string(body), "blocked by policy") {
		t.Fatalf("CONNECT casino.test = %d %q %q", resp.StatusCode, resp.Header.Get("X-Cordon-Block"), body)
	}
	ev := h.events.forHost(t, "casino.test")
	if ev.Method != "CONNECT" || ev.Action != "block" || ev.Status != 403 || ev.Proto != "https" {
		t.Errorf("event = %+v", ev)
	}

	// Allowed CONNECT host, blocked SNI (domain fronting): the TLS
	// handshake is refused.
	resp, c, br := connect(t, h, "allowed.test:"+tlsPort)
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT allowed.test = %d", resp.StatusCode)
	}
	tc := tls.Client(&bufferedConn{Conn: c, r: br}, &tls.Config{ServerName: "casino.test", RootCAs: h.originCA})
	if err := tc.Handshake(); err == nil {
		t.Fatalf("TLS to a blocked SNI through an allowed CONNECT succeeded")
	}
	ev = h.events.wait(t, func(ev *policies.AccessEvent) bool {
		return ev.Host == "casino.test" && ev.Status == 403 && ev.Path == "" && ev.RuleID == "block-gambling" && ev.BytesUp == 0 && ev.Method == "CONNECT" && ev.ID != ""
	})
	if ev.Action != "block" {
		t.Errorf("SNI event = %+v", ev)
	}

	// The same with a Go client: an error, never a page.
	if _, err := h.client(nil).Get(h.httpsURL("casino.test", "/")); err == nil {
		t.Errorf("HTTPS to a blocked host succeeded")
	}
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestConnectAllowedTLS(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.client(nil)
	resp, body := get(t, c, h.httpsURL("allowed.test", "/secure"))
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "hello from allowed.test") {
		t.Fatalf("HTTPS = %d %q", resp.StatusCode, body)
	}
	c.CloseIdleConnections()
	ev := h.events.wait(t, func(ev *policies.AccessEvent) bool { return ev.Host == "allowed.test" && ev.Method == "CONNECT" })
	if ev.Action != "allow" || ev.Status != 200 || ev.Proto != "https" {
		t.Errorf("event = %+v", ev)
	}
}

// wsOrigin answers an Upgrade: websocket with 101 and then echoes bytes.
func wsOrigin(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "want upgrade", http.StatusBadRequest)
		return
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	_, _ = io.Copy(c, brw)
}

func TestWebSocketThroughConnectAndHTTP(t *testing.T) {
	h := newHarness(t, harnessOpt{handler: http.HandlerFunc(wsOrigin)})
	_, port, _ := net.SplitHostPort(h.origin.Listener.Addr().String())
	upgrade := "GET /ws HTTP/1.1\r\nHost: allowed.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"

	t.Run("connect", func(t *testing.T) {
		resp, c, br := connect(t, h, "allowed.test:"+port)
		if resp.StatusCode != 200 {
			t.Fatalf("CONNECT = %d", resp.StatusCode)
		}
		echoCheck(t, c, br, upgrade)
	})
	t.Run("http", func(t *testing.T) {
		c := dialProxy(t, h)
		abs := strings.Replace(upgrade, "GET /ws", "GET http://allowed.test:"+port+"/ws", 1)
		echoCheck(t, c, bufio.NewReader(c), abs)
	})
}

func echoCheck(t *testing.T, c net.Conn, br *bufio.Reader, upgrade string) {
	t.Helper()
	if _, err := io.WriteString(c, upgrade); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade = %d, want 101", resp.StatusCode)
	}
	for i := range 3 {
		msg := fmt.Sprintf("frame-%d", i)
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil {
			t.Fatal(err)
		}
		if string(buf) != msg {
			t.Fatalf("echo = %q, want %q", buf, msg)
		}
	}
}

// TestStreamingNotBuffered proves both directions stream: the origin holds
// the rest of a download until the client has the first chunk, and the
// client holds the rest of an upload until the origin has the first chunk.
// A proxy that buffered whole bodies would deadlock (bounded by timeouts).
func TestStreamingNotBuffered(t *testing.T) {
	const chunk = 1 << 20
	firstDown := make(chan struct{})
	firstUp := make(chan struct{})
	h := newHarness(t, harnessOpt{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/download":
			buf := bytes.Repeat([]byte("d"), chunk)
			w.Header().Set("Content-Length", fmt.Sprint(8*chunk))
			_, _ = w.Write(buf)
			http.NewResponseController(w).Flush()
			select {
			case <-firstDown:
			case <-time.After(15 * time.Second):
				return // the test fails on the short body
			}
			for range 7 {
				_, _ = w.Write(buf)
			}
		case "/upload":
			buf := make([]byte, chunk)
			if _, err := io.ReadFull(r.Body, buf); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			close(firstUp)
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "%d", int64(chunk)+n)
		}
	})})
	c := h.client(nil)

	resp, err := c.Get(h.httpURL("allowed.test", "/download"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, chunk)); err != nil {
		t.Fatalf("first download chunk: %v", err)
	}
	close(firstDown)
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 7*chunk {
		t.Fatalf("rest of download = %d, %v; want %d", n, err, 7*chunk)
	}
	if resp.ContentLength != 8*chunk {
		t.Errorf("Content-Length = %d, want it passed through", resp.ContentLength)
	}

	pr, pw := io.Pipe()
	go func() {
		buf := bytes.Repeat([]byte("u"), chunk)
		_, _ = pw.Write(buf)
		select {
		case <-firstUp:
		case <-time.After(15 * time.Second):
			pw.CloseWithError(errors.New("origin never saw the first upload chunk"))
			return
		}
		for range 7 {
			_, _ = pw.Write(buf)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", h.httpURL("allowed.test", "/upload"), pr)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != fmt.Sprint(8*chunk) {
		t.Fatalf("upload echo = %q, want %d", b, 8*chunk)
	}
	ev := h.events.wait(t, func(ev *policies.AccessEvent) bool { return ev.Path == "/upload" })
	if ev.BytesUp != 8*chunk {
		t.Errorf("BytesUp = %d, want %d", ev.BytesUp, 8*chunk)
	}
}

func TestPerClientConnectionLimit(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: Config{MaxConnsPerClient: 2}})
	a, b := dialProxy(t, h), dialProxy(t, h)
	// Make sure both were accepted before the third.
	for _, c := range []net.Conn{a, b} {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: allowed.test\r\n\r\n", h.httpURL("allowed.test", "/"))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("first connections: %v %v", resp, err)
		}
	}
	c := dialProxy(t, h)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("third connection = %d, want 429", resp.StatusCode)
	}
	a.Close()
	// A slot frees up (bounded wait for the server to notice the close).
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := dialProxy(t, h)
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: allowed.test\r\n\r\n", h.httpURL("allowed.test", "/"))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil && resp.StatusCode == 200 {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("no slot after closing a connection")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLocalPagesOnProxyPort(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: Config{PAC: PACConfig{Edges: []string{"edge1.example:3128"}}}})
	for _, p := range []string{"/proxy.pac", "/wpad.dat"} {
		resp, err := http.Get("http://" + h.addr + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ns-proxy-autoconfig" ||
			!strings.Contains(string(b), "PROXY edge1.example:3128") {
			t.Errorf("GET %s = %d %q", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	resp, err := http.Get("http://" + h.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET / on the proxy port = %d, want 404 notice", resp.StatusCode)
	}
}

func TestUpstreamErrorPage(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	// A closed port on an allowed address.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	resp, body := get(t, h.client(nil), fmt.Sprintf("http://allowed.test:%d/", port))
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "could not be reached") {
		t.Errorf("closed port = %d, want 502 error page", resp.StatusCode)
	}
	if n := promtest.ToFloat64(h.srv.m.upstreamErrors.WithLabelValues("dial")); n != 1 {
		t.Errorf("upstream_errors{dial} = %v, want 1", n)
	}
}

func TestMetricsLint(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	get(t, h.client(nil), h.httpURL("allowed.test", "/"))
	h.events.forHost(t, "allowed.test")
	problems, err := promtest.GatherAndLint(h.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	if n := promtest.ToFloat64(h.srv.m.requests.WithLabelValues("http", "allow", "none")); n != 1 {
		t.Errorf("requests{http,allow,none} = %v, want 1", n)
	}
	if promtest.CollectAndCount(h.srv.m.decision) != 1 {
		t.Errorf("decision histogram not collected")
	}
	// The client keeps its connection alive: one active connection, none
	// once it is closed.
	if n := promtest.ToFloat64(h.srv.m.activeConns); n != 1 {
		t.Errorf("active_connections = %v, want 1", n)
	}
	for _, c := range h.clients {
		c.CloseIdleConnections()
	}
	deadline := time.Now().Add(10 * time.Second)
	for promtest.ToFloat64(h.srv.m.activeConns) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("active_connections = %v after the client closed, want 0", promtest.ToFloat64(h.srv.m.activeConns))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestShutdownClosesTunnels(t *testing.T) {
	h := newHarness(t, harnessOpt{handler: http.HandlerFunc(wsOrigin)})
	_, port, _ := net.SplitHostPort(h.origin.Listener.Addr().String())
	resp, c, _ := connect(t, h, "allowed.test:"+port)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := h.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with an open tunnel = %v, want deadline exceeded", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("tunnel still open after Shutdown: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestBasicAuthHeaderParse(t *testing.T) {
	enc := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name, in, user, pass string
		ok                   bool
	}{
		{"ok", enc("alice:pw:with:colons"), "alice", "pw:with:colons", true},
		{"lower scheme", "basic " + base64.StdEncoding.EncodeToString([]byte("a:b")), "a", "b", true},
		{"no colon", enc("alice"), "", "", false},
		{"empty user", enc(":pw"), "", "", false},
		{"bearer", "Bearer xyz", "", "", false},
		{"bad base64", "Basic !!!", "", "", false},
	} {
		u, p, ok := parseBasic(tc.in)
		if u != tc.user || p != tc.pass || ok != tc.ok {
			t.Errorf("parseBasic(%s) = %q, %q, %v; want %q, %q, %v", tc.name, u, p, ok, tc.user, tc.pass, tc.ok)
		}
	}
}

// verifyChain checks a served certificate against roots (used by the
// inspection tests).
func verifyChain(cs tls.ConnectionState, roots *x509.CertPool, host string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: host})
	return err
}

// TestParityWithEngine: one table of hosts decided by Engine.Check and by
// the running proxy (plain HTTP and CONNECT); the transports must agree
// with the engine.
func TestParityWithEngine(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: Config{ConnectWarn: "block"}})
	c := h.client(nil)
	_, tlsPort, _ := net.SplitHostPort(h.tlsOrigin.Listener.Addr().String())
	for _, host := range []string{"allowed.test", "casino.test", "social.test", "news.test", "malware.test", "blocked.test", "bank.test"} {
		r := policies.Request{ClientIP: netip.MustParseAddr("127.0.0.1"), Host: host, Protocol: policies.ProtoHTTP,
			Path: "/", DestIP: netip.MustParseAddr("127.0.0.1")}
		if p, ok := h.engine.ClientPrincipal(r.ClientIP); ok {
			r.Principal = p
		}
		d, _ := h.engine.Check(&r)
		wantHTTP, wantConnect := 200, 200
		if d.Action != policies.ActionAllow {
			wantHTTP, wantConnect = 403, 403
		}
		resp, _ := get(t, c, h.httpURL(host, "/"))
		if resp.StatusCode != wantHTTP {
			t.Errorf("%s: engine says %v, proxy HTTP answered %d", host, d.Action, resp.StatusCode)
		}
		cresp, conn, _ := connect(t, h, host+":"+tlsPort)
		conn.Close()
		if cresp.StatusCode != wantConnect {
			t.Errorf("%s: engine says %v, proxy CONNECT answered %d", host, d.Action, cresp.StatusCode)
		}
	}
}

func TestTunnelIdleTimeout(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: Config{TunnelIdleTimeout: 200 * time.Millisecond, TLSHandshakeTimeout: 100 * time.Millisecond},
		handler: http.HandlerFunc(wsOrigin)})
	_, port, _ := net.SplitHostPort(h.origin.Listener.Addr().String())
	resp, c, br := connect(t, h, "allowed.test:"+port)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	// Traffic keeps it open...
	echoCheck(t, c, br, "GET /ws HTTP/1.1\r\nHost: allowed.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	// ...silence closes it.
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := br.ReadByte(); err == nil || isTimeout(err) {
		t.Fatalf("idle tunnel still open: %v", err)
	}
}
