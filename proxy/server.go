package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cordon-gw/cordon/policies"
)

// Deps are the proxy's collaborators, built by the caller.
type Deps struct {
	// Engine decides every request and identifies clients. Required.
	Engine *policies.Engine
	// Events receives access events. Nil drops them.
	Events EventSink
	// Reviews receives review requests from block pages. Nil: the review
	// form answers that reviews are not enabled.
	Reviews ReviewSink
	// Logger is scoped with component=proxy. Nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the proxy's metrics. Nil means a private
	// registry (metrics are kept but not exported).
	Registerer prometheus.Registerer
	// Resolver resolves origin names. Nil means net.DefaultResolver;
	// Config.ResolveOverrides and Config.HostsFile are consulted first.
	Resolver Resolver
	// UpstreamRootCAs replaces the system roots for verifying origins
	// (tests pass their httptest roots). Nil means system roots plus
	// Config.TLSInspection.UpstreamCAFiles.
	UpstreamRootCAs *x509.CertPool
}

// Server is the forward proxy. Create it with New, start it with Serve.
type Server struct {
	cfg     Config
	engine  *policies.Engine
	events  EventSink
	reviews ReviewSink
	log     *slog.Logger
	m       *metrics
	guard   *guard
	gp      *goproxy.ProxyHttpServer
	tr      *http.Transport
	pages   *pages
	warns   *warnMemory
	pac     *pacHandler
	mitm    *mitm // nil when TLS inspection is off
	secret  []byte

	// front end state
	upstream *upstreamPool
	hosts    hostCache
	closingF atomic.Bool

	timeouts connTimeouts
	authLim  *authLimiter

	idPrefix string
	idSeq    atomic.Uint64

	mu        sync.Mutex
	listeners []*limitListener
	closing   bool
}

// New builds a proxy from a validated configuration.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if deps.Engine == nil {
		return nil, fmt.Errorf("proxy: new: %w", ErrNoEngine)
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.Default()
	}
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Server{
		cfg:     cfg,
		engine:  deps.Engine,
		events:  deps.Events,
		reviews: deps.Reviews,
		log:     logger.With("component", "proxy"),
		m:       newMetrics(reg),
		warns:   newWarnMemory(),
	}
	s.authLim = newAuthLimiter(cfg.AuthFailuresPerMinute, time.Minute)
	s.timeouts = connTimeouts{handshake: cfg.TLSHandshakeTimeout, idle: cfg.IdleTimeout, tunnel: cfg.TunnelIdleTimeout}
	var err error
	if s.guard, err = newGuard(cfg, deps.Resolver); err != nil {
		return nil, err
	}
	if s.pages, err = newPages(cfg.PageTemplates); err != nil {
		return nil, err
	}
	s.pac = newPACHandler(cfg, s.policyBypass, s.clientLocation)
	s.secret = make([]byte, 32)
	idp := make([]byte, 4)
	if _, err := rand.Read(s.secret); err != nil {
		return nil, fmt.Errorf("proxy: random secret: %w", err)
	}
	if _, err := rand.Read(idp); err != nil {
		return nil, fmt.Errorf("proxy: random id: %w", err)
	}
	s.idPrefix = hex.EncodeToString(idp)

	roots := deps.UpstreamRootCAs
	if roots == nil {
		if roots, err = upstreamRoots(cfg.TLSInspection.UpstreamCAFiles); err != nil {
			return nil, err
		}
	}
	s.tr = &http.Transport{
		// Proxy stays nil: never take HTTP(S)_PROXY from the environment.
		DialContext:           s.guard.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   cfg.TLSHandshakeTimeout,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		IdleConnTimeout:       cfg.IdleTimeout,
		MaxIdleConns:          cfg.MaxIdleConnsPerHost * 64,
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass the client's Accept-Encoding through untouched
		ForceAttemptHTTP2:     true,
	}
	if cfg.TLSInspection.Enabled {
		ca, err := LoadCA(cfg.TLSInspection.CADir)
		if err != nil {
			return nil, err
		}
		s.mitm = newMITM(ca, cfg.TLSInspection)
	}

	gp := goproxy.NewProxyHttpServer()
	// Replace every default: goproxy's transport skips TLS verification and
	// reads proxy settings from the environment, its CONNECT dialer may
	// chain to $HTTPS_PROXY, and its logger writes to stderr.
	gp.Tr = s.tr
	gp.ConnectDial = nil
	gp.ConnectDialWithReq = func(req *http.Request, network, addr string) (net.Conn, error) {
		return s.guard.DialContext(req.Context(), network, addr)
	}
	gp.Logger = goproxyLogger{s.log}
	gp.Verbose = false
	gp.KeepAcceptEncoding = true
	gp.KeepHeader = false
	gp.AllowHTTP2 = false
	gp.CertStore = nil
	gp.NonproxyHandler = http.HandlerFunc(s.serveLocal)
	// Only goproxy's own tunnel and MITM set-up paths report here (Cordon
	// splices tunnels itself); goproxy closes the connection afterwards.
	gp.ConnectionErrHandler = func(w io.Writer, ctx *goproxy.ProxyCtx, err error) {
		s.m.upstreamErrors.WithLabelValues(errorKind(err)).Inc()
		s.log.Debug("tunnel error", logErr, err)
	}
	gp.OnRequest().DoFunc(s.onRequest)
	gp.OnRequest().HandleConnectFunc(s.onConnect)
	gp.OnResponse().DoFunc(s.onResponse)
	s.gp = gp

	s.upstream = newUpstreamPool(cfg.MaxIdleConnsPerHost, cfg.MaxIdleConnsPerHost*64, cfg.IdleTimeout)
	return s, nil
}

