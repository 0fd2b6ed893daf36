package loadtest

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// HTTPConfig configures an HTTP load run.
type HTTPConfig struct {
	// Proxy is the forward proxy host:port; "" sends requests straight to
	// the origin (the "direct" baseline).
	Proxy string `yaml:"proxy"`
	// ConnectTo, in a direct run, is the address dialled for every URL
	// instead of the URL's host:port (like curl --connect-to), so URLs with
	// real-looking names reach the local origin. Ignored with Proxy.
	ConnectTo string `yaml:"connect_to"`
	// ProxyUser and ProxyPassword, when ProxyUser is set, are sent as
	// Basic Proxy-Authorization on every request and CONNECT.
	ProxyUser     string `yaml:"proxy_user"`
	ProxyPassword string `yaml:"proxy_password"`
	// Targets are the URLs; request n of the run (over all connections)
	// goes to Targets[n % len(Targets)].
	Targets []Target `yaml:"-"`
	// Connections is the number of concurrent connections (workers); 0 means 100.
	Connections int `yaml:"connections"`
	// Timeout bounds each request, including any connection or tunnel set-up
	// it needs; 0 means 10s.
	Timeout time.Duration `yaml:"timeout"`
	// RootCAs verifies HTTPS origins; nil skips verification (the local
	// origin's certificates are made at start; pass its CA with --ca to verify).
	RootCAs *x509.CertPool `yaml:"-"`
	// NoTLSResume makes every TLS connection a full handshake. By default
	// the connections share one session cache, so a host seen before
	// resumes its session, as a browser does.
	NoTLSResume bool `yaml:"no_tls_resume"`
	// Limits bound the run; Duration and MaxRequests must be set.
	Limits `yaml:",inline"`
	// Progress, when set, is called about once a second while the run lasts.
	Progress func(Progress) `yaml:"-"`
}

// HTTPDefaults returns the defaults of `cordon loadtest http`.
func HTTPDefaults() HTTPConfig {
	return HTTPConfig{
		Connections: 100,
		Timeout:     10 * time.Second,
		Limits:      Limits{Duration: 10 * time.Second, MaxRequests: 100_000_000},
	}
}

// Validate reports every invalid field.
func (c HTTPConfig) Validate() error {
	var errs []error
	if c.Proxy != "" {
		if _, _, err := net.SplitHostPort(c.Proxy); err != nil {
			errs = append(errs, fmt.Errorf("proxy %q: want host:port: %w", c.Proxy, err))
		}
	}
	if c.ConnectTo != "" {
		if _, _, err := net.SplitHostPort(c.ConnectTo); err != nil {
			errs = append(errs, fmt.Errorf("connect_to %q: want host:port: %w", c.ConnectTo, err))
		}
		if c.Proxy != "" {
			errs = append(errs, errors.New("connect_to: only for direct runs, the proxy resolves names itself"))
		}
	}
	if c.ProxyUser == "" && c.ProxyPassword != "" {
		errs = append(errs, errors.New("proxy_password: set without proxy_user"))
	}
	if c.ProxyUser != "" && c.Proxy == "" {
		errs = append(errs, errors.New("proxy_user: credentials need a proxy"))
	}
	if len(c.Targets) == 0 {
		errs = append(errs, errors.New("targets: no URLs"))
	}
	if c.Connections < 0 || c.Connections > 100_000 {
		errs = append(errs, fmt.Errorf("connections %d: want 1-100000", c.Connections))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %v: want > 0", c.Timeout))
	}
	errs = append(errs, c.Limits.validate()...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: http: %w", ErrConfig, err)
	}
	return nil
}

