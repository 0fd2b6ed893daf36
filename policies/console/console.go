package console

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cordon-gw/cordon/internal/webui"
	"github.com/cordon-gw/cordon/policies"
)

// Prefix is where the console is mounted on the admin listener.
const Prefix = "/ui/"

// CookieName is the session cookie.
const CookieName = "cordon_session"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures the console.
type Config struct {
	// API is the admin API handler (policies.API with everything mounted
	// on it) the console calls in-process. Required.
	API http.Handler
	// IdleTimeout ends a session not used for this long; zero means
	// DefaultIdleTimeout (30 minutes).
	IdleTimeout time.Duration
	// MaxAge ends a session this long after sign-in; zero means
	// DefaultMaxAge (12 hours).
	MaxAge time.Duration
	// Logger: nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Console serves the admin console under Prefix. Safe for concurrent use.
type Console struct {
	api      http.Handler
	sessions *sessions
	log      *slog.Logger
	now      func() time.Time
	mux      *http.ServeMux
	cop      *http.CrossOriginProtection
	pages    map[string]*template.Template
}

var _ http.Handler = (*Console)(nil)

// New builds the console.
func New(cfg Config) (*Console, error) {
	if cfg.API == nil {
		return nil, errors.New("console: no API handler")
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Console{
		api: cfg.API, sessions: newSessions(cfg.IdleTimeout, cfg.MaxAge, cfg.Now),
		log: cfg.Logger.With("component", "console"), now: cfg.Now,
		mux: http.NewServeMux(), cop: http.NewCrossOriginProtection(),
	}
	var err error
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

// ServeHTTP implements http.Handler: unsafe methods must pass the
// cross-origin check before anything else runs.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	if err := c.cop.Check(r); err != nil {
		c.renderError(w, r, nil, http.StatusForbidden, "Request refused", "This form was sent from another site, so it was refused (cross-site request forgery protection).", nil)
		return
	}
	c.mux.ServeHTTP(w, r)
}

// Token returns the API token of the signed-in session a browser request
// carries, for pages outside the console (the report pages) that accept
// a console sign-in.
func (c *Console) Token(r *http.Request) (string, bool) {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		return "", false
	}
	s, _ := c.sessions.get(ck.Value)
	if s == nil {
		return "", false
	}
	return s.token, true
}

// LoginURL is where a browser without a session signs in, coming back to
// next afterwards.
func LoginURL(next string) string { return Prefix + "login?next=" + url.QueryEscape(next) }

// handlerFunc is a page or form handler for a signed-in session.
type handlerFunc func(w http.ResponseWriter, r *http.Request, s *session) error

