package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"time"
)

// The HTTP/1.1 wire layer of the proxy's front end: a buffered reader that
// owns its bytes (so a head can grow up to max_header_bytes, a CONNECT
// can take over whatever the client sent early, and a body can be spliced
// from the socket once the buffer is drained), and a strict head parser
// whose fields are views into one copied head. Nothing here allocates per
// message once a connection's buffers exist.

var (
	errHeadTooLarge = errors.New("proxy: message head too large")
	errBadHead      = errors.New("proxy: malformed message head")
	errBadFraming   = errors.New("proxy: invalid message framing")
	errBadChunk     = errors.New("proxy: malformed chunked body")
)

// wireError is a refusal of malformed input: the reason is what the
// client is told (400 Bad Request), the class one of the errors above.
// They are values made once, so refusing allocates nothing.
type wireError struct {
	class  error
	reason string
}

func (e *wireError) Error() string { return "proxy: " + e.reason }
func (e *wireError) Unwrap() error { return e.class }

// The refusals, by what is wrong. Each is a shape that parsers read
// differently, the ground of request smuggling (RFC 9112 §6.3, §11.2).
var (
	errRequestLine   = &wireError{errBadHead, "malformed request line"}
	errMethod        = &wireError{errBadHead, "invalid method"}
	errTarget        = &wireError{errBadHead, "invalid request target"}
	errVersion       = &wireError{errBadHead, "unsupported HTTP version"}
	errStatusLine    = &wireError{errBadHead, "malformed status line"}
	errObsFold       = &wireError{errBadHead, "obsolete line folding in a header field"}
	errFieldName     = &wireError{errBadHead, "invalid header field name"}
	errFieldValue    = &wireError{errBadHead, "control character in a header field value"}
	errBareCR        = &wireError{errBadHead, "bare CR in the message head"}
	errTwoHosts      = &wireError{errBadHead, "more than one Host header field"}
	errCLAndTE       = &wireError{errBadFraming, "both Content-Length and Transfer-Encoding"}
	errCLDiffer      = &wireError{errBadFraming, "differing Content-Length values"}
	errCLInvalid     = &wireError{errBadFraming, "invalid Content-Length"}
	errTECoding      = &wireError{errBadFraming, "unsupported Transfer-Encoding (only chunked is accepted)"}
	errTERepeated    = &wireError{errBadFraming, "Transfer-Encoding given more than once"}
	errTEOnHTTP10    = &wireError{errBadFraming, "Transfer-Encoding in an HTTP/1.0 message"}
	errChunkSize     = &wireError{errBadChunk, "invalid chunk size"}
	errChunkExt      = &wireError{errBadChunk, "control character in a chunk extension"}
	errChunkBareLF   = &wireError{errBadChunk, "chunk framing line not ended by CRLF"}
	errChunkDataEnd  = &wireError{errBadChunk, "chunk data not followed by CRLF"}
	errChunkLineLong = &wireError{errBadChunk, "chunk framing line too long"}
	errTrailer       = &wireError{errBadChunk, "malformed trailer field"}
)

// refusalReason is what a client is told about err.
func refusalReason(err error) string {
	var we *wireError
	switch {
	case errors.As(err, &we):
		return we.reason
	case errors.Is(err, errHeadTooLarge):
		return "message head too large"
	}
	return "malformed message"
}

// wireReader is a growable read buffer over a connection.
type wireReader struct {
	rd   io.Reader
	buf  []byte
	r, w int
	err  error // sticky read error, returned once the buffer is drained
	// dlConn, when set, gets a read deadline dl ahead before every read
	// (request bodies: each wait for more is bounded).
	dlConn net.Conn
	dl     time.Duration
}

// reset points the reader at rd with an empty buffer of at least size
// bytes (kept from earlier use when large enough).
func (b *wireReader) reset(rd io.Reader, size int) {
	if cap(b.buf) < size {
		b.buf = make([]byte, size)
	}
	b.buf = b.buf[:cap(b.buf)]
	b.rd, b.r, b.w, b.err = rd, 0, 0, nil
}

func (b *wireReader) buffered() int { return b.w - b.r }

// bytes returns the buffered bytes (a view, valid until the next read).
func (b *wireReader) bytes() []byte { return b.buf[b.r:b.w] }

