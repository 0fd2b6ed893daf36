package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

// forward decides one absolute-form request and relays it to the origin.
// Order matters:
//  1. answer the proxy's own form posts before any decision, so a blocked
//     site's page can still request a review;
//  2. normalize the target and decide on the name; block and
//     unacknowledged warn become pages without resolving anything;
//  3. resolve once, refuse destinations the proxy must not reach, and
//     decide again with the address that will be dialed;
//  4. enforce safe search when the policy asks for it;
//  5. forward with hop-by-hop headers removed over a connection to exactly
//     the checked address.
func (cc *clientConn) forward(ex *exchange, scheme, authority, rest []byte) outcome {
	s := cc.s
	isTLS := asciiEqualFold(scheme, "https")
	if bytes.HasPrefix(rest, []byte(pagePrefix)) {
		return cc.serveForm(ex)
	}
	host, port := cc.host, cc.port
	if !cc.hostOK {
		s.m.refused.WithLabelValues("bad_request").Inc()
		ex.refusal = "bad_request"
		return cc.page(ex, s.page(cc.pageRequest(ex), ex, http.StatusBadRequest, pageError, "Bad request", "The requested address is not a valid host name."))
	}
	ex.host = host

	// Decide on the name first: a blocked name is never resolved (no DNS
	// leak to a malicious domain, and an unresolvable blocked name still
	// gets its block page).
	literal := parseIP(host)
	d := s.decide(ex, host, ex.path, literal)
	if page := cc.stopPage(ex, d); page != nil {
		return cc.page(ex, page)
	}
	addrs, err := s.guard.resolveInto(context.Background(), host, port, &cc.addrBuf)
	if err != nil {
		return cc.page(ex, s.destinationError(cc.pageRequest(ex), ex, err))
	}
	if !literal.IsValid() {
		// Decide again with the address that will be dialed (IP threat
		// feeds, destination country).
		d = s.decide(ex, host, ex.path, addrs[0])
		if page := cc.stopPage(ex, d); page != nil {
			return cc.page(ex, page)
		}
	}
	var youTube bool
	if d.SafeSearch {
		rest, youTube = safeSearchTarget(rest, host)
	}
	sni := ""
	if isTLS {
		sni = host
	}
	return cc.relay(ex, authority, rest, addrs, port, sni, youTube)
}

// stopPage is Server.stopPage for the front end.
func (cc *clientConn) stopPage(ex *exchange, d policies.Decision) *http.Response {
	if d.Action != policies.ActionBlock && d.Action != policies.ActionWarn {
		return nil
	}
	ex.url = string(cc.req.target)
	return cc.s.stopPage(cc.pageRequest(ex), ex, d)
}

// pageRequest is the little of a net/http request the page renderer
// reads (the method, for HEAD).
func (cc *clientConn) pageRequest(ex *exchange) *http.Request {
	if ex.url == "" {
		ex.url = string(cc.req.target)
	}
	return &http.Request{Method: ex.method}
}

// page sends a page (block, warn, error) and finishes the exchange.
func (cc *clientConn) page(ex *exchange, resp *http.Response) outcome {
	ex.status = resp.StatusCode
	if resp.ContentLength > 0 && ex.method != http.MethodHead {
		ex.down.Store(resp.ContentLength)
	}
	oc := cc.afterResponse()
	err := cc.writeResponse(resp, oc == closeConn)
	cc.s.finish(ex)
	if err != nil {
		return closeConn
	}
	return oc
}

// serveForm answers the proxy's own form posts (continue, review) on a
// proxied host.
func (cc *clientConn) serveForm(ex *exchange) outcome {
	body, reusable := cc.requestBody()
	req, err := cc.httpRequest(context.Background(), body)
	if err != nil {
		cc.badRequest(errBadHead)
		cc.s.finish(ex)
		return closeConn
	}
	ex.url = req.URL.String()
	resp := cc.s.handleForm(req, ex)
	ex.status = resp.StatusCode
	if resp.ContentLength > 0 {
		ex.down.Store(resp.ContentLength)
	}
	drained := body == nil || drain(body)
	closing := cc.req.close || !reusable || !drained
	err = cc.writeResponse(resp, closing)
	cc.s.finish(ex)
	if err != nil || closing {
		return closeConn
	}
	return keepConn
}

