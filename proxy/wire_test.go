package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func readHeadString(t testing.TB, raw string, limit int) ([]byte, *wireReader, error) {
	t.Helper()
	r := &wireReader{}
	r.reset(strings.NewReader(raw), 16)
	b, err := r.readHead(nil, limit)
	return b, r, err
}

func TestReadHead(t *testing.T) {
	for _, tc := range []struct {
		name, raw, head, rest string
		err                   error
	}{
		{"crlf", "GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "BODY", nil},
		{"bare lf", "GET / HTTP/1.1\nHost: a\n\nX", "GET / HTTP/1.1\nHost: a\n\n", "X", nil},
		{"leading empty lines", "\r\n\r\nGET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\n\r\n", "", nil},
		{"grows past the first buffer", "GET /" + strings.Repeat("a", 100) + " HTTP/1.1\r\n\r\n", "GET /" + strings.Repeat("a", 100) + " HTTP/1.1\r\n\r\n", "", nil},
		{"too large", "GET /" + strings.Repeat("a", 300) + " HTTP/1.1\r\n\r\n", "", "", errHeadTooLarge},
		{"cut short", "GET / HTTP/1.1\r\nHost: a\r\n", "", "", io.ErrUnexpectedEOF},
		{"nothing", "", "", "", io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, r, err := readHeadString(t, tc.raw, 256)
			if !errors.Is(err, tc.err) {
				t.Fatalf("readHead(%q) error = %v, want %v", tc.raw, err, tc.err)
			}
			if err != nil {
				return
			}
			rest, _ := io.ReadAll(r)
			if string(b) != tc.head || string(rest) != tc.rest {
				t.Errorf("readHead(%q) = %q then %q, want %q then %q", tc.raw, b, rest, tc.head, tc.rest)
			}
		})
	}
}