func (b *wireReader) discard(n int) { b.r += n }

// fill reads once more from the connection, first compacting the buffer
// and growing it (up to limit) when it is full.
func (b *wireReader) fill(limit int) error {
	if b.err != nil {
		return b.err
	}
	if b.r > 0 {
		n := copy(b.buf, b.buf[b.r:b.w])
		b.r, b.w = 0, n
	}
	if b.w == len(b.buf) {
		if len(b.buf) >= limit {
			return errHeadTooLarge
		}
		nb := make([]byte, min(max(2*len(b.buf), 4096), limit))
		copy(nb, b.buf[:b.w])
		b.buf = nb
	}
	if b.dlConn != nil && b.dl > 0 {
		_ = b.dlConn.SetReadDeadline(time.Now().Add(b.dl))
	}
	n, err := b.rd.Read(b.buf[b.w:])
	b.w += n
	if err != nil {
		b.err = err
		if n > 0 {
			return nil
		}
	}
	return err
}

// Read implements io.Reader: buffered bytes first, then the connection.
func (b *wireReader) Read(p []byte) (int, error) {
	if b.r < b.w {
		n := copy(p, b.buf[b.r:b.w])
		b.r += n
		return n, nil
	}
	if b.err != nil {
		err := b.err
		return 0, err
	}
	if len(p) >= len(b.buf) {
		// Large reads go straight to the connection.
		if b.dlConn != nil && b.dl > 0 {
			_ = b.dlConn.SetReadDeadline(time.Now().Add(b.dl))
		}
		n, err := b.rd.Read(p)
		if err != nil {
			b.err = err
			if n > 0 {
				return n, nil
			}
		}
		return n, err
	}
	if err := b.fill(len(b.buf)); err != nil && b.r == b.w {
		return 0, err
	}
	n := copy(p, b.buf[b.r:b.w])
	b.r += n
	return n, nil
}