// safeSearchTarget applies the search engines' safe modes to an
// origin-form target; youTube asks for the YouTube-Restrict header.
func safeSearchTarget(rest []byte, host string) ([]byte, bool) {
	u, err := url.ParseRequestURI(string(rest))
	if err != nil {
		return rest, false
	}
	req := &http.Request{URL: u, Header: http.Header{}}
	applySafeSearch(req, host)
	return []byte(u.RequestURI()), req.Header.Get("YouTube-Restrict") != ""
}

// relay sends the request to the origin over a pooled or new connection
// to one of the checked addresses and relays the response.
func (cc *clientConn) relay(ex *exchange, authority, rest []byte, addrs []netip.Addr, port uint16, sni string, youTube bool) outcome {
	s, h := cc.s, &cc.req
	hasBody := h.chunked || h.contentLength > 0
	upHead := cc.upstreamHead(authority, rest, hasBody, youTube)

	ex.forwardAt = time.Now()
	var (
		uc       *upConn
		err      error
		bodyDone chan error // the request body goroutine's result
	)
	for attempt := 0; ; attempt++ {
		for i, a := range addrs {
			key := upstreamKey{addr: netip.AddrPortFrom(a, port), sni: sni}
			uc, err = cc.send(key, upHead, attempt > 0)
			if err == nil || !isDialError(err) || i == len(addrs)-1 {
				break
			}
		}
		if err != nil {
			ex.upstream = time.Since(ex.forwardAt)
			return cc.page(ex, s.upstreamError(cc.pageRequest(ex), ex, err))
		}
		// The request body streams in its own goroutine while the
		// response is awaited (an origin may answer before it has read
		// everything).
		if hasBody {
			bodyDone = cc.startBody(ex, uc)
		}
		err = cc.readResponseHead(uc)
		if err != nil && !hasBody && uc.reused && attempt == 0 && uc.r.buffered() == 0 && isStale(err) {
			// A kept-alive connection the origin closed while idle: send
			// a body-less request again on a fresh connection.
			_ = uc.c.Close()
			continue
		}
		break
	}
	ex.upstream = time.Since(ex.forwardAt)
	if err != nil {
		_ = uc.c.Close()
		if hasBody {
			bodyErr := <-bodyDone
			if ex.uploadStalled.Load() {
				s.m.refused.WithLabelValues("slow_client").Inc()
				resp := s.page(cc.pageRequest(ex), ex, http.StatusRequestTimeout, pageError, "Upload stalled",
					"The gateway stopped waiting for the rest of the request.")
				cc.page(ex, resp)
				return closeConn
			}
			if errors.Is(bodyErr, errBadChunk) {
				// A malformed chunked upload: the origin got the valid
				// chunks before it and a closed connection, never bytes
				// it could read as another request.
				s.m.refused.WithLabelValues("bad_request").Inc()
				ex.refusal, ex.status = "bad_request", http.StatusBadRequest
				cc.finishText(ex, http.StatusBadRequest, "Cordon: bad request: "+refusalReason(bodyErr)+"\n", "")
				return closeConn
			}
			if bodyErr != nil && !errors.Is(bodyErr, errUpstreamWrite) {
				// The client went away mid-upload.
				ex.status = 499
				s.finish(ex)
				return closeConn
			}
		}
		cc.page(ex, s.upstreamError(cc.pageRequest(ex), ex, err))
		return closeConn
	}
	return cc.respond(ex, uc, bodyDone)
}

// startBody streams the request body to uc in its own goroutine.
func (cc *clientConn) startBody(ex *exchange, uc *upConn) chan error {
	done := make(chan error, 1)
	go func() { done <- cc.sendBody(ex, uc) }()
	return done
}

var errUpstreamWrite = errors.New("proxy: write to origin failed")

// send writes the request head to a connection for key (fresh: never a
// pooled one), retrying once on a fresh connection when a pooled one
// turns out closed.
func (cc *clientConn) send(key upstreamKey, upHead []byte, fresh bool) (*upConn, error) {
	s := cc.s
	for attempt := 0; ; attempt++ {
		var uc *upConn
		if !fresh && attempt == 0 {
			uc = s.upstream.get(key)
		}
		if uc == nil {
			dctx, cancel := context.WithTimeout(context.Background(), s.cfg.DialTimeout)
			var err error
			uc, err = s.dialUpstream(dctx, key)
			cancel()
			if err != nil {
				return nil, err
			}
		}
		_, err := uc.c.Write(upHead)
		if err == nil {
			return uc, nil
		}
		_ = uc.c.Close()
		if !uc.reused || attempt > 0 {
			return nil, err
		}
	}
}

