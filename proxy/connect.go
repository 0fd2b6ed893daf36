package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/cordon-gw/cordon/policies"
)

// serveConnect decides a CONNECT on its target. Order:
//  1. validate host:port and refuse ports outside connect_ports;
//  2. decide on the CONNECT host name;
//  3. decrypt when inspection is on and neither category nor domain
//     exempts the host: inner requests are decided on the full URL and
//     get real block and warn pages;
//  4. otherwise enforce the name's decision (block: 403 with an
//     explanation; unacknowledged warn: 403 or pass per connect_warn)
//     before resolving anything;
//  5. resolve once, refuse forbidden destinations (403) and decide again
//     with the address that will be dialed;
//  6. splice, deciding again on the TLS SNI when it names another host.
func (cc *clientConn) serveConnect(ex *exchange) outcome {
	s := cc.s
	target := string(cc.req.target)
	host, port, ok := splitTarget(target, 443)
	if !ok {
		s.m.refused.WithLabelValues("bad_request").Inc()
		ex.refusal = "bad_request"
		return cc.refuseConnect(ex, s.rejectConnect(ex, http.StatusBadRequest, "invalid CONNECT target", ""))
	}
	ex.host = host
	if !s.connectPortAllowed(port) {
		s.m.refused.WithLabelValues("port").Inc()
		ex.refusal = "port"
		return cc.refuseConnect(ex, s.rejectConnect(ex, http.StatusForbidden, "CONNECT to port "+strconv.Itoa(int(port))+" is not allowed", "port"))
	}
	literal := parseIP(host)
	if literal.IsValid() && s.guard.refusal(literal, port) != "" {
		// An address literal is checked at once, inspected or not.
		s.m.refused.WithLabelValues("destination").Inc()
		ex.refusal = "destination"
		return cc.refuseConnect(ex, s.rejectConnect(ex, http.StatusForbidden, "destination not allowed", "destination"))
	}
	d := s.decide(ex, host, "", literal)
	if s.mitm != nil && s.mitm.shouldInspect(host, port, s.engine, ex.verdict) {
		// Decrypted: every inner request is decided (and its destination
		// resolved and checked) on its full URL, and a block or warn shows
		// the real page there.
		ex.mitm = true
		return cc.bridgeMITM(ex, target)
	}
	// A blocked name is refused before it is resolved.
	if reject := s.connectVerdict(ex, d); reject != nil {
		return cc.refuseConnect(ex, reject)
	}
	addrs, err := s.guard.resolveInto(context.Background(), host, port, &cc.addrBuf)
	if err != nil {
		if errors.Is(err, ErrDestinationRefused) {
			s.m.refused.WithLabelValues("destination").Inc()
			ex.refusal = "destination"
			return cc.refuseConnect(ex, s.rejectConnect(ex, http.StatusForbidden, "destination not allowed", "destination"))
		}
		s.m.upstreamErrors.WithLabelValues("resolve").Inc()
		ex.refusal = "resolve"
		return cc.refuseConnect(ex, s.rejectConnect(ex, http.StatusBadGateway, "cannot resolve "+host, ""))
	}
	if !literal.IsValid() {
		// Again with the address that will be dialed.
		d = s.decide(ex, host, "", addrs[0])
		if reject := s.connectVerdict(ex, d); reject != nil {
			return cc.refuseConnect(ex, reject)
		}
	}
	// Bytes the client sent right after the CONNECT head (still in cc.r)
	// belong to the tunnel.
	s.splice(ex, cc.c, &cc.r, addrs, port)
	s.finish(ex)
	return closeConn
}

// refuseConnect answers a refused CONNECT and ends the connection.
func (cc *clientConn) refuseConnect(ex *exchange, resp *http.Response) outcome {
	_ = cc.writeResponse(resp, true)
	cc.s.finish(ex)
	return closeConn
}

// onConnect is goproxy's CONNECT handler. The front end decided already
// and hands goproxy only the tunnels it decrypts (bridgeMITM).
func (s *Server) onConnect(target string, ctx *goproxy.ProxyCtx) (*goproxy.ConnectAction, string) {
	ex := exchangeFrom(ctx.Req.Context())
	if ex == nil || !ex.mitm || s.mitm == nil {
		return &goproxy.ConnectAction{Action: goproxy.ConnectReject}, target
	}
	ctx.UserData = ex
	return &goproxy.ConnectAction{Action: goproxy.ConnectMitm, TLSConfig: s.mitm.tlsConfig}, target
}

func (s *Server) connectPortAllowed(port uint16) bool {
	for _, p := range s.cfg.ConnectPorts {
		if p == 0 || p == int(port) {
			return true
		}
	}
	return false
}

// connectVerdict renders a block or unacknowledged warn on a CONNECT; nil
// means the tunnel may proceed.
func (s *Server) connectVerdict(ex *exchange, d policies.Decision) *http.Response {
	switch d.Action {
	case policies.ActionBlock:
		return s.rejectConnect(ex, http.StatusForbidden, "blocked by policy: "+describeReason(d), "block")
	case policies.ActionWarn:
		if s.cfg.ConnectWarn == "block" && !s.warns.acknowledged(ex.userKey(), ex.host) {
			return s.rejectConnect(ex, http.StatusForbidden,
				"caution required: open http://"+ex.host+"/ in a browser to confirm and continue", "warn")
		}
		ex.warnPassed = true
	}
	return nil
}