func (c *Console) routes() {
	m := c.mux
	m.HandleFunc("GET "+Prefix+"login", c.loginPage)
	m.HandleFunc("POST "+Prefix+"login", c.login)
	m.HandleFunc("POST "+Prefix+"logout", c.logout)
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix(Prefix+"static/", http.FileServerFS(static))
	m.Handle("GET "+Prefix+"static/", cacheFor(time.Hour, files))
	m.HandleFunc("GET "+Prefix+"static/cordon.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "private, max-age=3600")
		_, _ = w.Write(webui.CSSBytes())
	})

	page := func(pattern string, h handlerFunc) { m.Handle("GET "+pattern, c.withSession(h, false)) }
	form := func(pattern string, h handlerFunc) { m.Handle("POST "+pattern, c.withSession(h, true)) }

	page(Prefix+"{$}", c.overview)
	page(Prefix+"policy", c.policyPage)
	page(Prefix+"policy/yaml", c.policyYAML)
	page(Prefix+"policy/versions", c.versionsPage)
	page(Prefix+"policy/versions/{version}", c.versionPage)
	page(Prefix+"policy/diff", c.diffPage)
	page(Prefix+"policy/edit", c.editPage)
	form(Prefix+"policy/edit", c.editSubmit)
	form(Prefix+"policy/validate", c.validate)
	form(Prefix+"policy/rollback", c.rollback)

	page(Prefix+"lists", c.listsPage)
	page(Prefix+"lists/{name}", c.listPage)
	form(Prefix+"lists", c.listCreate)
	form(Prefix+"lists/{name}/entries", c.listAddEntries)
	form(Prefix+"lists/{name}/entries/remove", c.listRemoveEntries)
	form(Prefix+"lists/{name}/delete", c.listDelete)
	page(Prefix+"users", c.usersPage)
	form(Prefix+"users", c.userPut)
	form(Prefix+"users/{name}/delete", c.userDelete)
	page(Prefix+"groups", c.groupsPage)
	form(Prefix+"groups", c.groupPut)
	form(Prefix+"groups/{name}/delete", c.groupDelete)
	page(Prefix+"locations", c.locationsPage)
	form(Prefix+"locations", c.locationPut)
	form(Prefix+"locations/{name}/delete", c.locationDelete)

	page(Prefix+"reviews", c.reviewsPage)
	form(Prefix+"reviews/{id}", c.reviewResolve)
	page(Prefix+"lookup", c.lookupPage)
	page(Prefix+"audit", c.auditPage)
	page(Prefix+"feeds", c.feedsPage)
	c.changeRoutes(page, form)

	m.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		s := c.session(r)
		c.renderError(w, r, s, http.StatusNotFound, "Page not found", "There is no console page at "+r.URL.Path+".", nil)
	})
}

func cacheFor(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", fmt.Sprintf("private, max-age=%d", int(d.Seconds())))
		h.ServeHTTP(w, r)
	})
}

// session returns the request's live session, or nil.
func (c *Console) session(r *http.Request) *session {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		return nil
	}
	s, _ := c.sessions.get(ck.Value)
	return s
}

// withSession admits a request with a live session (a form also needs the
// session's CSRF token), calls h, and turns its error into a page.
func (c *Console) withSession(h handlerFunc, isForm bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var s *session
		expired := false
		if ck, err := r.Cookie(CookieName); err == nil {
			s, expired = c.sessions.get(ck.Value)
		}
		if s == nil {
			if isForm {
				// No session: nothing can be done on anyone's behalf.
				c.renderError(w, r, nil, http.StatusUnauthorized, "Signed out", "Your session has ended. Sign in again and repeat the change.", nil)
				return
			}
			next := r.URL.RequestURI()
			to := LoginURL(next)
			if expired {
				to += "&expired=1"
			}
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		if isForm {
			r.Body = http.MaxBytesReader(w, r.Body, 8<<20)
			if err := r.ParseForm(); err != nil {
				c.renderError(w, r, s, http.StatusBadRequest, "Bad form", "The form could not be read: "+err.Error(), nil)
				return
			}
			tok := r.PostForm.Get("csrf")
			if tok == "" {
				tok = r.Header.Get("X-CSRF-Token")
			}
			if !s.checkCSRF(tok) {
				c.renderError(w, r, s, http.StatusForbidden, "Request refused", "This form has no valid security token (cross-site request forgery protection). Reload the page and try again.", nil)
				return
			}
		}
		if err := h(w, r, s); err != nil {
			c.fail(w, r, s, err)
		}
	})
}

// fail renders err: the API's own status and message for API errors, a
// generic page (and a log line) for anything else.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusUnauthorized:
			// The token was revoked: the session is over.
			c.sessions.delete(s.id)
			http.SetCookie(w, c.cookie(r, "", -1))
			if r.Method == http.MethodGet {
				http.Redirect(w, r, LoginURL(r.URL.RequestURI())+"&revoked=1", http.StatusSeeOther)
				return
			}
			c.renderError(w, r, nil, http.StatusUnauthorized, "Signed out", "The API no longer accepts this session's token.", nil)
			return
		case http.StatusForbidden:
			c.renderError(w, r, s, http.StatusForbidden, "Not allowed", sentence(ae.Message), nil)
			return
		}
		title := map[int]string{400: "That did not work", 404: "Not found", 409: "Conflict"}[ae.Status]
		if title == "" {
			title = "Something went wrong"
		}
		msg := sentence(ae.Message)
		if ae.ErrorID != "" {
			msg += " (error " + ae.ErrorID + ")"
		}
		c.renderError(w, r, s, ae.Status, title, msg, ae.Problems)
		return
	}
	id := randomToken()[:10]
	c.log.ErrorContext(r.Context(), "console page failed", "err", err, "error_id", id, "path", r.URL.Path)
	c.renderError(w, r, s, http.StatusInternalServerError, "Something went wrong", "The page could not be shown (error "+id+", see the server log).", nil)
}

