package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// readAllResponses reads everything the proxy sends on c until it closes
// the connection, and returns the first response, its body and what came
// after it.
func readAllResponses(t *testing.T, c net.Conn) (*http.Response, string, []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	all, err := io.ReadAll(c)
	if isTimeout(err) {
		t.Fatalf("the proxy kept the connection open after %q", all)
	}
	br := bufio.NewReader(bytes.NewReader(all))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response in %q: %v", all, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("response body: %v (%q)", err, all)
	}
	rest, _ := io.ReadAll(br)
	return resp, string(body), rest
}

// TestSmugglingShapesRefused: every head that proxies and origins may
// frame differently gets a 400 naming what is wrong, the connection ends
// (so what followed is never read as a request), and nothing reaches the
// origin.
func TestSmugglingShapesRefused(t *testing.T) {
	var dialed atomic.Int32
	port := rawOrigin(t, func(c net.Conn) {
		dialed.Add(1)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	h := newHarness(t, harnessOpt{cfg: Config{MaxHeaderBytes: 1024}})
	target := "http://allowed.test:" + port
	next := "GET " + target + "/smuggled HTTP/1.1\r\nHost: allowed.test\r\n\r\n"
	for _, tc := range []struct {
		name, head string
		status     int
		reason     string
	}{
		{"CL.TE", "POST %s/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "both Content-Length and Transfer-Encoding"},
		{"TE.CL", "POST %s/ HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n", 400, "both Content-Length and Transfer-Encoding"},
		{"two lengths", "POST %s/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 0\r\nContent-Length: 7\r\n\r\n", 400, "differing Content-Length values"},
		{"length list", "POST %s/ HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 0, 7\r\n\r\n", 400, "invalid Content-Length"},
		{"obfuscated TE", "POST %s/ HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400, "unsupported Transfer-Encoding"},
		{"TE twice", "POST %s/ HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n", 400, "Transfer-Encoding given more than once"},
		{"TE on HTTP/1.0", "POST %s/ HTTP/1.0\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "Transfer-Encoding in an HTTP/1.0 message"},
		{"TE space before colon", "POST %s/ HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding : chunked\r\n\r\n", 400, "invalid header field name"},
		{"obs-fold", "GET %s/ HTTP/1.1\r\nHost: allowed.test\r\nX-A: a\r\n Transfer-Encoding: chunked\r\n\r\n", 400, "obsolete line folding"},
		{"bare CR", "GET %s/ HTTP/1.1\r\nHost: allowed.test\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n", 400, "bare CR"},
		{"NUL in a value", "GET %s/ HTTP/1.1\r\nHost: allowed.test\r\nX-A: a\x00b\r\n\r\n", 400, "control character in a header field value"},
		{"two Hosts", "GET %s/ HTTP/1.1\r\nHost: allowed.test\r\nHost: evil.test\r\n\r\n", 400, "more than one Host"},
		{"HTTP/2 line", "GET %s/ HTTP/2.0\r\nHost: allowed.test\r\n\r\n", 400, "unsupported HTTP version"},
		{"head too large", "GET %s/ HTTP/1.1\r\nHost: allowed.test\r\nX-Big: " + strings.Repeat("b", 1100) + "\r\n\r\n", 431, "larger than the proxy accepts"},
		{"request line too large", "GET %s/" + strings.Repeat("p", 1100) + " HTTP/1.1\r\nHost: allowed.test\r\n\r\n", 431, "larger than the proxy accepts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialProxy(t, h)
			if _, err := fmt.Fprintf(c, tc.head, target); err != nil {
				t.Fatal(err)
			}
			_, _ = io.WriteString(c, next)
			resp, body, rest := readAllResponses(t, c)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.reason) {
				t.Errorf("%s: %d %q, want %d naming %q", tc.name, resp.StatusCode, body, tc.status, tc.reason)
			}
			if !resp.Close {
				t.Errorf("%s: the refusal does not close the connection", tc.name)
			}
			if len(rest) > 0 {
				t.Errorf("%s: the bytes after the refused head were answered: %q", tc.name, rest)
			}
		})
	}
	if n := dialed.Load(); n != 0 {
		t.Errorf("the origin was dialed %d times for refused requests", n)
	}
}

// TestMalformedChunkedUpload: a chunked request body that turns bad (a
// bare LF, an invalid size) is cut at the last valid chunk, the client is
// told why with a 400, and what followed never reaches the origin as a
// request.
func TestMalformedChunkedUpload(t *testing.T) {
	var (
		mu    sync.Mutex
		paths []string
	)
	h := newHarness(t, harnessOpt{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "stored")
	})})
	for _, tc := range []struct{ name, body, reason string }{
		{"bare LF after data", "5\r\nhello\n0\r\n\r\n", "chunk data not followed by CRLF"},
		{"bare LF after size", "5\nhello\r\n0\r\n\r\n", "chunk framing line not ended by CRLF"},
		{"size with a sign", "+5\r\nhello\r\n0\r\n\r\n", "invalid chunk size"},
		{"size too large", "fffffffffffffffff\r\n", "invalid chunk size"},
		{"CR in an extension", "5;x=\ry\r\nhello\r\n0\r\n\r\n", "control character in a chunk extension"},
		{"folded trailer", "5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n", "malformed trailer field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialProxy(t, h)
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n\r\n%sGET %s HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
				h.httpURL("allowed.test", "/upload"), tc.body, h.httpURL("allowed.test", "/smuggled"))
			resp, body, rest := readAllResponses(t, c)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tc.reason) {
				t.Errorf("%s: %d %q, want 400 naming %q", tc.name, resp.StatusCode, body, tc.reason)
			}
			if len(rest) > 0 {
				t.Errorf("%s: bytes after the bad body were answered: %q", tc.name, rest)
			}
		})
	}
	// A good chunked upload still goes through, trailers and all.
	c := dialProxy(t, h)
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;a=b\r\nhello\r\n0\r\nX-T: t\r\n\r\n", h.httpURL("allowed.test", "/upload"))
	if resp, body, _ := readAllResponses(t, c); resp.StatusCode != 200 || body != "stored" {
		t.Errorf("valid chunked upload = %d %q", resp.StatusCode, body)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range paths {
		if p != "/upload" {
			t.Errorf("the origin got a request for %q", p)
		}
	}
	if len(paths) == 0 {
		t.Error("the valid upload never reached the origin")
	}
}

