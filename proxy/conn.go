package proxy

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// recorder wraps the client's ResponseWriter to learn the status and body
// size goproxy wrote, and to keep the bytes the server buffered past a
// CONNECT head when goproxy hijacks the connection.
type recorder struct {
	http.ResponseWriter
	ex      *exchange
	status  int
	written int64
	// hijacked is the client connection taken over for an upgrade; the
	// edge handler closes it when goproxy is done with it.
	hijacked net.Conn
	timeouts connTimeouts
}

// connTimeouts bound connections goproxy relays itself.
type connTimeouts struct {
	handshake time.Duration // first read of a decrypted tunnel (ClientHello)
	idle      time.Duration // between reads of requests in a decrypted tunnel
	tunnel    time.Duration // reads and writes of upgraded connections; writes of decrypted tunnels
}

// deadlineConn sets a read deadline before every Read (first for the very
// first one) and a write deadline before every Write, so a peer that goes
// silent or stops reading cannot hold the connection. Zero disables one.
type deadlineConn struct {
	net.Conn
	first, read, write time.Duration
	started            bool
	// timedOut is sticky: goproxy retries a failed first read as plain
	// HTTP, which must not restart the clock.
	timedOut error
}

func (c *deadlineConn) Read(p []byte) (int, error) {
	if c.timedOut != nil {
		return 0, c.timedOut
	}
	d := c.read
	if !c.started {
		d, c.started = c.first, true
	}
	if d > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(d))
	}
	n, err := c.Conn.Read(p)
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		c.timedOut = err
	}
	return n, err
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	if c.write > 0 {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(c.write))
	}
	return c.Conn.Write(p)
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.written += int64(n)
	return n, err
}

// ReadFrom lets io.Copy use the server's pooled copy path instead of a
// fresh 32 KiB buffer per response.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{r.ResponseWriter}, src)
	}
	r.written += n
	return n, err
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("proxy: connection cannot be hijacked")
	}
	c, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	if n := rw.Reader.Buffered(); n > 0 {
		b, _ := rw.Reader.Peek(n)
		r.ex.hijackBuf = append([]byte(nil), b...)
	}
	if r.status == 0 {
		r.status = http.StatusSwitchingProtocols
	}
	r.hijacked = c
	switch {
	case r.ex.mitm:
		// goproxy handshakes and reads decrypted requests without any
		// deadline: bound the ClientHello, then idle between reads.
		c = &deadlineConn{Conn: c, first: r.timeouts.handshake, read: r.timeouts.idle, write: r.timeouts.tunnel}
	case r.ex.method != http.MethodConnect:
		// A plain-HTTP upgrade (WebSocket) relayed by goproxy.
		c = &deadlineConn{Conn: c, first: r.timeouts.tunnel, read: r.timeouts.tunnel, write: r.timeouts.tunnel}
	}
	return c, rw, nil
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// limitListener counts client connections, refuses a client's connection
// beyond the per-client limit with 429, and can close every connection it
// handed out (hijacked ones included) at shutdown.
type limitListener struct {
	net.Listener
	perClient int
	m         *metrics
	log       *slog.Logger

	mu       sync.Mutex
	byClient map[netip.Addr]int
	conns    map[*limitConn]struct{}
}

func newLimitListener(ln net.Listener, perClient int, m *metrics, log *slog.Logger) *limitListener {
	return &limitListener{
		Listener:  ln,
		perClient: perClient,
		m:         m,
		log:       log,
		byClient:  map[netip.Addr]int{},
		conns:     map[*limitConn]struct{}{},
	}
}

const tooManyResponse = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 45\r\n\r\nCordon: too many connections from this client"

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var ip netip.Addr
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			ip = ap.Addr().Unmap()
		}
		l.mu.Lock()
		if l.perClient > 0 && l.byClient[ip] >= l.perClient {
			l.mu.Unlock()
			l.m.refused.WithLabelValues("limit").Inc()
			go func() {
				_ = c.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = io.WriteString(c, tooManyResponse)
				_ = c.Close()
			}()
			continue
		}
		l.byClient[ip]++
		lc := &limitConn{Conn: c, l: l, ip: ip}
		l.conns[lc] = struct{}{}
		l.mu.Unlock()
		l.m.activeConns.Inc()
		return lc, nil
	}
}

func (l *limitListener) release(c *limitConn) {
	l.mu.Lock()
	delete(l.conns, c)
	if l.byClient[c.ip]--; l.byClient[c.ip] <= 0 {
		delete(l.byClient, c.ip)
	}
	l.mu.Unlock()
	l.m.activeConns.Dec()
}

func (l *limitListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

func (l *limitListener) closeAll() {
	l.mu.Lock()
	cs := make([]*limitConn, 0, len(l.conns))
	for c := range l.conns {
		cs = append(cs, c)
	}
	l.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

// limitConn releases its slot once, on the first Close.
type limitConn struct {
	net.Conn
	l    *limitListener
	ip   netip.Addr
	once sync.Once
	// state is connActive, connIdle (waiting for a request: Shutdown may
	// close it) or connClosedIdle.
	state atomic.Int32
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c) })
	return err
}

// NetConn returns the accepted connection (the TCP socket tunnels splice).
func (c *limitConn) NetConn() net.Conn { return c.Conn }

// CloseWrite half-closes when the underlying connection can.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// goproxyLogger sends goproxy's printf-style messages to slog at debug.
type goproxyLogger struct{ log *slog.Logger }

func (g goproxyLogger) Printf(format string, v ...any) {
	if g.log.Enabled(context.Background(), slog.LevelDebug) {
		g.log.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)), logSource, "goproxy")
	}
}

// parseBasic decodes "Basic base64(user:password)".
func parseBasic(h string) (user, pass string, ok bool) {
	scheme, cred, found := strings.Cut(strings.TrimSpace(h), " ")
	if !found || !strings.EqualFold(scheme, "basic") {
		return "", "", false
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", false
	}
	user, pass, ok = strings.Cut(string(b), ":")
	if !ok || user == "" {
		return "", "", false
	}
	return user, pass, true
}
