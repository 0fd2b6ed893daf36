package dnsfilter

import (
	"encoding/binary"
	"net"
	"strconv"
	"strings"
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
		s.logger.ErrorContext(s.baseCtx, "pack answer", logErr, err)
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
// name itself was). The answer is written straight to wire format: blocks
// are a hot path (a blocklist hit costs no allocation).
func (s *Server) answerBlock(q *query, via string) {
	qn := q.msg.Question[0]
	ttl := uint32(time.Duration(s.cfg.BlockTTL) / time.Second)
	rcode := dns.RcodeSuccess
	var v4 []net.IP
	var v6 []net.IP
	switch q.dec.DNSBlock {
	case policies.DNSBlockNullIP, policies.DNSBlockSinkhole:
		switch qn.Qtype {
		case dns.TypeA:
			v4 = nullV4
			if q.dec.DNSBlock == policies.DNSBlockSinkhole && len(s.sinkV4) > 0 {
				v4 = s.sinkV4
			}
		case dns.TypeAAAA:
			v6 = nullV6
			if q.dec.DNSBlock == policies.DNSBlockSinkhole && len(s.sinkV6) > 0 {
				v6 = s.sinkV6
			}
		}
	default:
		rcode = dns.RcodeNameError
	}
	code := uint16(dns.ExtendedErrorCodeBlocked)
	if s.filtered[q.dec.RuleID] {
		code = dns.ExtendedErrorCodeFiltered
	}
	q.action = maBlock
	q.cacheTTL = ttl
	q.rcode = rcode

	b := q.out[:0]
	b = appendHeader(b, q.msg, rcode)
	var err error
	if b, err = appendName(b, qn.Name); err != nil {
		// The name came from an unpacked message: it always packs. Fall
		// back to an answer without records all the same.
		q.out = b[:0]
		s.answerRcode(q, rcode, maBlock, code, "")
		return
	}
	b = append(b, byte(qn.Qtype>>8), byte(qn.Qtype), byte(qn.Qclass>>8), byte(qn.Qclass))
	var an, ns uint16
	for _, ip := range v4 {
		b = appendRRHeader(b, dns.TypeA, ttl, 4)
		b = append(b, ip.To4()...)
		an++
	}
	for _, ip := range v6 {
		b = appendRRHeader(b, dns.TypeAAAA, ttl, 16)
		b = append(b, ip.To16()...)
		an++
	}
	if an == 0 {
		// NXDOMAIN, or NODATA for other types: an SOA whose TTL and
		// MINIMUM make resolvers cache the block only briefly (RFC 2308).
		b = appendRRHeader(b, dns.TypeSOA, ttl, uint16(len(blockSOARdata)+4))
		b = append(b, blockSOARdata...)
		b = append(b, byte(ttl>>24), byte(ttl>>16), byte(ttl>>8), byte(ttl))
		ns = 1
	}
	binary.BigEndian.PutUint16(b[6:], an)
	binary.BigEndian.PutUint16(b[8:], ns)
	if q.ed.present {
		b = appendOPTHeader(b, uint16(s.cfg.MaxUDPSize), q.ed.do)
		optStart := len(b)
		b = append(b, byte(dns.EDNS0EDE>>8), byte(dns.EDNS0EDE&0xff), 0, 0, byte(code>>8), byte(code))
		textStart := len(b)
		b = appendBlockText(b, q.dec, via)
		if len(b)-textStart > maxEDEText {
			b = b[:textStart+maxEDEText]
		}
		binary.BigEndian.PutUint16(b[optStart+2:], uint16(len(b)-optStart-4))
		binary.BigEndian.PutUint16(b[optStart-2:], uint16(len(b)-optStart))
	}
	q.out = b
	s.truncate(q)
}

var (
	nullV4 = []net.IP{net.IPv4zero.To4()}
	nullV6 = []net.IP{net.IPv6zero}
)

// blockSOARdata is the SOA RDATA of block answers up to (not including)
// MINIMUM, which is the block TTL: MNAME cordon.invalid., RNAME
// hostmaster.cordon.invalid., serial 1, refresh 1800, retry 900, expire
// 604800.
var blockSOARdata = func() []byte {
	b := make([]byte, 0, 64)
	b, _ = appendName(b, "cordon.invalid.")
	b, _ = appendName(b, "hostmaster.cordon.invalid.")
	for _, v := range []uint32{1, 1800, 900, 604800} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b
}()

// appendHeader appends a response header to q with rcode, RD and CD
// echoed, RA set, one question and no records yet.
func appendHeader(b []byte, q *dns.Msg, rcode int) []byte {
	f2 := byte(0x80) // QR, opcode QUERY
	if q.RecursionDesired {
		f2 |= flagRD
	}
	f3 := byte(flagRA) | byte(rcode&0xF)
	if q.CheckingDisabled {
		f3 |= flagCD
	}
	return append(b, byte(q.Id>>8), byte(q.Id), f2, f3, 0, 1, 0, 0, 0, 0, 0, 0)
}

// appendName appends name in wire format, uncompressed.
func appendName(b []byte, name string) ([]byte, error) {
	n := len(b)
	b = append(b, make([]byte, 256)...)
	end, err := dns.PackDomainName(name, b, n, nil, false)
	if err != nil {
		return b[:n], err
	}
	return b[:end], nil
}

// appendRRHeader appends the fixed part of a record owned by the question
// name (a compression pointer to offset 12), class IN.
func appendRRHeader(b []byte, t uint16, ttl uint32, rdlen uint16) []byte {
	return append(b, 0xC0, headerLen, byte(t>>8), byte(t), 0, 1,
		byte(ttl>>24), byte(ttl>>16), byte(ttl>>8), byte(ttl), byte(rdlen>>8), byte(rdlen))
}

// appendOPTHeader appends an OPT record with an empty RDATA (length to be
// patched by the caller) and bumps ARCOUNT.
func appendOPTHeader(b []byte, size uint16, do bool) []byte {
	var flags byte
	if do {
		flags = 0x80
	}
	b = append(b, 0, byte(dns.TypeOPT>>8), byte(dns.TypeOPT&0xff), byte(size>>8), byte(size), 0, 0, flags, 0, 0, 0)
	binary.BigEndian.PutUint16(b[10:], binary.BigEndian.Uint16(b[10:])+1)
	return b
}

// appendBlockText appends the EDE reason: which rule of which policy
// version, why, and what matched.
func appendBlockText(b []byte, d policies.Decision, via string) []byte {
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
	return b
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
	e, err := s.resolve(cacheKey{name: strings.TrimSuffix(target, "."), qtype: qn.Qtype, bits: keyBits(do, cd)}, q)
	if err == errDeferred {
		return
	}
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
