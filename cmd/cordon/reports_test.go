package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/cordon-gw/cordon/policies"
)

// TestReportsMatchTraffic: traffic from one user through the running proxy
// (Basic auth) and DoH (per-user token) ends up in that user's report with
// exactly the counts sent.
func TestReportsMatchTraffic(t *testing.T) {
	hash, err := policies.HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	pol := testPolicy + fmt.Sprintf(`
users:
  - name: alice
    password_hash: %q
    doh_token: alice-token-0123456789
`, hash)
	polFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(polFile, []byte(pol), 0o600); err != nil {
		t.Fatal(err)
	}
	tg := startGateway(t, func(c *Config) {
		c.Policy.File = polFile
		c.Reports.FlushInterval = 100 * time.Millisecond
	})
	_, originPort, _ := net.SplitHostPort(tg.origin.Listener.Addr().String())
	client := tg.proxyClient()
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:correct horse"))

	send := func(host string, want int) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+net.JoinHostPort(host, originPort)+"/page", nil)
		req.Header.Set("Proxy-Authorization", auth)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: status %d, want %d", host, resp.StatusCode, want)
		}
	}
	doh := func(name string, wantRcode int) {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		wire, _ := m.Pack()
		resp, err := http.Post("http://"+tg.adminLn.Addr().String()+"/dns-query/alice-token-0123456789",
			"application/dns-message", bytes.NewReader(wire))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		r := new(dns.Msg)
		if resp.StatusCode != 200 || r.Unpack(body) != nil {
			t.Fatalf("DoH %s: status %d", name, resp.StatusCode)
		}
		if r.Rcode != wantRcode {
			t.Fatalf("DoH %s: rcode %s, want %s", name, dns.RcodeToString[r.Rcode], dns.RcodeToString[wantRcode])
		}
	}
	for i := 0; i < 7; i++ {
		send("allowed.test", 200)
	}
	for i := 0; i < 3; i++ {
		send(tg.threat, http.StatusForbidden)
	}
	for i := 0; i < 2; i++ {
		send("monitor.test", 200)
	}
	for i := 0; i < 4; i++ {
		doh("allowed.test", dns.RcodeSuccess)
	}
	for i := 0; i < 2; i++ {
		doh(tg.mining, dns.RcodeNameError)
	}
	const wantRequests, wantBlocked = 7 + 3 + 2 + 4 + 2, 3 + 2

	var rep struct {
		Requests   int64 `json:"requests"`
		Blocked    int64 `json:"blocked"`
		WouldBlock []struct {
			Name  string `json:"name"`
			Count int64  `json:"count"`
		} `json:"monitor_would_block"`
		Threats []struct {
			Name  string `json:"name"`
			Count int64  `json:"count"`
		} `json:"threats"`
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		req, _ := http.NewRequest("GET", "http://"+tg.adminLn.Addr().String()+"/api/v1/reports/users/alice?from=1h", nil)
		req.Header.Set("Authorization", "Bearer "+tg.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("report: %d %s", resp.StatusCode, body)
		}
		if err := json.Unmarshal(body, &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Requests >= wantRequests || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rep.Requests != wantRequests || rep.Blocked != wantBlocked {
		t.Fatalf("report: %d requests, %d blocked; sent %d, %d blocked", rep.Requests, rep.Blocked, wantRequests, wantBlocked)
	}
	var would, threats int64
	for _, c := range rep.WouldBlock {
		if c.Name == "trial" {
			would = c.Count
		}
	}
	for _, c := range rep.Threats {
		if c.Name == "urlhaus" {
			threats = c.Count
		}
	}
	if would != 2 || threats != 3 {
		t.Fatalf("report: would-block %d (want 2), urlhaus threats %d (want 3); %+v", would, threats, rep)
	}
}