func (l Limits) validate() []error {
	var errs []error
	if l.Duration <= 0 || l.Duration > 24*time.Hour {
		errs = append(errs, fmt.Errorf("duration %v: want > 0 and at most 24h", l.Duration))
	}
	if l.MaxRequests == 0 {
		errs = append(errs, errors.New("max_requests: want > 0"))
	}
	if l.Rate < 0 || l.Rate > 10_000_000 {
		errs = append(errs, fmt.Errorf("rate %v: want 0 (closed loop) to 10000000", l.Rate))
	}
	return errs
}

// HTTPResult is the outcome of an HTTP run.
type HTTPResult struct {
	Target      string        `json:"target"` // proxy address or "direct"
	Loop        string        `json:"loop"`   // "closed" or "open"
	Connections int           `json:"connections"`
	Rate        float64       `json:"rate,omitempty"`
	Elapsed     time.Duration `json:"-"`
	ElapsedSec  float64       `json:"elapsed_s"`
	// Requests is the number answered, whatever the status (a proxy's 403
	// block page or refused CONNECT counts here, under Status).
	Requests  uint64            `json:"requests"`
	RPS       float64           `json:"rps"`
	Status    map[int]uint64    `json:"status"`
	Errors    map[string]uint64 `json:"errors"`
	BodyBytes uint64            `json:"body_bytes"`
	// Latency of answered requests: in closed loop from the moment the
	// request was started, in open loop from the moment it was due. It
	// includes any connection, tunnel and TLS set-up the request needed.
	Latency Summary `json:"latency"`
	// Service, in open loop only, is measured from the actual send.
	Service *Summary `json:"service,omitempty"`
	// Missed, in open loop, counts requests due before the end that were
	// never sent because every connection was still busy: the target
	// could not keep up with the rate.
	Missed uint64 `json:"missed"`
	// Dials counts TCP connections opened (to the proxy or origin).
	Dials uint64 `json:"dials"`
	// Retries counts requests sent again on a new connection because the
	// kept-alive one was closed under them.
	Retries uint64 `json:"retries"`
	// Tunnels counts CONNECT tunnels established (2xx), TunnelsRefused
	// CONNECTs the proxy answered with another status.
	Tunnels        uint64  `json:"tunnels"`
	TunnelsRefused uint64  `json:"tunnels_refused"`
	TunnelsPerSec  float64 `json:"tunnels_per_s"`
	// TunnelSetup is dial + CONNECT until the proxy's 2xx; TLSHandshake the
	// handshake with the origin through the tunnel (or directly).
	TunnelSetup  *Summary `json:"tunnel_setup,omitempty"`
	TLSHandshake *Summary `json:"tls_handshake,omitempty"`
	// TLSResumed counts handshakes that resumed an earlier session;
	// TLSVerified says whether origin certificates were verified.
	TLSResumed  uint64 `json:"tls_resumed"`
	TLSVerified bool   `json:"tls_verified"`
}

// ErrorCount is the total of Errors.
func (r *HTTPResult) ErrorCount() uint64 { return sumCounts(r.Errors) }

