package console

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/cordon-gw/cordon/policies"
)

// loginData is the sign-in page's content.
type loginData struct {
	Next    string
	Error   string
	Notice  string
	Missing bool
}

// safeNext keeps a redirect target on this site: an absolute path, not
// "//host" nor a backslash trick; anything else is the overview.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix
	}
	return next
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	next := safeNext(q.Get("next"))
	if s := c.session(r); s != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	d := loginData{Next: next}
	switch {
	case q.Get("expired") != "":
		d.Notice = "Your session expired. Sign in again to continue."
	case q.Get("revoked") != "":
		d.Notice = "The token of your session is no longer valid. Sign in with a current token."
	case q.Get("out") != "":
		d.Notice = "You are signed out."
	}
	c.renderLogin(w, r, http.StatusOK, d)
}

func (c *Console) renderLogin(w http.ResponseWriter, r *http.Request, status int, d loginData) {
	c.render(w, r, nil, status, "login.html", "Sign in", "", d)
}

// login trades an API token (form field "token") for a session. The API
// itself says whether the token is valid and what its role may do.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		c.renderLogin(w, r, http.StatusBadRequest, loginData{Next: Prefix, Error: "The sign-in form could not be read."})
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	if tok == "" {
		c.renderLogin(w, r, http.StatusBadRequest, loginData{Next: next, Error: "Enter an API token.", Missing: true})
		return
	}
	rec, err := c.do(r.Context(), r, tok, apiCall{method: http.MethodGet, path: policies.APIPrefix + "/me"})
	if err != nil {
		if ae, ok := err.(*APIError); ok && ae.Status == http.StatusUnauthorized {
			c.log.InfoContext(r.Context(), "console sign-in refused", "remote", r.RemoteAddr)
			c.renderLogin(w, r, http.StatusUnauthorized, loginData{Next: next, Error: "That token is not valid: it is unknown or was revoked."})
			return
		}
		c.fail(w, r, nil, err)
		return
	}
	var me policies.Me
	if err := json.Unmarshal(rec.body.Bytes(), &me); err != nil || me.Role == "" {
		c.renderLogin(w, r, http.StatusBadGateway, loginData{Next: next, Error: "The API gave no identity for this token."})
		return
	}
	// A fresh session ID at every sign-in (no fixation); an older session
	// of this browser ends.
	if ck, err := r.Cookie(CookieName); err == nil {
		c.sessions.delete(ck.Value)
	}
	s := c.sessions.create(tok, me)
	http.SetCookie(w, c.cookie(r, s.id, int(c.sessions.maxAge.Seconds())))
	c.log.InfoContext(r.Context(), "console sign-in", "actor", me.Name, "role", me.Role, "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout ends the session; it needs the session's CSRF token, so another
// site cannot sign an operator out.
func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	_ = r.ParseForm()
	if s := c.session(r); s != nil {
		if !s.checkCSRF(r.PostForm.Get("csrf")) {
			c.renderError(w, r, s, http.StatusForbidden, "Request refused", "This form has no valid security token (cross-site request forgery protection).", nil)
			return
		}
		c.sessions.delete(s.id)
	}
	http.SetCookie(w, c.cookie(r, "", -1))
	http.Redirect(w, r, Prefix+"login?out=1", http.StatusSeeOther)
}
