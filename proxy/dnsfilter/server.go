package dnsfilter

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"

	"github.com/cordon-gw/cordon/policies"
)

// Deps are the collaborators of a Server, handed in by cmd/cordon.
type Deps struct {
	// Engine identifies clients and decides on every name. Required.
	Engine *policies.Engine
	// Events receives one access event per query; nil records none.
	Events EventSink
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
	// RootCAs verifies DoT and DoH upstreams; nil means
	// Config.UpstreamCAFile, or the system roots when that is empty too.
	RootCAs *x509.CertPool
}

// Server is the DNS filter: UDP and TCP listeners, a DoH handler, the
// answer cache and the upstream pool. Safe for concurrent use.
type Server struct {
	cfg     Config
	eng     *policies.Engine
	events  EventSink
	logger  *slog.Logger
	metrics *metrics
	pool    *pool
	cache   *cache
	limiter *limiter // nil when rate limiting is disabled

	sinkV4, sinkV6 []net.IP
	filtered       map[string]bool

	// baseCtx parents every upstream query and background loop; cancel
	// ends them at Shutdown.
	baseCtx     context.Context
	cancel      context.CancelFunc
	prefetchSem chan struct{}
	wg          sync.WaitGroup
	inflight    atomic.Int64 // upstream resolutions in flight
	// maxTCPConns bounds the TCP connections served at once (more wait to
	// be accepted): maxTCPConns, lowered by tests.
	maxTCPConns int

	mu      sync.Mutex
	servers []*served
	closed  bool
}

// served is one running listener.
type served struct {
	serve    func() error
	shutdown func(ctx context.Context) error // graceful: stop reading, wait for in-flight answers
	close    func()                          // abrupt: close the socket
}

func servedUDP(u *udpServer) *served {
	return &served{
		serve: u.serve,
		shutdown: func(ctx context.Context) error {
			u.close()
			return u.wait(ctx)
		},
		close: u.close,
	}
}

func servedDNS(srv *dns.Server, c interface{ Close() error }) *served {
	return &served{
		serve:    srv.ActivateAndServe,
		shutdown: srv.ShutdownContext,
		close:    func() { _ = c.Close() },
	}
}

// prefetchMax bounds concurrent background refreshes.
const prefetchMax = 32

// maxTCPConns is how many TCP connections are served at once; more wait
// in the accept queue.
const maxTCPConns = 1000

// New validates cfg and builds a Server; it starts the upstream health
// checks (stopped by Shutdown) but no listener.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Engine == nil {
		return nil, ErrNoEngine
	}
	cfg = cfg.withDefaults()
	logger := deps.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("component", "dnsfilter")
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Server{
		cfg:         cfg,
		eng:         deps.Engine,
		events:      deps.Events,
		logger:      logger,
		prefetchSem: make(chan struct{}, prefetchMax),
		filtered:    make(map[string]bool, len(cfg.FilteredRules)),
		maxTCPConns: maxTCPConns,
	}
	for _, id := range cfg.FilteredRules {
		s.filtered[id] = true
	}
	v4, _ := parseAddrs(cfg.SinkholeIPv4, true)
	for _, a := range v4 {
		s.sinkV4 = append(s.sinkV4, net.IP(a.AsSlice()))
	}
	v6, _ := parseAddrs(cfg.SinkholeIPv6, false)
	for _, a := range v6 {
		s.sinkV6 = append(s.sinkV6, net.IP(a.AsSlice()))
	}
	maxEntries := cfg.Cache.MaxEntries
	if cfg.Cache.Disabled {
		maxEntries = 0
	}
	s.cache = newCache(maxEntries, cacheLimits{
		minTTL:    uint32(time.Duration(cfg.Cache.MinTTL) / time.Second),
		maxTTL:    uint32(time.Duration(cfg.Cache.MaxTTL) / time.Second),
		maxNegTTL: uint32(time.Duration(cfg.Cache.MaxNegativeTTL) / time.Second),
	}, func() { s.metrics.cacheEvictions.Inc() })
	s.metrics = newMetrics(reg, func() float64 { return float64(s.cache.len()) },
		func() float64 { return float64(s.inflight.Load()) })
	if !cfg.RateLimit.Disabled {
		s.limiter = newLimiter(cfg.RateLimit)
	}
	roots := deps.RootCAs
	if roots == nil && cfg.UpstreamCAFile != "" {
		r, err := LoadRootCAs(cfg.UpstreamCAFile)
		if err != nil {
			return nil, err
		}
		roots = r
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	p, err := newPool(cfg, tlsConf, s.metrics, logger)
	if err != nil {
		return nil, err
	}
	s.pool = p
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	for _, u := range p.list {
		if u.kind == kindUDP {
			u.mux = newUDPMux(s, u)
			u.mux.start()
		}
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.pool.healthLoop(s.baseCtx, time.Duration(cfg.HealthCheckInterval), cfg.HealthCheckName)
	}()
	return s, nil
}

