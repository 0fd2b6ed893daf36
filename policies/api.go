package policies

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/cordon-gw/cordon/categorizer"
	"github.com/cordon-gw/cordon/internal/obs"
)

//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns the embedded OpenAPI 3 document of the admin API.
func OpenAPI() []byte { return append([]byte(nil), openAPIDoc...) }

// APIPrefix is where the admin API lives.
const APIPrefix = "/api/v1"

// DefaultMaxBodyBytes bounds request bodies when APIConfig.MaxBodyBytes is
// zero.
const DefaultMaxBodyBytes = 8 << 20

// APIConfig configures the admin API.
type APIConfig struct {
	// Service is the policy service. Required.
	Service *Service
	// Engine answers lookups; nil means the Service's engine.
	Engine *Engine
	// MaxBodyBytes bounds request bodies; zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Ready reports readiness for /readyz; nil means always ready.
	Ready func(ctx context.Context) error
	// Logger: nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the API metrics; nil registers nowhere.
	Registerer prometheus.Registerer
}

var _ http.Handler = (*API)(nil)

// Route is one registered API route.
type Route struct {
	Method     string
	Pattern    string // full path pattern, "/api/v1/users/{name}"
	Permission Permission
}

// API is the admin HTTP API: JSON over HTTP, bearer tokens with roles, for
// /healthz, /readyz and /api/v1/.... Mount it on the admin listener for
// those three paths.
type API struct {
	svc     *Service
	engine  *Engine
	maxBody int64
	ready   func(ctx context.Context) error
	log     *slog.Logger
	mux     *http.ServeMux

	mu      sync.Mutex
	routes  []Route
	doc     map[string]any // the OpenAPI document served, with added fragments
	docJSON []byte

	requests *prometheus.CounterVec
}

// NewAPI builds the admin API with its own routes registered.
func NewAPI(cfg APIConfig) (*API, error) {
	if cfg.Service == nil {
		return nil, fmt.Errorf("policies: new API: %w: no service", ErrBadRequest)
	}
	a := &API{svc: cfg.Service, engine: cfg.Engine, maxBody: cfg.MaxBodyBytes, ready: cfg.Ready, log: cfg.Logger, mux: http.NewServeMux()}
	if a.engine == nil {
		a.engine = cfg.Service.engine
	}
	if a.maxBody <= 0 {
		a.maxBody = DefaultMaxBodyBytes
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	a.log = a.log.With("component", "policies.api")
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	a.requests = promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "api_requests_total",
		Help: "Admin API requests by route pattern and status code.",
	}, []string{"route", "code"})
	if err := json.Unmarshal(openAPIDoc, &a.doc); err != nil {
		return nil, fmt.Errorf("policies: embedded openapi.json: %w", err)
	}
	a.docJSON = openAPIDoc
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	a.mux.HandleFunc("GET /readyz", a.readyz)
	a.registerRoutes()
	return a, nil
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	_, pattern := a.mux.Handler(r) // for the metric label only
	if pattern == "" {
		pattern = "unmatched"
	}
	a.mux.ServeHTTP(rec, r)
	a.requests.WithLabelValues(pattern, strconv.Itoa(rec.code)).Inc()
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (flushing
// streamed exports from mounted handlers).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush implements http.Flusher when the underlying writer does.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Routes returns every authenticated route registered so far (the API's
// own and mounted ones).
func (a *API) Routes() []Route {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Route(nil), a.routes...)
}

// Mount adds a route under /api/v1 behind the same bearer authentication
// and role check. pattern is a net/http path pattern, either full
// ("/api/v1/reports/users/{user}") or relative to /api/v1
// ("/reports/users/{user}"). The handler finds the caller with ActorFrom.
func (a *API) Mount(method, pattern string, perm Permission, h http.Handler) {
	if !strings.HasPrefix(pattern, APIPrefix+"/") {
		pattern = APIPrefix + "/" + strings.TrimPrefix(pattern, "/")
	}
	a.mu.Lock()
	a.routes = append(a.routes, Route{Method: method, Pattern: pattern, Permission: perm})
	a.mu.Unlock()
	a.mux.Handle(method+" "+pattern, a.auth(perm, h))
}

func (a *API) handle(method, pattern string, perm Permission, f func(w http.ResponseWriter, r *http.Request, act Actor) error) {
	a.Mount(method, pattern, perm, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		act, _ := ActorFrom(r.Context())
		if err := f(w, r, act); err != nil {
			a.writeError(w, r, err)
		}
	}))
}

type actorKey struct{}

// ActorFrom returns the authenticated caller of a request served through
// the API (for handlers added with Mount).
func ActorFrom(ctx context.Context) (Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(Actor)
	return a, ok
}

