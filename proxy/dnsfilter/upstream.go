package dnsfilter

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// upstreamKind is the transport of one upstream resolver.
type upstreamKind uint8

const (
	kindUDP upstreamKind = iota // UDP, TCP when the answer is truncated
	kindTCP
	kindTLS   // DNS over TLS, RFC 7858
	kindHTTPS // DNS over HTTPS, RFC 8484
)

var kindNames = [...]string{"udp", "tcp", "tls", "https"}

func (k upstreamKind) String() string { return kindNames[k] }

// maxUpstreams bounds Config.Upstreams so failover order fits on the stack.
const maxUpstreams = 16

// upstream is one configured resolver with its health state.
type upstream struct {
	name string // as configured; a bounded metric label
	kind upstreamKind
	addr string // host:port (udp, tcp, tls)
	url  string // https
	sni  string // tls server name

	udp, tcp *dns.Client
	http     *http.Client
	// udpConns and tcpConns keep connections between queries: a UDP
	// socket answers a bounded number of queries (so the source port
	// still changes often), a TCP or TLS connection is kept while idle
	// for less than streamIdle.
	udpConns, tcpConns connPool
	// mux sends UDP clients' cache misses (kind udp only; nil otherwise).
	mux *udpMux

	healthy atomic.Bool
	fails   atomic.Int32
	rtt     atomic.Int64 // smoothed round-trip time, ns; 0 = not measured yet
}

// parseUpstream parses one Config.Upstreams entry (see there for forms).
func parseUpstream(s string) (*upstream, error) {
	u := &upstream{name: s}
	rest := s
	switch {
	case strings.HasPrefix(s, "https://"):
		pu, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %w", s, err)
		}
		if pu.Host == "" {
			return nil, fmt.Errorf("upstream %q: no host", s)
		}
		u.kind, u.url = kindHTTPS, s
		return u, nil
	case strings.HasPrefix(s, "udp://"):
		u.kind, rest = kindUDP, s[len("udp://"):]
	case strings.HasPrefix(s, "tcp://"):
		u.kind, rest = kindTCP, s[len("tcp://"):]
	case strings.HasPrefix(s, "tls://"):
		u.kind, rest = kindTLS, s[len("tls://"):]
		if i := strings.IndexByte(rest, '#'); i >= 0 {
			rest, u.sni = rest[:i], rest[i+1:]
			if u.sni == "" {
				return nil, fmt.Errorf("upstream %q: empty TLS server name after #", s)
			}
		}
	case strings.Contains(s, "://"):
		return nil, fmt.Errorf("upstream %q: scheme is not udp, tcp, tls or https", s)
	}
	port := "53"
	if u.kind == kindTLS {
		port = "853"
	}
	host, p, err := net.SplitHostPort(rest)
	if err != nil {
		// No port: the whole rest is the host (IPv6 may be bracketed).
		host, p = strings.TrimSuffix(strings.TrimPrefix(rest, "["), "]"), port
	}
	if host == "" {
		return nil, fmt.Errorf("upstream %q: no host", s)
	}
	if strings.ContainsAny(host, "/#?@ ") {
		return nil, fmt.Errorf("upstream %q: bad host %q", s, host)
	}
	u.addr = net.JoinHostPort(host, p)
	if u.kind == kindTLS && u.sni == "" {
		u.sni = host
	}
	return u, nil
}

