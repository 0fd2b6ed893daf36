package proxy

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

//go:embed templates/*.html
var templateFS embed.FS

// pageKind selects a template.
type pageKind uint8

const (
	pageBlock pageKind = iota
	pageWarn
	pageError
	pageNotice
)

var pageKindNames = [...]string{"block", "warn", "error", "notice"}

func (k pageKind) String() string { return pageKindNames[k] }

// PageData is what every page template receives.
type PageData struct {
	Kind    string // "block", "warn", "error" or "notice"
	Status  int    // HTTP status of the page
	Title   string
	Message string

	URL        string // what was requested ("" when unknown)
	Host       string
	Categories []string
	Threats    []string
	Country    string
	// Why is a one-line human reason ("Category: gambling").
	Why           string
	RuleID        string
	PolicyVersion int64
	Monitor       bool
	RequestID     string
	Time          time.Time
	User          string
	Location      string
	ClientIP      string

	SupportContact string

	// ContinueAction, when set, is the warn page's form target; the form
	// posts Host, Return, TTL and ContinueToken.
	ContinueAction string
	Return         string
	TTL            int64
	ContinueToken  string
	// ReviewAction, when set, is the "request a review" form target; the
	// form posts the fields in ReviewFields.
	ReviewAction string
	ReviewFields map[string]string
}

// pages holds the parsed templates.
type pages struct {
	t [4]*template.Template
}

func newPages(over PageTemplates) (*pages, error) {
	p := &pages{}
	paths := [4]string{over.Block, over.Warn, over.Error, ""}
	for k := range p.t {
		kind := pageKind(k)
		var (
			t   *template.Template
			err error
		)
		if paths[k] != "" {
			t, err = parsePageFile(paths[k])
		} else {
			t, err = template.New(kind.String()+".html").Funcs(pageFuncs).ParseFS(templateFS, "templates/style.html", "templates/"+kind.String()+".html")
		}
		if err != nil {
			return nil, fmt.Errorf("proxy: page template %s: %w", kind, err)
		}
		p.t[k] = t
	}
	return p, nil
}

var pageFuncs = template.FuncMap{
	"join": strings.Join,
	"utc":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
}

// parsePageFile parses an override template; it may use {{template
// "style"}} for the embedded stylesheet.
func parsePageFile(path string) (*template.Template, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := template.New("page").Funcs(pageFuncs).ParseFS(templateFS, "templates/style.html")
	if err != nil {
		return nil, err
	}
	if _, err := t.New("override").Parse(string(b)); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return t.Lookup("override"), nil
}