// ClientHeader marks requests made by the Cordon CLI ("cli", audited as
// source "cli") and by the admin console ("console", source "console").
const ClientHeader = "X-Cordon-Client"

func (a *API) auth(perm Permission, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		authz := r.Header.Get("Authorization")
		token, ok := strings.CutPrefix(authz, "Bearer ")
		if !ok || token == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cordon"`)
			writeJSON(w, http.StatusUnauthorized, apiError{Code: "unauthorized", Error: "missing bearer token: send Authorization: Bearer <token>"})
			return
		}
		rec, err := a.svc.AuthenticateToken(r.Context(), strings.TrimSpace(token))
		if err != nil {
			if errors.Is(err, ErrUnauthorized) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="cordon", error="invalid_token"`)
				writeJSON(w, http.StatusUnauthorized, apiError{Code: "unauthorized", Error: "unknown or revoked token"})
				return
			}
			a.writeError(w, r, err)
			return
		}
		if !rec.Role.Allows(perm) {
			a.writeError(w, r, &ForbiddenError{Role: rec.Role, Permission: perm, What: r.Method + " " + r.URL.Path})
			return
		}
		src := SourceAPI
		switch r.Header.Get(ClientHeader) {
		case "cli":
			src = SourceCLI
		case "console":
			src = SourceConsole
		}
		act := Actor{Name: rec.Name, Role: rec.Role, Source: src, Remote: remoteHost(r.RemoteAddr)}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), actorKey{}, act)))
	})
}

func remoteHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if a.ready != nil {
		if err := a.ready(r.Context()); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "policy_version": a.svc.Current().Number})
}

// apiError is the body of every error response.
type apiError struct {
	Code     string       `json:"code"`
	Error    string       `json:"error"`
	Problems []FieldError `json:"problems,omitempty"`
	// Role and Required are set on 403.
	Role     Role   `json:"role,omitempty"`
	Required string `json:"required_permission,omitempty"`
	Allowed  []Role `json:"allowed_roles,omitempty"`
	// ErrorID ties a 500 to the server log.
	ErrorID string `json:"error_id,omitempty"`
	// Conflicts are set on a 409 of a change request rebase.
	Conflicts []Conflict `json:"conflicts,omitempty"`
}

func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ve *ValidationError
	var fe *ForbiddenError
	var ce *ConflictError
	switch {
	case errors.As(err, &ce):
		writeJSON(w, http.StatusConflict, apiError{Code: "conflict", Error: strings.TrimPrefix(ce.Error(), "policies: "), Conflicts: ce.Conflicts})
	case errors.As(err, &ve):
		writeJSON(w, http.StatusBadRequest, apiError{Code: "invalid_policy", Error: "the policy is invalid: nothing was changed", Problems: ve.Problems})
	case errors.As(err, &fe):
		writeJSON(w, http.StatusForbidden, apiError{Code: "forbidden", Error: strings.TrimPrefix(fe.Error(), "policies: "),
			Role: fe.Role, Required: fe.Permission.String(), Allowed: rolesWith(fe.Permission)})
	case errors.Is(err, ErrInvalidPolicy), errors.Is(err, ErrBadRequest):
		writeJSON(w, http.StatusBadRequest, apiError{Code: "bad_request", Error: strings.TrimPrefix(err.Error(), "policies: ")})
	case errors.Is(err, ErrNotFound):
		writeJSON(w, http.StatusNotFound, apiError{Code: "not_found", Error: strings.TrimPrefix(err.Error(), "policies: ")})
	case errors.Is(err, ErrConflict):
		writeJSON(w, http.StatusConflict, apiError{Code: "conflict", Error: strings.TrimPrefix(err.Error(), "policies: ")})
	case errors.Is(err, ErrForbidden):
		writeJSON(w, http.StatusForbidden, apiError{Code: "forbidden", Error: strings.TrimPrefix(err.Error(), "policies: ")})
	case errors.Is(err, ErrUnauthorized):
		writeJSON(w, http.StatusUnauthorized, apiError{Code: "unauthorized", Error: "unknown or revoked token"})
	default:
		id := randomID(8)
		a.log.ErrorContext(r.Context(), "admin API request failed", "error_id", id, "method", r.Method, "path", r.URL.Path, "err", err)
		writeJSON(w, http.StatusInternalServerError, apiError{Code: "internal", Error: "internal error; see the server log", ErrorID: id})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// readBody reads the whole body within the size limit.
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, badRequest("body larger than %d bytes", a.maxBody)
		}
		return nil, badRequest("reading body: %v", err)
	}
	return b, nil
}

// decode reads a strict JSON body into v: unknown fields, wrong types,
// trailing data and oversized bodies are errors naming the problem.
func (a *API) decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return badRequest("Content-Type %q: want application/json", ct)
		}
	}
	b, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	if err := decodeStrictJSON(strings.NewReader(string(b)), v); err != nil {
		return badRequest("%v", err)
	}
	return nil
}

// policyBody is the JSON form of a policy submission.
type policyBody struct {
	Comment string  `json:"comment"`
	Policy  *Policy `json:"policy"`
	// BaseVersion, when set, makes the PUT conditional: it fails with 409
	// unless the current version is still this one.
	BaseVersion *int64 `json:"base_version,omitempty"`
}

// readPolicy reads a policy submission: JSON {"comment", "policy"}, or a
// YAML document (Content-Type application/yaml) with the comment in the
// "comment" query parameter.
func (a *API) readPolicy(w http.ResponseWriter, r *http.Request) (*Policy, string, error) {
	p, c, _, err := a.readPolicyBase(w, r)
	return p, c, err
}

func versionETag(n int64) string { return `"v` + strconv.FormatInt(n, 10) + `"` }

// readPolicyBase is readPolicy plus the optional base version (JSON
// "base_version", the base_version query parameter, or If-Match with the
// ETag of GET /policy).
func (a *API) readPolicyBase(w http.ResponseWriter, r *http.Request) (*Policy, string, *int64, error) {
	var base *int64
	if im := strings.TrimSpace(r.Header.Get("If-Match")); im != "" {
		s, ok := strings.CutPrefix(strings.TrimPrefix(im, "W/"), `"v`)
		n, err := strconv.ParseInt(strings.TrimSuffix(s, `"`), 10, 64)
		if !ok || !strings.HasSuffix(s, `"`) || err != nil || n < 0 {
			return nil, "", nil, badRequest(`If-Match %q: want the ETag of GET /api/v1/policy, like "v12"`, im)
		}
		base = &n
	}
	if s := r.URL.Query().Get("base_version"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return nil, "", nil, badRequest("query base_version=%q: want a non-negative integer", s)
		}
		base = &n
	}
	mt := "application/json"
	if ct := r.Header.Get("Content-Type"); ct != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(ct); err != nil {
			return nil, "", nil, badRequest("Content-Type %q: %v", ct, err)
		}
	}
	switch mt {
	case "application/yaml", "application/x-yaml", "text/yaml":
		b, err := a.readBody(w, r)
		if err != nil {
			return nil, "", nil, err
		}
		p, err := Parse(b)
		if err != nil {
			return nil, "", nil, err
		}
		return p, r.URL.Query().Get("comment"), base, nil
	case "application/json":
		var body policyBody
		if err := a.decode(w, r, &body); err != nil {
			return nil, "", nil, err
		}
		if body.Policy == nil {
			return nil, "", nil, badRequest(`missing field "policy"`)
		}
		if body.BaseVersion != nil {
			base = body.BaseVersion
		}
		return body.Policy, body.Comment, base, nil
	}
	return nil, "", nil, badRequest("Content-Type %q: want application/json or application/yaml", mt)
}

