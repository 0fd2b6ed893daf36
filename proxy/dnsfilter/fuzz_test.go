package dnsfilter

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// FuzzHandler feeds raw packets to the query pipeline the way the UDP
// listener does (header check, unpack, handle) and to the DoH handler.
// Properties: no panic (a recovered panic counts in panics_total, checked
// too), every answer unpacks, echoes the ID with QR set, fits the UDP
// size, and names the question asked. Seeds: testdata/fuzz/FuzzHandler.
func FuzzHandler(f *testing.F) {
	z := newZone(f, append(testRecords, bigRecords()...)...)
	up := startDNS(f, z)
	eng := newEngine(f, nil, policyFor("sinkhole"))
	fl := startFilter(f, Config{Upstreams: []string{up}, RateLimit: RateLimitConfig{Disabled: true},
		SinkholeIPv4: []string{"198.51.100.10"}}, eng)
	s := fl.srv
	handler := s.DoHHandler()

	f.Fuzz(func(t *testing.T, raw []byte) {
		// The listener's early header check, then the full unpack.
		m := new(dns.Msg)
		if err := m.Unpack(raw); err != nil || len(raw) < headerLen {
			return
		}
		dh := dns.Header{
			Id: m.Id, Bits: uint16(raw[2])<<8 | uint16(raw[3]),
			Qdcount: uint16(len(m.Question)), Ancount: uint16(len(m.Answer)),
			Nscount: uint16(len(m.Ns)), Arcount: uint16(len(m.Extra)),
		}
		if acceptQuery(dh) != dns.MsgAccept {
			return
		}
		for _, tr := range []transport{transportUDP, transportTCP} {
			q := getQuery()
			q.msg = m.Copy()
			q.transport = tr
			q.client = netip.MustParseAddr("127.0.0.1")
			s.handle(q)
			checkAnswer(t, m, q.out, tr)
			putQuery(q)
		}
		// DoH gets the raw bytes.
		req := httptest.NewRequest(http.MethodPost, "/dns-query", bytes.NewReader(raw))
		req.Header.Set("Content-Type", dohMediaType)
		req.RemoteAddr = "127.0.0.1:5000"
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code == http.StatusOK {
			checkAnswer(t, m, rec.Body.Bytes(), transportDoH)
		}
		if n := testutil.ToFloat64(s.metrics.panics); n != 0 {
			t.Fatalf("handler panicked (%v recovered)", n)
		}
	})
}

func checkAnswer(t *testing.T, q *dns.Msg, out []byte, tr transport) {
	t.Helper()
	if out == nil {
		return
	}
	r := new(dns.Msg)
	if err := r.Unpack(out); err != nil {
		t.Fatalf("%v answer does not unpack: %v", tr, err)
	}
	if r.Id != q.Id || !r.Response {
		t.Fatalf("%v answer ID %d QR %v, want ID %d and QR", tr, r.Id, r.Response, q.Id)
	}
	if tr == transportUDP {
		limit := dns.MinMsgSize
		if opt := q.IsEdns0(); opt != nil {
			limit = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
		limit = min(limit, DefaultMaxUDPSize)
		if len(out) > limit {
			t.Fatalf("udp answer %d bytes, over the limit %d", len(out), limit)
		}
	}
	if len(q.Question) == 1 && len(r.Question) == 1 && !strings.EqualFold(r.Question[0].Name, q.Question[0].Name) {
		t.Fatalf("answer question %q, want %q", r.Question[0].Name, q.Question[0].Name)
	}
}