func (p *pages) render(kind pageKind, d *PageData) ([]byte, error) {
	var buf bytes.Buffer
	if err := p.t[kind].Execute(&buf, d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// pageData fills the fields common to every page from the exchange.
func (s *Server) pageData(ex *exchange, kind pageKind, status int, title, msg string) *PageData {
	d := &PageData{
		Kind:           kind.String(),
		Status:         status,
		Title:          title,
		Message:        msg,
		URL:            ex.url,
		Host:           ex.host,
		RequestID:      ex.id,
		Time:           ex.start,
		ClientIP:       ex.clientIP.String(),
		SupportContact: s.cfg.SupportContact,
	}
	if d.Time.IsZero() {
		d.Time = time.Now()
	}
	if p := ex.principal; p != nil {
		d.User, d.Location = p.User, p.Location
	}
	if ex.decided {
		dec := ex.decision
		d.Categories, d.Threats = s.engine.Names(ex.verdict)
		d.Country = ex.verdict.Country.String()
		d.RuleID = dec.RuleID
		d.PolicyVersion = dec.Version
		d.Monitor = dec.Monitor
		d.Why = describeReason(dec)
	}
	return d
}

// describeReason is the human "why" line of a decision.
func describeReason(d policies.Decision) string {
	switch d.Reason {
	case policies.ReasonCategory:
		return "Category: " + d.Match
	case policies.ReasonThreat:
		return "Security threat: " + d.Match
	case policies.ReasonList:
		return "Listed: " + d.Match
	case policies.ReasonCountry:
		return "Destination country: " + d.Match
	case policies.ReasonPath:
		return "Address pattern: " + d.Match
	case policies.ReasonRule:
		return "Access rule " + d.RuleID
	default:
		return "Default policy"
	}
}

// page renders a page as a response to req.
func (s *Server) page(req *http.Request, ex *exchange, status int, kind pageKind, title, msg string) *http.Response {
	return s.renderPage(req, ex, s.pageData(ex, kind, status, title, msg))
}

func (s *Server) renderPage(req *http.Request, ex *exchange, d *PageData) *http.Response {
	ex.local = true
	kind := pageError
	for i, n := range pageKindNames {
		if n == d.Kind {
			kind = pageKind(i)
		}
	}
	body, err := s.pages.render(kind, d)
	if err != nil {
		s.log.Error("render page", logKind, d.Kind, logRequestID, ex.id, logErr, err)
		body = []byte("Cordon: " + d.Title + " (request " + ex.id + ")\n")
	}
	h := http.Header{}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'")
	h.Set("X-Cordon-Request-Id", ex.id)
	if req != nil && req.Method == http.MethodHead {
		body = nil
	}
	return &http.Response{
		Status:        strconv.Itoa(d.Status) + " " + http.StatusText(d.Status),
		StatusCode:    d.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

func (s *Server) blockPage(req *http.Request, ex *exchange) *http.Response {
	d := s.pageData(ex, pageBlock, http.StatusForbidden, "This site is blocked",
		"Your organization's web policy does not allow this page.")
	if len(d.Threats) > 0 {
		d.Title = "This site is blocked for your security"
		d.Message = "It is known to host malware, phishing or other threats."
	}
	s.addReviewForm(d)
	return s.renderPage(req, ex, d)
}

func (s *Server) warnPage(req *http.Request, ex *exchange) *http.Response {
	d := s.pageData(ex, pageWarn, http.StatusForbidden, "Are you sure you want to continue?",
		"Your organization's web policy advises caution with this site. Your choice is recorded.")
	ttl := s.warnTTL(ex.decision)
	d.ContinueAction = pagePrefix + "continue"
	d.Return = ex.url
	d.TTL = int64(ttl / time.Second)
	d.ContinueToken = s.sign("continue", ex.userKey(), ex.host, strconv.FormatInt(d.TTL, 10))
	s.addReviewForm(d)
	return s.renderPage(req, ex, d)
}

func (s *Server) addReviewForm(d *PageData) {
	d.ReviewAction = pagePrefix + "review"
	// The query string stays out of the review (it may hold tokens or
	// personal data); the path is enough to judge the decision.
	reviewURL := d.URL
	if u, err := url.Parse(d.URL); err == nil {
		u.RawQuery, u.Fragment, u.User = "", "", nil
		reviewURL = u.String()
	}
	f := map[string]string{
		"id":         d.RequestID,
		"url":        reviewURL,
		"host":       d.Host,
		"rule":       d.RuleID,
		"version":    strconv.FormatInt(d.PolicyVersion, 10),
		"categories": strings.Join(d.Categories, ","),
		"threats":    strings.Join(d.Threats, ","),
		"action":     d.Kind,
	}
	f["token"] = s.sign("review", f["id"], f["url"], f["host"], f["rule"], f["version"], f["categories"], f["threats"], f["action"])
	d.ReviewFields = f
}

// sign is an HMAC over the parts with this process's secret, so form posts
// can only carry values a page of this proxy showed.
func (s *Server) sign(parts ...string) string {
	m := hmac.New(sha256.New, s.secret)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

func (s *Server) verify(token string, parts ...string) bool {
	return hmac.Equal([]byte(token), []byte(s.sign(parts...)))
}

// maxFormBytes bounds a form post.
const maxFormBytes = 16 << 10

// maxComment bounds a review comment.
const maxComment = 2000

// handleForm answers the proxy's own form posts, reached through the proxy
// at <any host>/.cordon/...
func (s *Server) handleForm(req *http.Request, ex *exchange) *http.Response {
	ex.host = normalizeHost(req.URL.Hostname())
	ex.path = req.URL.Path
	ex.refusal = "page"
	switch strings.TrimPrefix(req.URL.Path, pagePrefix) {
	case "continue":
		return s.handleContinue(req, ex)
	case "review":
		return s.handleReview(req, ex)
	}
	return s.page(req, ex, http.StatusNotFound, pageError, "Not found", "There is no such page on the gateway.")
}

func (s *Server) readForm(req *http.Request) (url.Values, bool) {
	if req.Method != http.MethodPost {
		return nil, false
	}
	b, err := io.ReadAll(io.LimitReader(req.Body, maxFormBytes+1))
	if err != nil || len(b) > maxFormBytes {
		return nil, false
	}
	v, err := url.ParseQuery(string(b))
	return v, err == nil
}

func (s *Server) handleContinue(req *http.Request, ex *exchange) *http.Response {
	f, ok := s.readForm(req)
	if !ok || f.Get("host") != ex.host ||
		!s.verify(f.Get("token"), "continue", ex.userKey(), f.Get("host"), f.Get("ttl")) {
		return s.page(req, ex, http.StatusBadRequest, pageError, "This link has expired",
			"Open the site again to see the warning and choose to continue.")
	}
	ttl, err := strconv.ParseInt(f.Get("ttl"), 10, 64)
	if err != nil || ttl <= 0 {
		ttl = int64(s.cfg.WarnTTL / time.Second)
	}
	s.warns.acknowledge(ex.userKey(), ex.host, time.Duration(ttl)*time.Second)
	// Go back only to the same host.
	back := "/"
	if u, err := url.Parse(f.Get("return")); err == nil && normalizeHost(u.Hostname()) == ex.host && (u.Scheme == "http" || u.Scheme == "https") {
		back = u.String()
	}
	ex.local = true
	ex.status = http.StatusSeeOther
	h := http.Header{}
	h.Set("Location", back)
	h.Set("Cache-Control", "no-store")
	return &http.Response{
		Status: "303 See Other", StatusCode: http.StatusSeeOther,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: http.NoBody, ContentLength: 0, Request: req,
	}
}

func (s *Server) handleReview(req *http.Request, ex *exchange) *http.Response {
	f, ok := s.readForm(req)
	if !ok || !s.verify(f.Get("token"), "review", f.Get("id"), f.Get("url"), f.Get("host"), f.Get("rule"),
		f.Get("version"), f.Get("categories"), f.Get("threats"), f.Get("action")) {
		return s.page(req, ex, http.StatusBadRequest, pageError, "This form has expired",
			"Open the site again and request the review from the new page.")
	}
	if s.reviews == nil {
		return s.page(req, ex, http.StatusServiceUnavailable, pageNotice, "Reviews are not enabled",
			"This gateway does not accept review requests. Contact your administrator.")
	}
	version, _ := strconv.ParseInt(f.Get("version"), 10, 64)
	comment := strings.TrimSpace(f.Get("comment"))
	if len(comment) > maxComment {
		comment = strings.ToValidUTF8(comment[:maxComment], "")
	}
	r := policies.Review{
		Time:          time.Now(),
		ClientIP:      ex.clientIP.String(),
		URL:           f.Get("url"),
		Host:          f.Get("host"),
		RuleID:        f.Get("rule"),
		Categories:    splitList(f.Get("categories")),
		PolicyVersion: version,
		RequestID:     f.Get("id"),
		Message:       comment,
	}
	if p := ex.principal; p != nil {
		r.User = p.User
	}
	ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
	defer cancel()
	id, err := s.reviews.SubmitReview(ctx, r)
	if err != nil {
		s.log.Error("submit review", logRequestID, ex.id, logReviewRequest, r.RequestID, logErr, err)
		return s.page(req, ex, http.StatusBadGateway, pageError, "The review request could not be recorded",
			"Please try again in a moment or contact your administrator.")
	}
	d := s.pageData(ex, pageNotice, http.StatusOK, "Review requested",
		"Security will look at this site. Quote the reference below if you contact them.")
	d.RequestID = id
	d.URL, d.Host = r.URL, r.Host
	return s.renderPage(req, ex, d)
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// serveLocal answers origin-form requests to the proxy port itself: the
// PAC file, the review form, and a short notice for anything else.
func (s *Server) serveLocal(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/proxy.pac" || r.URL.Path == "/wpad.dat":
		s.pac.ServeHTTP(w, r)
		return
	case r.URL.Path == pagePrefix+"review":
		ex := &exchange{id: s.newID(), start: time.Now(), clientIP: remoteAddr(r), method: r.Method}
		if p, ok := s.identify(r, ex.clientIP); ok {
			ex.principal = p
		}
		writeResponse(w, s.handleReview(r, ex))
		return
	}
	ex := &exchange{id: s.newID(), start: time.Now(), clientIP: remoteAddr(r), host: normalizeHost(stripPort(r.Host))}
	writeResponse(w, s.page(r, ex, http.StatusNotFound, pageNotice, "Cordon web gateway",
		"This is a web proxy. Configure your browser with the automatic configuration file at /proxy.pac."))
}

func writeResponse(w http.ResponseWriter, resp *http.Response) {
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if resp.Body != nil {
		_, _ = io.Copy(w, resp.Body)
		_ = resp.Body.Close()
	}
}

// ReviewSink records review requests sent from block and warn pages.
// *policies.Service implements it (stored like the audit log, listed at
// GET /api/v1/reviews). SubmitReview returns the review's id, shown to the
// user; it may do I/O and gets a ctx bounded to 10s.
type ReviewSink interface {
	SubmitReview(ctx context.Context, r policies.Review) (id string, err error)
}

// ReviewSinkFunc adapts a function to ReviewSink.
type ReviewSinkFunc func(ctx context.Context, r policies.Review) (string, error)

// SubmitReview calls f.
func (f ReviewSinkFunc) SubmitReview(ctx context.Context, r policies.Review) (string, error) {
	return f(ctx, r)
}

// Interface guards.
var (
	_ ReviewSink = (*policies.Service)(nil)
	_ ReviewSink = ReviewSinkFunc(nil)
	_ EventSink  = EventSinkFunc(nil)
)
