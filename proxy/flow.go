package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/cordon-gw/cordon/policies"
)

// pagePrefix is the path under which the proxy answers its own forms
// (continue after a warning, request a review) on any host it proxies, so
// the forms post to the same origin the page was shown for.
const pagePrefix = "/.cordon/"

// onRequest decides one HTTP request (plain, or inside a decrypted
// tunnel). Order matters:
//  1. find the exchange (identity was settled at the edge or on CONNECT);
//  2. answer the proxy's own form posts before any decision, so a blocked
//     site's page can still request a review;
//  3. normalize the target and decide on the name; block and
//     unacknowledged warn become pages without resolving anything;
//  4. resolve once, refuse destinations the proxy must not reach, and
//     decide again with the address that will be dialed;
//  5. enforce safe search when the policy asks for it;
//  6. forward with hop-by-hop headers removed and the checked addresses
//     pinned in the request context for the dialer.
func (s *Server) onRequest(req *http.Request, ctx *goproxy.ProxyCtx) (outReq *http.Request, resp *http.Response) {
	// Decrypted tunnels run in goproxy's own goroutine, outside the edge
	// handler's recover.
	defer func() {
		if v := recover(); v != nil {
			s.m.panics.Inc()
			s.log.Error("request handler panic", logPanic, v)
			outReq, resp = req, s.page(req, &exchange{id: s.newID(), start: time.Now()}, http.StatusInternalServerError, pageError,
				"Gateway error", "The gateway failed while handling this request.")
		}
	}()
	ex := exchangeFrom(req.Context())
	if ex == nil {
		parent, ok := ctx.UserData.(*exchange)
		if !ok {
			return req, s.page(req, &exchange{id: s.newID(), start: time.Now()}, http.StatusBadRequest, pageError,
				"Bad request", "The proxy could not associate this request with a client.")
		}
		ex = parent.child(s.newID())
		ex.method = req.Method
		req = req.WithContext(withExchange(req.Context(), ex))
	}
	ctx.UserData = ex
	ex.url = req.URL.String()

	if strings.HasPrefix(req.URL.Path, pagePrefix) {
		return req, s.handleForm(req, ex)
	}

	defPort := uint16(80)
	if req.URL.Scheme == "https" {
		defPort = 443
		ex.proto = policies.ProtoHTTPS
	}
	host, port, ok := splitTarget(req.URL.Host, defPort)
	if !ok {
		s.m.refused.WithLabelValues("bad_request").Inc()
		ex.refusal = "bad_request"
		return req, s.page(req, ex, http.StatusBadRequest, pageError, "Bad request", "The requested address is not a valid host name.")
	}
	ex.host, ex.path = host, req.URL.Path

	// Decide on the name first: a blocked name is never resolved (no DNS
	// leak to a malicious domain, and an unresolvable blocked name still
	// gets its block page).
	literal := parseIP(host)
	d := s.decide(ex, host, req.URL.Path, literal)
	if page := s.stopPage(req, ex, d); page != nil {
		return req, page
	}
	addrs, err := s.guard.resolve(req.Context(), host, port)
	if err != nil {
		return req, s.destinationError(req, ex, err)
	}
	if !literal.IsValid() {
		// Decide again with the address that will be dialed (IP threat
		// feeds, destination country).
		d = s.decide(ex, host, req.URL.Path, addrs[0])
		if page := s.stopPage(req, ex, d); page != nil {
			return req, page
		}
	}

	if d.SafeSearch {
		applySafeSearch(req, host)
	}
	removeHopHeaders(req.Header)
	addVia(req.Header, req.ProtoMajor, req.ProtoMinor, s.cfg.Via)
	setForwardedFor(req.Header, s.cfg.XForwardedFor, ex.clientIP)
	if req.Body != nil && req.Body != http.NoBody {
		body := &countingBody{ReadCloser: req.Body, n: &ex.up}
		if ex.client != nil && s.cfg.IdleTimeout > 0 {
			// A client trickling its upload cannot hold the request and
			// the upstream connection: each read waits at most idle.
			rc, idle := ex.client, s.cfg.IdleTimeout
			body.before = func() { _ = rc.SetReadDeadline(time.Now().Add(idle)) }
			body.stalled = &ex.uploadStalled
		}
		req.Body = body
	}
	ctx.RoundTripper = goproxy.RoundTripperFunc(s.roundTrip)
	ex.forwardAt = time.Now()
	return req.WithContext(context.WithValue(req.Context(), destKey{}, &destination{host: host, port: port, addrs: addrs})), nil
}