// sentence capitalises an API message for display.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func (c *Console) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: CookieName, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, MaxAge: maxAge,
	}
}

// done ends a successful form: a flash message and a redirect (POST,
// redirect, GET).
func (c *Console) done(w http.ResponseWriter, r *http.Request, s *session, to, msg string) error {
	s.setFlash("ok", msg)
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}

// view is what every page template gets.
type view struct {
	Title  string
	Active string // navigation key
	S      *session
	Flash  *flash
	Data   any
	Now    time.Time
	// direct: the API lets the caller change the policy at once (GET
	// /me direct_writes); false sends its changes through change requests.
	direct bool
}

// Me is the signed-in caller.
func (v *view) Me() policies.Me {
	if v.S == nil {
		return policies.Me{}
	}
	return v.S.me
}

// CSRF is the token every form of the page carries.
func (v *view) CSRF() string {
	if v.S == nil {
		return ""
	}
	return v.S.csrf
}

// Can reports whether the caller's role has the named permission, as the
// API said at sign-in.
func (v *view) Can(perm string) bool {
	if v.S == nil {
		return false
	}
	for _, p := range v.S.me.Permissions {
		if p == perm {
			return true
		}
	}
	return false
}

// Direct reports whether the caller may change the policy at once rather
// than through a change request (settings.approvals.enforce), as the API
// said for this page.
func (v *view) Direct() bool { return v.direct }

// Edit reports whether the page offers direct edit forms needing perm:
// the role has the permission and may write directly.
func (v *view) Edit(perm string) bool { return v.direct && v.Can(perm) }

// Nav is the side navigation.
func (v *view) Nav() template.HTML { return webui.Nav(v.Active) }

func (c *Console) render(w http.ResponseWriter, r *http.Request, s *session, status int, name, title, active string, data any) {
	t, ok := c.pages[name]
	if !ok {
		c.fail(w, r, s, fmt.Errorf("console: no template %q", name))
		return
	}
	v := &view{Title: title, Active: active, S: s, Data: data, Now: c.now()}
	if s != nil {
		v.Flash = s.takeFlash()
		// Asked per page: an admin may turn approvals.enforce on or off
		// while the session lasts. On error no direct form is offered.
		var me policies.Me
		if err := c.getJSON(r, s, api+"/me", nil, &me); err == nil {
			v.direct = me.DirectWrites
		}
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		id := randomToken()[:10]
		c.log.ErrorContext(r.Context(), "console render failed", "err", err, "error_id", id, "page", name)
		http.Error(w, "the page could not be rendered (error "+id+")", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorData is the error page's content.
type errorData struct {
	Status   int
	Heading  string
	Message  string
	Problems []policies.FieldError
	Back     string
}

func (c *Console) renderError(w http.ResponseWriter, r *http.Request, s *session, status int, heading, msg string, problems []policies.FieldError) {
	back := ""
	if ref := r.Referer(); ref != "" {
		if u, err := url.Parse(ref); err == nil && strings.HasPrefix(u.Path, Prefix) && (u.Host == "" || u.Host == r.Host) {
			back = u.RequestURI()
		}
	}
	d := errorData{Status: status, Heading: heading, Message: msg, Problems: problems, Back: back}
	if s == nil {
		c.render(w, r, nil, status, "error.html", heading, "", d)
		return
	}
	c.render(w, r, s, status, "error.html", heading, "", d)
}
