package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
)

// The bridges from the front end to net/http handlers, for what is rare
// and not worth a native path: the proxy port's own pages (PAC, WPAD,
// review form, notice), the proxy's form posts on proxied hosts, and TLS
// inspection, which goproxy runs on the hijacked connection.

// httpRequest builds a net/http request from the current head. body, when
// not nil, is the request body.
func (cc *clientConn) httpRequest(ctx context.Context, body io.Reader) (*http.Request, error) {
	h := &cc.req
	req := &http.Request{
		Method:     string(h.method),
		RequestURI: string(h.target),
		Proto:      "HTTP/" + strconv.Itoa(h.major) + "." + strconv.Itoa(h.minor),
		ProtoMajor: h.major,
		ProtoMinor: h.minor,
		Header:     make(http.Header, len(h.fields)),
		RemoteAddr: cc.c.RemoteAddr().String(),
		Close:      h.close,
	}
	var err error
	if req.Method == http.MethodConnect {
		req.URL = &url.URL{Host: req.RequestURI}
	} else if req.URL, err = url.ParseRequestURI(req.RequestURI); err != nil {
		return nil, err
	}
	for i := range h.fields {
		f := &h.fields[i]
		req.Header.Add(string(f.name), string(f.value))
	}
	req.Host = req.URL.Host
	if req.Host == "" {
		req.Host = req.Header.Get("Host")
	}
	req.Header.Del("Host")
	req.ContentLength = h.contentLength
	if h.chunked {
		req.ContentLength = -1
		req.TransferEncoding = []string{"chunked"}
	}
	req.Body = http.NoBody
	if body != nil {
		req.Body = io.NopCloser(body)
	}
	return req.WithContext(ctx), nil
}

// requestBody returns a reader of the current request's body (nil when it
// has none) and whether reading it to the end leaves the connection
// usable.
func (cc *clientConn) requestBody() (io.Reader, bool) {
	h := &cc.req
	switch {
	case h.chunked:
		// The chunked reader stops before the trailer section: the
		// connection cannot be reused afterwards.
		return httputil.NewChunkedReader(&cc.r), false
	case h.contentLength > 0:
		return &io.LimitedReader{R: &cc.r, N: h.contentLength}, true
	}
	return nil, true
}

// bufferedResponse is an http.ResponseWriter collecting a small response
// (pages, PAC files).
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *bufferedResponse) Header() http.Header { return w.header }

func (w *bufferedResponse) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *bufferedResponse) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

// serveLocal answers origin-form requests to the proxy port itself through
// the net/http handler (Server.serveLocal).
func (cc *clientConn) serveLocal() outcome {
	body, reusable := cc.requestBody()
	req, err := cc.httpRequest(context.Background(), body)
	if err != nil {
		cc.badRequest(errBadHead)
		return closeConn
	}
	w := &bufferedResponse{header: http.Header{}}
	cc.s.serveLocal(w, req)
	if w.status == 0 {
		w.status = http.StatusOK
	}
	drained := body == nil || drain(body)
	closing := cc.req.close || !reusable || !drained
	resp := &http.Response{
		StatusCode:    w.status,
		Status:        strconv.Itoa(w.status) + " " + http.StatusText(w.status),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.header,
		Body:          io.NopCloser(&w.body),
		ContentLength: int64(w.body.Len()),
	}
	if err := cc.writeResponse(resp, closing); err != nil || closing {
		return closeConn
	}
	return keepConn
}

// drain reads what is left of a small request body (at most 64 KiB),
// reporting whether it reached the end.
func drain(r io.Reader) bool {
	n, err := io.Copy(io.Discard, io.LimitReader(r, 64<<10+1))
	return err == nil && n <= 64<<10
}

// hijackWriter is the http.ResponseWriter goproxy gets for a decrypted
// CONNECT: it only hijacks.
type hijackWriter struct {
	cc       *clientConn
	header   http.Header
	early    []byte
	hijacked bool
}

func (w *hijackWriter) Header() http.Header { return w.header }
func (w *hijackWriter) WriteHeader(int)     {}
func (w *hijackWriter) Write(p []byte) (int, error) {
	return 0, errors.New("proxy: write before hijack")
}

// Hijack hands over the client connection, with the bytes the client sent
// after the CONNECT head already in the reader's buffer (goproxy replays
// what is buffered, then reads the connection).
func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, errors.New("proxy: connection already hijacked")
	}
	w.hijacked = true
	c := w.cc.c
	var br *bufio.Reader
	if len(w.early) > 0 {
		br = bufio.NewReaderSize(bytes.NewReader(w.early), len(w.early))
		_, _ = br.Peek(len(w.early))
	} else {
		br = bufio.NewReaderSize(c, 16)
	}
	return c, bufio.NewReadWriter(br, bufio.NewWriterSize(c, 16)), nil
}

// bridgeMITM hands a CONNECT chosen for inspection to goproxy, which
// answers 200, terminates TLS with a minted certificate and runs every
// inner request through onRequest/onResponse. goproxy owns the connection
// from then on.
func (cc *clientConn) bridgeMITM(ex *exchange, target string) outcome {
	s := cc.s
	req, err := cc.httpRequest(withExchange(context.Background(), ex), nil)
	if err != nil {
		cc.badRequest(errBadHead)
		return closeConn
	}
	req.URL = &url.URL{Host: target}
	w := &hijackWriter{cc: cc, header: http.Header{}}
	if n := cc.r.buffered(); n > 0 {
		w.early = append([]byte(nil), cc.r.bytes()...)
		cc.r.discard(n)
	}
	rec := &recorder{ResponseWriter: w, ex: ex, timeouts: s.timeouts}
	s.gp.ServeHTTP(rec, req)
	if w.hijacked {
		return handedOff
	}
	s.finish(ex)
	return closeConn
}

var _ http.Hijacker = (*hijackWriter)(nil)
