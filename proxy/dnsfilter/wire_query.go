package dnsfilter

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// The common shape of a UDP query is parsed here into storage the query
// owns (query.wire), without miekg/dns's Unpack and its allocations: a
// header with one question and no records, or one OPT record without
// options, the name in letters, digits, '-' and '_' only. Every other
// packet (options such as cookies, names that need escapes, more
// records, trailing bytes) goes through Unpack, so the result is always
// what Unpack would give.

// wireQuery is the parsed message's storage inside a pooled query.
type wireQuery struct {
	msg      dns.Msg
	question [1]dns.Question
	opt      dns.OPT
	extra    [1]dns.RR
}

// nameTable interns query names for one UDP reader: a name asked again
// (every cache hit) costs no allocation. It is emptied when it reaches
// nameTableMax names.
type nameTable struct {
	names   map[string]string
	scratch []byte
}

const nameTableMax = 1 << 16

func newNameTable() *nameTable {
	return &nameTable{names: make(map[string]string, 1024), scratch: make([]byte, 0, 256)}
}

// intern returns b as a string, the table's copy when it has one.
func (t *nameTable) intern(b []byte) string {
	if s, ok := t.names[string(b)]; ok {
		return s
	}
	if len(t.names) >= nameTableMax {
		clear(t.names)
	}
	s := string(b)
	t.names[s] = s
	return s
}

// parseQueryFast parses b into w when it has the common shape, and
// reports whether it did; b is a query (QR clear) of at least headerLen
// bytes.
func parseQueryFast(b []byte, w *wireQuery, names *nameTable) bool {
	if binary.BigEndian.Uint16(b[4:]) != 1 || binary.BigEndian.Uint16(b[6:]) != 0 || binary.BigEndian.Uint16(b[8:]) != 0 {
		return false
	}
	arcount := binary.BigEndian.Uint16(b[10:])
	if arcount > 1 {
		return false
	}
	// The question name: labels of safe characters, no pointers.
	name := names.scratch[:0]
	off := headerLen
	for {
		if off >= len(b) {
			return false
		}
		l := int(b[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(b) || len(name)+l+1 > 254 {
			return false
		}
		for _, c := range b[off : off+l] {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
		name = append(name, b[off:off+l]...)
		name = append(name, '.')
		off += l
	}
	if len(name) == 0 {
		name = append(name, '.')
	}
	if off+4 > len(b) {
		return false
	}
	qtype := binary.BigEndian.Uint16(b[off:])
	qclass := binary.BigEndian.Uint16(b[off+2:])
	off += 4
	var (
		udpSize uint16
		ttl     uint32
	)
	if arcount == 1 {
		// root name, type OPT, class = UDP size, TTL = flags, RDLENGTH 0
		if off+11 != len(b) || b[off] != 0 || binary.BigEndian.Uint16(b[off+1:]) != dns.TypeOPT || binary.BigEndian.Uint16(b[off+9:]) != 0 {
			return false
		}
		udpSize = binary.BigEndian.Uint16(b[off+3:])
		ttl = binary.BigEndian.Uint32(b[off+5:])
	} else if off != len(b) {
		return false
	}
	names.scratch = name[:0]

	m := &w.msg
	f2, f3 := b[2], b[3]
	m.MsgHdr = dns.MsgHdr{
		Id:                 binary.BigEndian.Uint16(b),
		Opcode:             int(f2>>3) & 0xF,
		Authoritative:      f2&0x04 != 0,
		Truncated:          f2&0x02 != 0,
		RecursionDesired:   f2&0x01 != 0,
		RecursionAvailable: f3&0x80 != 0,
		Zero:               f3&0x40 != 0,
		AuthenticatedData:  f3&0x20 != 0,
		CheckingDisabled:   f3&0x10 != 0,
		Rcode:              int(f3 & 0xF),
	}
	m.Compress = false
	w.question[0] = dns.Question{Name: names.intern(name), Qtype: qtype, Qclass: qclass}
	m.Question = w.question[:1]
	m.Answer, m.Ns, m.Extra = nil, nil, nil
	if arcount == 1 {
		w.opt = dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: udpSize, Ttl: ttl}}
		m.Rcode |= int(ttl>>24) << 4 // the extended RCODE, as Unpack merges it
		w.extra[0] = &w.opt
		m.Extra = w.extra[:1]
	}
	return true
}