// readLine returns the next line of chunk framing without its CRLF,
// shorter than limit (net/http's bound). A bare LF ends nothing here: RFC 9112 allows it
// only in the message head, and chunk parsers that do and do not accept
// it disagree on where a body ends.
func (b *wireReader) readLine(limit int) ([]byte, error) {
	scanned := 0
	for {
		if i := bytes.IndexByte(b.buf[b.r+scanned:b.w], '\n'); i >= 0 {
			end := b.r + scanned + i
			line := b.buf[b.r:end]
			if end-b.r > limit {
				return nil, errChunkLineLong
			}
			n := len(line)
			if n == 0 || line[n-1] != '\r' {
				return nil, errChunkBareLF
			}
			b.r = end + 1
			return line[:n-1], nil
		}
		scanned = b.w - b.r
		if scanned > limit {
			return nil, errChunkLineLong
		}
		if err := b.fill(max(len(b.buf), limit+b.w-b.r)); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// readHead reads one message head (through the empty line) into dst,
// which is returned grown as needed. Leading empty lines are skipped
// (RFC 9112 §2.2). limit bounds the head.
func (b *wireReader) readHead(dst []byte, limit int) ([]byte, error) {
	scanned := 0
	for {
		// Skip the CRLFs some clients send between requests.
		for b.r < b.w && (b.buf[b.r] == '\r' || b.buf[b.r] == '\n') && scanned == 0 {
			b.r++
		}
		if end := headEnd(b.buf[b.r:b.w], scanned); end >= 0 {
			if end > limit {
				return dst, errHeadTooLarge
			}
			dst = append(dst[:0], b.buf[b.r:b.r+end]...)
			b.r += end
			return dst, nil
		}
		scanned = b.w - b.r
		if scanned >= limit {
			return dst, errHeadTooLarge
		}
		if err := b.fill(limit + 64); err != nil {
			if errors.Is(err, errHeadTooLarge) {
				return dst, errHeadTooLarge
			}
			if err == io.EOF && scanned > 0 {
				err = io.ErrUnexpectedEOF
			}
			return dst, err
		}
	}
}

// headEnd returns the length of the head at the start of b including its
// final empty line, or -1. from is how far b was already searched.
func headEnd(b []byte, from int) int {
	from = max(from-3, 0)
	for {
		i := bytes.IndexByte(b[from:], '\n')
		if i < 0 {
			return -1
		}
		i += from
		// "\n\n" or "\n\r\n"
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
		from = i + 1
	}
}

// field is one header line of a head: name as received, value without
// surrounding whitespace.
type field struct {
	name, value []byte
}

// head is a parsed request or response head. Every slice views raw.
type head struct {
	raw []byte

	// request line
	method, target []byte
	// status line
	status int
	reason []byte

	major, minor int
	fields       []field

	// framing and connection management (RFC 9112 §6, §9)
	contentLength int64 // -1: none given
	chunked       bool
	// tePresent: Transfer-Encoding was sent (with Content-Length, it wins
	// and the connection must close after this message).
	tePresent  bool
	close      bool // Connection: close, or HTTP/1.0 without keep-alive
	keepAlive  bool // Connection: keep-alive
	upgrade    bool // Connection: upgrade
	expect100  bool // Expect: 100-continue
	hasConnHdr bool
}

func (h *head) reset() {
	h.raw = h.raw[:0]
	h.method, h.target, h.reason = nil, nil, nil
	h.status, h.major, h.minor = 0, 0, 0
	h.fields = h.fields[:0]
	h.contentLength = -1
	h.chunked, h.tePresent, h.close, h.keepAlive, h.upgrade, h.expect100, h.hasConnHdr = false, false, false, false, false, false, false
}

func (h *head) http11() bool { return h.major == 1 && h.minor >= 1 }

// get returns the first value of name (case-insensitive), nil when absent.
func (h *head) get(name string) []byte {
	for i := range h.fields {
		if asciiEqualFold(h.fields[i].name, name) {
			return h.fields[i].value
		}
	}
	return nil
}

// has reports whether name is present.
func (h *head) has(name string) bool {
	for i := range h.fields {
		if asciiEqualFold(h.fields[i].name, name) {
			return true
		}
	}
	return false
}

// parseRequestHead parses raw (as returned by readHead) as a request head.
func parseRequestHead(h *head, raw []byte) error {
	h.reset()
	h.raw = raw
	line, rest := cutLine(raw)
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1+1 {
		if bytes.IndexByte(line, '\r') >= 0 {
			return errBareCR
		}
		return errRequestLine
	}
	h.method, h.target = line[:sp1], line[sp1+1:sp2]
	if !isToken(h.method) {
		return errMethod
	}
	if !validTarget(h.target) {
		if bytes.IndexByte(h.target, '\r') >= 0 {
			return errBareCR
		}
		return errTarget
	}
	var ok bool
	if h.major, h.minor, ok = parseVersion(line[sp2+1:]); !ok {
		if bytes.IndexByte(line[sp2+1:], '\r') >= 0 {
			return errBareCR
		}
		return errRequestLine
	}
	if h.major != 1 {
		return errVersion
	}
	return h.parseFields(rest, true)
}

// parseResponseHead parses raw as a response head.
func parseResponseHead(h *head, raw []byte) error {
	h.reset()
	h.raw = raw
	line, rest := cutLine(raw)
	if len(line) < 12 || line[8] != ' ' {
		return errStatusLine
	}
	var ok bool
	if h.major, h.minor, ok = parseVersion(line[:8]); !ok || h.major != 1 {
		return errStatusLine
	}
	code := line[9:12]
	if code[0] < '1' || code[0] > '5' || !isDigit(code[1]) || !isDigit(code[2]) || (len(line) > 12 && line[12] != ' ') {
		return errStatusLine
	}
	if !validFieldValue(line[12:]) {
		return errStatusLine
	}
	h.status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	if len(line) > 13 {
		h.reason = line[13:]
	}
	return h.parseFields(rest, false)
}

func (h *head) parseFields(rest []byte, request bool) error {
	clSeen, hostSeen := false, false
	for len(rest) > 0 {
		var line []byte
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break
		}
		name, value, err := parseField(line)
		if err != nil {
			return err
		}
		h.fields = append(h.fields, field{name: name, value: value})
		switch {
		case asciiEqualFold(name, "Content-Length"):
			n, ok := parseContentLength(value)
			if !ok {
				return errCLInvalid
			}
			if clSeen && n != h.contentLength {
				return errCLDiffer
			}
			clSeen, h.contentLength = true, n
		case asciiEqualFold(name, "Transfer-Encoding"):
			// Only chunked is understood; it must be the final coding and
			// the only one (a proxy that guesses invites smuggling).
			if h.tePresent {
				return errTERepeated
			}
			if !asciiEqualFold(value, "chunked") {
				return errTECoding
			}
			h.tePresent, h.chunked = true, true
		case asciiEqualFold(name, "Connection"):
			h.hasConnHdr = true
			for tok := range tokens(value) {
				switch {
				case asciiEqualFold(tok, "close"):
					h.close = true
				case asciiEqualFold(tok, "keep-alive"):
					h.keepAlive = true
				case asciiEqualFold(tok, "upgrade"):
					h.upgrade = true
				}
			}
		case request && asciiEqualFold(name, "Host"):
			// RFC 9112 §3.2: more than one Host is a 400; two hops that
			// pick different ones route the same request differently.
			if hostSeen {
				return errTwoHosts
			}
			hostSeen = true
		case request && asciiEqualFold(name, "Expect"):
			if asciiEqualFold(value, "100-continue") {
				h.expect100 = true
			}
		}
	}
	if h.tePresent && clSeen {
		if request {
			// RFC 9112 §6.3 lets a server refuse this, and a proxy
			// should: the hops before it may have framed the message by
			// Content-Length.
			return errCLAndTE
		}
		// A response: Transfer-Encoding overrides Content-Length, which
		// is not forwarded; the connection ends after it.
		h.contentLength = -1
		h.close = true
	}
	if h.tePresent && !h.http11() {
		return errTEOnHTTP10
	}
	if !h.http11() && !h.keepAlive {
		h.close = true
	}
	return nil
}

// parseField splits one field line (of a head or a trailer section)
// into its name and its value without surrounding whitespace.
func parseField(line []byte) (name, value []byte, err error) {
	if line[0] == ' ' || line[0] == '\t' {
		// Obsolete line folding (RFC 9112 §5.2): refused, it hides
		// fields from some parsers and not from others.
		return nil, nil, errObsFold
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 || !isToken(line[:colon]) {
		if bytes.IndexByte(line, '\r') >= 0 {
			return nil, nil, errBareCR
		}
		return nil, nil, errFieldName
	}
	value = trimOWS(line[colon+1:])
	if !validFieldValue(value) {
		if bytes.IndexByte(value, '\r') >= 0 {
			return nil, nil, errBareCR
		}
		return nil, nil, errFieldValue
	}
	return line[:colon], value, nil
}

// cutLine splits b after its first line (CRLF or LF).
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

func parseVersion(v []byte) (major, minor int, ok bool) {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || !isDigit(v[5]) || v[6] != '.' || !isDigit(v[7]) {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// tokenChars marks the characters of an RFC 9110 token.
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}

// validFieldValue refuses control characters other than tab (NUL, CR
// and LF inside a value are request smuggling and header injection).
func validFieldValue(b []byte) bool {
	for _, c := range b {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// validTarget refuses control characters and spaces in a request target.
func validTarget(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c <= 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// tokens yields the comma-separated elements of a list value, trimmed,
// empty ones skipped.
func tokens(v []byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(v) > 0 {
			var t []byte
			if i := bytes.IndexByte(v, ','); i >= 0 {
				t, v = v[:i], v[i+1:]
			} else {
				t, v = v, nil
			}
			if t = trimOWS(t); len(t) > 0 && !yield(t) {
				return
			}
		}
	}
}

// asciiEqualFold compares b with the ASCII string s, ignoring case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if c == d {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// appendHeader appends "name: value\r\n".
func appendHeader(dst []byte, name string, value []byte) []byte {
	dst = append(dst, name...)
	dst = append(dst, ':', ' ')
	dst = append(dst, value...)
	return append(dst, '\r', '\n')
}

func appendHeaderString(dst []byte, name, value string) []byte {
	dst = append(dst, name...)
	dst = append(dst, ':', ' ')
	dst = append(dst, value...)
	return append(dst, '\r', '\n')
}

// appendStatusLine appends "HTTP/1.1 <code> <text>\r\n".
func appendStatusLine(dst []byte, code int, text string) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, text...)
	return append(dst, '\r', '\n')
}

// writeAll writes the buffers with one writev where the connection
// supports it.
func writeAll(c net.Conn, bufs *net.Buffers) error {
	_, err := bufs.WriteTo(c)
	return err
}