// stopPage renders a block, or a warn not yet acknowledged, as a page;
// nil lets the request through.
func (s *Server) stopPage(req *http.Request, ex *exchange, d policies.Decision) *http.Response {
	switch d.Action {
	case policies.ActionBlock:
		return s.blockPage(req, ex)
	case policies.ActionWarn:
		if !s.warns.acknowledged(ex.userKey(), ex.host) {
			return s.warnPage(req, ex)
		}
		ex.warnPassed = true
	}
	return nil
}

// roundTrip sends a request upstream and times it; failures become an
// error page.
func (s *Server) roundTrip(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Response, error) {
	t0 := time.Now()
	resp, err := s.tr.RoundTrip(req)
	ex, ok := ctx.UserData.(*exchange)
	if !ok {
		return resp, err
	}
	ex.upstream = time.Since(t0)
	if err != nil {
		if req.Context().Err() != nil || ex.uploadStalled.Load() {
			// The client went away or stalled: not the origin's failure.
			return nil, err
		}
		// Answer with the error page here: goproxy drops a decrypted
		// tunnel on a round-trip error instead of running the response
		// filter, and a bad origin certificate must show a page.
		return s.upstreamError(req, ex, err), nil
	}
	return resp, nil
}

// onResponse strips hop-by-hop headers from origin responses, turns
// upstream failures into an error page, and finishes decrypted requests.
func (s *Server) onResponse(resp *http.Response, ctx *goproxy.ProxyCtx) (out *http.Response) {
	defer func() {
		if v := recover(); v != nil {
			s.m.panics.Inc()
			s.log.Error("response handler panic", logPanic, v)
			out = s.page(ctx.Req, &exchange{id: s.newID(), start: time.Now()}, http.StatusInternalServerError, pageError,
				"Gateway error", "The gateway failed while handling this response.")
		}
	}()
	ex, _ := ctx.UserData.(*exchange)
	if ex == nil {
		ex = &exchange{id: s.newID(), start: time.Now()}
	}
	if resp == nil {
		if ex.uploadStalled.Load() {
			s.m.refused.WithLabelValues("slow_client").Inc()
			resp = s.page(ctx.Req, ex, http.StatusRequestTimeout, pageError, "Upload stalled",
				"The gateway stopped waiting for the rest of the request.")
			resp.Close = true
		} else if ctx.Req.Context().Err() != nil {
			ex.status = 499 // client closed the request (nginx's convention)
			return &http.Response{StatusCode: 499, Status: "499 Client Closed Request", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header: http.Header{}, Body: http.NoBody, Request: ctx.Req}
		} else {
			resp = s.upstreamError(ctx.Req, ex, ctx.Error)
		}
	} else if !ex.local {
		removeHopHeaders(resp.Header)
		addVia(resp.Header, resp.ProtoMajor, resp.ProtoMinor, s.cfg.Via)
	}
	ex.status = resp.StatusCode
	if !ex.inTunnel {
		return resp // plain HTTP: the edge handler finishes with real byte counts
	}
	// Inside a decrypted tunnel there is no ResponseWriter to count on.
	if resp.ContentLength >= 0 || resp.StatusCode == http.StatusSwitchingProtocols || resp.Body == nil {
		if resp.ContentLength > 0 {
			ex.down.Store(resp.ContentLength)
		}
		s.finish(ex)
		return resp
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, n: &ex.down, done: func() { s.finish(ex) }}
	return resp
}

