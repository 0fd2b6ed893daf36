package policies

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to the admin API; the `cordon policy` subcommands use it.
type Client struct {
	// BaseURL is the admin listener, e.g. "http://127.0.0.1:8080".
	BaseURL string
	// Token is the bearer token.
	Token string
	// HTTP is the client used; nil means one with a 30s timeout.
	HTTP *http.Client
}

// NewClient returns a Client for baseURL with a bearer token.
func NewClient(baseURL, token string) *Client {
	return &Client{BaseURL: strings.TrimSuffix(baseURL, "/"), Token: token}
}

// APIError is an error answer of the admin API.
type APIError struct {
	Status   int
	Code     string
	Message  string
	Problems []FieldError
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "policies: admin API: %d %s: %s", e.Status, e.Code, e.Message)
	for _, p := range e.Problems {
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

// Unwrap maps the status to the package's sentinels.
func (e *APIError) Unwrap() error {
	switch e.Status {
	case http.StatusBadRequest:
		if e.Code == "invalid_policy" {
			return ErrInvalidPolicy
		}
		return ErrBadRequest
	case http.StatusUnauthorized:
		return ErrUnauthorized
	case http.StatusForbidden:
		return ErrForbidden
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrConflict
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path, ctype string, body []byte, out any) ([]byte, error) {
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("policies: client: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set(ClientHeader, "cli")
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("policies: client: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("policies: client: read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var ae apiError
		if json.Unmarshal(raw, &ae) != nil || ae.Error == "" {
			ae.Error = strings.TrimSpace(string(raw))
		}
		return nil, &APIError{Status: resp.StatusCode, Code: ae.Code, Message: ae.Error, Problems: ae.Problems}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("policies: client: decode answer: %w", err)
		}
	}
	return raw, nil
}

// Validate checks a YAML policy document on the server (against the
// server's feeds). It returns the problems found; err is for transport or
// malformed-document failures.
func (c *Client) Validate(ctx context.Context, doc []byte) ([]FieldError, error) {
	var res struct {
		Valid    bool         `json:"valid"`
		Problems []FieldError `json:"problems"`
	}
	if _, err := c.do(ctx, "POST", APIPrefix+"/policy/validate", "application/yaml", doc, &res); err != nil {
		return nil, err
	}
	return res.Problems, nil
}

// Apply stores a YAML policy document as a new version.
func (c *Client) Apply(ctx context.Context, doc []byte, comment string) (VersionInfo, error) {
	var res struct {
		Version VersionInfo `json:"version"`
	}
	_, err := c.do(ctx, "PUT", APIPrefix+"/policy?comment="+url.QueryEscape(comment), "application/yaml", doc, &res)
	return res.Version, err
}

// Get returns a version's policy as YAML (version 0: the current one) and
// its number.
func (c *Client) Get(ctx context.Context, version int64) ([]byte, error) {
	path := APIPrefix + "/policy?format=yaml"
	if version > 0 {
		path = APIPrefix + "/policy/versions/" + strconv.FormatInt(version, 10) + "?format=yaml"
	}
	return c.do(ctx, "GET", path, "", nil, nil)
}

// Diff compares two stored versions (to 0: the current one; from 0: the
// one before to).
func (c *Client) Diff(ctx context.Context, from, to int64) (*Diff, error) {
	q := url.Values{}
	if from > 0 {
		q.Set("from", strconv.FormatInt(from, 10))
	}
	if to > 0 {
		q.Set("to", strconv.FormatInt(to, 10))
	}
	var d Diff
	_, err := c.do(ctx, "GET", APIPrefix+"/policy/diff?"+q.Encode(), "", nil, &d)
	return &d, err
}

// Rollback stores version n again as a new version.
func (c *Client) Rollback(ctx context.Context, n int64, comment string) (VersionInfo, error) {
	body, _ := json.Marshal(map[string]any{"version": n, "comment": comment})
	var res struct {
		Version VersionInfo `json:"version"`
	}
	_, err := c.do(ctx, "POST", APIPrefix+"/policy/rollback", "application/json", body, &res)
	return res.Version, err
}

// History lists the versions, newest first.
func (c *Client) History(ctx context.Context) ([]VersionInfo, error) {
	var res struct {
		Versions []VersionInfo `json:"versions"`
	}
	_, err := c.do(ctx, "GET", APIPrefix+"/policy/versions", "", nil, &res)
	return res.Versions, err
}

// Preview reports what a YAML draft would change over recent traffic.
func (c *Client) Preview(ctx context.Context, doc []byte) (PreviewResult, error) {
	var res PreviewResult
	_, err := c.do(ctx, "POST", APIPrefix+"/policy/preview", "application/yaml", doc, &res)
	return res, err
}
