package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

func TestInitCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := InitCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Certificate().IsCA || ca.Certificate().MaxPathLen != 0 || !ca.Certificate().MaxPathLenZero {
		t.Errorf("CA certificate constraints wrong: %+v", ca.Certificate().BasicConstraintsValid)
	}
	st, err := os.Stat(filepath.Join(dir, CAKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	if _, err := InitCA(dir); !errors.Is(err, ErrCAExists) {
		t.Errorf("second InitCA = %v, want ErrCAExists", err)
	}
	again, err := LoadCA(dir)
	if err != nil || !again.Certificate().Equal(ca.Certificate()) {
		t.Fatalf("LoadCA = %v", err)
	}
	// Two deployments never share a key.
	other, err := InitCA(filepath.Join(t.TempDir(), "ca2"))
	if err != nil {
		t.Fatal(err)
	}
	if other.Certificate().Equal(ca.Certificate()) {
		t.Errorf("two InitCA calls made the same CA")
	}
	// Leaves chain to the CA and are cached per host.
	m := newMITM(ca, InspectConfig{LeafCacheSize: 2})
	l1, err := m.leaf("www.example.com")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	if _, err := l1.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "www.example.com"}); err != nil {
		t.Errorf("leaf does not verify: %v", err)
	}
	if l2, _ := m.leaf("www.example.com"); l2 != l1 {
		t.Errorf("leaf not cached")
	}
	for _, h := range []string{"a.example", "b.example", "c.example"} {
		if _, err := m.leaf(h); err != nil {
			t.Fatal(err)
		}
	}
	if len(m.cache) > 2 {
		t.Errorf("leaf cache holds %d, limit 2", len(m.cache))
	}
}

func inspectHarness(t *testing.T, cfgs ...Config) (*harness, *http.Client, *x509.Certificate) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "inspect-ca")
	ca, err := InitCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	var cfg Config
	if len(cfgs) > 0 {
		cfg = cfgs[0]
	}
	cfg.TLSInspection = InspectConfig{
		Enabled:       true,
		CADir:         dir,
		PinningBypass: []string{"pinned.test"},
	}
	h := newHarness(t, harnessOpt{cfg: cfg})
	c := h.client(nil)
	roots := h.originCA.Clone()
	roots.AddCert(ca.Certificate())
	c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: roots}
	return h, c, ca.Certificate()
}

func TestInspectionDecidesFullURL(t *testing.T) {
	h, c, inspectCA := inspectHarness(t)

	resp, body := get(t, c, h.httpsURL("allowed.test", "/deep/path"))
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "hello from allowed.test") {
		t.Fatalf("inspected GET = %d %q", resp.StatusCode, body)
	}
	if got := resp.TLS.PeerCertificates[0].Issuer.CommonName; got != inspectCA.Subject.CommonName {
		t.Errorf("inspected tunnel served a certificate from %q, want the inspection CA", got)
	}
	ev := h.events.wait(t, func(ev *policies.AccessEvent) bool { return ev.Path == "/deep/path" })
	if ev.Method != "GET" || ev.Proto != "https" || ev.Status != 200 || ev.Host != "allowed.test" || ev.Action != "allow" {
		t.Errorf("inner event = %+v", ev)
	}

	// A path rule applies to HTTPS only because the URL is visible.
	resp, body = get(t, c, h.httpsURL("other.test", "/secret/plans"))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "block-path") {
		t.Errorf("blocked path = %d, want the block page", resp.StatusCode)
	}
	resp, _ = get(t, c, h.httpsURL("other.test", "/public"))
	if resp.StatusCode != 200 {
		t.Errorf("other.test/public = %d, want 200", resp.StatusCode)
	}

	// A blocked host gets the real block page instead of a bare 403.
	resp, body = get(t, c, h.httpsURL("casino.test", "/"))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "This site is blocked") {
		t.Errorf("inspected blocked host = %d, want the block page", resp.StatusCode)
	}

	// A warn host gets the warn page; continue works inside the tunnel.
	resp, body = get(t, c, h.httpsURL("social.test", "/"))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Continue to social.test") {
		t.Fatalf("inspected warn host = %d, want the warn page", resp.StatusCode)
	}
	f := formFields(body, "/.cordon/continue")
	resp, err := c.PostForm(h.httpsURL("social.test", "/.cordon/continue"), f)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("continue inside tunnel = %d", resp.StatusCode)
	}
	if resp, _ = get(t, c, h.httpsURL("social.test", "/")); resp.StatusCode != 200 {
		t.Errorf("after continue = %d, want 200", resp.StatusCode)
	}
}

func TestInspectionExemptionsSpliced(t *testing.T) {
	h, c, _ := inspectHarness(t)
	for _, host := range []string{"bank.test", "pinned.test"} {
		resp, _ := get(t, c, h.httpsURL(host, "/"))
		if resp.StatusCode != 200 {
			t.Fatalf("%s = %d", host, resp.StatusCode)
		}
		if err := verifyChain(*resp.TLS, h.originCA, host); err != nil {
			t.Errorf("%s was not spliced to the origin's own certificate: %v", host, err)
		}
	}
}

func TestInspectionBadUpstreamCertificate(t *testing.T) {
	h, c, _ := inspectHarness(t)
	// An origin whose certificate no trusted root signed.
	bad := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("should never be seen"))
	}))
	defer bad.Close()
	_, port, _ := net.SplitHostPort(bad.Listener.Addr().String())
	resp, body := get(t, c, "https://badcert.test:"+port+"/")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "certificate is not valid") ||
		strings.Contains(body, "should never be seen") {
		t.Fatalf("bad upstream certificate = %d, want 502 error page", resp.StatusCode)
	}
	ev := h.events.forHost(t, "badcert.test")
	if ev.Status != 502 {
		t.Errorf("event = %+v", ev)
	}
}

// TestInspectionSilentClientCutOff: a client that opens a decrypted tunnel
// and never sends its ClientHello is disconnected.
func TestInspectionSilentClientCutOff(t *testing.T) {
	h, _, _ := inspectHarness(t, Config{TLSHandshakeTimeout: 200 * time.Millisecond})
	_, port, _ := net.SplitHostPort(h.tlsOrigin.Listener.Addr().String())
	resp, c, br := connect(t, h, "allowed.test:"+port)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := br.ReadByte(); err == nil || isTimeout(err) {
		t.Fatalf("silent decrypted tunnel still open: %v", err)
	}
}

func TestInspectionRefusesAddressLiterals(t *testing.T) {
	h, _, _ := inspectHarness(t)
	resp, _, _ := connect(t, h, "169.254.169.254:443")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("CONNECT to the metadata address with inspection = %d, want 403", resp.StatusCode)
	}
}