// rejectConnect is the answer to a refused CONNECT: status, a short text
// body and an X-Cordon-Block header (browsers show nothing of it; tools
// and logs do).
func (s *Server) rejectConnect(ex *exchange, status int, msg, kind string) *http.Response {
	ex.status = status
	body := "Cordon: " + msg + "\nRequest ID: " + ex.id + "\n"
	h := http.Header{}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Cordon-Request-Id", ex.id)
	if kind != "" {
		v := "action=" + kind
		if ex.decided {
			if ex.decision.RuleID != "" {
				v += "; rule=" + sanitizeHeader(ex.decision.RuleID)
			}
			v += "; reason=" + ex.decision.Reason.String()
			if ex.decision.Match != "" {
				v += "; match=" + sanitizeHeader(ex.decision.Match)
			}
			v += "; policy-version=" + strconv.FormatInt(ex.decision.Version, 10)
		}
		h.Set("X-Cordon-Block", v)
	}
	ex.down.Store(int64(len(body)))
	return &http.Response{
		Status:        strconv.Itoa(status) + " " + http.StatusText(status),
		StatusCode:    status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Close:         true,
	}
}

func sanitizeHeader(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == ';' {
			return '_'
		}
		return r
	}, s)
}

// tlsAlertAccessDenied is a fatal TLS alert record (access_denied), sent
// when a tunnel's SNI is blocked after the 200 was already sent.
var tlsAlertAccessDenied = []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 49}

// helloPeeker lets peekClientHello read a connection's wireReader.
type helloPeeker struct{ r *wireReader }

func (p helloPeeker) Size() int { return maxHelloBuffer }

// Peek returns the next n bytes without consuming them, reading (and
// growing the buffer) as needed.
func (p helloPeeker) Peek(n int) ([]byte, error) {
	for p.r.buffered() < n {
		if err := p.r.fill(maxHelloBuffer); err != nil {
			return p.r.bytes(), err
		}
	}
	return p.r.bytes()[:n], nil
}

// splice connects an allowed CONNECT to the checked address, answers 200,
// peeks the ClientHello for its SNI, decides again if the SNI names a
// different host (domain fronting), then relays bytes both ways (see
// tunnel).
func (s *Server) splice(ex *exchange, client net.Conn, r *wireReader, addrs []netip.Addr, port uint16) {
	defer client.Close()
	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.DialTimeout)
	t0 := time.Now()
	ex.forwardAt = t0
	up, err := s.guard.dialAddrs(dctx, addrs, port)
	cancel()
	ex.upstream = time.Since(t0)
	if err != nil {
		kind := errorKind(err)
		s.m.upstreamErrors.WithLabelValues(kind).Inc()
		s.log.Info("tunnel dial failed", logRequestID, ex.id, logHost, ex.host, logErr, err)
		ex.status = http.StatusBadGateway
		msg := "Cordon: cannot connect to " + ex.host + "\nRequest ID: " + ex.id + "\n"
		_ = client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(client, "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "+
			strconv.Itoa(len(msg))+"\r\n\r\n"+msg)
		return
	}
	defer up.Close()
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	ex.status = http.StatusOK

	t := newTunnel(client, up, s.cfg.TunnelIdleTimeout)
	defer t.stop()
	// Relay origin → client at once: server-speaks-first protocols must not
	// wait for the ClientHello peek.
	downDone := make(chan struct{})
	go func() {
		defer close(downDone)
		n, err := t.copy(client, up, up)
		ex.down.Add(n)
		if err != nil {
			// Idle, reset or a client that stopped reading: end both
			// directions.
			_ = client.Close()
			_ = up.Close()
			return
		}
		t.halfClose(client)
	}()

	// The ClientHello is peeked in the connection's own reader (which
	// holds what the client sent right after the CONNECT head), grown as
	// needed up to maxHelloBuffer.
	br := helloPeeker{r}
	_ = client.SetReadDeadline(time.Now().Add(s.cfg.TLSHandshakeTimeout))
	sni, err := peekClientHello(br)
	_ = client.SetReadDeadline(time.Time{})
	if err == nil && sni != "" {
		if h := normalizeHost(sni); h != "" && h != ex.host {
			// Domain fronting check: the name in the ClientHello decides.
			d := s.decide(ex, h, "", addrs[0])
			ex.warnPassed = d.Action == policies.ActionWarn
			if d.Action == policies.ActionBlock ||
				(d.Action == policies.ActionWarn && s.cfg.ConnectWarn == "block" && !s.warns.acknowledged(ex.userKey(), h)) {
				ex.warnPassed = false
				ex.status = http.StatusForbidden
				_, _ = client.Write(tlsAlertAccessDenied)
				_ = up.Close()
				_ = client.Close()
				<-downDone
				return
			}
		}
	}
	// Forward what the peek buffered, then relay the socket itself.
	var werr error
	if held := r.buffered(); held > 0 {
		werr = s.writeHeld(ex, up, r.bytes())
		r.discard(held)
	}
	var n int64
	if werr == nil {
		n, err = t.copy(up, client, client)
	} else {
		err = werr
	}
	ex.up.Add(n)
	if err != nil {
		_ = client.Close()
		_ = up.Close()
	} else {
		t.halfClose(up)
	}
	<-downDone
}

// writeHeld sends bytes the proxy read from the client before the relay
// (the peeked ClientHello) to the origin, bounded by the dial timeout.
func (s *Server) writeHeld(ex *exchange, up net.Conn, b []byte) error {
	_ = up.SetWriteDeadline(time.Now().Add(s.cfg.DialTimeout))
	w, err := up.Write(b)
	_ = up.SetWriteDeadline(time.Time{})
	ex.up.Add(int64(w))
	return err
}
