package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/policies"
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

// rawHTTPOrigin answers every request head on a kept-alive connection
// with resp, without allocating per request, so that a benchmark's
// allocations are the proxy's.
func rawHTTPOrigin(b *testing.B, resp []byte) string {
	b.Helper()
	return rawOrigin(b, func(c net.Conn) {
		buf := make([]byte, 8192)
		have := 0
		for {
			n, err := c.Read(buf[have:])
			if err != nil {
				return
			}
			have += n
			// One write per complete head (requests have no body).
			for {
				i := bytes.Index(buf[:have], []byte("\r\n\r\n"))
				if i < 0 {
					break
				}
				if _, err := c.Write(resp); err != nil {
					return
				}
				have = copy(buf, buf[i+4:have])
			}
		}
	})
}

// BenchmarkProxiedRequest is one proxied GET (1 KiB and 64 KiB bodies) on
// a kept-alive client connection, with a client and an origin that do
// not allocate: allocs/op is the proxy's own cost per request (identity,
// decision, forwarding over a pooled origin connection, access event).
func BenchmarkProxiedRequest(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
			h := newHarness(b, harnessOpt{})
			var evs atomic.Int64
			h.srv.events = EventSinkFunc(func(*policies.AccessEvent) { evs.Add(1) })
			resp := append([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n"),
				bytes.Repeat([]byte("x"), size)...)
			origin := rawHTTPOrigin(b, resp)
			_, port, _ := net.SplitHostPort(origin)
			req := []byte("GET http://allowed.test:" + port + "/bench HTTP/1.1\r\nHost: allowed.test:" + port + "\r\nUser-Agent: bench\r\n\r\n")
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReaderSize(c, 128<<10)
			body := make([]byte, size)
			one := func() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				n := -1
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						b.Fatal(err)
					}
					if len(line) <= 2 {
						break
					}
					if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
						n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
					}
				}
				if n != size {
					b.Fatalf("Content-Length %d, want %d", n, size)
				}
				if _, err := io.ReadFull(br, body); err != nil {
					b.Fatal(err)
				}
			}
			one() // dial the origin
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				one()
			}
			if evs.Load() == 0 {
				b.Fatal("no access events")
			}
		})
	}
}