// RunHTTP runs the load cfg describes and returns what it measured. It
// returns an error only when cfg is invalid; failures of the target are
// counted in the result.
func RunHTTP(ctx context.Context, cfg HTTPConfig) (*HTTPResult, error) {
	if cfg.Connections == 0 {
		cfg.Connections = 100
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var auth string
	if cfg.ProxyUser != "" {
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(cfg.ProxyUser+":"+cfg.ProxyPassword))
	}
	var sessions tls.ClientSessionCache
	if !cfg.NoTLSResume {
		sessions = tls.NewLRUClientSessionCache(4096)
	}
	sched := newSchedule(cfg.Limits)
	workers := make([]*httpWorker, cfg.Connections)
	var wg sync.WaitGroup
	for i := range workers {
		w := newHTTPWorker(&cfg, sched, auth, sessions)
		workers[i] = w
		wg.Go(func() { w.run(ctx) })
	}
	// Ctrl-C: unblock every in-flight read and write at once.
	stopIO := context.AfterFunc(ctx, func() {
		for _, w := range workers {
			w.abort()
		}
	})
	defer stopIO()
	stop := make(chan struct{})
	var pw sync.WaitGroup
	pw.Go(func() { sched.watchProgress(cfg.Progress, stop) })
	wg.Wait()
	close(stop)
	pw.Wait()

	res := &HTTPResult{
		Target:      "direct",
		Loop:        "closed",
		Connections: cfg.Connections,
		Rate:        cfg.Rate,
		Elapsed:     time.Since(sched.start),
		Status:      make(map[int]uint64),
		Errors:      make(map[string]uint64),
		TLSVerified: cfg.RootCAs != nil,
	}
	if cfg.Proxy != "" {
		res.Target = cfg.Proxy
	}
	lat, svc, tun, hs := NewHistogram(), NewHistogram(), NewHistogram(), NewHistogram()
	for _, w := range workers {
		lat.Merge(w.lat)
		svc.Merge(w.svc)
		tun.Merge(w.tunnel)
		hs.Merge(w.handshake)
		for k, v := range w.status {
			res.Status[k] += v
		}
		for k, v := range w.errs {
			res.Errors[k] += v
		}
		res.BodyBytes += w.bodyBytes
		res.Dials += w.dials
		res.Tunnels += w.tunnels
		res.TunnelsRefused += w.tunnelsRefused
		res.Retries += w.retries
		res.TLSResumed += w.resumed
	}
	res.Requests = lat.Count()
	res.ElapsedSec = res.Elapsed.Seconds()
	res.RPS = float64(res.Requests) / res.ElapsedSec
	res.TunnelsPerSec = float64(res.Tunnels) / res.ElapsedSec
	res.Latency = lat.Summarize()
	if cfg.Rate > 0 {
		res.Loop = "open"
		s := svc.Summarize()
		res.Service = &s
		res.Missed = sched.missed()
	}
	if tun.Count() > 0 {
		s := tun.Summarize()
		res.TunnelSetup = &s
	}
	if hs.Count() > 0 {
		s := hs.Summarize()
		res.TLSHandshake = &s
	}
	return res, nil
}

// httpWorker owns one connection at a time and sends one request at a
// time on it, HTTP/1.1 keep-alive, the way a browser connection does.
type httpWorker struct {
	cfg      *HTTPConfig
	sched    *schedule
	auth     string
	sessions tls.ClientSessionCache // shared by all workers; nil = no resumption

	mu      sync.Mutex // guards conn against abort
	aborted bool
	conn    net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	connKey string // what conn leads to: "proxy", "connect-to", or host:port of a tunnel or TLS connection

	req        fasthttp.Request
	resp       fasthttp.Response
	connectHdr fasthttp.ResponseHeader

	lat, svc, tunnel, handshake *Histogram
	status                      map[int]uint64
	errs                        map[string]uint64
	bodyBytes                   uint64
	dials, tunnels              uint64
	tunnelsRefused, retries     uint64
	resumed                     uint64
}

func newHTTPWorker(cfg *HTTPConfig, sched *schedule, auth string, sessions tls.ClientSessionCache) *httpWorker {
	return &httpWorker{
		cfg: cfg, sched: sched, auth: auth, sessions: sessions,
		lat:    NewHistogram(),
		svc:    NewHistogram(),
		tunnel: NewHistogram(), handshake: NewHistogram(),
		status: make(map[int]uint64),
		errs:   make(map[string]uint64),
	}
}

