package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/cordon-gw/cordon/policies"
)

// APIError is an answer of the admin API other than 2xx, as the console
// shows it.
type APIError struct {
	Status   int
	Code     string                `json:"code"`
	Message  string                `json:"error"`
	Problems []policies.FieldError `json:"problems"`
	ErrorID  string                `json:"error_id"`
}

func (e *APIError) Error() string {
	return fmt.Sprintf("console: API answered %d %s: %s", e.Status, e.Code, e.Message)
}

// recorder is the in-process response writer of an API call.
type recorder struct {
	code int
	hdr  http.Header
	body bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.hdr }
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(b)
}

// apiCall is one request to the admin API on behalf of a browser.
type apiCall struct {
	method, path string
	query        url.Values
	ctype        string
	body         []byte
}

// do sends call to the API with the session's token, as the console
// client, from the browser's address (so the audit log says who and from
// where). It returns the raw response; non-2xx answers are *APIError.
func (c *Console) do(ctx context.Context, from *http.Request, token string, call apiCall) (*recorder, error) {
	u := call.path
	if len(call.query) > 0 {
		u += "?" + call.query.Encode()
	}
	var body io.Reader = http.NoBody
	if call.body != nil {
		body = bytes.NewReader(call.body)
	}
	req, err := http.NewRequestWithContext(ctx, call.method, u, body)
	if err != nil {
		return nil, fmt.Errorf("console: API request %s %s: %w", call.method, u, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set(policies.ClientHeader, "console")
	req.Header.Set("Accept", "application/json")
	if call.ctype != "" {
		req.Header.Set("Content-Type", call.ctype)
	}
	if from != nil {
		req.RemoteAddr, req.Host, req.TLS = from.RemoteAddr, from.Host, from.TLS
	}
	rec := &recorder{hdr: http.Header{}}
	c.api.ServeHTTP(rec, req)
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	if rec.code < 200 || rec.code > 299 {
		e := &APIError{Status: rec.code}
		if json.Unmarshal(rec.body.Bytes(), e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(rec.body.String())
			if e.Message == "" {
				e.Message = http.StatusText(rec.code)
			}
		}
		return rec, e
	}
	return rec, nil
}

// getJSON reads path (with query) into out.
func (c *Console) getJSON(r *http.Request, s *session, path string, q url.Values, out any) error {
	rec, err := c.do(r.Context(), r, s.token, apiCall{method: http.MethodGet, path: path, query: q})
	if err != nil {
		return err
	}
	if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
		return fmt.Errorf("console: decode %s: %w", path, err)
	}
	return nil
}

// sendJSON sends in as a JSON body and decodes the answer into out (when
// not nil).
func (c *Console) sendJSON(r *http.Request, s *session, method, path string, in, out any) error {
	call := apiCall{method: method, path: path}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("console: encode %s: %w", path, err)
		}
		call.ctype, call.body = "application/json", b
	}
	rec, err := c.do(r.Context(), r, s.token, call)
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return fmt.Errorf("console: decode %s: %w", path, err)
		}
	}
	return nil
}

// notFound reports whether err is the API's 404 (a route or object that
// does not exist).
func notFound(err error) bool {
	e, ok := err.(*APIError)
	return ok && e.Status == http.StatusNotFound
}

// decodeJSON decodes an API answer.
func decodeJSON(rec *recorder, out any) error {
	if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
		return fmt.Errorf("console: decode API answer: %w", err)
	}
	return nil
}