func wantsYAML(r *http.Request) bool {
	return r.URL.Query().Get("format") == "yaml" || strings.Contains(r.Header.Get("Accept"), "yaml")
}

// RedactedSecret replaces password hashes and DoH tokens in what non-admin
// callers read. Sending it back in a PUT keeps the stored value.
const RedactedSecret = "<redacted>"

func redact(p *Policy, role Role) *Policy {
	if role == RoleAdmin {
		return p
	}
	c := p.Clone()
	for i := range c.Users {
		if c.Users[i].PasswordHash != "" {
			c.Users[i].PasswordHash = RedactedSecret
		}
		if c.Users[i].DoHToken != "" {
			c.Users[i].DoHToken = RedactedSecret
		}
	}
	return c
}

func (a *API) writeVersion(w http.ResponseWriter, r *http.Request, act Actor, v *Version) {
	p := redact(v.Policy, act.Role)
	w.Header().Set("ETag", versionETag(v.Number))
	if wantsYAML(r) {
		w.Header().Set("Content-Type", "application/yaml")
		w.Header().Set("X-Cordon-Version", strconv.FormatInt(v.Number, 10))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(p.YAML())
		return
	}
	writeJSON(w, http.StatusOK, &Version{VersionInfo: v.VersionInfo, Policy: p})
}

func pathInt(r *http.Request, name string) (int64, error) {
	s := r.PathValue(name)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest("%s %q: want a non-negative integer", name, s)
	}
	return n, nil
}

func queryInt(q url.Values, name string, def int64) (int64, error) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest("query %s=%q: want a non-negative integer", name, s)
	}
	return n, nil
}