// readResponseHead reads the origin's response head (skipping 1xx other
// than 101) into uc, bounded by response_header_timeout. A pooled
// connection the origin closed while idle fails here; so that the client
// does not see that failure, a body-less request is sent again once on a
// fresh connection by retryStale.
func (cc *clientConn) readResponseHead(uc *upConn) error {
	s := cc.s
	if s.cfg.ResponseHeaderTimeout > 0 {
		_ = uc.c.SetReadDeadline(time.Now().Add(s.cfg.ResponseHeaderTimeout))
	}
	for {
		var err error
		uc.hbuf, err = uc.r.readHead(uc.hbuf, s.cfg.MaxHeaderBytes)
		if err == nil {
			err = parseResponseHead(&uc.head, uc.hbuf)
		}
		if err != nil {
			return err
		}
		if uc.head.status >= 200 || uc.head.status == http.StatusSwitchingProtocols {
			return nil
		}
	}
}

// upstreamHead builds the head sent to the origin: origin-form target,
// Host from the URL, hop-by-hop fields removed (the protocol upgrade
// kept), Via added, X-Forwarded-For as configured.
func (cc *clientConn) upstreamHead(authority, rest []byte, hasBody, youTube bool) []byte {
	s, h := cc.s, &cc.req
	b := cc.out[:0]
	b = append(b, h.method...)
	b = append(b, ' ')
	b = append(b, rest...)
	b = append(b, " HTTP/1.1\r\n"...)
	b = appendHeader(b, "Host", authority)
	upgrade := upgradeValue(h)
	xff := s.cfg.XForwardedFor
	var priorXFF []byte
	for i := range h.fields {
		f := &h.fields[i]
		switch {
		case asciiEqualFold(f.name, "Host"), isHopField(f.name, h):
			continue
		case h.chunked && asciiEqualFold(f.name, "Content-Length"):
			continue
		case hasBody && h.expect100 && asciiEqualFold(f.name, "Expect"):
			continue // the proxy answers 100 Continue itself
		case youTube && asciiEqualFold(f.name, "YouTube-Restrict"):
			continue
		case xff != "keep" && (asciiEqualFold(f.name, "X-Forwarded-For") || asciiEqualFold(f.name, "Forwarded")):
			if xff == "append" && asciiEqualFold(f.name, "X-Forwarded-For") {
				if len(priorXFF) > 0 {
					priorXFF = append(priorXFF, ", "...)
				}
				priorXFF = append(priorXFF, f.value...)
				continue
			}
			if xff == "append" {
				break // Forwarded passes in append mode
			}
			continue
		}
		b = appendHeader(b, string(f.name), f.value)
	}
	if h.chunked {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if upgrade != nil {
		b = append(b, "Connection: Upgrade\r\n"...)
		b = appendHeader(b, "Upgrade", upgrade)
	}
	if youTube {
		b = append(b, "YouTube-Restrict: Strict\r\n"...)
	}
	if xff == "append" {
		b = append(b, "X-Forwarded-For: "...)
		if len(priorXFF) > 0 {
			b = append(b, priorXFF...)
			b = append(b, ", "...)
		}
		b = cc.ip.AppendTo(b)
		b = append(b, "\r\n"...)
	}
	if s.cfg.Via != "off" {
		b = appendVia(b, h.major, h.minor, s.cfg.Via)
	}
	b = append(b, "\r\n"...)
	cc.out = b
	return b
}

func appendVia(b []byte, major, minor int, via string) []byte {
	b = append(b, "Via: "...)
	switch {
	case major == 1 && minor == 0:
		b = append(b, "1.0 "...)
	case major == 2:
		b = append(b, "2 "...)
	default:
		b = append(b, "1.1 "...)
	}
	b = append(b, via...)
	return append(b, "\r\n"...)
}

// upgradeValue is the protocol a request or 101 response switches to, nil
// when there is none.
func upgradeValue(h *head) []byte {
	if !h.upgrade {
		return nil
	}
	return h.get("Upgrade")
}

// isHopField reports whether a field is hop-by-hop in h: one of
// hopHeaders, or named in a Connection field.
func isHopField(name []byte, h *head) bool {
	for _, k := range hopHeaders {
		if asciiEqualFold(name, k) {
			return true
		}
	}
	if !h.hasConnHdr {
		return false
	}
	for i := range h.fields {
		f := &h.fields[i]
		if !asciiEqualFold(f.name, "Connection") {
			continue
		}
		for tok := range tokens(f.value) {
			if bytes.EqualFold(tok, name) {
				return true
			}
		}
	}
	return false
}

// sendBody relays the request body to the origin; each read from the
// client waits at most idle_timeout (a trickling upload cannot hold the
// origin connection). It returns errUpstreamWrite when the origin stopped
// taking it.
func (cc *clientConn) sendBody(ex *exchange, uc *upConn) error {
	s, h := cc.s, &cc.req
	if h.expect100 && h.http11() {
		if _, err := io.WriteString(cc.c, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			return err
		}
	}
	cc.r.dlConn, cc.r.dl = cc.c, s.cfg.IdleTimeout
	defer func() { cc.r.dlConn = nil }()
	o := bodyOut{c: uc.c, buf: uc.wbuf[:0]}
	var err error
	if h.chunked {
		err = relayChunked(&o, &cc.r, true)
	} else {
		err = copyLength(&o, &cc.r, h.contentLength)
	}
	if err == nil {
		err = o.flush()
	}
	uc.wbuf = o.buf[:0]
	ex.up.Store(o.n)
	if err != nil {
		if timedOut(err) && !o.writeFailed {
			ex.uploadStalled.Store(true)
		}
		_ = uc.c.Close() // the response read fails too
		if o.writeFailed {
			return errUpstreamWrite
		}
		return err
	}
	if s.cfg.IdleTimeout > 0 {
		_ = cc.c.SetReadDeadline(time.Time{})
	}
	return nil
}

func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isStale reports the errors of reading from a connection the origin
// closed.
func isStale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// respond relays the origin's response to the client and finishes the
// exchange.
func (cc *clientConn) respond(ex *exchange, uc *upConn, bodyDone chan error) outcome {
	s, h, rh := cc.s, &cc.req, &uc.head
	ex.status = rh.status
	if rh.status == http.StatusSwitchingProtocols {
		if bodyDone != nil || upgradeValue(h) == nil {
			_ = uc.c.Close()
			cc.page(ex, s.upstreamError(cc.pageRequest(ex), ex, errors.New("proxy: unexpected 101 Switching Protocols")))
			return closeConn
		}
		return cc.switchProtocols(ex, uc)
	}

	// How the body is framed from the origin, and to the client.
	noBody := asciiEqualFold(h.method, http.MethodHead) || rh.status == http.StatusNoContent ||
		rh.status == http.StatusNotModified
	var (
		toClientChunked bool // re-framed as chunked for an HTTP/1.1 client
		closeAfter      = h.close
		upReusable      = !rh.close
	)
	switch {
	case noBody:
	case rh.chunked:
		toClientChunked = h.http11()
		closeAfter = closeAfter || !h.http11()
	case rh.contentLength >= 0:
	default:
		// Delimited by the origin closing the connection.
		upReusable = false
		toClientChunked = h.http11()
		closeAfter = closeAfter || !h.http11()
	}

	b := appendStatusLine(cc.out[:0], rh.status, reasonOf(rh))
	for i := range rh.fields {
		f := &rh.fields[i]
		if isHopField(f.name, rh) || (!noBody && (toClientChunked || rh.chunked) && asciiEqualFold(f.name, "Content-Length")) {
			continue
		}
		b = appendHeader(b, string(f.name), f.value)
	}
	if toClientChunked {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if s.cfg.Via != "off" {
		b = appendVia(b, rh.major, rh.minor, s.cfg.Via)
	}
	if closeAfter {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	cc.out = b

	o := bodyOut{c: cc.c, tcp: cc.tcp, buf: b, encode: toClientChunked && !rh.chunked}
	var err error
	switch {
	case noBody:
		err = o.flush()
	case rh.chunked && toClientChunked:
		err = relayChunked(&o, &uc.r, true)
	case rh.chunked:
		err = relayChunked(&o, &uc.r, false)
	case rh.contentLength >= 0:
		if int64(uc.r.buffered()) < rh.contentLength && s.cfg.ResponseHeaderTimeout > 0 {
			_ = uc.c.SetReadDeadline(time.Time{})
		}
		err = cc.copyResponseLength(&o, uc, rh.contentLength)
	default:
		if s.cfg.ResponseHeaderTimeout > 0 {
			_ = uc.c.SetReadDeadline(time.Time{})
		}
		err = copyUntilEOF(&o, &uc.r)
		if err == nil && o.encode {
			o.raw([]byte("0\r\n\r\n"))
		}
	}
	if err == nil {
		err = o.flush()
	}
	if cap(o.buf) <= 2*flushAt {
		cc.out = o.buf[:0] // keep the grown buffer for the next response
	}
	ex.down.Store(o.n)

	// The request body must be done before the connection is reused.
	if bodyDone != nil {
		select {
		case berr := <-bodyDone:
			if berr != nil {
				upReusable, closeAfter = false, true
			}
		default:
			// The origin answered without waiting for the whole body: stop
			// reading it and end the connection.
			_ = cc.c.SetReadDeadline(time.Now())
			_ = uc.c.Close()
			<-bodyDone
			upReusable, closeAfter = false, true
		}
	}
	if err != nil {
		_ = uc.c.Close()
		if !o.wrote {
			// Nothing reached the client yet (a malformed body in the
			// first read): it gets an error page, not a cut response.
			ex.down.Store(0)
			cc.page(ex, s.upstreamError(cc.pageRequest(ex), ex, err))
			return closeConn
		}
		s.finish(ex)
		return closeConn
	}
	if upReusable && uc.r.buffered() == 0 {
		s.upstream.put(uc)
	} else {
		_ = uc.c.Close()
	}
	s.finish(ex)
	if closeAfter {
		return closeConn
	}
	return keepConn
}

// reasonOf is the reason phrase sent for an origin status.
func reasonOf(h *head) string {
	if t := http.StatusText(h.status); t != "" {
		return t
	}
	return "Status " + strconv.Itoa(h.status)
}

// copyResponseLength sends a Content-Length body: what the head read
// brought along goes out with the head in one write, the rest is spliced
// socket to socket where both are TCP.
func (cc *clientConn) copyResponseLength(o *bodyOut, uc *upConn, n int64) error {
	if b := uc.r.bytes(); len(b) > 0 {
		k := min(int64(len(b)), n)
		o.counted(b[:k])
		uc.r.discard(int(k))
		n -= k
	}
	if n == 0 {
		return nil
	}
	if o.tcp != nil && uc.tcp != nil {
		if err := o.flush(); err != nil {
			return err
		}
		cc.lr.R, cc.lr.N = uc.tcp, n
		m, err := o.tcp.ReadFrom(&cc.lr)
		cc.lr.R = nil
		o.n += m
		if err == nil && m < n {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return copyLength(o, &uc.r, n)
}

// switchProtocols relays an upgraded connection (WebSocket) both ways
// until one side ends, with the tunnel idle timeout.
func (cc *clientConn) switchProtocols(ex *exchange, uc *upConn) outcome {
	s, rh := cc.s, &uc.head
	_ = uc.c.SetReadDeadline(time.Time{})
	b := appendStatusLine(cc.out[:0], rh.status, reasonOf(rh))
	up := upgradeValue(rh)
	for i := range rh.fields {
		f := &rh.fields[i]
		if isHopField(f.name, rh) {
			continue
		}
		b = appendHeader(b, string(f.name), f.value)
	}
	if up != nil {
		b = append(b, "Connection: Upgrade\r\n"...)
		b = appendHeader(b, "Upgrade", up)
	}
	if s.cfg.Via != "off" {
		b = appendVia(b, rh.major, rh.minor, s.cfg.Via)
	}
	b = append(b, "\r\n"...)
	b = append(b, uc.r.bytes()...)
	ex.down.Add(int64(uc.r.buffered()))
	uc.r.discard(uc.r.buffered())
	cc.out = b
	defer uc.c.Close()
	if _, err := cc.c.Write(b); err != nil {
		s.finish(ex)
		return closeConn
	}
	if n := cc.r.buffered(); n > 0 {
		if _, err := uc.c.Write(cc.r.bytes()); err != nil {
			s.finish(ex)
			return closeConn
		}
		ex.up.Add(int64(n))
		cc.r.discard(n)
	}
	t := newTunnel(cc.c, uc.c, s.cfg.TunnelIdleTimeout)
	defer t.stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, err := t.copy(cc.c, uc.c, uc.c)
		ex.down.Add(n)
		if err != nil {
			_ = cc.c.Close()
			_ = uc.c.Close()
			return
		}
		t.halfClose(cc.c)
	}()
	n, err := t.copy(uc.c, cc.c, cc.c)
	ex.up.Add(n)
	if err != nil {
		_ = cc.c.Close()
		_ = uc.c.Close()
	} else {
		t.halfClose(uc.c)
	}
	<-done
	s.finish(ex)
	return closeConn
}

// isDialError reports a failure to connect (another checked address may
// be tried), as opposed to a failure on an established connection.
func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
