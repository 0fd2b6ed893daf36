package dnsfilter

import (
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// dohMediaType is the RFC 8484 content type of DNS messages over HTTP.
const dohMediaType = "application/dns-message"

// DoHHandler serves DNS over HTTPS (RFC 8484): GET with ?dns=<base64url>
// and POST with an application/dns-message body. cmd/cordon mounts it at
// "/dns-query" (client identified by address, like UDP/TCP) and
// "/dns-query/{token}" (the user whose DoH token it is, from anywhere; an
// unknown token gets 404). The client address is the connection's
// (http.Request.RemoteAddr); forwarding headers are not trusted. Answers
// are never truncated; Cache-Control max-age is the answer's remaining
// TTL.
func (s *Server) DoHHandler() http.Handler { return http.HandlerFunc(s.serveDoH) }

func (s *Server) serveDoH(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	token := r.PathValue("token")
	if token == "" {
		if _, rest, ok := strings.Cut(r.URL.Path, "/dns-query/"); ok {
			token = rest
		}
	}
	var raw []byte
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		param := r.URL.Query().Get("dns")
		if param == "" {
			http.Error(w, "missing dns parameter", http.StatusBadRequest)
			return
		}
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(param, "="))
		if err != nil {
			http.Error(w, "dns parameter is not base64url", http.StatusBadRequest)
			return
		}
		raw = b
	case http.MethodPost:
		if ct := r.Header.Get("Content-Type"); ct != dohMediaType {
			http.Error(w, "content type must be "+dohMediaType, http.StatusUnsupportedMediaType)
			return
		}
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, dns.MaxMsgSize))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				http.Error(w, "message too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		raw = b
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	msg := new(dns.Msg)
	if err := msg.Unpack(raw); err != nil {
		s.metrics.invalid.Inc()
		http.Error(w, "malformed DNS message", http.StatusBadRequest)
		return
	}

	q := getQuery()
	defer putQuery(q)
	q.start = start
	q.msg = msg
	q.transport = transportDoH
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		q.client = ap.Addr().Unmap()
	}
	if token != "" {
		p, ok := s.eng.TokenPrincipal(token)
		if !ok {
			http.Error(w, "unknown DoH token", http.StatusNotFound)
			return
		}
		q.principal = s.eng.WithLocation(p, q.client)
		q.tokenAuth = true
	}
	s.handle(q)
	if q.out == nil {
		http.Error(w, "not a DNS query", http.StatusBadRequest)
		return
	}
	h := w.Header()
	h.Set("Content-Type", dohMediaType)
	h.Set("Content-Length", strconv.Itoa(len(q.out)))
	if q.cacheTTL > 0 {
		// private: the answer depends on who asked (policy), so shared
		// HTTP caches must not hand it to someone else.
		h.Set("Cache-Control", "private, max-age="+strconv.FormatUint(uint64(q.cacheTTL), 10))
	} else {
		h.Set("Cache-Control", "no-store")
	}
	if r.Method != http.MethodHead {
		_, _ = w.Write(q.out)
	}
	s.record(q)
}