func queryTime(q url.Values, name string) (time.Time, error) {
	s := q.Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, badRequest("query %s=%q: want an RFC 3339 time like 2026-01-02T15:04:05Z", name, s)
	}
	return t, nil
}

// knownQuery refuses query parameters a route does not take.
func knownQuery(r *http.Request, names ...string) error {
	for k := range r.URL.Query() {
		ok := false
		for _, n := range names {
			ok = ok || k == n
		}
		if !ok {
			return badRequest("unknown query parameter %q (known: %s)", k, strings.Join(names, ", "))
		}
	}
	return nil
}

func versionResponse(v *Version) map[string]any {
	return map[string]any{"version": v.VersionInfo}
}

func (a *API) registerRoutes() {
	p := APIPrefix
	a.handle("GET", p+"/openapi.json", PermRead, func(w http.ResponseWriter, _ *http.Request, _ Actor) error {
		a.mu.Lock()
		doc := a.docJSON
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
		return nil
	})

	// Policy and versions.
	a.handle("GET", p+"/policy", PermRead, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		if err := knownQuery(r, "format"); err != nil {
			return err
		}
		a.writeVersion(w, r, act, a.svc.Current())
		return nil
	})
	a.handle("PUT", p+"/policy", PermWrite, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		if err := knownQuery(r, "comment", "base_version"); err != nil {
			return err
		}
		doc, comment, base, err := a.readPolicyBase(w, r)
		if err != nil {
			return err
		}
		var v *Version
		if base != nil {
			v, err = a.svc.PutIfCurrent(r.Context(), act, doc, comment, *base)
		} else {
			v, err = a.svc.Put(r.Context(), act, doc, comment)
		}
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, versionResponse(v))
		return nil
	})
	a.handle("GET", p+"/policy/versions", PermRead, func(w http.ResponseWriter, r *http.Request, _ Actor) error {
		vs, err := a.svc.Versions(r.Context())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"versions": vs})
		return nil
	})
	a.handle("GET", p+"/policy/versions/{version}", PermRead, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		n, err := pathInt(r, "version")
		if err != nil {
			return err
		}
		v, err := a.svc.Version(r.Context(), n)
		if err != nil {
			return err
		}
		a.writeVersion(w, r, act, v)
		return nil
	})
	a.handle("GET", p+"/policy/diff", PermRead, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		if err := knownQuery(r, "from", "to", "format"); err != nil {
			return err
		}
		q := r.URL.Query()
		cur := a.svc.Current().Number
		to, err := queryInt(q, "to", cur)
		if err != nil {
			return err
		}
		from, err := queryInt(q, "from", max(to-1, 0))
		if err != nil {
			return err
		}
		d, err := a.svc.Diff(r.Context(), from, to)
		if err != nil {
			return err
		}
		d.Changes = redactDiff(d.Changes, act.Role)
		if q.Get("format") == "text" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = io.WriteString(w, d.String())
			return nil
		}
		writeJSON(w, http.StatusOK, d)
		return nil
	})
	a.handle("POST", p+"/policy/rollback", PermWrite, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		var body struct {
			Version *int64 `json:"version"`
			Comment string `json:"comment"`
		}
		if err := a.decode(w, r, &body); err != nil {
			return err
		}
		if body.Version == nil {
			return badRequest(`missing field "version"`)
		}
		v, err := a.svc.Rollback(r.Context(), act, *body.Version, body.Comment)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, versionResponse(v))
		return nil
	})
	a.handle("POST", p+"/policy/preview", PermRead, func(w http.ResponseWriter, r *http.Request, _ Actor) error {
		doc, _, err := a.readPolicy(w, r)
		if err != nil {
			return err
		}
		res, err := a.svc.Preview(doc)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, res)
		return nil
	})
	a.handle("POST", p+"/policy/validate", PermRead, func(w http.ResponseWriter, r *http.Request, _ Actor) error {
		doc, _, err := a.readPolicy(w, r)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				return err
			}
		}
		res := map[string]any{"valid": true, "problems": []FieldError{}}
		if err == nil {
			err = a.svc.Validate(doc)
		}
		var ve *ValidationError
		if errors.As(err, &ve) {
			res["valid"], res["problems"] = false, ve.Problems
		} else if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, res)
		return nil
	})

	a.registerDirectory()
	a.registerTokensAuditReviews()
	a.registerChanges()
	a.handle("GET", p+"/lookup", PermRead, a.lookup)
	a.handle("GET", p+"/me", PermRead, a.me)
}

// userBody is a user as written through the API: a plain password is
// hashed (argon2id) by the server; with neither password nor hash, the
// stored hash is kept.
type userBody struct {
	Groups       []string `json:"groups"`
	Password     string   `json:"password,omitempty"`
	PasswordHash string   `json:"password_hash,omitempty"`
	DoHToken     string   `json:"doh_token,omitempty"`
}