// setup builds the clients of u.
func (u *upstream) setup(udpSize int, timeout time.Duration, tlsConf *tls.Config) {
	u.healthy.Store(true)
	u.udpConns = connPool{maxUses: udpMaxUses, maxIdle: udpIdle, maxConns: poolMaxIdle}
	u.tcpConns = connPool{maxUses: streamUses, maxIdle: streamIdle, maxConns: poolMaxIdle}
	switch u.kind {
	case kindUDP:
		u.udp = &dns.Client{Net: "udp", UDPSize: uint16(udpSize), Timeout: timeout}
		u.tcp = &dns.Client{Net: "tcp", Timeout: timeout}
	case kindTCP:
		u.tcp = &dns.Client{Net: "tcp", Timeout: timeout}
	case kindTLS:
		c := tlsConf.Clone()
		c.ServerName = u.sni
		u.tcp = &dns.Client{Net: "tcp-tls", Timeout: timeout, TLSConfig: c}
	case kindHTTPS:
		tr := &http.Transport{
			TLSClientConfig:     tlsConf.Clone(),
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: timeout,
			Proxy:               nil, // never proxy-from-environment
			DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
		}
		u.http = &http.Client{Transport: tr, Timeout: timeout}
	}
}

// exchange sends m to u once. The answer is checked against the question.
func (u *upstream) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	var (
		r   *dns.Msg
		err error
	)
	switch u.kind {
	case kindUDP:
		r, err = u.exchangeConn(ctx, u.udp, &u.udpConns, m)
		if err == nil && r.Truncated {
			r, err = u.exchangeConn(ctx, u.tcp, &u.tcpConns, m)
		}
	case kindTCP, kindTLS:
		r, err = u.exchangeConn(ctx, u.tcp, &u.tcpConns, m)
	case kindHTTPS:
		r, err = u.exchangeHTTPS(ctx, m)
	}
	return u.checked(m, r, err)
}

// exchangeTCP sends m to u over TCP (u.tcp: kinds udp, tcp and tls).
func (u *upstream) exchangeTCP(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	if u.tcp == nil {
		return nil, fmt.Errorf("dnsfilter: upstream %s: no TCP client", u.name)
	}
	r, err := u.exchangeConn(ctx, u.tcp, &u.tcpConns, m)
	return u.checked(m, r, err)
}

// checked checks an answer r to m against m's question.
func (u *upstream) checked(m, r *dns.Msg, err error) (*dns.Msg, error) {
	if err != nil {
		return nil, fmt.Errorf("dnsfilter: upstream %s: %w", u.name, err)
	}
	if len(r.Question) != 1 || len(m.Question) != 1 ||
		r.Question[0].Qtype != m.Question[0].Qtype || r.Question[0].Qclass != m.Question[0].Qclass ||
		!strings.EqualFold(r.Question[0].Name, m.Question[0].Name) {
		return nil, fmt.Errorf("dnsfilter: upstream %s: %w", u.name, ErrBadAnswer)
	}
	return r, nil
}

// exchangeConn sends m over a pooled connection of c. A kept connection
// the upstream closed meanwhile gets one retry on a fresh one.
func (u *upstream) exchangeConn(ctx context.Context, c *dns.Client, p *connPool, m *dns.Msg) (*dns.Msg, error) {
	for attempt := 0; ; attempt++ {
		pc := p.get(time.Now())
		reused := pc != nil
		if pc == nil {
			co, err := c.DialContext(ctx, u.addr)
			if err != nil {
				return nil, err
			}
			pc = &pooledConn{co: co}
		}
		r, _, err := c.ExchangeWithConnContext(ctx, m, pc.co)
		if err != nil {
			_ = pc.co.Close()
			if reused && attempt == 0 && ctx.Err() == nil {
				continue
			}
			return nil, err
		}
		pc.uses++
		p.put(pc, time.Now())
		return r, nil
	}
}

// connPool holds idle connections to one upstream.
type connPool struct {
	mu       sync.Mutex
	idle     []*pooledConn
	maxUses  int           // close after this many queries
	maxIdle  time.Duration // close when idle longer
	maxConns int           // idle connections kept
}

type pooledConn struct {
	co    *dns.Conn
	uses  int
	since time.Time // idle since
}

// Connection reuse bounds.
const (
	udpMaxUses  = 64
	udpIdle     = 30 * time.Second
	streamUses  = 1000
	streamIdle  = 5 * time.Second
	poolMaxIdle = 64
)

