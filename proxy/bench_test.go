package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// BenchmarkOverhead measures one small GET (1 KiB body, keep-alive) sent
// directly to a loopback origin and the same through the running proxy
// (identity, resolve, Engine.Check, forwarding, event), plus a blocked
// request answered with the block page. The difference between "proxy"
// and "direct" is the per-request cost Cordon adds.
func BenchmarkOverhead(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	h := newHarness(b, harnessOpt{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(body)
	})})
	h.events = nil
	h.srv.events = nil
	direct := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
	proxied := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(h.url), MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
	b.Cleanup(func() {
		direct.CloseIdleConnections()
		proxied.CloseIdleConnections()
	})
	run := func(b *testing.B, c *http.Client, target string, want int) {
		req, _ := http.NewRequest("GET", target, nil)
		b.ReportAllocs()
		for b.Loop() {
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				b.Fatalf("status %d, want %d", resp.StatusCode, want)
			}
		}
	}
	runParallel := func(b *testing.B, c *http.Client, target string) {
		b.ReportAllocs()
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			req, _ := http.NewRequest("GET", target, nil)
			for pb.Next() {
				resp, err := c.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	originURL := h.origin.URL + "/bench"
	b.Run("direct", func(b *testing.B) { run(b, direct, originURL, 200) })
	b.Run("proxy", func(b *testing.B) { run(b, proxied, h.httpURL("allowed.test", "/bench"), 200) })
	b.Run("proxy-blocked", func(b *testing.B) { run(b, proxied, h.httpURL("casino.test", "/bench"), 403) })
	b.Run("direct-parallel", func(b *testing.B) { runParallel(b, direct, originURL) })
	b.Run("proxy-parallel", func(b *testing.B) { runParallel(b, proxied, h.httpURL("allowed.test", "/bench")) })
}

// BenchmarkTunnel measures HTTPS requests over one kept-alive CONNECT
// tunnel (the proxy only relays bytes) against HTTPS directly.
func BenchmarkTunnel(b *testing.B) {
	h := newHarness(b, harnessOpt{})
	h.srv.events = nil
	tr := func(proxy *url.URL) *http.Client {
		t := &http.Transport{TLSClientConfig: h.client(nil).Transport.(*http.Transport).TLSClientConfig}
		if proxy != nil {
			t.Proxy = http.ProxyURL(proxy)
		}
		return &http.Client{Transport: t, Timeout: 10 * time.Second}
	}
	direct, proxied := tr(nil), tr(h.url)
	b.Cleanup(func() {
		direct.CloseIdleConnections()
		proxied.CloseIdleConnections()
	})
	_, port, _ := net.SplitHostPort(h.tlsOrigin.Listener.Addr().String())
	for _, bc := range []struct {
		name   string
		c      *http.Client
		target string
	}{
		{"direct", direct, "https://127.0.0.1:" + port + "/"},
		{"proxy", proxied, h.httpsURL("allowed.test", "/")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req, _ := http.NewRequest("GET", bc.target, nil)
			if bc.name == "direct" {
				req.Host = "allowed.test"
				// Verify the origin certificate under its test name.
				bc.c.Transport.(*http.Transport).TLSClientConfig.ServerName = "allowed.test"
			}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := bc.c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