// userView is a user as read through the API.
type userView struct {
	Name        string   `json:"name"`
	Groups      []string `json:"groups,omitempty"`
	HasPassword bool     `json:"has_password"`
	DoHToken    string   `json:"doh_token,omitempty"`
}

func (a *API) registerDirectory() {
	p := APIPrefix
	a.handle("GET", p+"/users", PermRead, func(w http.ResponseWriter, _ *http.Request, act Actor) error {
		doc := redact(a.svc.Current().Policy, act.Role)
		out := make([]userView, 0, len(doc.Users))
		for _, u := range doc.Users {
			out = append(out, userView{Name: u.Name, Groups: u.Groups, HasPassword: u.PasswordHash != "", DoHToken: u.DoHToken})
		}
		writeJSON(w, http.StatusOK, map[string]any{"users": out})
		return nil
	})
	a.handle("GET", p+"/users/{name}", PermRead, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		doc := redact(a.svc.Current().Policy, act.Role)
		for _, u := range doc.Users {
			if u.Name == r.PathValue("name") {
				writeJSON(w, http.StatusOK, userView{Name: u.Name, Groups: u.Groups, HasPassword: u.PasswordHash != "", DoHToken: u.DoHToken})
				return nil
			}
		}
		return fmt.Errorf("%w: user %q", ErrNotFound, r.PathValue("name"))
	})
	a.handle("PUT", p+"/users/{name}", PermAdmin, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		var b userBody
		if err := a.decode(w, r, &b); err != nil {
			return err
		}
		if b.Password != "" && b.PasswordHash != "" {
			return badRequest(`give "password" or "password_hash", not both`)
		}
		u := User{Name: r.PathValue("name"), Groups: b.Groups, PasswordHash: b.PasswordHash, DoHToken: b.DoHToken}
		if b.Password != "" {
			h, err := HashPassword(b.Password)
			if err != nil {
				return err
			}
			u.PasswordHash = h
		} else if b.PasswordHash == "" {
			u.PasswordHash = RedactedSecret // keep the stored hash
		}
		v, err := a.svc.PutUser(r.Context(), act, u)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, versionResponse(v))
		return nil
	})
	a.handle("DELETE", p+"/users/{name}", PermAdmin, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		v, err := a.svc.DeleteUser(r.Context(), act, r.PathValue("name"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, versionResponse(v))
		return nil
	})

	a.handle("GET", p+"/groups", PermRead, func(w http.ResponseWriter, _ *http.Request, _ Actor) error {
		writeJSON(w, http.StatusOK, map[string]any{"groups": nonNil(a.svc.Current().Policy.Groups)})
		return nil
	})
	a.handle("PUT", p+"/groups/{name}", PermAdmin, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		var b struct {
			Description string `json:"description"`
		}
		if err := a.decode(w, r, &b); err != nil {
			return err
		}
		v, err := a.svc.PutGroup(r.Context(), act, Group{Name: r.PathValue("name"), Description: b.Description})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, versionResponse(v))
		return nil
	})
	a.handle("DELETE", p+"/groups/{name}", PermAdmin, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		v, err := a.svc.DeleteGroup(r.Context(), act, r.PathValue("name"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, versionResponse(v))
		return nil
	})

	a.handle("GET", p+"/locations", PermRead, func(w http.ResponseWriter, _ *http.Request, _ Actor) error {
		writeJSON(w, http.StatusOK, map[string]any{"locations": nonNil(a.svc.Current().Policy.Locations)})
		return nil
	})
	a.handle("PUT", p+"/locations/{name}", PermNetwork, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		var b struct {
			CIDRs []string `json:"cidrs"`
		}
		if err := a.decode(w, r, &b); err != nil {
			return err
		}
		v, err := a.svc.PutLocation(r.Context(), act, Location{Name: r.PathValue("name"), CIDRs: b.CIDRs})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, versionResponse(v))
		return nil
	})
	a.handle("DELETE", p+"/locations/{name}", PermNetwork, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		v, err := a.svc.DeleteLocation(r.Context(), act, r.PathValue("name"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, versionResponse(v))
		return nil
	})

	a.handle("GET", p+"/lists", PermRead, func(w http.ResponseWriter, _ *http.Request, _ Actor) error {
		writeJSON(w, http.StatusOK, map[string]any{"lists": nonNil(a.svc.Current().Policy.Lists)})
		return nil
	})
	a.handle("GET", p+"/lists/{name}", PermRead, func(w http.ResponseWriter, r *http.Request, _ Actor) error {
		for _, l := range a.svc.Current().Policy.Lists {
			if l.Name == r.PathValue("name") {
				writeJSON(w, http.StatusOK, l)
				return nil
			}
		}
		return fmt.Errorf("%w: list %q", ErrNotFound, r.PathValue("name"))
	})
	a.handle("PUT", p+"/lists/{name}", PermWrite, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		var b struct {
			Kind        string   `json:"kind"`
			Description string   `json:"description"`
			Entries     []string `json:"entries"`
		}
		if err := a.decode(w, r, &b); err != nil {
			return err
		}
		v, err := a.svc.PutList(r.Context(), act, List{Name: r.PathValue("name"), Kind: b.Kind, Description: b.Description, Entries: b.Entries})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, versionResponse(v))
		return nil
	})
	a.handle("DELETE", p+"/lists/{name}", PermWrite, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		v, err := a.svc.DeleteList(r.Context(), act, r.PathValue("name"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, versionResponse(v))
		return nil
	})
	entries := func(add bool) func(w http.ResponseWriter, r *http.Request, act Actor) error {
		return func(w http.ResponseWriter, r *http.Request, act Actor) error {
			var b struct {
				Entries []string `json:"entries"`
				Comment string   `json:"comment"`
			}
			if err := a.decode(w, r, &b); err != nil {
				return err
			}
			if len(b.Entries) == 0 {
				return badRequest(`"entries" is empty`)
			}
			var v *Version
			var err error
			if add {
				v, err = a.svc.AddListEntries(r.Context(), act, r.PathValue("name"), b.Entries, b.Comment)
			} else {
				v, err = a.svc.RemoveListEntries(r.Context(), act, r.PathValue("name"), b.Entries, b.Comment)
			}
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, versionResponse(v))
			return nil
		}
	}
	a.handle("POST", p+"/lists/{name}/entries", PermWrite, entries(true))
	a.handle("DELETE", p+"/lists/{name}/entries", PermWrite, entries(false))
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// tokenView is a token record without its hash.
type tokenView struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
}

