package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

// The front end serves client connections itself (no net/http server):
// one goroutine per connection reads request heads with the strict parser
// of wire.go into per-connection buffers, and
//   - absolute-form http:// (and https://) requests are decided and
//     forwarded over pooled origin connections (forward.go), bodies copied
//     with splice(2) where both sockets are TCP;
//   - CONNECT is decided and spliced (connect.go, tunnel.go), or handed to
//     goproxy for TLS inspection (bridge.go);
//   - origin-form requests to the proxy port (PAC, WPAD, the review form)
//     go to the net/http handlers through a small adapter.
// Identity, loop detection, pages, events and metrics are the same code
// the inspected (goproxy) path uses.

// clientConn is one client connection.
type clientConn struct {
	s   *Server
	c   net.Conn     // as accepted: closing it releases the per-client slot
	lc  *limitConn   // c, for the shutdown state
	tcp *net.TCPConn // the socket under c, nil when not TCP
	ip  netip.Addr

	r    wireReader
	req  head
	hbuf []byte // the current request head (req's fields view it)
	out  []byte // scratch for heads written to either side
	iov  [3][]byte
	bufs net.Buffers
	lr   io.LimitedReader
	// requests served on this connection
	n int
	// the current request's host and port (absolute-form)
	host    string
	port    uint16
	hostOK  bool
	addrBuf [1]netip.Addr // an address literal's resolution
}

const clientReadBuffer = 4 << 10

var clientConnPool = sync.Pool{New: func() any { return &clientConn{} }}

// Connection states for Shutdown (limitConn.state).
const (
	connActive int32 = iota
	connIdle
	connClosedIdle
)

// serveAccepted runs the accept loop of one listener.
func (s *Server) serveAccepted(ll *limitListener) error {
	var backoff time.Duration
	for {
		c, err := ll.Accept()
		if err != nil {
			if s.isClosing() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporaryAccept(err) {
				// Out of file descriptors and the like: wait, as net/http.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", logErr, err)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		go s.serveConn(c)
	}
}

func isTemporaryAccept(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// serveConn serves requests on c until the client or the proxy ends the
// connection.
func (s *Server) serveConn(c net.Conn) {
	cc := clientConnPool.Get().(*clientConn)
	cc.s, cc.c, cc.n = s, c, 0
	cc.lc, _ = c.(*limitConn)
	cc.tcp = tcpConnOf(c)
	if cc.lc != nil {
		cc.ip = cc.lc.ip
	} else if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		cc.ip = ap.Addr().Unmap()
	}
	cc.r.reset(c, clientReadBuffer)
	keep := false
	defer func() {
		if v := recover(); v != nil {
			s.m.panics.Inc()
			s.log.Error("handler panic", logPanic, v)
			_, _ = io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: 21\r\n\r\ninternal proxy error\n")
			keep = false
		}
		if !keep {
			_ = c.Close()
		}
		cc.release()
	}()
	for {
		if !cc.readRequest() {
			return
		}
		switch cc.serve() {
		case keepConn:
			cc.n++
			continue
		case closeConn:
			return
		case handedOff:
			// A tunnel or goproxy owns the connection now.
			keep = true
			return
		}
	}
}

// release returns the connection's buffers to the pool; a connection
// whose buffers may still be referenced (handed off) drops them.
func (cc *clientConn) release() {
	cc.s, cc.c, cc.lc, cc.tcp = nil, nil, nil, nil
	cc.r.rd = nil
	if cap(cc.r.buf) > 64<<10 || cap(cc.hbuf) > 64<<10 {
		return // grown for a large head: let it go
	}
	cc.req.reset()
	clientConnPool.Put(cc)
}

type outcome uint8

const (
	keepConn outcome = iota
	closeConn
	handedOff
)

// readRequest waits for the next request head: the idle timeout between
// requests, the read-header timeout once a head has started.
func (cc *clientConn) readRequest() bool {
	s := cc.s
	if s.isClosing() {
		return false
	}
	if cc.r.buffered() == 0 {
		wait := s.cfg.ReadHeaderTimeout
		if cc.n > 0 {
			wait = s.cfg.IdleTimeout
		}
		if cc.lc != nil && !cc.lc.state.CompareAndSwap(connActive, connIdle) {
			return false
		}
		if wait > 0 {
			_ = cc.c.SetReadDeadline(time.Now().Add(wait))
		}
		err := cc.r.fill(clientReadBuffer)
		if cc.lc != nil && !cc.lc.state.CompareAndSwap(connIdle, connActive) {
			return false // Shutdown closed it while idle
		}
		if err != nil {
			return false
		}
	}
	if headEnd(cc.r.bytes(), 0) < 0 && cc.n > 0 && s.cfg.ReadHeaderTimeout > 0 {
		// The head is still arriving: bound the rest of it.
		_ = cc.c.SetReadDeadline(time.Now().Add(s.cfg.ReadHeaderTimeout))
	}
	var err error
	cc.hbuf, err = cc.r.readHead(cc.hbuf, s.cfg.MaxHeaderBytes)
	if err == nil {
		err = parseRequestHead(&cc.req, cc.hbuf)
	}
	if err != nil {
		cc.badRequest(err)
		return false
	}
	return true
}

// badRequest answers an unreadable head (nothing for a client that went
// away or timed out before sending one), and the connection closes: after
// a framing error nothing on it can be trusted.
func (cc *clientConn) badRequest(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, errHeadTooLarge):
		cc.s.m.refused.WithLabelValues("bad_request").Inc()
		cc.out = closingText(cc.out[:0], http.StatusRequestHeaderFieldsTooLarge, "request head larger than the proxy accepts (max_header_bytes)")
	case errors.As(err, &ne) && ne.Timeout():
		if cc.r.buffered() == 0 {
			return
		}
		cc.out = closingText(cc.out[:0], http.StatusRequestTimeout, "request head timed out")
	case errors.Is(err, errBadHead), errors.Is(err, errBadFraming), errors.Is(err, errBadChunk):
		cc.s.m.refused.WithLabelValues("bad_request").Inc()
		cc.out = closingText(cc.out[:0], http.StatusBadRequest, "bad request: "+refusalReason(err))
	default:
		return
	}
	_, _ = cc.c.Write(cc.out)
}

