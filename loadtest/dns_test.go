package loadtest

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func names(t testing.TB, lines ...string) []Query {
	t.Helper()
	qs, err := ParseNames(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return qs
}

func TestOriginDNSAnswers(t *testing.T) {
	tests := []struct {
		name   string
		mod    func(*OriginConfig)
		q      string
		qtype  uint16
		rcode  int
		answer []string // RR strings without TTL column differences
	}{
		{"A", nil, "www.Example.com.", dns.TypeA, dns.RcodeSuccess, []string{"www.Example.com.\t300\tIN\tA\t127.0.0.1"}},
		{"AAAA nodata", nil, "www.example.com.", dns.TypeAAAA, dns.RcodeSuccess, nil},
		{"MX nodata", nil, "example.com.", dns.TypeMX, dns.RcodeSuccess, nil},
		{"AAAA set", func(c *OriginConfig) { c.AAAA = netip.MustParseAddr("::1") }, "a.test.", dns.TypeAAAA, dns.RcodeSuccess,
			[]string{"a.test.\t300\tIN\tAAAA\t::1"}},
		{"other address and ttl", func(c *OriginConfig) { c.A = netip.MustParseAddr("127.0.0.9"); c.TTL = time.Minute }, "a.test.", dns.TypeA,
			dns.RcodeSuccess, []string{"a.test.\t60\tIN\tA\t127.0.0.9"}},
		{"cname", func(c *OriginConfig) { c.CNAME = true }, "shop.example.", dns.TypeA, dns.RcodeSuccess,
			[]string{"shop.example.\t300\tIN\tCNAME\tedge.origin.test.", "edge.origin.test.\t300\tIN\tA\t127.0.0.1"}},
		{"cname target itself", func(c *OriginConfig) { c.CNAME = true; c.CNAMETarget = "cdn.Tracker.test" }, "cdn.tracker.test.", dns.TypeA,
			dns.RcodeSuccess, []string{"cdn.tracker.test.\t300\tIN\tA\t127.0.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := startOrigin(t, func(c *OriginConfig) {
				c.HTTPAddr, c.HTTPSAddr = "", ""
				if tt.mod != nil {
					tt.mod(c)
				}
			})
			for _, network := range []string{"udp", "tcp"} {
				m := new(dns.Msg)
				m.SetQuestion(tt.q, tt.qtype)
				r, _, err := (&dns.Client{Net: network, Timeout: 2 * time.Second}).Exchange(m, o.DNSAddr())
				if err != nil {
					t.Fatalf("%s exchange: %v", network, err)
				}
				if r.Rcode != tt.rcode || !r.Authoritative {
					t.Errorf("%s rcode, aa = %s, %v, want %s, true", network, dns.RcodeToString[r.Rcode], r.Authoritative, dns.RcodeToString[tt.rcode])
				}
				var got []string
				for _, rr := range r.Answer {
					got = append(got, rr.String())
				}
				if strings.Join(got, "\n") != strings.Join(tt.answer, "\n") {
					t.Errorf("%s answer = %q, want %q", network, got, tt.answer)
				}
				if len(tt.answer) == 0 && (len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA) {
					t.Errorf("%s NODATA authority = %v, want one SOA", network, r.Ns)
				}
			}
		})
	}
}

func TestRunDNS(t *testing.T) {
	o := startOrigin(t, func(c *OriginConfig) { c.HTTPAddr, c.HTTPSAddr = "", "" })
	qs := names(t, "www.example.com", "cdn.example.net A", "mail.example.org AAAA", "example.org MX")
	for _, tcp := range []bool{false, true} {
		for _, unique := range []bool{false, true} {
			name := map[bool]string{false: "udp", true: "tcp"}[tcp] + map[bool]string{false: "", true: " unique"}[unique]
			t.Run(name, func(t *testing.T) {
				cfg := DNSDefaults()
				cfg.Server = o.DNSAddr()
				cfg.TCP = tcp
				cfg.Unique = unique
				cfg.Queries = qs
				cfg.Concurrency = 4
				cfg.MaxRequests = 400
				cfg.Duration = 20 * time.Second
				res, err := RunDNS(t.Context(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				if res.Answers != 400 || res.ErrorCount() != 0 {
					t.Fatalf("Answers, Errors = %d, %v, want 400, none", res.Answers, res.Errors)
				}
				if res.Rcodes["NOERROR"] != 400 || res.NoData != 200 {
					t.Errorf("Rcodes, NoData = %v, %d, want NOERROR:400, 200 (AAAA and MX)", res.Rcodes, res.NoData)
				}
				if res.Latency.Count != 400 || res.Latency.P99 < res.Latency.P50 {
					t.Errorf("Latency = %+v", res.Latency)
				}
			})
		}
	}
}

// countingDNS is an authoritative server that records the names it was asked.
func countingDNS(t *testing.T, rcode int) (addr string, seen *sync.Map, count *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seen, count = new(sync.Map), new(atomic.Int64)
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			count.Add(1)
			seen.Store(r.Question[0].Name, true)
			m := new(dns.Msg)
			m.SetRcode(r, rcode)
			_ = w.WriteMsg(m)
		})}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String(), seen, count
}

