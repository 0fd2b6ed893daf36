package dnsfilter

import (
	"net"
	"strconv"
	"time"

	"github.com/miekg/dns"

	"github.com/cordon-gw/cordon/policies"
)

// Answers made by the filter itself: errors, blocks, ANY and safe search.
// Each maps a Decision to the wire in one place.

// maxEDEText bounds the reason text of an Extended DNS Error.
const maxEDEText = 200

// anyTTL is the TTL of the synthesized RFC 8482 HINFO answer.
const anyTTL = 3600

// finish packs r as q's answer: an OPT record (with the Extended DNS Error
// when code is not noEDE) when the query had EDNS, truncated to the
// client's UDP size.
func (s *Server) finish(q *query, r *dns.Msg, code uint16, text string) {
	r.Compress = true
	if q.ed.present || r.Rcode > 0xF {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(uint16(s.cfg.MaxUDPSize))
		opt.SetDo(q.ed.do)
		if code != noEDE {
			if len(text) > maxEDEText {
				text = text[:maxEDEText]
			}
			opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: code, ExtraText: text})
		}
		r.Extra = append(r.Extra, opt)
	}
	out, err := r.PackBuffer(q.out[:0])
	if err != nil {
		// Only a bug can get here (the records are ours); answer without
		// records rather than nothing.
		s.logger.Error("pack answer", "err", err)
		r.Answer, r.Ns, r.Extra = nil, nil, nil
		r.Rcode = dns.RcodeServerFailure
		out, _ = r.PackBuffer(q.out[:0])
	}
	q.out = out
	q.rcode = r.Rcode
	s.truncate(q)
}

// answerRcode answers q with rcode and no records (question echoed when
// there is exactly one): the minimal answer for errors, unknown clients
// and rate-limited clients.
func (s *Server) answerRcode(q *query, rcode int, a metricAction, code uint16, text string) {
	r := &dns.Msg{}
	r.Id = q.msg.Id
	r.Response = true
	r.Opcode = q.msg.Opcode
	r.RecursionDesired = q.msg.RecursionDesired
	r.CheckingDisabled = q.msg.CheckingDisabled
	r.RecursionAvailable = true
	r.Rcode = rcode
	if len(q.msg.Question) == 1 {
		r.Question = q.msg.Question
	}
	q.action = a
	s.finish(q, r, code, text)
}

// reply starts an answer to q's question (client's spelling kept).
func reply(q *query) *dns.Msg {
	r := &dns.Msg{}
	r.Id = q.msg.Id
	r.Response = true
	r.Opcode = dns.OpcodeQuery
	r.RecursionDesired = q.msg.RecursionDesired
	r.CheckingDisabled = q.msg.CheckingDisabled
	r.RecursionAvailable = true
	r.Question = q.msg.Question
	return r
}

// answerBlock answers a blocked query in the decision's DNS block mode,
// with a short TTL and an Extended DNS Error carrying the reason. via is
// the CNAME target or answer address that was blocked ("" when the query
// name itself was).
func (s *Server) answerBlock(q *query, via string) {
	r := reply(q)
	qn := q.msg.Question[0]
	ttl := uint32(time.Duration(s.cfg.BlockTTL) / time.Second)
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: qn.Name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	nodata := func() { r.Ns = []dns.RR{s.blockSOA(qn.Name, ttl)} }
	switch q.dec.DNSBlock {
	case policies.DNSBlockNullIP, policies.DNSBlockSinkhole:
		switch qn.Qtype {
		case dns.TypeA:
			ips := []net.IP{net.IPv4zero.To4()}
			if q.dec.DNSBlock == policies.DNSBlockSinkhole && len(s.sinkV4) > 0 {
				ips = s.sinkV4
			}
			for _, ip := range ips {
				r.Answer = append(r.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: ip})
			}
		case dns.TypeAAAA:
			ips := []net.IP{net.IPv6zero}
			if q.dec.DNSBlock == policies.DNSBlockSinkhole && len(s.sinkV6) > 0 {
				ips = s.sinkV6
			}
			for _, ip := range ips {
				r.Answer = append(r.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: ip})
			}
		default:
			nodata()
		}
	default:
		r.Rcode = dns.RcodeNameError
		nodata()
	}
	code := uint16(dns.ExtendedErrorCodeBlocked)
	if s.filtered[q.dec.RuleID] {
		code = dns.ExtendedErrorCodeFiltered
	}
	q.action = maBlock
	q.cacheTTL = ttl
	text := ""
	if q.ed.present {
		text = blockText(q.dec, via)
	}
	s.finish(q, r, code, text)
}