// closingText appends a short text response that ends the connection:
// "Cordon: <text>".
func closingText(b []byte, status int, text string) []byte {
	b = appendStatusLine(b, status, http.StatusText(status))
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len("Cordon: \n")+len(text)), 10)
	b = append(b, "\r\n\r\nCordon: "...)
	b = append(b, text...)
	return append(b, '\n')
}

func (s *Server) isClosing() bool { return s.closingF.Load() }

// serve handles one request head: the edge checks of every request, then
// CONNECT, proxying, or the proxy's own pages.
func (cc *clientConn) serve() outcome {
	s, h := cc.s, &cc.req
	scheme, authority, rest, abs := splitAbsolute(h.target)
	isConnect := asciiEqualFold(h.method, http.MethodConnect)
	if !isConnect && !abs {
		return cc.serveLocal()
	}
	ex := &exchange{id: s.newID(), start: time.Now(), clientIP: cc.ip, method: methodString(h.method)}
	if isConnect {
		ex.proto = policies.ProtoHTTPS
		ex.host = normalizeHost(stripPort(string(h.target)))
	} else {
		defPort := uint16(80)
		if asciiEqualFold(scheme, "https") {
			ex.proto, defPort = policies.ProtoHTTPS, 443
		}
		cc.host, cc.port, cc.hostOK = s.hosts.split(authority, defPort)
		ex.host = cc.host
		ex.path = decodedPath(rest)
	}

	// 1. Loops first: a request that already passed this proxy must not be
	// decided or forwarded again.
	if cc.viaLoop() {
		s.m.refused.WithLabelValues("loop").Inc()
		ex.refusal, ex.status = "loop", http.StatusLoopDetected
		return cc.finishText(ex, http.StatusLoopDetected, "Cordon: forwarding loop detected\n", "")
	}
	// 2. Identity: credentials when offered (failed logins are rate
	// limited per address), otherwise the client network. Never an open
	// proxy.
	auth := h.get("Proxy-Authorization")
	if auth != nil && s.authLim.blocked(cc.ip) {
		s.m.refused.WithLabelValues("auth_rate").Inc()
		ex.refusal, ex.status = "auth_rate", http.StatusTooManyRequests
		return cc.finishText(ex, http.StatusTooManyRequests, "Cordon: too many failed logins from this address, try again in a minute\n", "Retry-After: 60\r\n")
	}
	p, ok := s.identifyHeader(auth, cc.ip)
	if !ok {
		if auth != nil {
			s.authLim.failed(cc.ip)
		}
		s.m.refused.WithLabelValues("auth").Inc()
		ex.refusal, ex.status = "auth", http.StatusProxyAuthRequired
		return cc.finishText(ex, http.StatusProxyAuthRequired, "Cordon: proxy authentication required\n",
			"Proxy-Authenticate: Basic realm=\"Cordon\", charset=\"UTF-8\"\r\n")
	}
	ex.principal = p
	if isConnect {
		return cc.serveConnect(ex)
	}
	return cc.forward(ex, scheme, authority, rest)
}

// identifyHeader is identify for a raw Proxy-Authorization value (nil:
// none sent).
func (s *Server) identifyHeader(auth []byte, client netip.Addr) (*policies.Principal, bool) {
	if auth != nil {
		user, pass, ok := parseBasic(string(auth))
		if !ok {
			return nil, false
		}
		p, ok := s.engine.Authenticate(user, pass)
		if !ok {
			return nil, false
		}
		return s.engine.WithLocation(p, client), true
	}
	return s.engine.ClientPrincipal(client)
}