func TestRunDNSHotAndUnique(t *testing.T) {
	qs := names(t, "a.test", "b.test", "c.test", "d.test", "e.test")
	t.Run("hot", func(t *testing.T) {
		addr, seen, count := countingDNS(t, dns.RcodeNameError)
		cfg := DNSDefaults()
		cfg.Server, cfg.Queries, cfg.Hot = addr, qs, 2
		cfg.Concurrency, cfg.MaxRequests = 3, 90
		res, err := RunDNS(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		seen.Range(func(k, _ any) bool { got = append(got, k.(string)); return true })
		if len(got) != 2 || count.Load() != 90 || res.Rcodes["NXDOMAIN"] != 90 || res.Names != 2 {
			t.Errorf("server saw %v in %d queries; Rcodes %v, Names %d; want 2 names, 90, NXDOMAIN:90, 2", got, count.Load(), res.Rcodes, res.Names)
		}
	})
	t.Run("unique", func(t *testing.T) {
		addr, seen, count := countingDNS(t, dns.RcodeSuccess)
		cfg := DNSDefaults()
		cfg.Server, cfg.Queries, cfg.Unique = addr, qs, true
		cfg.Concurrency, cfg.MaxRequests = 3, 90
		if _, err := RunDNS(t.Context(), cfg); err != nil {
			t.Fatal(err)
		}
		n := 0
		seen.Range(func(k, _ any) bool {
			n++
			if !strings.HasPrefix(k.(string), "u") {
				t.Errorf("unique name %q lacks its prefix label", k)
			}
			return true
		})
		if n != 90 || count.Load() != 90 {
			t.Errorf("server saw %d distinct names in %d queries, want 90 in 90", n, count.Load())
		}
	})
}

func TestRunDNSTimeouts(t *testing.T) {
	// A UDP socket that never answers.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	cfg := DNSDefaults()
	cfg.Server = pc.LocalAddr().String()
	cfg.Queries = names(t, "a.test")
	cfg.Concurrency, cfg.MaxRequests, cfg.Timeout = 2, 6, 50*time.Millisecond
	res, err := RunDNS(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Answers != 0 || res.Errors["timeout"] != 6 {
		t.Errorf("Answers, Errors = %d, %v, want 0, timeout:6", res.Answers, res.Errors)
	}
}

func TestAppendQueryAgreesWithMiekg(t *testing.T) {
	for _, tc := range []struct {
		name  string
		qtype uint16
	}{{"www.example.com.", dns.TypeA}, {"a.", dns.TypeAAAA}, {"xn--bcher-kva.example.", dns.TypeHTTPS}, {"_dmarc.x-y.test.", dns.TypeTXT}} {
		b := appendQuery(nil, 0xbeef, tc.name, tc.qtype)
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil {
			t.Fatalf("Unpack(appendQuery(%q)): %v", tc.name, err)
		}
		if m.Id != 0xbeef || !m.RecursionDesired || len(m.Question) != 1 || m.Question[0].Name != tc.name ||
			m.Question[0].Qtype != tc.qtype || m.Question[0].Qclass != dns.ClassINET {
			t.Errorf("appendQuery(%q) unpacked = %v", tc.name, m)
		}
		if opt := m.IsEdns0(); opt == nil || opt.UDPSize() != 1232 {
			t.Errorf("appendQuery(%q) OPT = %v, want UDP size 1232", tc.name, opt)
		}
	}
}

// BenchmarkRunDNSLoopback measures the generator and the origin DNS
// together on loopback: one op is one query; q/s and p99 are reported.
func BenchmarkRunDNSLoopback(b *testing.B) {
	for _, tcp := range []bool{false, true} {
		b.Run(map[bool]string{false: "udp", true: "tcp"}[tcp], func(b *testing.B) {
			o := startOrigin(b, func(c *OriginConfig) { c.HTTPAddr, c.HTTPSAddr = "", "" })
			cfg := DNSDefaults()
			cfg.Server = o.DNSAddr()
			cfg.TCP = tcp
			cfg.Queries = names(b, "www.example.com", "cdn.example.net AAAA")
			cfg.Concurrency = 8
			cfg.Duration = 5 * time.Minute
			cfg.MaxRequests = uint64(b.N)
			b.ReportAllocs()
			b.ResetTimer()
			res, err := RunDNS(b.Context(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			if res.ErrorCount() != 0 {
				b.Fatalf("errors: %v", res.Errors)
			}
			b.ReportMetric(res.QPS, "q/s")
			b.ReportMetric(float64(res.Latency.P99)/1e3, "p99-µs")
		})
	}
}