// blockSOA is the SOA of block and NODATA answers: its TTL and MINIMUM make
// resolvers cache the block only briefly (RFC 2308).
func (s *Server) blockSOA(name string, ttl uint32) *dns.SOA {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      "cordon.invalid.",
		Mbox:    "hostmaster.cordon.invalid.",
		Serial:  1,
		Refresh: 1800, Retry: 900, Expire: 604800,
		Minttl: ttl,
	}
}

// blockText is the EDE reason: which rule of which policy version, why,
// and what matched.
func blockText(d policies.Decision, via string) string {
	b := make([]byte, 0, 96)
	b = append(b, "blocked by policy v"...)
	b = strconv.AppendInt(b, d.Version, 10)
	if d.RuleID != "" {
		b = append(b, " rule "...)
		b = append(b, d.RuleID...)
	} else {
		b = append(b, " default action"...)
	}
	b = append(b, ": "...)
	b = append(b, d.Reason.String()...)
	if d.Match != "" {
		b = append(b, ' ')
		b = append(b, d.Match...)
	}
	if via != "" {
		b = append(b, " (via "...)
		b = append(b, via...)
		b = append(b, ')')
	}
	return string(b)
}

// answerAny answers an ANY query locally (RFC 8482): a single synthesized
// HINFO record, or REFUSED when configured.
func (s *Server) answerAny(q *query) {
	if s.cfg.Any == AnyRefuse {
		s.answerRcode(q, dns.RcodeRefused, maAllow, dns.ExtendedErrorCodeNotSupported, "ANY is not answered (RFC 8482)")
		return
	}
	r := reply(q)
	r.Answer = []dns.RR{&dns.HINFO{
		Hdr: dns.RR_Header{Name: q.msg.Question[0].Name, Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: anyTTL},
		Cpu: "RFC8482",
	}}
	q.action = maAllow
	s.finish(q, r, noEDE, "")
}

// answerSafeSearch answers a search engine name with a CNAME to its safe
// endpoint followed by the endpoint's records of the asked type.
func (s *Server) answerSafeSearch(q *query, target string, do, cd bool) {
	qn := q.msg.Question[0]
	e, err := s.resolve(cacheKey{name: target, qtype: qn.Qtype, bits: keyBits(do, cd)}, q)
	if err != nil {
		s.answerRcode(q, dns.RcodeServerFailure, maServFail, dns.ExtendedErrorCodeNoReachableAuthority, "upstream resolvers failed")
		return
	}
	var tm dns.Msg
	if err := tm.Unpack(e.wire); err != nil {
		s.answerRcode(q, dns.RcodeServerFailure, maServFail, noEDE, "")
		return
	}
	now := time.Now().UnixNano()
	left := e.remaining(now)
	if e.ttl == 0 {
		left = 0
	}
	elapsed := uint32(0)
	if now > e.stored {
		elapsed = uint32((now - e.stored) / int64(time.Second))
	}
	dec := func(rr dns.RR) dns.RR {
		h := rr.Header()
		if h.Ttl > elapsed {
			h.Ttl -= elapsed
		} else {
			h.Ttl = 0
		}
		return rr
	}
	r := reply(q)
	r.Rcode = tm.Rcode
	r.AuthenticatedData = false
	cnameTTL := min(uint32(anyTTL), max(left, 1))
	r.Answer = append(r.Answer, &dns.CNAME{
		Hdr:    dns.RR_Header{Name: qn.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: cnameTTL},
		Target: target,
	})
	for _, rr := range tm.Answer {
		r.Answer = append(r.Answer, dec(rr))
	}
	for _, rr := range tm.Ns {
		r.Ns = append(r.Ns, dec(rr))
	}
	q.action = maSafeSearch
	q.cacheTTL = cnameTTL
	s.finish(q, r, noEDE, "")
}
