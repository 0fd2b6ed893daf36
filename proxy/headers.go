package proxy

import (
	"net/http"
	"net/netip"
	"strings"
)

// hopHeaders are hop-by-hop headers (RFC 9110 §7.6.1) never forwarded, in
// either direction, plus the proxy-only ones. Same list as
// net/http/httputil.ReverseProxy.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopHeaders deletes hop-by-hop headers and every header named in
// Connection. A protocol upgrade (WebSocket) keeps "Connection: Upgrade"
// and its Upgrade header, which the next hop needs to switch protocols.
func removeHopHeaders(h http.Header) {
	upgrade := upgradeType(h)
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = strings.TrimSpace(sf); sf != "" && !strings.EqualFold(sf, "upgrade") {
				h.Del(sf)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	if upgrade != "" {
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", upgrade)
	}
}

// upgradeType is the protocol a request or 101 response switches to, ""
// when there is none.
func upgradeType(h http.Header) string {
	if !headerHasToken(h, "Connection", "upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// addVia appends this hop to Via ("1.1 cordon"), unless disabled.
func addVia(h http.Header, protoMajor, protoMinor int, via string) {
	if via == "off" {
		return
	}
	v := "1.1 " + via
	if protoMajor == 1 && protoMinor == 0 {
		v = "1.0 " + via
	} else if protoMajor == 2 {
		v = "2 " + via
	}
	if prior := h.Get("Via"); prior != "" {
		v = prior + ", " + v
	}
	h.Set("Via", v)
}

// viaLoop reports whether the request already passed through a proxy with
// this pseudonym: forwarding it again would loop.
func viaLoop(h http.Header, via string) bool {
	if via == "off" {
		return false
	}
	for _, v := range h["Via"] {
		for hop := range strings.SplitSeq(v, ",") {
			f := strings.Fields(hop)
			if len(f) >= 2 && strings.EqualFold(f[1], via) {
				return true
			}
		}
	}
	return false
}

// setForwardedFor applies the x_forwarded_for mode.
func setForwardedFor(h http.Header, mode string, client netip.Addr) {
	switch mode {
	case "keep":
	case "append":
		ip := client.String()
		if prior := strings.Join(h.Values("X-Forwarded-For"), ", "); prior != "" {
			ip = prior + ", " + ip
		}
		h.Set("X-Forwarded-For", ip)
	default:
		h.Del("X-Forwarded-For")
		h.Del("Forwarded")
	}
}