// Serve answers DNS on udp and tcp (either may be nil) until Shutdown;
// then it returns ErrServerClosed. Serve owns both and closes them.
func (s *Server) Serve(udp net.PacketConn, tcp net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		if udp != nil {
			udp.Close()
		}
		if tcp != nil {
			tcp.Close()
		}
		return ErrServerClosed
	}
	var run []*served
	if uc, ok := udp.(*net.UDPConn); ok {
		run = append(run, servedUDP(newUDPServer(s, uc)))
	} else if udp != nil {
		run = append(run, servedDNS(s.dnsServer(udpHandler{s}, udp, nil), udp))
	}
	if tcp != nil {
		run = append(run, servedDNS(s.dnsServer(tcpHandler{s}, nil, netutil.LimitListener(tcp, s.maxTCPConns)), tcp))
	}
	s.servers = append(s.servers, run...)
	s.mu.Unlock()

	errc := make(chan error, len(run))
	for _, r := range run {
		go func() { errc <- r.serve() }()
	}
	var errs []error
	for range run {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
		if len(errs) == 1 && !s.isClosed() {
			// One listener failed: stop the other too.
			for _, r := range run {
				r.close()
			}
		}
	}
	if s.isClosed() {
		return ErrServerClosed
	}
	if len(errs) > 0 {
		return fmt.Errorf("dnsfilter: serve: %w", errors.Join(errs...))
	}
	return nil
}

// ListenAndServe listens on Config.Listen (UDP and TCP) and serves until
// ctx is done or Shutdown is called. It returns ErrServerClosed after a
// shutdown.
func (s *Server) ListenAndServe(ctx context.Context) error {
	udp, tcp, err := listenPair(s.cfg.Listen)
	if err != nil {
		return err
	}
	s.logger.InfoContext(ctx, "dns filter listening", logAddr, udp.LocalAddr().String(), logUpstreams, s.cfg.Upstreams)
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(sctx)
	})
	defer stop()
	return s.Serve(udp, tcp)
}

// listenPair listens on addr with UDP and TCP on the same port. With port
// 0, TCP takes the port UDP got, and a port whose TCP side is taken is
// given up for another (a few times).
func listenPair(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dnsfilter: listen %s: %w", addr, err)
	}
	tries := 1
	if port == "0" {
		tries = 10
	}
	var lastErr error
	for range tries {
		udp, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dnsfilter: listen udp %s: %w", addr, err)
		}
		_, got, _ := net.SplitHostPort(udp.LocalAddr().String())
		tcp, err := net.Listen("tcp", net.JoinHostPort(host, got))
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("dnsfilter: listen tcp %s: %w", addr, lastErr)
}

// Shutdown stops the listeners, waits for in-flight queries (until ctx is
// done), and stops health checks and prefetches.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	servers := s.servers
	s.servers = nil
	s.mu.Unlock()
	var errs []error
	for _, r := range servers {
		if err := r.shutdown(ctx); err != nil {
			// Not started yet, already stopped, or ctx done: closing the
			// socket makes the serve loop return.
			r.close()
		}
	}
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	s.pool.close()
	if len(errs) > 0 {
		return fmt.Errorf("dnsfilter: shutdown: %w", errors.Join(errs...))
	}
	return nil
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// readUDPSize is the read buffer of the UDP listener: queries are small,
// but EDNS options (cookies, padding) can take them past 512 bytes.
const readUDPSize = 4096

func (s *Server) dnsServer(h dns.Handler, pc net.PacketConn, ln net.Listener) *dns.Server {
	return &dns.Server{
		PacketConn:    pc,
		Listener:      ln,
		Handler:       h,
		UDPSize:       readUDPSize,
		ReadTimeout:   5 * time.Second,
		WriteTimeout:  5 * time.Second,
		MaxTCPQueries: 1000,
		MsgAcceptFunc: acceptQuery,
		MsgInvalidFunc: func(m []byte, err error) {
			s.metrics.invalid.Inc()
		},
	}
}

// acceptQuery is the early header check: responses are dropped silently
// (no reflection), other opcodes get NOTIMP, and a question count other
// than one gets FORMERR.
func acceptQuery(dh dns.Header) dns.MsgAcceptAction {
	const qrBit = 1 << 15
	if dh.Bits&qrBit != 0 {
		return dns.MsgIgnore
	}
	if opcode := int(dh.Bits>>11) & 0xF; opcode != dns.OpcodeQuery {
		return dns.MsgRejectNotImplemented
	}
	if dh.Qdcount != 1 || dh.Ancount > 0 || dh.Nscount > 0 || dh.Arcount > 2 {
		return dns.MsgReject
	}
	return dns.MsgAccept
}

type udpHandler struct{ s *Server }

func (h udpHandler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) { h.s.serveWire(w, r, transportUDP) }

type tcpHandler struct{ s *Server }

func (h tcpHandler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) { h.s.serveWire(w, r, transportTCP) }

func (s *Server) serveWire(w dns.ResponseWriter, r *dns.Msg, t transport) {
	q := getQuery()
	q.start = time.Now()
	q.msg = r
	q.transport = t
	q.client = addrOf(w.RemoteAddr())
	s.handle(q)
	if q.out != nil {
		if _, err := w.Write(q.out); err != nil && s.logger.Enabled(s.baseCtx, slog.LevelDebug) {
			s.logger.DebugContext(s.baseCtx, "write answer", logClient, q.client, logErr, err)
		}
		s.record(q)
	}
	putQuery(q)
}

func addrOf(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.UDPAddr:
		return v.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return v.AddrPort().Addr().Unmap()
	}
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// LoadRootCAs reads a PEM bundle for Deps.RootCAs (private DoT/DoH
// upstreams).
func LoadRootCAs(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dnsfilter: root CAs: %w", err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("dnsfilter: root CAs %s: no PEM certificates", path)
	}
	return p, nil
}

// Interface guards.
var (
	_ dns.Handler = udpHandler{}
	_ dns.Handler = tcpHandler{}
)