func (w *httpWorker) run(ctx context.Context) {
	defer w.closeConn()
	timer := stoppedTimer()
	for {
		i, due, ok := w.sched.take(ctx, timer)
		if !ok {
			return
		}
		t := &w.cfg.Targets[i%uint64(len(w.cfg.Targets))]
		sent, status, kind := w.do(t)
		end := time.Now()
		if kind != "" {
			if ctx.Err() != nil {
				return // aborted mid-request: not the target's failure
			}
			w.errs[kind]++
			w.sched.errs.Add(1)
			if w.sched.interval == 0 && strings.HasPrefix(kind, "dial_") {
				// A refused dial returns at once; do not spin the CPU the
				// target under test needs.
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		w.status[status]++
		w.lat.Record(end.Sub(due))
		w.svc.Record(end.Sub(sent))
		w.sched.done.Add(1)
	}
}

// do sends one request for t, opening a connection or tunnel first when
// needed, and returns when it started, the status, or an error kind.
func (w *httpWorker) do(t *Target) (sent time.Time, status int, kind string) {
	sent = time.Now()
	// One kept-alive connection serves every plain http URL when it leads
	// to the proxy or, with ConnectTo, to the one origin address; a tunnel
	// or TLS connection serves only its own host.
	key := "proxy"
	switch {
	case t.HTTPS || (w.cfg.Proxy == "" && w.cfg.ConnectTo == ""):
		key = t.HostPort
	case w.cfg.Proxy == "":
		key = "connect-to"
	}
	reused := w.conn != nil && w.connKey == key
	status, kind = w.attempt(t, key, sent.Add(w.cfg.Timeout))
	if reused && (kind == "write_eof" || kind == "write_reset" || kind == "read_eof" || kind == "read_reset") {
		// The other side closed the kept-alive connection just before or
		// as we sent: net/http and browsers send a GET again on a new
		// connection, so do we, once.
		w.retries++
		status, kind = w.attempt(t, key, sent.Add(w.cfg.Timeout))
	}
	return sent, status, kind
}

// attempt sends the request for t on the connection key names.
func (w *httpWorker) attempt(t *Target, key string, deadline time.Time) (status int, kind string) {
	viaProxy := w.cfg.Proxy != ""
	if w.conn == nil || w.connKey != key {
		w.closeConn()
		if status, kind := w.connect(t, key, deadline); kind != "" || status != 0 {
			return status, kind
		}
	}
	_ = w.conn.SetDeadline(deadline)

	req := &w.req
	req.Reset()
	req.Header.SetMethod(fasthttp.MethodGet)
	if viaProxy && !t.HTTPS {
		req.Header.SetRequestURI(t.Abs)
		if w.auth != "" {
			req.Header.Set(fasthttp.HeaderProxyAuthorization, w.auth)
		}
	} else {
		req.Header.SetRequestURI(t.Path)
	}
	// With the Host header set and the URI never parsed, fasthttp writes
	// the request line exactly as given: absolute-form for the proxy.
	req.Header.SetHost(t.HostHdr)
	req.Header.SetUserAgent("cordon-loadtest")
	if err := req.Write(w.bw); err != nil {
		w.closeConn()
		return 0, errKind("write", err)
	}
	if err := w.bw.Flush(); err != nil {
		w.closeConn()
		return 0, errKind("write", err)
	}
	resp := &w.resp
	resp.Reset()
	if err := resp.Read(w.br); err != nil {
		w.closeConn()
		return 0, errKind("read", err)
	}
	w.bodyBytes += uint64(len(resp.Body()))
	if resp.ConnectionClose() {
		w.closeConn()
	}
	return resp.StatusCode(), ""
}

// connect opens the connection key names: to the proxy (plain http), a
// tunnel through the proxy then TLS (https), or straight to the origin.
// A CONNECT the proxy refuses returns its status, which the caller counts
// as the answer to this request.
func (w *httpWorker) connect(t *Target, key string, deadline time.Time) (status int, kind string) {
	addr := w.cfg.Proxy
	if addr == "" {
		addr = t.HostPort
		if w.cfg.ConnectTo != "" {
			addr = w.cfg.ConnectTo
		}
	}
	start := time.Now()
	d := net.Dialer{Deadline: deadline}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, errKind("dial", err)
	}
	w.dials++
	_ = conn.SetDeadline(deadline)
	if !w.setConn(conn) {
		return 0, "aborted"
	}
	if t.HTTPS && w.cfg.Proxy != "" {
		status, kind := w.connectTunnel(t)
		if kind != "" || status != 0 {
			w.closeConn()
			return status, kind
		}
		w.tunnel.Record(time.Since(start))
	}
	if t.HTTPS {
		hsStart := time.Now()
		tc := tls.Client(conn, w.tlsConfig(t))
		if err := tc.Handshake(); err != nil {
			w.closeConn()
			return 0, errKind("tls", err)
		}
		w.handshake.Record(time.Since(hsStart))
		if tc.ConnectionState().DidResume {
			w.resumed++
		}
		if !w.setConn(tc) {
			return 0, "aborted"
		}
	}
	w.connKey = key
	return 0, ""
}

// connectTunnel sends CONNECT on the fresh proxy connection and reads the
// answer. A non-2xx status is returned (the tunnel is refused).
func (w *httpWorker) connectTunnel(t *Target) (status int, kind string) {
	if _, err := w.bw.WriteString("CONNECT " + t.HostPort + " HTTP/1.1\r\nHost: " + t.HostPort + "\r\n"); err != nil {
		return 0, errKind("connect", err)
	}
	if w.auth != "" {
		_, _ = w.bw.WriteString("Proxy-Authorization: " + w.auth + "\r\n")
	}
	_, _ = w.bw.WriteString("User-Agent: cordon-loadtest\r\n\r\n")
	if err := w.bw.Flush(); err != nil {
		return 0, errKind("connect", err)
	}
	h := &w.connectHdr
	h.Reset()
	if err := h.Read(w.br); err != nil {
		return 0, errKind("connect", err)
	}
	if code := h.StatusCode(); code < 200 || code > 299 {
		w.tunnelsRefused++
		return code, ""
	}
	if w.br.Buffered() > 0 {
		// The origin speaks only after our ClientHello: bytes here are
		// the proxy's, and TLS would choke on them.
		return 0, "connect_protocol"
	}
	w.tunnels++
	return 0, ""
}

func (w *httpWorker) tlsConfig(t *Target) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: w.cfg.RootCAs, InsecureSkipVerify: w.cfg.RootCAs == nil,
		ClientSessionCache: w.sessions}
	if net.ParseIP(t.Host) == nil {
		c.ServerName = t.Host
	}
	return c
}