func TestParseRequestHead(t *testing.T) {
	for _, tc := range []struct {
		name, raw string
		err       error
		check     func(*head) bool
	}{
		{"get", "GET http://a.test/x?y HTTP/1.1\r\nHost: a.test\r\n\r\n", nil, func(h *head) bool {
			return string(h.method) == "GET" && string(h.target) == "http://a.test/x?y" && h.http11() && h.contentLength == -1 && !h.close
		}},
		{"content length", "POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n", nil, func(h *head) bool { return h.contentLength == 12 && !h.chunked }},
		{"same length twice", "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", nil, func(h *head) bool { return h.contentLength == 3 }},
		{"chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", nil, func(h *head) bool { return h.chunked && h.contentLength == -1 }},
		{"connection tokens", "GET / HTTP/1.1\r\nConnection: Upgrade, X-Hop\r\nUpgrade: websocket\r\n\r\n", nil, func(h *head) bool {
			return h.upgrade && h.hasConnHdr && string(h.get("upgrade")) == "websocket" && isHopField([]byte("x-hop"), h)
		}},
		{"http/1.0 closes", "GET / HTTP/1.0\r\n\r\n", nil, func(h *head) bool { return h.close }},
		{"http/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", nil, func(h *head) bool { return !h.close }},
		{"expect", "PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", nil, func(h *head) bool { return h.expect100 }},
		{"value whitespace trimmed", "GET / HTTP/1.1\r\nX-A: \t v \t\r\n\r\n", nil, func(h *head) bool { return string(h.get("x-a")) == "v" }},
		{"bare lf head", "GET / HTTP/1.1\nHost: a\nX-A: b\n\n", nil, func(h *head) bool {
			// RFC 9112 §2.2 lets a recipient take LF for CRLF in the head;
			// the head is rebuilt with CRLF before it goes on.
			return string(h.get("host")) == "a" && string(h.get("x-a")) == "b"
		}},
		// Request smuggling shapes: each refused with its own reason.
		{"cl and te", "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", errCLAndTE, nil},
		{"te and cl", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", errCLAndTE, nil},
		{"two lengths", "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", errCLDiffer, nil},
		{"length list", "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n", errCLInvalid, nil},
		{"signed length", "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", errCLInvalid, nil},
		{"hex length", "POST / HTTP/1.1\r\nContent-Length: 0x3\r\n\r\n", errCLInvalid, nil},
		{"empty length", "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", errCLInvalid, nil},
		{"huge length", "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", errCLInvalid, nil},
		{"gzip coding", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", errTECoding, nil},
		{"chunked then identity", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n", errTECoding, nil},
		{"xchunked", "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", errTECoding, nil},
		{"two te", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", errTERepeated, nil},
		{"te on 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", errTEOnHTTP10, nil},
		{"te with space before colon", "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", errFieldName, nil},
		{"obs fold", "GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", errObsFold, nil},
		{"obs fold tab", "GET / HTTP/1.1\r\nX-A: a\r\n\tb\r\n\r\n", errObsFold, nil},
		{"folded te", "POST / HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", errTECoding, nil},
		{"space before colon", "GET / HTTP/1.1\r\nX-A : a\r\n\r\n", errFieldName, nil},
		{"no colon", "GET / HTTP/1.1\r\nX-A\r\n\r\n", errFieldName, nil},
		{"nul in value", "GET / HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", errFieldValue, nil},
		{"bare cr in value", "GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n", errBareCR, nil},
		{"bare cr ends a field", "GET / HTTP/1.1\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n", errBareCR, nil},
		{"bare cr in name", "GET / HTTP/1.1\r\nX\rA: a\r\n\r\n", errBareCR, nil},
		{"bare cr in request line", "GET /\r HTTP/1.1\r\n\r\n", errBareCR, nil},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", errTwoHosts, nil},
		{"http/2", "GET / HTTP/2.0\r\n\r\n", errVersion, nil},
		{"no version", "GET /\r\n\r\n", errRequestLine, nil},
		{"lowercase version", "GET / http/1.1\r\n\r\n", errRequestLine, nil},
		{"bad method", "G(T / HTTP/1.1\r\n\r\n", errMethod, nil},
		{"space in target", "GET /a b HTTP/1.1\r\n\r\n", errTarget, nil},
		{"double space", "GET  / HTTP/1.1\r\n\r\n", errTarget, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h head
			err := parseRequestHead(&h, []byte(tc.raw))
			if err != tc.err {
				t.Fatalf("parseRequestHead(%q) = %v, want %v", tc.raw, err, tc.err)
			}
			if err != nil && !errors.Is(err, errBadHead) && !errors.Is(err, errBadFraming) {
				t.Errorf("%v is neither a head nor a framing error", err)
			}
			if err == nil && !tc.check(&h) {
				t.Errorf("parseRequestHead(%q) = %+v", tc.raw, h)
			}
		})
	}
}

func TestParseResponseHead(t *testing.T) {
	for _, tc := range []struct {
		raw    string
		status int
		cl     int64
		close  bool
		ok     bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 200, 5, false, true},
		{"HTTP/1.1 204\r\n\r\n", 204, -1, false, true},
		{"HTTP/1.0 200 OK\r\n\r\n", 200, -1, true, true},
		{"HTTP/1.1 599 Custom Thing\r\nConnection: close\r\n\r\n", 599, -1, true, true},
		{"HTTP/1.1 20 OK\r\n\r\n", 0, 0, false, false},
		{"HTTP/1.1 2000 OK\r\n\r\n", 0, 0, false, false},
		{"HTTP/3.0 200 OK\r\n\r\n", 0, 0, false, false},
		{"ICY 200 OK\r\n\r\n", 0, 0, false, false},
	} {
		var h head
		err := parseResponseHead(&h, []byte(tc.raw))
		if (err == nil) != tc.ok || (err == nil && (h.status != tc.status || h.contentLength != tc.cl || h.close != tc.close)) {
			t.Errorf("parseResponseHead(%q) = status %d length %d close %v, %v", tc.raw, h.status, h.contentLength, h.close, err)
		}
	}
}

func TestSplitAbsolute(t *testing.T) {
	for _, tc := range []struct{ in, scheme, auth, rest string }{
		{"http://a.test/x?y=1", "http", "a.test", "/x?y=1"},
		{"HTTP://a.test:8080", "HTTP", "a.test:8080", "/"},
		{"http://a.test?q", "http", "a.test", "/?q"},
		{"https://u:p@a.test/p#frag", "https", "a.test", "/p"},
		{"http://[::1]:80/", "http", "[::1]:80", "/"},
	} {
		s, a, r, ok := splitAbsolute([]byte(tc.in))
		if !ok || string(s) != tc.scheme || string(a) != tc.auth || string(r) != tc.rest {
			t.Errorf("splitAbsolute(%q) = %q %q %q %v", tc.in, s, a, r, ok)
		}
	}
	for _, in := range []string{"/x", "ftp://a/", "http:///x", "*", "a.test:443"} {
		if _, _, _, ok := splitAbsolute([]byte(in)); ok {
			t.Errorf("splitAbsolute(%q) accepted", in)
		}
	}
}

// relayChunkedString runs relayChunked over in and returns what was
// written.
func relayChunkedString(in string, verbatim bool) (string, int64, error) {
	var out bytes.Buffer
	w := &bufConn{w: &out}
	o := bodyOut{c: w}
	r := &wireReader{}
	r.reset(strings.NewReader(in), 16)
	err := relayChunked(&o, r, verbatim)
	if err == nil {
		err = o.flush()
	}
	return out.String(), o.n, err
}

func TestRelayChunked(t *testing.T) {
	in := "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT"
	got, n, err := relayChunkedString(in, true)
	if err != nil || got != strings.TrimSuffix(in, "NEXT") || n != 11 {
		t.Errorf("verbatim relay = %q, %d, %v", got, n, err)
	}
	got, n, err = relayChunkedString(in, false)
	if err != nil || got != "hello world" || n != 11 {
		t.Errorf("decoding relay = %q, %d, %v", got, n, err)
	}
	for _, tc := range []struct {
		in  string
		err error
	}{
		{"5\r\nhello0\r\n\r\n", errChunkDataEnd},
		{"5\r\nhello\n0\r\n\r\n", errChunkDataEnd},
		{"5\r\nhello\r0\r\n\r\n", errChunkDataEnd},
		{"x\r\n", errChunkSize},
		{"\r\n", errChunkSize},
		{" 5\r\nhello\r\n0\r\n\r\n", errChunkSize},
		{"0x5\r\nhello\r\n0\r\n\r\n", errChunkSize},
		{"-5\r\nhello\r\n0\r\n\r\n", errChunkSize},
		{"+5\r\nhello\r\n0\r\n\r\n", errChunkSize},
		{"5 5\r\nhello\r\n0\r\n\r\n", errChunkSize},
		{"fffffffffffffffff\r\n", errChunkSize},
		{"5\nhello\r\n0\r\n\r\n", errChunkBareLF},
		{"5\r\nhello\r\n0\n\r\n", errChunkBareLF},
		{"5\r\nhello\r\n0\r\n\n", errChunkBareLF},
		{"5;a=\rb\r\nhello\r\n0\r\n\r\n", errChunkExt},
		{"5;a=\x00\r\nhello\r\n0\r\n\r\n", errChunkExt},
		{"5;" + strings.Repeat("e", maxChunkLine) + "\r\nhello\r\n0\r\n\r\n", errChunkLineLong},
		{"0\r\nX-T: a\r\n folded\r\n\r\n", errTrailer},
		{"0\r\nno colon\r\n\r\n", errTrailer},
		{"0\r\nX-T: a\x00\r\n\r\n", errTrailer},
		{"5\r\nhel", io.ErrUnexpectedEOF},
	} {
		if _, _, err := relayChunkedString(tc.in, true); err != tc.err {
			t.Errorf("relayChunked(%.40q) = %v, want %v", tc.in, err, tc.err)
		}
	}
	// Whitespace ending a size line is read as net/http reads it;
	// whitespace before extensions net/http refuses, and so does this.
	got, n, err = relayChunkedString("5\t \r\nhello\r\n5;a=b\t\r\nworld\r\n0\r\n\r\n", false)
	if err != nil || got != "helloworld" || n != 10 {
		t.Errorf("chunk sizes with whitespace = %q, %d, %v", got, n, err)
	}
	if _, _, err := relayChunkedString("5 ;a=b\r\nhello\r\n0\r\n\r\n", false); err != errChunkSize {
		t.Errorf("whitespace before an extension = %v, want %v", err, errChunkSize)
	}
	line := "5;" + strings.Repeat("e", maxChunkLine-3)
	if got, _, err := relayChunkedString(line+"\r\nhello\r\n0\r\n\r\n", false); err != nil || got != "hello" {
		t.Errorf("chunk line of %d bytes = %q, %v", len(line), got, err)
	}
	if _, _, err := relayChunkedString(line+"e\r\nhello\r\n0\r\n\r\n", false); err != errChunkLineLong {
		t.Errorf("chunk line of %d bytes = %v, want %v", len(line)+1, err, errChunkLineLong)
	}
}

// nopConn is a net.Conn that does nothing.
type nopConn struct{}

func (nopConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (nopConn) Write(p []byte) (int, error)      { return len(p), nil }
func (nopConn) Close() error                     { return nil }
func (nopConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (nopConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (nopConn) SetDeadline(time.Time) error      { return nil }
func (nopConn) SetReadDeadline(time.Time) error  { return nil }
func (nopConn) SetWriteDeadline(time.Time) error { return nil }

// bufConn is a net.Conn writing into w (reads are never made).
type bufConn struct {
	nopConn
	w io.Writer
}

func (c *bufConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// FuzzRequestHead: the parser never panics; every refusal carries the
// reason the client is told; what it accepts holds no smuggling shape; and
// net/http reads both the client's head and the head the proxy sends the
// origin the same way (method, target, framing): a proxy and an origin
// that disagree on where a message ends are a request smuggling hole.
// The seed corpus is testdata/fuzz/FuzzRequestHead.
func FuzzRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n",
		"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc",
		"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	srv := &Server{cfg: Config{Via: "cordon", XForwardedFor: "append"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &wireReader{}
		r.reset(bytes.NewReader(data), 16)
		raw, err := r.readHead(nil, 8192)
		if err != nil {
			return
		}
		var h head
		if err := parseRequestHead(&h, raw); err != nil {
			var we *wireError
			if !errors.As(err, &we) || we.reason == "" {
				t.Fatalf("refusal without a reason: %v", err)
			}
			return
		}
		if h.chunked && h.has("Content-Length") {
			t.Fatalf("accepted both Content-Length and Transfer-Encoding: %q", raw)
		}
		for _, fl := range h.fields {
			if !isToken(fl.name) || !validFieldValue(fl.value) {
				t.Fatalf("accepted field %q: %q", fl.name, fl.value)
			}
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return // net/http is stricter here; refusing is safe
		}
		if req.Method != string(h.method) || req.RequestURI != string(h.target) {
			t.Fatalf("method/target: ours %q %q, net/http %q %q", h.method, h.target, req.Method, req.RequestURI)
		}
		chunked := len(req.TransferEncoding) > 0 && req.TransferEncoding[0] == "chunked"
		if chunked != h.chunked {
			t.Fatalf("chunked: ours %v, net/http %v (%q)", h.chunked, chunked, raw)
		}
		if !h.chunked && h.contentLength >= 0 && req.ContentLength != h.contentLength {
			t.Fatalf("content length: ours %d, net/http %d (%q)", h.contentLength, req.ContentLength, raw)
		}

		// What the origin would get.
		_, authority, rest, abs := splitAbsolute(h.target)
		if !abs {
			return
		}
		cc := &clientConn{s: srv, req: h, ip: netip.MustParseAddr("192.0.2.1")}
		up := cc.upstreamHead(authority, rest, h.chunked || h.contentLength > 0, false)
		ureq, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(up)))
		if err != nil {
			t.Fatalf("net/http cannot read the head sent to the origin %q: %v (client sent %q)", up, err, raw)
		}
		if ureq.Method != string(h.method) || ureq.Host != string(authority) {
			t.Fatalf("origin head %q: method %q host %q, want %q %q", up, ureq.Method, ureq.Host, h.method, authority)
		}
		uchunked := len(ureq.TransferEncoding) > 0
		if uchunked != h.chunked || (!h.chunked && h.contentLength > 0 && ureq.ContentLength != h.contentLength) {
			t.Fatalf("origin head %q frames the body as chunked=%v length=%d, the client's as chunked=%v length=%d",
				up, uchunked, ureq.ContentLength, h.chunked, h.contentLength)
		}
		if !h.chunked && h.contentLength <= 0 && ureq.ContentLength > 0 {
			t.Fatalf("origin head %q has a body the client's has not", up)
		}
	})
}

// FuzzChunked: the decoding relay against net/http's chunked reader
// (what it accepts, net/http reads as the same payload); the verbatim
// relay forwards framing that net/http reads as the same payload again.
// The seed corpus is testdata/fuzz/FuzzChunked.
func FuzzChunked(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"3;a=b\r\nabc\r\n0\r\nT: v\r\n\r\n",
		"0\r\n\r\n",
		"A\r\n0123456789\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	// net/http's own limit on chunk extensions, which this relay does not
	// apply (its lines are bounded by maxChunkLine).
	tooMuchNonData := func(err error) bool {
		return err != nil && strings.Contains(err.Error(), "too much non-data")
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		decoded, n, err := relayChunkedString(string(data), false)
		if err != nil {
			var we *wireError
			if !errors.As(err, &we) && err != io.ErrUnexpectedEOF {
				t.Fatalf("refusal without a reason: %v", err)
			}
			return
		}
		if int64(len(decoded)) != n {
			t.Fatalf("payload count %d, wrote %d", n, len(decoded))
		}
		want, werr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(data)))
		if werr != nil && !tooMuchNonData(werr) {
			t.Fatalf("accepted %q, which net/http refuses: %v", data, werr)
		}
		if werr == nil && string(want) != decoded {
			t.Fatalf("decoded %q, httputil %q", decoded, want)
		}
		verbatim, _, err := relayChunkedString(string(data), true)
		if err != nil {
			t.Fatalf("verbatim relay failed where decoding did not: %v", err)
		}
		again, _, err := relayChunkedString(verbatim, false)
		if err != nil || again != decoded {
			t.Fatalf("verbatim relay %q decodes to %q (%v), want %q", verbatim, again, err, decoded)
		}
		got, gerr := io.ReadAll(httputil.NewChunkedReader(strings.NewReader(verbatim)))
		if gerr == nil && string(got) != decoded || gerr != nil && !tooMuchNonData(gerr) {
			t.Fatalf("net/http reads the relayed %q as %q (%v), want %q", verbatim, got, gerr, decoded)
		}
	})
}