// viaLoop reports whether the request already passed a proxy with this
// pseudonym.
func (cc *clientConn) viaLoop() bool {
	via := cc.s.cfg.Via
	if via == "off" {
		return false
	}
	for i := range cc.req.fields {
		f := &cc.req.fields[i]
		if !asciiEqualFold(f.name, "Via") {
			continue
		}
		for hop := range tokens(f.value) {
			// "1.1 name [comment]": the second word.
			sp := bytes.IndexAny(hop, " \t")
			if sp < 0 {
				continue
			}
			pseudo := trimOWS(hop[sp+1:])
			if e := bytes.IndexAny(pseudo, " \t"); e >= 0 {
				pseudo = pseudo[:e]
			}
			if asciiEqualFold(pseudo, via) {
				return true
			}
		}
	}
	return false
}

// finishText answers the request with a short text response (refusals
// before any decision) and emits the event. extra are header lines.
func (cc *clientConn) finishText(ex *exchange, status int, body, extra string) outcome {
	b := appendStatusLine(cc.out[:0], status, http.StatusText(status))
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\n"...)
	b = append(b, extra...)
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n"...)
	oc := cc.afterResponse()
	if oc == closeConn {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	if !asciiEqualFold(cc.req.method, http.MethodHead) {
		b = append(b, body...)
	}
	cc.out = b
	ex.down.Store(int64(len(body)))
	_, err := cc.c.Write(b)
	cc.s.finish(ex)
	if err != nil {
		return closeConn
	}
	return oc
}

// afterResponse says whether the connection may serve another request
// once the current one is answered without its body being read.
func (cc *clientConn) afterResponse() outcome {
	h := &cc.req
	if h.close || h.chunked || h.contentLength > 0 {
		// An unread request body would be taken for the next request.
		return closeConn
	}
	return keepConn
}

// writeResponse sends a response the proxy made itself (page, form
// answer, CONNECT refusal) and closes its body. closing adds
// Connection: close.
func (cc *clientConn) writeResponse(resp *http.Response, closing bool) error {
	var buf bytes.Buffer
	resp.Close = closing || resp.Close
	resp.ProtoMajor, resp.ProtoMinor = 1, 1
	if asciiEqualFold(cc.req.method, http.MethodHead) && resp.Body != nil {
		_ = resp.Body.Close()
		resp.Body = nil
	}
	err := resp.Write(&buf)
	if err == nil {
		_, err = cc.c.Write(buf.Bytes())
	}
	return err
}

// splitAbsolute splits an absolute-form target "scheme://authority/rest".
// rest keeps the path and query exactly as sent ("/" when empty).
func splitAbsolute(t []byte) (scheme, authority, rest []byte, ok bool) {
	i := bytes.Index(t, []byte("://"))
	if i <= 0 {
		return nil, nil, nil, false
	}
	scheme = t[:i]
	if !asciiEqualFold(scheme, "http") && !asciiEqualFold(scheme, "https") {
		return nil, nil, nil, false
	}
	after := t[i+3:]
	end := bytes.IndexAny(after, "/?#")
	if end < 0 {
		end = len(after)
	}
	authority, rest = after[:end], after[end:]
	if at := bytes.LastIndexByte(authority, '@'); at >= 0 {
		authority = authority[at+1:] // userinfo is not forwarded
	}
	if f := bytes.IndexByte(rest, '#'); f >= 0 {
		rest = rest[:f]
	}
	if len(rest) == 0 || rest[0] == '?' {
		rest = append([]byte("/"), rest...)
	}
	return scheme, authority, rest, len(authority) > 0
}

// decodedPath is the path of an origin-form target, percent-decoded as
// the policy sees it (net/url's URL.Path).
func decodedPath(rest []byte) string {
	p := rest
	if q := bytes.IndexByte(p, '?'); q >= 0 {
		p = p[:q]
	}
	if bytes.IndexByte(p, '%') < 0 {
		return string(p)
	}
	if u, err := url.PathUnescape(string(p)); err == nil {
		return u
	}
	return string(p)
}

// methodString returns method as a string without allocating for the
// common methods.
func methodString(m []byte) string {
	switch string(m) {
	case "GET":
		return "GET"
	case "HEAD":
		return "HEAD"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "OPTIONS":
		return "OPTIONS"
	case "PATCH":
		return "PATCH"
	case "CONNECT":
		return "CONNECT"
	}
	return string(m)
}

// closeIdleClients closes the connections waiting for a request (Shutdown).
func (l *limitListener) closeIdle() {
	l.mu.Lock()
	var idle []*limitConn
	for c := range l.conns {
		if c.state.CompareAndSwap(connIdle, connClosedIdle) {
			idle = append(idle, c)
		}
	}
	l.mu.Unlock()
	for _, c := range idle {
		_ = c.Close()
	}
}
