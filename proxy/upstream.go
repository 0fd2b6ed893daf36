package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"time"
)

// upstreamKey names a pool of kept-alive origin connections: the checked
// address they were dialed to, and for TLS the server name verified.
type upstreamKey struct {
	addr netip.AddrPort
	sni  string // "" for plain HTTP
}

// upConn is one origin connection of the front end.
type upConn struct {
	key  upstreamKey
	c    net.Conn     // *net.TCPConn or *tls.Conn
	tcp  *net.TCPConn // nil for TLS (no splice)
	r    wireReader
	head head      // the last response head, viewing hbuf
	hbuf []byte    // its bytes
	wbuf []byte    // request body output buffer
	idle time.Time // when it went back to the pool
	// reused: the connection served a request before (a failure to send
	// or an immediate EOF may be the origin closing it while idle).
	reused bool
}

// upstreamPool keeps idle origin connections per checked address, at most
// perHost each, LIFO (the most recently used is the least likely to have
// been closed by the origin), and closes those idle longer than idle.
type upstreamPool struct {
	perHost int
	total   int
	idle    time.Duration

	mu      sync.Mutex
	hosts   map[upstreamKey][]*upConn
	count   int
	janitor *time.Timer
	closed  bool
}

func newUpstreamPool(perHost, total int, idle time.Duration) *upstreamPool {
	return &upstreamPool{perHost: perHost, total: total, idle: idle, hosts: map[upstreamKey][]*upConn{}}
}

// get returns an idle connection for key, or nil.
func (p *upstreamPool) get(key upstreamKey) *upConn {
	p.mu.Lock()
	list := p.hosts[key]
	if n := len(list); n > 0 {
		uc := list[n-1]
		list[n-1] = nil
		p.hosts[key] = list[:n-1]
		p.count--
		p.mu.Unlock()
		return uc
	}
	p.mu.Unlock()
	return nil
}

// put returns a connection whose last response was read completely; it
// is closed when the pool for its address is full.
func (p *upstreamPool) put(uc *upConn) {
	if p.perHost <= 0 || p.idle <= 0 {
		_ = uc.c.Close()
		return
	}
	uc.reused = true
	uc.idle = time.Now()
	p.mu.Lock()
	list := p.hosts[uc.key]
	if p.closed || len(list) >= p.perHost || p.count >= p.total {
		p.mu.Unlock()
		_ = uc.c.Close()
		return
	}
	p.hosts[uc.key] = append(list, uc)
	p.count++
	if p.janitor == nil {
		p.janitor = time.AfterFunc(p.idle/2, p.sweep)
	}
	p.mu.Unlock()
}

// sweep closes connections idle longer than the idle timeout.
func (p *upstreamPool) sweep() {
	now := time.Now()
	var stale []*upConn
	p.mu.Lock()
	for k, list := range p.hosts {
		keep := list[:0]
		for _, uc := range list {
			if now.Sub(uc.idle) >= p.idle {
				stale = append(stale, uc)
				continue
			}
			keep = append(keep, uc)
		}
		for i := len(keep); i < len(list); i++ {
			list[i] = nil
		}
		if len(keep) == 0 {
			delete(p.hosts, k)
		} else {
			p.hosts[k] = keep
		}
	}
	p.count -= len(stale)
	if p.count > 0 && !p.closed {
		p.janitor.Reset(p.idle / 2)
	} else {
		p.janitor = nil
	}
	p.mu.Unlock()
	for _, uc := range stale {
		_ = uc.c.Close()
	}
}

// closeIdle closes every idle connection; with final, the pool keeps no
// more connections afterwards (shutdown).
func (p *upstreamPool) closeIdle(final bool) {
	p.mu.Lock()
	hosts := p.hosts
	p.hosts = map[upstreamKey][]*upConn{}
	p.count = 0
	if final {
		p.closed = true
	}
	p.mu.Unlock()
	for _, list := range hosts {
		for _, uc := range list {
			_ = uc.c.Close()
		}
	}
}

// dialUpstream connects to exactly the checked address of key (TLS with
// the server name verified when key.sni is set).
func (s *Server) dialUpstream(ctx context.Context, key upstreamKey) (*upConn, error) {
	c, err := s.guard.dialAddrs(ctx, []netip.Addr{key.addr.Addr()}, key.addr.Port())
	if err != nil {
		return nil, err
	}
	uc := &upConn{key: key, c: c, tcp: tcpConnOf(c)}
	if key.sni != "" {
		tc := tls.Client(c, s.upstreamTLS(key.sni))
		hctx, cancel := context.WithTimeout(ctx, s.cfg.TLSHandshakeTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = c.Close()
			return nil, err
		}
		uc.c, uc.tcp = tc, nil
	}
	uc.r.reset(uc.c, upstreamReadBuffer)
	return uc, nil
}

// upstreamReadBuffer is the read buffer of an origin connection: a
// response head and a small body arrive in one read.
const upstreamReadBuffer = 8 << 10

func (s *Server) upstreamTLS(serverName string) *tls.Config {
	cfg := s.tr.TLSClientConfig.Clone()
	cfg.ServerName = serverName
	cfg.NextProtos = []string{"http/1.1"}
	return cfg
}