func (p *connPool) get(now time.Time) *pooledConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		pc := p.idle[n-1]
		p.idle = p.idle[:n-1]
		if now.Sub(pc.since) < p.maxIdle {
			return pc
		}
		_ = pc.co.Close()
	}
	return nil
}

func (p *connPool) put(pc *pooledConn, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pc.uses >= p.maxUses || len(p.idle) >= p.maxConns {
		_ = pc.co.Close()
		return
	}
	pc.since = now
	p.idle = append(p.idle, pc)
}

// closeAll closes the idle connections.
func (p *connPool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pc := range p.idle {
		_ = pc.co.Close()
	}
	p.idle = nil
}

func (u *upstream) exchangeHTTPS(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	id := m.Id
	m.Id = 0 // RFC 8484 4.1: use ID 0 for cache friendliness
	wire, err := m.Pack()
	m.Id = id
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.url, bytes.NewReader(wire))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", dohMediaType)
	req.Header.Set("Accept", dohMediaType)
	resp, err := u.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != dohMediaType {
		return nil, fmt.Errorf("%w: status %d, content type %q", ErrUpstreamStatus, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, dns.MaxMsgSize+1))
	if err != nil {
		return nil, err
	}
	r := new(dns.Msg)
	if err := r.Unpack(body); err != nil {
		return nil, err
	}
	r.Id = id
	return r, nil
}

// observe records the outcome of one attempt: three failures in a row mark
// u unhealthy until a success (an answer or a health probe).
func (u *upstream) observe(rtt time.Duration, err error) {
	if err != nil {
		if u.fails.Add(1) >= 3 {
			u.healthy.Store(false)
		}
		return
	}
	u.fails.Store(0)
	u.healthy.Store(true)
	old := u.rtt.Load()
	if old == 0 {
		u.rtt.Store(int64(rtt))
		return
	}
	u.rtt.Store(old - old/4 + int64(rtt)/4) // EWMA, weight 1/4
}

// pool is the set of upstreams with the selection strategy.
type pool struct {
	list     []*upstream
	strategy string
	attempt  time.Duration
	next     atomic.Uint32
	metrics  *metrics
	logger   *slog.Logger
}

func newPool(cfg Config, tlsConf *tls.Config, m *metrics, logger *slog.Logger) (*pool, error) {
	p := &pool{strategy: cfg.Strategy, attempt: time.Duration(cfg.UpstreamTimeout), metrics: m, logger: logger}
	if len(cfg.Upstreams) > maxUpstreams {
		return nil, fmt.Errorf("dnsfilter: upstreams: %d configured, at most %d: %w", len(cfg.Upstreams), maxUpstreams, ErrInvalidConfig)
	}
	for _, s := range cfg.Upstreams {
		u, err := parseUpstream(s)
		if err != nil {
			return nil, fmt.Errorf("dnsfilter: %w: %w", err, ErrInvalidConfig)
		}
		u.setup(cfg.MaxUDPSize, p.attempt, tlsConf)
		p.list = append(p.list, u)
	}
	return p, nil
}

// order fills buf with the indexes of p.list in the order to try them:
// healthy upstreams first (by strategy), then the unhealthy ones so a
// recovered resolver is still found when all are marked down.
func (p *pool) order(buf *[maxUpstreams]uint8) []uint8 {
	n := len(p.list)
	out := buf[:0]
	start := 0
	if p.strategy == StrategyRoundRobin {
		start = int(p.next.Add(1)) % n
	}
	for pass := 0; pass < 2; pass++ {
		wantHealthy := pass == 0
		first := len(out)
		for k := 0; k < n; k++ {
			i := (start + k) % n
			if p.list[i].healthy.Load() == wantHealthy {
				out = append(out, uint8(i))
			}
		}
		if p.strategy == StrategyFastest {
			// insertion sort by smoothed RTT; n is tiny
			seg := out[first:]
			for a := 1; a < len(seg); a++ {
				for b := a; b > 0 && p.list[seg[b]].rtt.Load() < p.list[seg[b-1]].rtt.Load(); b-- {
					seg[b], seg[b-1] = seg[b-1], seg[b]
				}
			}
		}
	}
	return out
}