// setConn installs conn with fresh buffers; false when the run was aborted.
func (w *httpWorker) setConn(conn net.Conn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.aborted {
		conn.Close()
		return false
	}
	w.conn = conn
	if w.br == nil {
		w.br = bufio.NewReaderSize(conn, 16<<10)
		w.bw = bufio.NewWriterSize(conn, 4<<10)
	} else {
		w.br.Reset(conn)
		w.bw.Reset(conn)
	}
	return true
}

func (w *httpWorker) closeConn() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
	w.connKey = ""
}

// abort unblocks the worker's I/O; it may run on another goroutine.
func (w *httpWorker) abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.aborted = true
	if w.conn != nil {
		_ = w.conn.SetDeadline(time.Unix(1, 0))
	}
}

// errKind names a failure by phase and cause, a small fixed set for the
// report: phase_timeout, phase_refused, phase_reset, phase_eof, phase_tls,
// phase_protocol.
func errKind(phase string, err error) string {
	var ne net.Error
	var certErr *tls.CertificateVerificationError
	var alert tls.AlertError
	var recHdr tls.RecordHeaderError
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return phase + "_timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return phase + "_refused"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		return phase + "_reset"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, fasthttp.ErrConnectionClosed):
		return phase + "_eof"
	case errors.As(err, &certErr) || errors.As(err, &alert) || errors.As(err, &recHdr):
		return phase + "_tls"
	default:
		return phase + "_protocol"
	}
}

func sumCounts[K comparable](m map[K]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