// TestMalformedChunkedResponse: an origin's chunked body that turns bad
// ends the client's connection at the last valid chunk; bytes after it
// are never relayed as a response of their own. An origin response with
// both Content-Length and Transfer-Encoding is relayed by the chunks,
// without the Content-Length.
func TestMalformedChunkedResponse(t *testing.T) {
	port := rawOrigin(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		switch req.URL.Path {
		case "/bad":
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\nabc\r\n0\r\n\r\n"+
				"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
		case "/both":
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
		}
	})
	h := newHarness(t, harnessOpt{})
	c := dialProxy(t, h)
	fmt.Fprintf(c, "GET http://allowed.test:%s/bad HTTP/1.1\r\nHost: allowed.test\r\n\r\n", port)
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	all, err := io.ReadAll(c)
	if isTimeout(err) {
		t.Fatalf("the proxy kept the connection after a malformed response body: %q", all)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(all)), nil)
	if err != nil {
		t.Fatalf("no response head in %q: %v", all, err)
	}
	body, err := io.ReadAll(resp.Body)
	switch {
	case resp.StatusCode == http.StatusBadGateway:
		// Nothing had gone out yet: an error page saying why.
		if !strings.Contains(string(body), "chunk framing line not ended by CRLF") {
			t.Errorf("502 page does not say what was malformed: %q", body)
		}
	case err == nil:
		t.Errorf("a malformed chunked response reached the client as complete: %d %q", resp.StatusCode, body)
	}
	if bytes.Contains(all, []byte("smuggled")) {
		t.Errorf("bytes after the bad chunk were relayed: %q", all)
	}

	c = dialProxy(t, h)
	fmt.Fprintf(c, "GET http://allowed.test:%s/both HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n", port)
	resp, body2, _ := readAllResponses(t, c)
	if body2 != "hello" || resp.Header.Get("Content-Length") != "" || len(resp.TransferEncoding) == 0 {
		t.Errorf("CL+TE response relayed as %q, Content-Length %q, Transfer-Encoding %v", body2, resp.Header.Get("Content-Length"), resp.TransferEncoding)
	}
}