func (a *API) registerTokensAuditReviews() {
	p := APIPrefix
	a.handle("GET", p+"/tokens", PermAdmin, func(w http.ResponseWriter, r *http.Request, _ Actor) error {
		ts, err := a.svc.Tokens(r.Context())
		if err != nil {
			return err
		}
		out := make([]tokenView, 0, len(ts))
		for _, t := range ts {
			out = append(out, tokenView{ID: t.ID, Name: t.Name, Role: t.Role, Created: t.Created, CreatedBy: t.CreatedBy})
		}
		writeJSON(w, http.StatusOK, map[string]any{"tokens": out})
		return nil
	})
	a.handle("POST", p+"/tokens", PermAdmin, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		var b struct {
			Name string `json:"name"`
			Role Role   `json:"role"`
		}
		if err := a.decode(w, r, &b); err != nil {
			return err
		}
		tok, rec, err := a.svc.CreateToken(r.Context(), act, b.Name, b.Role)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, map[string]any{"token": tok,
			"record": tokenView{ID: rec.ID, Name: rec.Name, Role: rec.Role, Created: rec.Created, CreatedBy: rec.CreatedBy}})
		return nil
	})
	a.handle("DELETE", p+"/tokens/{id}", PermAdmin, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		if err := a.svc.RevokeToken(r.Context(), act, r.PathValue("id")); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]string{"revoked": r.PathValue("id")})
		return nil
	})

	a.handle("GET", p+"/audit", PermRead, func(w http.ResponseWriter, r *http.Request, _ Actor) error {
		if err := knownQuery(r, "before", "limit", "actor", "action", "source", "target", "since", "until"); err != nil {
			return err
		}
		qv := r.URL.Query()
		var q AuditQuery
		var err error
		if q.Before, err = queryInt(qv, "before", 0); err != nil {
			return err
		}
		limit, err := queryInt(qv, "limit", 100)
		if err != nil {
			return err
		}
		q.Limit = int(min(limit, 1<<20))
		if q.Since, err = queryTime(qv, "since"); err != nil {
			return err
		}
		if q.Until, err = queryTime(qv, "until"); err != nil {
			return err
		}
		q.Actor, q.Action, q.Source, q.Target = qv.Get("actor"), qv.Get("action"), Source(qv.Get("source")), qv.Get("target")
		page, err := a.svc.Audit(r.Context(), q)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, page)
		return nil
	})

	a.handle("GET", p+"/reviews", PermRead, func(w http.ResponseWriter, r *http.Request, _ Actor) error {
		if err := knownQuery(r, "status"); err != nil {
			return err
		}
		st := r.URL.Query().Get("status")
		if st != "" && st != ReviewOpen && st != ReviewAccepted && st != ReviewRejected {
			return badRequest("status %q: want open, accepted or rejected", st)
		}
		rs, err := a.svc.Reviews(r.Context(), st)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"reviews": nonNil(rs)})
		return nil
	})
	a.handle("POST", p+"/reviews/{id}", PermSecurity, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		var b struct {
			Status string `json:"status"`
			Note   string `json:"note"`
		}
		if err := a.decode(w, r, &b); err != nil {
			return err
		}
		rv, err := a.svc.ResolveReview(r.Context(), act, r.PathValue("id"), b.Status, b.Note)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, rv)
		return nil
	})
}