// destinationError renders a resolve failure (502) or a refused
// destination (403).
func (s *Server) destinationError(req *http.Request, ex *exchange, err error) *http.Response {
	if errors.Is(err, ErrDestinationRefused) {
		s.m.refused.WithLabelValues("destination").Inc()
		ex.refusal = "destination"
		s.log.InfoContext(req.Context(), "destination refused", logRequestID, ex.id, logHost, ex.host, logErr, err)
		return s.page(req, ex, http.StatusForbidden, pageError, "Destination not allowed",
			"This address points into a network the gateway does not reach on behalf of clients.")
	}
	s.m.upstreamErrors.WithLabelValues("resolve").Inc()
	ex.refusal = "resolve"
	return s.page(req, ex, http.StatusBadGateway, pageError, "Site not found",
		"The gateway could not find an address for this site.")
}

// upstreamError renders a failed round trip: 504 on timeout, 502
// otherwise, with a dedicated message for bad origin certificates. The
// error goes to the log with the page's request id.
func (s *Server) upstreamError(req *http.Request, ex *exchange, err error) *http.Response {
	kind := errorKind(err)
	s.m.upstreamErrors.WithLabelValues(kind).Inc()
	s.log.WarnContext(context.Background(), "upstream error", logRequestID, ex.id, logHost, ex.host, logKind, kind, logErr, err)
	switch kind {
	case "timeout":
		return s.page(req, ex, http.StatusGatewayTimeout, pageError, "The site did not answer in time",
			"The gateway reached the site but it took too long to answer.")
	case "tls":
		return s.page(req, ex, http.StatusBadGateway, pageError, "The site's certificate is not valid",
			"The gateway could not verify the identity of this site, so it did not connect. Someone may be impersonating it.")
	case "destination":
		return s.page(req, ex, http.StatusForbidden, pageError, "Destination not allowed",
			"This address points into a network the gateway does not reach on behalf of clients.")
	case "protocol":
		return s.page(req, ex, http.StatusBadGateway, pageError, "The site sent a malformed response",
			"The gateway reached the site but could not read its answer as HTTP ("+refusalReason(err)+"), so it passed nothing on.")
	}
	return s.page(req, ex, http.StatusBadGateway, pageError, "The site could not be reached",
		"The gateway could not connect to this site.")
}

// errorKind is a bounded label for an upstream failure.
func errorKind(err error) string {
	var (
		netErr   net.Error
		certErr  *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		invalid  x509.CertificateInvalidError
		alertErr tls.AlertError
	)
	switch {
	case err == nil:
		return "other"
	case errors.Is(err, ErrDestinationRefused):
		return "destination"
	case errors.Is(err, ErrResolve):
		return "resolve"
	case errors.As(err, &certErr), errors.As(err, &unknown), errors.As(err, &hostErr), errors.As(err, &invalid), errors.As(err, &alertErr):
		return "tls"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.Is(err, errBadHead), errors.Is(err, errBadFraming), errors.Is(err, errBadChunk), errors.Is(err, errHeadTooLarge):
		return "protocol"
	case strings.Contains(err.Error(), "dial"):
		return "dial"
	}
	return "other"
}

// countingBody counts bytes read through it and calls done once at EOF or
// Close.
type countingBody struct {
	io.ReadCloser
	n      *atomic.Int64
	done   func()
	before func() // called before each Read (sets a read deadline)
	// stalled, when set, records a Read that timed out.
	stalled *atomic.Bool
	once    atomic.Bool
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.before != nil {
		b.before()
	}
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	if err != nil && b.stalled != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			b.stalled.Store(true)
		}
	}
	if err == io.EOF {
		b.finish()
	}
	return n, err
}

func (b *countingBody) Close() error {
	err := b.ReadCloser.Close()
	b.finish()
	return err
}

func (b *countingBody) finish() {
	if b.done != nil && b.once.CompareAndSwap(false, true) {
		b.done()
	}
}
