package loadtest

import (
	"bufio"
	"crypto/x509"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// startOrigin runs an origin with HTTP, HTTPS and DNS on kernel-chosen ports.
func startOrigin(t testing.TB, mod func(*OriginConfig)) *Origin {
	t.Helper()
	cfg := OriginConfig{HTTPAddr: "127.0.0.1:0", HTTPSAddr: "127.0.0.1:0", DNSAddr: "127.0.0.1:0"}
	if mod != nil {
		mod(&cfg)
	}
	o, err := StartOrigin(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))

	if err != nil {
		t.Fatalf("StartOrigin: %v", err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// testProxy is a small real forward proxy for the tests: absolute-form
// GET is forwarded, CONNECT is tunnelled, and every destination is dialled
// at the origin's address whatever its name (as Cordon's upstream override
// or Squid's hosts_file do). Hosts under ".blocked.test" get 403.
type testProxy struct {
	addr      string
	httpAddr  string // where plain http requests go
	httpsAddr string // where tunnels go
	wantAuth  string // when set, the Proxy-Authorization value required
	connects  atomic.Int64
	gets      atomic.Int64
	conns     atomic.Int64
}

func startTestProxy(t *testing.T, o *Origin, wantAuth string) *testProxy {
	t.Helper()
	p := &testProxy{httpAddr: o.HTTPAddr(), httpsAddr: o.HTTPSAddr(), wantAuth: wantAuth}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.conns.Add(1)
			wg.Go(func() { p.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return p
}

func (p *testProxy) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	var upstream net.Conn
	defer func() {
		if upstream != nil {
			upstream.Close()
		}
	}()
	var ubr *bufio.Reader
	for {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if p.wantAuth != "" && req.Header.Get("Proxy-Authorization") != p.wantAuth {
			io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\n\r\n")
			continue
		}
		host := req.URL.Hostname()
		if req.Method == http.MethodConnect {
			host = strings.Split(req.Host, ":")[0]
		}
		if strings.HasSuffix(host, ".blocked.test") {
			io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 8\r\n\r\nblocked\n")
			continue
		}
		if req.Method == http.MethodConnect {
			p.connects.Add(1)
			up, err := net.Dial("tcp", p.httpsAddr)
			if err != nil {
				io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
				return
			}
			defer up.Close()
			_ = c.SetDeadline(time.Time{})
			io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
			done := make(chan struct{})
			go func() { io.Copy(up, br); up.(*net.TCPConn).CloseWrite(); close(done) }()
			io.Copy(c, up)
			<-done
			return
		}
		if !req.URL.IsAbs() {
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
			return
		}
		p.gets.Add(1)
		if upstream == nil {
			if upstream, err = net.Dial("tcp", p.httpAddr); err != nil {
				return
			}
			ubr = bufio.NewReader(upstream)
		}
		req.Header.Del("Proxy-Authorization")
		req.RequestURI = ""
		if err := req.Write(upstream); err != nil {
			return
		}
		resp, err := http.ReadResponse(ubr, req)
		if err != nil {
			return
		}
		err = resp.Write(c)
		resp.Body.Close()
		if err != nil {
			return
		}
	}
}

func targets(t testing.TB, https bool, lines ...string) []Target {
	t.Helper()
	ts, err := ParseURLs(strings.NewReader(strings.Join(lines, "\n")), URLOptions{HTTPS: https})
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func caPool(t testing.TB, o *Origin) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(o.CACertPEM()) {
		t.Fatal("origin CA PEM did not parse")
	}
	return pool
}

func TestRunHTTPDirect(t *testing.T) {
	o := startOrigin(t, nil)
	for _, https := range []bool{false, true} {
		name := map[bool]string{false: "http", true: "https"}[https]
		t.Run(name, func(t *testing.T) {
			cfg := HTTPDefaults()
			cfg.Targets = targets(t, https, "www.example.com/1k", "cdn.example.net/64k", "www.example.com/missing")
			cfg.ConnectTo = o.HTTPAddr()
			if https {
				cfg.ConnectTo = o.HTTPSAddr()
				cfg.RootCAs = caPool(t, o)
			}
			cfg.Connections = 4
			cfg.MaxRequests = 300
			cfg.Duration = 20 * time.Second
			res, err := RunHTTP(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != 300 || res.ErrorCount() != 0 {
				t.Fatalf("Requests, errors = %d, %v, want 300, none", res.Requests, res.Errors)
			}
			if res.Status[200] != 200 || res.Status[404] != 100 {
				t.Errorf("Status = %v, want 200:200 404:100", res.Status)
			}
			// 100 × 1 KiB + 100 × 64 KiB + the 404 texts.
			if min := uint64(100*1024 + 100*65536); res.BodyBytes < min {
				t.Errorf("BodyBytes = %d, want at least %d", res.BodyBytes, min)
			}
			if res.Latency.Count != 300 || res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 || res.Latency.Max < res.Latency.P999 {
				t.Errorf("Latency = %+v, want 300 ordered values", res.Latency)
			}
			if https && (res.TLSHandshake == nil || res.TLSHandshake.Count != res.Dials) {
				t.Errorf("TLSHandshake = %+v, want one per dial (%d)", res.TLSHandshake, res.Dials)
			}
			if https && res.Dials > 2 && res.TLSResumed == 0 {
				t.Errorf("TLSResumed = 0 after %d handshakes with two hosts", res.Dials)
			}
			if res.Tunnels != 0 {
				t.Errorf("Tunnels = %d in a direct run", res.Tunnels)
			}
		})
	}
}

func TestRunHTTPThroughProxy(t *testing.T) {
	o := startOrigin(t, nil)
	const user, pass = "alice", "s3cret"
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	tests := []struct {
		name        string
		https       bool
		user        string
		wantStatus  map[int]uint64
		wantTunnels bool
	}{
		{"http", false, user, map[int]uint64{200: 150, 403: 50}, false},
		{"https", true, user, map[int]uint64{200: 150, 403: 50}, true},
		{"http without credentials", false, "", map[int]uint64{407: 200}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startTestProxy(t, o, auth)
			cfg := HTTPDefaults()
			cfg.Proxy = p.addr
			cfg.ProxyUser, cfg.ProxyPassword = tt.user, ""
			if tt.user != "" {
				cfg.ProxyPassword = pass
			}
			cfg.Targets = targets(t, tt.https, "a.example.com/1k", "b.example.com/1k", "c.example.com/64k", "ads.blocked.test/1k")
			cfg.RootCAs = caPool(t, o)
			cfg.Connections = 5
			cfg.MaxRequests = 200
			cfg.Duration = 20 * time.Second
			res, err := RunHTTP(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != 200 || res.ErrorCount() != 0 {
				t.Fatalf("Requests, errors = %d, %v, want 200, none", res.Requests, res.Errors)
			}
			for code, n := range tt.wantStatus {
				if res.Status[code] != n {
					t.Errorf("Status = %v, want %v", res.Status, tt.wantStatus)
				}
			}
			if !tt.wantTunnels {
				if res.Tunnels != 0 || p.connects.Load() != 0 {
					t.Errorf("Tunnels = %d, proxy saw %d CONNECTs, want none", res.Tunnels, p.connects.Load())
				}
				if tt.user != "" && uint64(p.gets.Load()) != 150 {
					t.Errorf("proxy forwarded %d GETs, want 150", p.gets.Load())
				}
				return
			}
			// A tunnel is reused only while a connection's next request
			// names the same host; the blocked host is refused every time.
			if res.Tunnels == 0 || res.Tunnels > 150 || uint64(p.connects.Load()) != res.Tunnels || res.TunnelsRefused != 50 {
				t.Errorf("Tunnels, refused, proxy CONNECTs = %d, %d, %d, want 1-150 (= CONNECTs), 50", res.Tunnels, res.TunnelsRefused, p.connects.Load())
			}
			if res.TunnelSetup == nil || res.TunnelSetup.Count != res.Tunnels || res.TLSHandshake == nil || res.TLSHandshake.Count != res.Tunnels {
				t.Errorf("TunnelSetup, TLSHandshake = %+v, %+v, want %d each", res.TunnelSetup, res.TLSHandshake, res.Tunnels)
			}
			// Three hosts, many tunnels: later handshakes resume.
			if res.TLSResumed == 0 || res.TLSResumed >= res.Tunnels || !res.TLSVerified {
				t.Errorf("TLSResumed, TLSVerified = %d, %v, want 1-%d, true", res.TLSResumed, res.TLSVerified, res.Tunnels-1)
			}
		})
	}
}

func TestRunHTTPOpenLoop(t *testing.T) {
	o := startOrigin(t, nil)
	cfg := HTTPDefaults()
	cfg.Targets = targets(t, false, "www.example.com/1k")
	cfg.ConnectTo = o.HTTPAddr()
	cfg.Connections = 2
	cfg.Rate = 200
	cfg.Duration = 500 * time.Millisecond
	res, err := RunHTTP(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The schedule has exactly rate × duration slots; a slow machine may
	// miss the last ones, never send more.
	if res.Requests+res.Missed != 100 || res.Requests == 0 || res.Loop != "open" || res.Service == nil || res.Service.Count != res.Requests {
		t.Errorf("Requests, Missed, Loop, Service = %d, %d, %q, %+v, want 100 slots, open, one service time each", res.Requests, res.Missed, res.Loop, res.Service)
	}
	if res.Latency.Max < res.Service.Max {
		t.Errorf("latency from the due time (%v) is below the service time (%v)", res.Latency.Max, res.Service.Max)
	}
}

func TestRunHTTPDeadTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	cfg := HTTPDefaults()
	cfg.Targets = targets(t, false, "www.example.com/1k")
	cfg.Proxy = addr
	cfg.Connections = 2
	cfg.MaxRequests = 20
	cfg.Duration = 10 * time.Second
	res, err := RunHTTP(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 0 || res.Errors["dial_refused"] != 20 {
		t.Errorf("Requests, Errors = %d, %v, want 0, dial_refused:20", res.Requests, res.Errors)
	}
}

func TestRunHTTPCancel(t *testing.T) {
	// A server that accepts and never answers: cancelling must end the run
	// long before the 10s request timeout.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	ctx, cancel := contextWithCancelAfter(t, 200*time.Millisecond)
	defer cancel()
	cfg := HTTPDefaults()
	cfg.Targets = targets(t, false, "www.example.com/1k")
	cfg.Proxy = ln.Addr().String()
	cfg.Connections = 3
	cfg.Duration = time.Hour
	done := make(chan *HTTPResult, 1)
	go func() {
		res, _ := RunHTTP(ctx, cfg)
		done <- res
	}()
	select {
	case res := <-done:
		if res.Requests != 0 || res.ErrorCount() != 0 {
			t.Errorf("Requests, Errors = %d, %v, want 0, none (the abort is ours)", res.Requests, res.Errors)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("RunHTTP did not return after its context was cancelled")
	}
}

func TestRunHTTPOpenLoopCountsMissed(t *testing.T) {
	// One connection to an origin answering in 40 ms cannot keep a
	// 100/s schedule: the slots it never reached are reported as missed,
	// and latency from the due time grows past the service time.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(40 * time.Millisecond)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(slow.Close)
	cfg := HTTPDefaults()
	cfg.Targets = targets(t, false, "www.example.com/1k")
	cfg.ConnectTo = slow.Listener.Addr().String()
	cfg.Connections = 1
	cfg.Rate = 100
	cfg.Duration = 500 * time.Millisecond
	res, err := RunHTTP(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Missed == 0 || res.Requests+res.ErrorCount()+res.Missed != 50 {
		t.Errorf("Requests, Errors, Missed = %d, %v, %d, want missed > 0 and a total of 50 slots", res.Requests, res.Errors, res.Missed)
	}
	if res.Latency.Max <= res.Service.Max {
		t.Errorf("latency from due %v <= service %v, want the queueing delay included", res.Latency.Max, res.Service.Max)
	}
}

// BenchmarkRunHTTPLoopback measures the generator and the origin together
// on loopback: one op is one request; req/s and p99 are reported.
func BenchmarkRunHTTPLoopback(b *testing.B) {
	for _, https := range []bool{false, true} {
		b.Run(map[bool]string{false: "http", true: "https"}[https], func(b *testing.B) {
			o := startOrigin(b, func(c *OriginConfig) { c.DNSAddr = "" })
			cfg := HTTPDefaults()
			cfg.Targets = targets(b, https, "www.example.com/1k", "cdn.example.net/1k")
			cfg.ConnectTo = o.HTTPAddr()
			if https {
				cfg.ConnectTo = o.HTTPSAddr()
			}
			cfg.Connections = 8
			cfg.Duration = 5 * time.Minute
			cfg.MaxRequests = uint64(b.N)
			b.ReportAllocs()
			b.ResetTimer()
			res, err := RunHTTP(b.Context(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			if res.ErrorCount() != 0 {
				b.Fatalf("errors: %v", res.Errors)
			}
			b.ReportMetric(res.RPS, "req/s")
			b.ReportMetric(float64(res.Latency.P99)/1e3, "p99-µs")
		})
	}
}