// LookupResult is the answer of GET /api/v1/lookup: what the categorizer
// knows about a URL and what the policy decides for a user and client.
type LookupResult struct {
	URL      string `json:"url"`
	Host     string `json:"host"`
	Path     string `json:"path,omitempty"`
	Protocol string `json:"protocol"`
	User     string `json:"user,omitempty"`
	ClientIP string `json:"client_ip,omitempty"`
	Location string `json:"location,omitempty"`
	Verdict  struct {
		Categories []string `json:"categories"`
		Threats    []string `json:"threats"`
		Country    string   `json:"country,omitempty"`
	} `json:"verdict"`
	// Explanation says which feed entries matched (nil without an index).
	Explanation *categorizer.Explanation `json:"explanation,omitempty"`
	// NewlySeen says why the host is or is not newly seen (nil without
	// the newly-seen tracker). The lookup records no sighting.
	NewlySeen *categorizer.NewlySeenExplanation `json:"newly_seen,omitempty"`
	Decision  struct {
		Action        string `json:"action"`
		RuleAction    string `json:"rule_action"`
		Rule          string `json:"rule,omitempty"`
		Monitor       bool   `json:"monitor,omitempty"`
		MonitorRule   string `json:"monitor_rule,omitempty"`
		Reason        string `json:"reason"`
		Match         string `json:"match,omitempty"`
		PolicyVersion int64  `json:"policy_version"`
		SafeSearch    bool   `json:"safe_search,omitempty"`
	} `json:"decision"`
	// Rule is the matching rule as written in the policy.
	Rule *Rule `json:"matching_rule,omitempty"`
}

