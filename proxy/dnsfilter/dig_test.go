package dnsfilter

import (
	"context"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lookTool finds a command-line tool; missing is a skip, except in CI
// for the tools CI installs (required: dig, from dnsutils).
func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" && name == "dig" {
			t.Fatalf("%s not installed: %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDig queries the running filter with dig, as the README documents.
func TestDig(t *testing.T) {
	dig := lookTool(t, "dig")
	e := newEnv(t, "nxdomain", nil)
	host, port, _ := net.SplitHostPort(e.f.addr)
	base := []string{"@" + host, "-p", port, "+tries=1", "+time=5"}

	out := run(t, dig, append(base, "allowed.test", "A")...)
	if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "192.0.2.1") {
		t.Errorf("dig allowed.test:\n%s", out)
	}
	out = run(t, dig, append(base, "+tcp", "allowed.test", "AAAA")...)
	if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "2001:db8::1") {
		t.Errorf("dig +tcp allowed.test AAAA:\n%s", out)
	}
	out = run(t, dig, append(base, "www.bad.test", "A")...)
	if !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "EDE: 15 (Blocked)") || !strings.Contains(out, "block-bad") {
		t.Errorf("dig www.bad.test:\n%s", out)
	}
	// dig retries a truncated answer over TCP by itself.
	out = run(t, dig, append(base, "+noedns", "big.test", "TXT")...)
	if !strings.Contains(out, "Truncated, retrying in TCP mode") || !strings.Contains(out, "ANSWER: 40") {
		t.Errorf("dig big.test TXT:\n%s", out)
	}
}

// TestKdigDoH queries the DoH handler with kdig over HTTPS (Debian
// knot-dnsutils; skipped where it is not installed).
func TestKdigDoH(t *testing.T) {
	kdig := lookTool(t, "kdig")
	e := newEnv(t, "nxdomain", nil)
	mux := http.NewServeMux()
	mux.Handle("/dns-query", e.f.srv.DoHHandler())
	mux.Handle("/dns-query/{token}", e.f.srv.DoHHandler())
	hs := httptest.NewUnstartedServer(mux)
	hs.EnableHTTP2 = true // kdig speaks DoH over HTTP/2 only
	hs.StartTLS()
	t.Cleanup(hs.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(hs.URL, "https://"))
	for _, tt := range []struct{ path, name, want string }{
		{"/dns-query", "allowed.test", "NOERROR"},
		{"/dns-query/alice-token-0123456789", "social.test", "NXDOMAIN"},
		{"/dns-query/bob-token-0123456789ab", "social.test", "NOERROR"},
	} {
		out := run(t, kdig, "@"+host, "-p", port, "+https="+tt.path, "+tls-ca="+ca, "+tls-hostname=example.com", tt.name, "A")
		if !strings.Contains(out, "status: "+tt.want) {
			t.Errorf("kdig +https=%s %s: want %s\n%s", tt.path, tt.name, tt.want, out)
		}
	}
}
