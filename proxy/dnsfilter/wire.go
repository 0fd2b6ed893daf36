package dnsfilter

import (
	"encoding/binary"
	"errors"

	"github.com/miekg/dns"
)

// Wire-format helpers for serving cached answers without unpacking them:
// the cache keeps each answer packed, with the offsets of its TTL fields,
// and a hit copies the bytes and patches ID, flags, question case and TTLs.

const headerLen = 12

var errShortMsg = errors.New("dnsfilter: short or malformed message")

// skipName returns the offset just past the domain name at off.
func skipName(msg []byte, off int) (int, error) {
	for hops := 0; hops < 128; hops++ {
		if off >= len(msg) {
			return 0, errShortMsg
		}
		c := int(msg[off])
		switch c & 0xC0 {
		case 0x00:
			if c == 0 {
				return off + 1, nil
			}
			off += 1 + c
		case 0xC0:
			if off+2 > len(msg) {
				return 0, errShortMsg
			}
			return off + 2, nil
		default:
			return 0, errShortMsg
		}
	}
	return 0, errShortMsg
}

// rrOffsets walks a packed message and returns the end of its question and
// the offset of every resource record's TTL field.
func rrOffsets(msg []byte) (qEnd int, ttlOffs []uint16, err error) {
	if len(msg) < headerLen {
		return 0, nil, errShortMsg
	}
	qd := int(binary.BigEndian.Uint16(msg[4:]))
	rrs := int(binary.BigEndian.Uint16(msg[6:])) + int(binary.BigEndian.Uint16(msg[8:])) + int(binary.BigEndian.Uint16(msg[10:]))
	off := headerLen
	for i := 0; i < qd; i++ {
		if off, err = skipName(msg, off); err != nil {
			return 0, nil, err
		}
		off += 4
	}
	if off > len(msg) {
		return 0, nil, errShortMsg
	}
	qEnd = off
	ttlOffs = make([]uint16, 0, rrs)
	for i := 0; i < rrs; i++ {
		if off, err = skipName(msg, off); err != nil {
			return 0, nil, err
		}
		if off+10 > len(msg) {
			return 0, nil, errShortMsg
		}
		ttlOffs = append(ttlOffs, uint16(off+4))
		rdlen := int(binary.BigEndian.Uint16(msg[off+8:]))
		off += 10 + rdlen
		if off > len(msg) {
			return 0, nil, errShortMsg
		}
	}
	return qEnd, ttlOffs, nil
}

// Header flag bits in bytes 2 and 3 of a message.
const (
	flagAA = 0x04 // byte 2
	flagTC = 0x02 // byte 2
	flagRD = 0x01 // byte 2
	flagRA = 0x80 // byte 3
	flagAD = 0x20 // byte 3
	flagCD = 0x10 // byte 3
)

// ednsInfo is what the query said about EDNS0.
type ednsInfo struct {
	present bool
	do      bool
	size    uint16 // client's advertised buffer size, ≥ 512
}

func queryEDNS(q *dns.Msg) ednsInfo {
	opt := q.IsEdns0()
	if opt == nil {
		return ednsInfo{size: dns.MinMsgSize}
	}
	size := opt.UDPSize()
	if size < dns.MinMsgSize {
		size = dns.MinMsgSize
	}
	return ednsInfo{present: true, do: opt.Do(), size: size}
}

// appendOPT appends an OPT record advertising size, echoing do, carrying
// an Extended DNS Error when code is not 0xFFFF, and bumps ARCOUNT.
func appendOPT(buf []byte, size uint16, do bool, code uint16, text string) []byte {
	var flags uint16
	if do {
		flags = 0x8000
	}
	rdlen := 0
	if code != noEDE {
		rdlen = 4 + 2 + len(text)
	}
	buf = append(buf, 0, // root name
		byte(dns.TypeOPT>>8), byte(dns.TypeOPT&0xff),
		byte(size>>8), byte(size),
		0, 0, byte(flags>>8), byte(flags), // ext rcode, version, DO
		byte(rdlen>>8), byte(rdlen))
	if code != noEDE {
		l := 2 + len(text)
		buf = append(buf, byte(dns.EDNS0EDE>>8), byte(dns.EDNS0EDE&0xff), byte(l>>8), byte(l), byte(code>>8), byte(code))
		buf = append(buf, text...)
	}
	ar := binary.BigEndian.Uint16(buf[10:])
	binary.BigEndian.PutUint16(buf[10:], ar+1)
	return buf
}

// noEDE means "no Extended DNS Error option" to appendOPT.
const noEDE = 0xFFFF
