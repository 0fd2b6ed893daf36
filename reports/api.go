package reports

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
)

// Route is one handler to mount: Method and Pattern in net/http ServeMux
// syntax ({user} is a path wildcard read with Request.PathValue).
type Route struct {
	Method  string
	Pattern string
	Handler http.Handler
}

// API path patterns.
const (
	PathOverview = "/api/v1/reports/overview"
	PathUser     = "/api/v1/reports/users/{user}"
	PathGroup    = "/api/v1/reports/groups/{group}"
	PathLocation = "/api/v1/reports/locations/{location}"
	PageOverview = "/reports"
	PageUser     = "/reports/users/{user}"
	PageGroup    = "/reports/groups/{group}"
	PageLocation = "/reports/locations/{location}"
)

// Handler serves the reports API and pages from a Reader. It does no
// authentication: mount the API routes behind the admin API (auditor role
// and up) and the pages behind the admin listener's protection.
type Handler struct {
	r      *Reader
	logger *slog.Logger
}

// NewHandler returns the reports HTTP handlers over r; logger nil means
// slog.Default().
func NewHandler(r *Reader, logger *slog.Logger) *Handler {
	if logger == nil {
		logger = slog.Default()
	}
	return &Handler{r: r, logger: logger.With("component", "reports.http")}
}

// APIRoutes are the JSON/CSV routes under /api/v1/reports.
func (h *Handler) APIRoutes() []Route {
	return []Route{
		{http.MethodGet, PathOverview, h.api(ScopeAll, "")},
		{http.MethodGet, PathUser, h.api(ScopeUser, "user")},
		{http.MethodGet, PathGroup, h.api(ScopeGroup, "group")},
		{http.MethodGet, PathLocation, h.api(ScopeLocation, "location")},
	}
}

// PageRoutes are the HTML report pages.
func (h *Handler) PageRoutes() []Route {
	return []Route{
		{http.MethodGet, PageOverview, h.page(ScopeAll, "")},
		{http.MethodGet, PageUser, h.page(ScopeUser, "user")},
		{http.MethodGet, PageGroup, h.page(ScopeGroup, "group")},
		{http.MethodGet, PageLocation, h.page(ScopeLocation, "location")},
	}
}

// Routes are APIRoutes and PageRoutes together.
func (h *Handler) Routes() []Route { return append(h.APIRoutes(), h.PageRoutes()...) }

// Mux returns a ServeMux with every route, for tests and single-purpose
// listeners.
func (h *Handler) Mux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range h.Routes() {
		mux.Handle(rt.Method+" "+rt.Pattern, rt.Handler)
	}
	return mux
}

// pathSubject reads the wildcard, falling back to the last path segment
// when the router in front is not a ServeMux with the same pattern.
func pathSubject(r *http.Request, name string) string {
	if v := r.PathValue(name); v != "" {
		return v
	}
	p := r.URL.EscapedPath()
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ""
	}
	v, err := url.PathUnescape(p[i+1:])
	if err != nil {
		return ""
	}
	return v
}

// apiError is the JSON error body.
type apiError struct {
	Error string `json:"error"`
	ID    string `json:"error_id,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func errorID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, ErrBadQuery) {
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
		return
	}
	id := errorID()
	h.logger.ErrorContext(r.Context(), "report query failed", "err", err, "error_id", id, "path", r.URL.Path)
	writeJSON(w, http.StatusInternalServerError, apiError{Error: "report query failed", ID: id})
}

// request parses what every report route takes.
func (h *Handler) request(r *http.Request, scope Scope, param string, def Format) (string, Query, Format, error) {
	subject := ""
	if scope != ScopeAll {
		subject = pathSubject(r, param)
		if subject == "" || len(subject) > 256 {
			return "", Query{}, 0, fmt.Errorf("%w: %s name must be 1..256 bytes", ErrBadQuery, param)
		}
	}
	v := r.URL.Query()
	q, err := ParseQuery(v, h.r.Now(), h.r.DefaultTop())
	if err != nil {
		return "", q, 0, err
	}
	f, err := ParseFormat(v.Get("format"), def)
	return subject, q, f, err
}

func (h *Handler) api(scope Scope, param string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		subject, q, f, err := h.request(r, scope, param, FormatJSON)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		rep, err := h.r.Report(r.Context(), scope, subject, q)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		switch f {
		case FormatCSV:
			writeCSV(w, rep)
		case FormatHTML:
			h.render(w, r, rep, q)
		default:
			writeJSON(w, http.StatusOK, rep)
		}
	})
}

func writeCSV(w http.ResponseWriter, rep *Report) {
	name := "cordon-report-" + rep.Scope
	if rep.Subject != "" {
		name += "-" + safeFileName(rep.Subject)
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	_ = rep.WriteCSV(w)
}

func safeFileName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

func (h *Handler) page(scope Scope, param string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		subject, q, f, err := h.request(r, scope, param, FormatHTML)
		if err != nil {
			if errors.Is(err, ErrBadQuery) {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			h.fail(w, r, err)
			return
		}
		rep, err := h.r.Report(r.Context(), scope, subject, q)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		switch f {
		case FormatCSV:
			writeCSV(w, rep)
		case FormatJSON:
			writeJSON(w, http.StatusOK, rep)
		default:
			h.render(w, r, rep, q)
		}
	})
}
