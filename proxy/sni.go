package proxy

import (
	"errors"
	"fmt"
)

const (
	recordHeaderLen     = 5
	maxRecordLen        = 16384 + 2048 // TLSCiphertext limit; plaintext hellos are ≤ 16384
	recordTypeHandshake = 0x16
	handshakeClientHelo = 0x01
	extServerName       = 0x0000
	// maxHelloBuffer bounds how much of a tunnel is held back while a
	// ClientHello spanning several records is assembled.
	maxHelloBuffer = 64 << 10
)

var errShortHello = errors.New("truncated ClientHello")

// peeker is what peekClientHello reads: a *bufio.Reader, or a tunnel's
// connection reader.
type peeker interface {
	Peek(n int) ([]byte, error)
	Size() int
}

// peekClientHello reads, without consuming, the TLS ClientHello at the
// start of br and returns its server name ("" when the hello carries none).
// br must have been created with a size of at least maxHelloBuffer. Bytes
// stay buffered in br for the splice. Not TLS: ErrNoClientHello.
func peekClientHello(br peeker) (string, error) {
	hdr, err := br.Peek(recordHeaderLen)
	if err != nil {
		return "", fmt.Errorf("proxy: peek ClientHello: %w", err)
	}
	if hdr[0] != recordTypeHandshake || hdr[1] != 3 {
		return "", ErrNoClientHello
	}
	// Assemble records until the handshake message is complete.
	need := recordHeaderLen
	for {
		h, err := br.Peek(need)
		if err != nil {
			return "", fmt.Errorf("proxy: peek ClientHello: %w", err)
		}
		rl := int(h[need-2])<<8 | int(h[need-1])
		if rl == 0 || rl > maxRecordLen || h[need-recordHeaderLen] != recordTypeHandshake {
			return "", ErrNoClientHello
		}
		need += rl
		if need > maxHelloBuffer || need > br.Size() {
			return "", fmt.Errorf("proxy: ClientHello larger than %d bytes: %w", maxHelloBuffer, errShortHello)
		}
		b, err := br.Peek(need)
		if err != nil {
			return "", fmt.Errorf("proxy: peek ClientHello: %w", err)
		}
		sni, err := parseClientHello(b)
		if !errors.Is(err, errShortHello) {
			return sni, err
		}
		need += recordHeaderLen // the next record's header
	}
}

// parseClientHello extracts the server name from TLS records holding a
// ClientHello. It reads only within b. A hello cut short returns
// errShortHello; anything malformed returns ErrNoClientHello.
func parseClientHello(b []byte) (string, error) {
	// Join the handshake fragments of consecutive handshake records.
	var msg []byte
	single := true
	for len(b) > 0 {
		if len(b) < recordHeaderLen {
			return "", errShortHello
		}
		if b[0] != recordTypeHandshake || b[1] != 3 {
			return "", ErrNoClientHello
		}
		rl := int(b[3])<<8 | int(b[4])
		if rl == 0 || rl > maxRecordLen {
			return "", ErrNoClientHello
		}
		if len(b) < recordHeaderLen+rl {
			return "", errShortHello
		}
		frag := b[recordHeaderLen : recordHeaderLen+rl]
		b = b[recordHeaderLen+rl:]
		if msg == nil {
			msg = frag
		} else {
			if single {
				msg = append([]byte(nil), msg...)
				single = false
			}
			msg = append(msg, frag...)
		}
		if len(msg) >= 4 {
			hl := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
			if len(msg) >= 4+hl {
				break
			}
		}
	}
	if len(msg) < 4 {
		return "", errShortHello
	}
	if msg[0] != handshakeClientHelo {
		return "", ErrNoClientHello
	}
	hl := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
	if len(msg) < 4+hl {
		return "", errShortHello
	}
	return parseHelloBody(msg[4 : 4+hl])
}

// parseHelloBody walks a ClientHello body to the server_name extension.
func parseHelloBody(p []byte) (string, error) {
	r := reader(p)
	if !r.skip(2+32) || // legacy_version, random
		!r.skipVec8() || // legacy_session_id
		!r.skipVec16() || // cipher_suites
		!r.skipVec8() { // legacy_compression_methods
		return "", ErrNoClientHello
	}
	if len(r) == 0 {
		return "", nil // no extensions
	}
	exts, ok := r.vec16()
	if !ok {
		return "", ErrNoClientHello
	}
	for len(exts) > 0 {
		typ, ok1 := exts.u16()
		data, ok2 := exts.vec16()
		if !ok1 || !ok2 {
			return "", ErrNoClientHello
		}
		if typ != extServerName {
			continue
		}
		list, ok := data.vec16()
		if !ok {
			return "", ErrNoClientHello
		}
		for len(list) > 0 {
			nameType, ok1 := list.u8()
			name, ok2 := list.vec16()
			if !ok1 || !ok2 {
				return "", ErrNoClientHello
			}
			if nameType == 0 {
				if len(name) == 0 || len(name) > maxHostLen {
					return "", ErrNoClientHello
				}
				return string(name), nil
			}
		}
		return "", nil
	}
	return "", nil
}

// reader is a bounds-checked cursor over TLS wire bytes.
type reader []byte

func (r *reader) skip(n int) bool {
	if len(*r) < n {
		return false
	}
	*r = (*r)[n:]
	return true
}

func (r *reader) u8() (byte, bool) {
	if len(*r) < 1 {
		return 0, false
	}
	v := (*r)[0]
	*r = (*r)[1:]
	return v, true
}

func (r *reader) u16() (uint16, bool) {
	if len(*r) < 2 {
		return 0, false
	}
	v := uint16((*r)[0])<<8 | uint16((*r)[1])
	*r = (*r)[2:]
	return v, true
}

func (r *reader) vec8() (reader, bool) {
	n, ok := r.u8()
	if !ok || len(*r) < int(n) {
		return nil, false
	}
	v := (*r)[:n]
	*r = (*r)[n:]
	return v, true
}

func (r *reader) vec16() (reader, bool) {
	n, ok := r.u16()
	if !ok || len(*r) < int(n) {
		return nil, false
	}
	v := (*r)[:n]
	*r = (*r)[n:]
	return v, true
}

func (r *reader) skipVec8() bool  { _, ok := r.vec8(); return ok }
func (r *reader) skipVec16() bool { _, ok := r.vec16(); return ok }