func (a *API) lookup(w http.ResponseWriter, r *http.Request, _ Actor) error {
	if err := knownQuery(r, "url", "user", "client_ip", "protocol", "dest_ip"); err != nil {
		return err
	}
	if a.engine == nil {
		return fmt.Errorf("%w: lookups need an engine", ErrNotFound)
	}
	q := r.URL.Query()
	raw := q.Get("url")
	if raw == "" {
		return badRequest(`query "url" is required (a URL or a host name)`)
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return badRequest("url %q: not a URL or host name", q.Get("url"))
	}
	// The one normalization the proxy applies too (and the DNS filter's
	// equals for every name the wire carries): IDN to punycode, lower
	// case, no trailing dot; a name that is not a host name is refused
	// with the reason.
	host, err := categorizer.CanonicalHost(u.Hostname())
	if err != nil {
		return badRequest("url %q: %v", q.Get("url"), err)
	}
	port := u.Port()
	u.Host = host
	if strings.IndexByte(host, ':') >= 0 {
		u.Host = "[" + host + "]"
	}
	if port != "" {
		u.Host = net.JoinHostPort(host, port)
	}
	proto := ProtoHTTP
	if u.Scheme == "https" {
		proto = ProtoHTTPS
	}
	if s := q.Get("protocol"); s != "" {
		var ok bool
		if proto, ok = ParseProtocol(s); !ok {
			return badRequest("protocol %q: want http, https or dns", s)
		}
	}
	req := Request{Time: time.Now(), Protocol: proto, Host: host, Path: u.EscapedPath()}
	if proto == ProtoDNS {
		req.Path = ""
	}
	if s := q.Get("client_ip"); s != "" {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return badRequest("client_ip %q: not an IP address", s)
		}
		req.ClientIP = ip
	}
	if s := q.Get("dest_ip"); s != "" {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return badRequest("dest_ip %q: not an IP address", s)
		}
		req.DestIP = ip
	} else if ip, err := netip.ParseAddr(host); err == nil {
		req.DestIP = ip
	}
	var pr *Principal
	if user := q.Get("user"); user != "" {
		var ok bool
		if pr, ok = a.engine.Principal(user); !ok {
			return fmt.Errorf("%w: user %q is not in the policy", ErrNotFound, user)
		}
	}
	if req.ClientIP.IsValid() {
		if pr != nil {
			pr = a.engine.WithLocation(pr, req.ClientIP)
		} else if cp, ok := a.engine.ClientPrincipal(req.ClientIP); ok {
			pr = cp
		}
	}
	req.Principal = pr
	d, v, ns := a.engine.Explain(r.Context(), &req)
	var res LookupResult
	res.NewlySeen = ns
	res.URL, res.Host, res.Path, res.Protocol = u.String(), host, req.Path, proto.String()
	res.User, res.ClientIP = q.Get("user"), q.Get("client_ip")
	if pr != nil {
		res.Location = pr.Location
	}
	res.Verdict.Categories, res.Verdict.Threats = a.engine.Names(v)
	res.Verdict.Categories, res.Verdict.Threats = nonNil(res.Verdict.Categories), nonNil(res.Verdict.Threats)
	res.Verdict.Country = v.Country.String()
	if ix := a.engine.Index(); ix != nil {
		ex := ix.Explain(host, req.Path, req.DestIP)
		res.Explanation = &ex
	}
	res.Decision.Action, res.Decision.RuleAction, res.Decision.Rule = d.Action.String(), d.RuleAction.String(), d.RuleID
	res.Decision.Monitor, res.Decision.MonitorRule, res.Decision.Reason = d.Monitor, d.MonitorRuleID, d.Reason.String()
	res.Decision.Match, res.Decision.PolicyVersion, res.Decision.SafeSearch = d.Match, d.Version, d.SafeSearch
	if d.RuleID != "" {
		doc := a.engine.Current().Policy()
		for i := range doc.Rules {
			if doc.Rules[i].ID == d.RuleID {
				rule := doc.Rules[i]
				res.Rule = &rule
				break
			}
		}
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// policiesPaths are the path prefixes this package serves; the rest of
// the document belongs to routes other rooms mount.
var policiesPaths = []string{"/openapi.json", "/policy", "/users", "/groups", "/locations", "/lists", "/tokens", "/audit", "/reviews", "/lookup", "/changes", "/edges", "/me"}

// OwnedByPolicies reports whether an /api/v1 path belongs to this
// package's own routes (for the OpenAPI check).
func OwnedByPolicies(path string) bool {
	rest := strings.TrimPrefix(path, APIPrefix)
	for _, p := range policiesPaths {
		if rest == p || strings.HasPrefix(rest, p+"/") {
			return true
		}
	}
	return false
}

// AddOpenAPI merges an OpenAPI fragment describing mounted routes into the
// document served at /api/v1/openapi.json: a JSON object with "paths"
// and optionally "components" {"schemas": …}, in OpenAPI 3 form. An
// operation or schema already documented is an error.
func (a *API) AddOpenAPI(fragment []byte) error {
	var frag struct {
		Paths      map[string]map[string]any `json:"paths"`
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := decodeStrictJSON(strings.NewReader(string(fragment)), &frag); err != nil {
		return fmt.Errorf("policies: openapi fragment: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	paths, _ := a.doc["paths"].(map[string]any)
	comps, _ := a.doc["components"].(map[string]any)
	schemas, _ := comps["schemas"].(map[string]any)
	if paths == nil || schemas == nil {
		return fmt.Errorf("policies: openapi fragment: embedded document has no paths or schemas")
	}
	for p, ops := range frag.Paths {
		cur, _ := paths[p].(map[string]any)
		for m := range ops {
			if _, dup := cur[m]; dup {
				return fmt.Errorf("policies: openapi fragment: %s %s is already documented", strings.ToUpper(m), p)
			}
		}
	}
	for n := range frag.Components.Schemas {
		if _, dup := schemas[n]; dup {
			return fmt.Errorf("policies: openapi fragment: schema %q is already defined", n)
		}
	}
	for p, ops := range frag.Paths {
		cur, _ := paths[p].(map[string]any)
		if cur == nil {
			cur = map[string]any{}
			paths[p] = cur
		}
		for m, op := range ops {
			cur[m] = op
		}
	}
	for n, sc := range frag.Components.Schemas {
		schemas[n] = sc
	}
	b, err := json.MarshalIndent(a.doc, "", "  ")
	if err != nil {
		return fmt.Errorf("policies: openapi fragment: %w", err)
	}
	a.docJSON = b
	return nil
}

// UndocumentedRoutes lists the registered routes (own and mounted) that
// the served OpenAPI document does not describe; a test of the wiring
// asserts it is empty.
func (a *API) UndocumentedRoutes() []Route {
	a.mu.Lock()
	defer a.mu.Unlock()
	paths, _ := a.doc["paths"].(map[string]any)
	var out []Route
	for _, r := range a.routes {
		ops, _ := paths[r.Pattern].(map[string]any)
		if _, ok := ops[strings.ToLower(r.Method)]; !ok {
			out = append(out, r)
		}
	}
	return out
}
