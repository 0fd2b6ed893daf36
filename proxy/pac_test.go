package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cordon-gw/cordon/internal/testutil"
)

// evalPAC runs FindProxyForURL in node over cases ([url, host] pairs).
func evalPAC(t *testing.T, pac string, cases [][2]string) []string {
	t.Helper()
	node := testutil.Command(t, "node")
	dir := t.TempDir()
	pacFile, casesFile := filepath.Join(dir, "proxy.pac"), filepath.Join(dir, "cases.json")
	b, _ := json.Marshal(cases)
	if err := os.WriteFile(pacFile, []byte(pac), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(casesFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), node, "testdata/pac_shim.js", pacFile, casesFile)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\nPAC:\n%s", err, pac)
	}
	var res []string
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node output %q: %v", out, err)
	}
	return res
}

func fetchPAC(t *testing.T, h http.Handler, target string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/x-ns-proxy-autoconfig" {
		t.Fatalf("GET %s = %d %q", target, rec.Code, rec.Header().Get("Content-Type"))
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestPACInNode(t *testing.T) {
	direct := true
	cfg := Defaults()
	cfg.PAC = PACConfig{
		Edges:           []string{"edge1.example.net:3128", "edge2.example.net:3128"},
		InternalDomains: []string{"corp.example", ".intra.example"},
		Bypass:          []string{"*.zoom.us", "update.vendor.*"},
		Locations: map[string]PACLocation{
			"paris": {Edges: []string{"paris1.example.net:3128"}, Direct: &direct, Bypass: []string{"*.fr.corp"}},
		},
	}
	h := newPACHandler(cfg, func() []string { return []string{"bypass.example", "*.cdn.example"} },
		func(ip netip.Addr) string {
			if netip.MustParsePrefix("10.33.0.0/16").Contains(ip) {
				return "paris"
			}
			return ""
		})
	const proxies = "PROXY edge1.example.net:3128; PROXY edge2.example.net:3128"
	cases := []struct {
		url, host, want string
	}{
		{"http://www.example.com/", "www.example.com", proxies},
		{"https://WWW.Example.COM./x", "WWW.Example.COM.", proxies},
		{"http://intranet/", "intranet", "DIRECT"},
		{"http://localhost:8080/", "localhost", "DIRECT"},
		{"http://wiki.corp.example/", "wiki.corp.example", "DIRECT"},
		{"http://corp.example/", "corp.example", "DIRECT"},
		{"http://notcorp.example/", "notcorp.example", proxies},
		{"http://a.intra.example/", "a.intra.example", "DIRECT"},
		{"https://us04web.zoom.us/", "us04web.zoom.us", "DIRECT"},
		{"https://update.vendor.com/", "update.vendor.com", "DIRECT"},
		{"https://bypass.example/", "bypass.example", "DIRECT"},
		{"https://img.bypass.example/", "img.bypass.example", "DIRECT"},
		{"https://x.cdn.example/", "x.cdn.example", "DIRECT"},
		{"https://cdn.example/", "cdn.example", proxies},
		{"http://10.1.2.3/", "10.1.2.3", "DIRECT"},
		{"http://172.20.0.1/", "172.20.0.1", "DIRECT"},
		{"http://172.32.0.1/", "172.32.0.1", proxies},
		{"http://192.168.1.1/", "192.168.1.1", "DIRECT"},
		{"http://127.0.0.1:3000/", "127.0.0.1", "DIRECT"},
		{"http://169.254.169.254/", "169.254.169.254", "DIRECT"},
		{"http://8.8.8.8/", "8.8.8.8", proxies},
		{"http://[::1]/", "::1", "DIRECT"},
		{"http://[fd12::1]/", "fd12::1", "DIRECT"},
		{"http://[2001:db8::1]/", "2001:db8::1", proxies},
	}
	in := make([][2]string, len(cases))
	for i, c := range cases {
		in[i] = [2]string{c.url, c.host}
	}
	got := evalPAC(t, fetchPAC(t, h, "http://proxy.example/proxy.pac"), in)
	for i, c := range cases {
		if got[i] != c.want {
			t.Errorf("FindProxyForURL(%q) = %q, want %q", c.url, got[i], c.want)
		}
	}

	// Paris: its own edge with DIRECT failover, its own bypass list, the
	// shared internal domains.
	paris := evalPAC(t, fetchPAC(t, h, "http://proxy.example/proxy.pac?location=paris"), [][2]string{
		{"http://www.example.com/", "www.example.com"},
		{"http://x.fr.corp/", "x.fr.corp"},
		{"https://us04web.zoom.us/", "us04web.zoom.us"},
		{"http://wiki.corp.example/", "wiki.corp.example"},
	})
	want := []string{"PROXY paris1.example.net:3128; DIRECT", "DIRECT", "PROXY paris1.example.net:3128; DIRECT", "DIRECT"}
	for i := range want {
		if paris[i] != want[i] {
			t.Errorf("paris case %d = %q, want %q", i, paris[i], want[i])
		}
	}
	// A client in the Paris network gets the Paris variant unasked.
	req := httptest.NewRequest("GET", "http://proxy.example/proxy.pac", nil)
	req.RemoteAddr = "10.33.4.5:51000"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), "PROXY paris1.example.net:3128; DIRECT") {
		t.Errorf("PAC for a Paris client is not the Paris variant:\n%s", rec.Body.String())
	}
}

func TestPACDefaultEdgeAndKeepOptions(t *testing.T) {
	cfg := Defaults()
	cfg.PAC.KeepPlainHostNames = true
	cfg.PAC.KeepPrivateNetworks = true
	h := newPACHandler(cfg, nil, nil)
	pac := fetchPAC(t, h, "http://gw.example:8080/wpad.dat")
	got := evalPAC(t, pac, [][2]string{{"http://intranet/", "intranet"}, {"http://10.0.0.1/", "10.0.0.1"}})
	for i, g := range got {
		if g != "PROXY gw.example:3128" {
			t.Errorf("case %d = %q, want the fetching host on the proxy port", i, g)
		}
	}
	// A location name cannot break out of the header comment.
	lv := buildPAC(pacVariant{edges: []string{"a:1"}, location: "x\u2028alert(1)\nfoo"})
	if strings.Contains(lv, "\u2028") || strings.Count(lv, "\n") != strings.Count(buildPAC(pacVariant{edges: []string{"a:1"}, location: "x"}), "\n") {
		t.Errorf("location name breaks the PAC comment:\n%s", lv)
	}
	// Quotes in configured values cannot break out of the JS strings.
	v := pacVariant{edges: []string{"a:1"}, bypass: []string{`x");alert("y`}}
	if !strings.Contains(buildPAC(v), `"x\");alert(\"y"`) {
		t.Errorf("bypass pattern not escaped:\n%s", buildPAC(v))
	}
}