// resolve asks the upstreams in order (skip excepted, when not nil) until
// one answers or ctx is done. A SERVFAIL or REFUSED answer moves on to the
// next upstream but is returned when nothing better comes. It never waits
// past ctx's deadline.
func (p *pool) resolve(ctx context.Context, m *dns.Msg, skip *upstream) (*dns.Msg, *upstream, error) {
	var buf [maxUpstreams]uint8
	var (
		last     *dns.Msg
		lastFrom *upstream
		errs     []error
	)
	for _, i := range p.order(&buf) {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		u := p.list[i]
		if u == skip {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, p.attempt)
		start := time.Now()
		r, err := u.exchange(actx, m)
		rtt := time.Since(start)
		cancel()
		u.observe(rtt, err)
		p.metrics.upstreamDuration.WithLabelValues(u.name).Observe(rtt.Seconds())
		if err != nil {
			p.metrics.upstreamErrors.WithLabelValues(u.name).Inc()
			errs = append(errs, err)
			continue
		}
		if r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeRefused {
			last, lastFrom = r, u
			continue
		}
		return r, u, nil
	}
	if last != nil {
		return last, lastFrom, nil
	}
	if len(errs) == 0 {
		return nil, nil, fmt.Errorf("%w: no other upstream to try", ErrUpstreamsFailed)
	}
	return nil, nil, fmt.Errorf("%w: %w", ErrUpstreamsFailed, errors.Join(errs...))
}

// firstMux returns the multiplexer of the upstream to try first, or nil
// when that upstream is not a UDP one.
func (p *pool) firstMux() *udpMux {
	if len(p.list) == 1 {
		return p.list[0].mux
	}
	var buf [maxUpstreams]uint8
	return p.list[p.order(&buf)[0]].mux
}

// poll reads the upstream answers waiting on the multiplexers' sockets
// without blocking (the UDP reader r calls it after each batch).
func (p *pool) poll(r *udpReader) {
	for _, u := range p.list {
		if u.mux != nil {
			u.mux.poll(r)
		}
	}
}

// close releases the upstreams' idle connections and multiplexers.
func (p *pool) close() {
	for _, u := range p.list {
		if u.mux != nil {
			u.mux.close()
		}
		u.udpConns.closeAll()
		u.tcpConns.closeAll()
		if u.http != nil {
			u.http.CloseIdleConnections()
		}
	}
}

// healthLoop probes every upstream each interval until ctx is done.
func (p *pool) healthLoop(ctx context.Context, interval time.Duration, name string) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var wg sync.WaitGroup
		for _, u := range p.list {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.probe(ctx, u, name)
			}()
		}
		wg.Wait()
	}
}

// probe sends one health query to u; any well-formed answer counts as up.
func (p *pool) probe(ctx context.Context, u *upstream, name string) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeNS)
	m.SetEdns0(1232, false)
	actx, cancel := context.WithTimeout(ctx, p.attempt)
	defer cancel()
	start := time.Now()
	_, err := u.exchange(actx, m)
	if ctx.Err() != nil {
		return
	}
	wasHealthy := u.healthy.Load()
	if err != nil {
		u.fails.Add(1)
		u.healthy.Store(false)
		if wasHealthy {
			p.logger.WarnContext(ctx, "upstream down", logUpstream, u.name, logErr, err)
		}
	} else {
		u.observe(time.Since(start), nil)
		if !wasHealthy {
			p.logger.InfoContext(ctx, "upstream up", logUpstream, u.name)
		}
	}
	v := 0.0
	if u.healthy.Load() {
		v = 1
	}
	p.metrics.upstreamHealthy.WithLabelValues(u.name).Set(v)
}