// ListenAndServe listens on Config.Listen and serves until Shutdown.
func (s *Server) ListenAndServe() error {
	ln, err := Listen(s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("proxy: listen %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ln)
}

// Listen opens a proxy listener on addr. Accepted sockets get no TCP
// keep-alive probes (that is four setsockopt calls per connection): the
// idle and tunnel idle timeouts bound clients that vanish.
func Listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", addr)
}

// Serve accepts proxy clients on ln until Shutdown. It returns
// http.ErrServerClosed after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.guard.addListener(ln.Addr())
	s.pac.setListener(ln.Addr())
	ll := newLimitListener(ln, s.cfg.MaxConnsPerClient, s.m, s.log)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.listeners = append(s.listeners, ll)
	s.mu.Unlock()
	return s.serveAccepted(ll)
}

// DenyDestination adds an address the proxy never dials, whatever
// allow_private_destinations says, as it never dials its own listeners:
// cmd registers the admin and DNS listeners here so that clients cannot
// reach them through the proxy. A listener on an unspecified address
// (":8080") covers that port on every local address. Safe to call at any
// time.
func (s *Server) DenyDestination(addr net.Addr) { s.guard.addListener(addr) }

// Shutdown stops accepting, lets requests and tunnels in flight finish
// until ctx is done, then closes whatever is left. Connections waiting
// for their next request are closed at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.closingF.Store(true)
	lls := append([]*limitListener(nil), s.listeners...)
	s.mu.Unlock()
	var err error
	for _, ll := range lls {
		if cerr := ll.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = errors.Join(err, cerr)
		}
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		open := 0
		for _, ll := range lls {
			ll.closeIdle()
			open += ll.open()
		}
		if open == 0 {
			break
		}
		select {
		case <-ctx.Done():
			for _, ll := range lls {
				ll.closeAll()
			}
			s.upstream.closeIdle(true)
			s.tr.CloseIdleConnections()
			return errors.Join(err, ctx.Err())
		case <-tick.C:
		}
	}
	s.upstream.closeIdle(true)
	s.tr.CloseIdleConnections()
	return err
}

// newID returns a request id unique within this process and unlikely to
// repeat across edges: a random per-process prefix and a sequence.
func (s *Server) newID() string {
	seq := strconv.FormatUint(s.idSeq.Add(1), 16)
	if len(seq) < 8 {
		seq = "00000000"[len(seq):] + seq
	}
	return s.idPrefix + "-" + seq
}

// identify returns the client's principal: from Proxy-Authorization when
// present (wrong credentials are refused even from trusted networks),
// otherwise from the client's network. ok=false means 407.
func (s *Server) identify(r *http.Request, client netip.Addr) (*policies.Principal, bool) {
	var auth []byte
	if h := r.Header.Get("Proxy-Authorization"); h != "" {
		auth = []byte(h)
	}
	return s.identifyHeader(auth, client)
}

// policyBypass lists the policy's bypass-list hosts (sent DIRECT by PAC).
func (s *Server) policyBypass() []string {
	c := s.engine.Current()
	if c == nil || c.Policy() == nil {
		return nil
	}
	return c.Policy().BypassHosts()
}

// clientLocation is the policy location of a client address, "" if none.
func (s *Server) clientLocation(ip netip.Addr) string {
	if p, ok := s.engine.ClientPrincipal(ip); ok && p != nil {
		return p.Location
	}
	return ""
}

// decide fills ex with the engine's decision and observes its latency.
func (s *Server) decide(ex *exchange, host, path string, dest netip.Addr) policies.Decision {
	t0 := time.Now()
	req := policies.Request{
		Time:      t0,
		ClientIP:  ex.clientIP,
		Principal: ex.principal,
		Protocol:  ex.proto,
		Host:      host,
		Path:      path,
		DestIP:    dest,
	}
	d, v := s.engine.Check(&req)
	s.m.decision.Observe(time.Since(t0).Seconds())
	ex.decided, ex.decision, ex.verdict = true, d, v
	ex.host, ex.path = host, path
	return d
}

// warnTTL is how long a continue is remembered for decision d.
func (s *Server) warnTTL(d policies.Decision) time.Duration {
	if d.WarnTTLSeconds > 0 {
		return time.Duration(d.WarnTTLSeconds) * time.Second
	}
	return s.cfg.WarnTTL
}

func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func stripPort(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

func upstreamRoots(files []string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("proxy: upstream_ca_files: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("proxy: upstream_ca_files: %s: no PEM certificates", f)
		}
	}
	return pool, nil
}
