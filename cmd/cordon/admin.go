package main

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cordon-gw/cordon/policies"
)

// adminMux routes the admin listener: health, metrics, the policy API, PAC
// and WPAD, DoH, report pages and (opt-in) pprof.
func (g *gateway) adminMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := g.ready(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.reg, promhttp.HandlerOpts{Registry: g.reg}))
	if g.api != nil {
		mux.Handle("/api/v1/", g.api)
		for _, r := range g.reportsH.PageRoutes() {
			mux.Handle(r.Method+" "+r.Pattern, g.requireToken(policies.PermRead, r.Handler))
		}
		mux.HandleFunc("GET /reports/login", g.loginPage)
		mux.HandleFunc("POST /reports/login", g.login)
	}
	if g.proxy != nil {
		pac := g.proxy.PACHandler()
		mux.Handle("GET /proxy.pac", pac)
		mux.Handle("GET /wpad.dat", pac)
		doh := g.dns.DoHHandler()
		mux.Handle("/dns-query", doh)
		mux.Handle("/dns-query/{token}", doh)
	}
	if g.cfg.Admin.Pprof && g.api != nil {
		pp := http.NewServeMux()
		pp.HandleFunc("/debug/pprof/", pprof.Index)
		pp.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		pp.HandleFunc("/debug/pprof/profile", pprof.Profile)
		pp.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		pp.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.Handle("/debug/pprof/", g.requireToken(policies.PermAdmin, pp))
	}
	return mux
}

const tokenCookie = "cordon_token"

// requireToken admits a request carrying an API token whose role has perm:
// as a bearer header (API clients, curl) or as the cookie set by the login
// form (browsers). Browsers without one are sent to the login form.
func (g *gateway) requireToken(perm policies.Permission, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := ""
		if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
			tok = strings.TrimSpace(strings.TrimPrefix(a, "Bearer "))
		} else if c, err := r.Cookie(tokenCookie); err == nil {
			tok = c.Value
		}
		if tok == "" {
			if strings.Contains(r.Header.Get("Accept"), "text/html") {
				http.Redirect(w, r, "/reports/login?next="+template.URLQueryEscaper(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="cordon"`)
			http.Error(w, "missing token: send Authorization: Bearer <token>", http.StatusUnauthorized)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		rec, err := g.service.AuthenticateToken(ctx, tok)
		cancel()
		if err != nil {
			if errors.Is(err, policies.ErrUnauthorized) {
				http.Error(w, "invalid token", http.StatusUnauthorized)
				return
			}
			g.log.Error("token check", "err", err)
			http.Error(w, "token check failed", http.StatusServiceUnavailable)
			return
		}
		if !rec.Role.Allows(perm) {
			http.Error(w, "forbidden: role "+string(rec.Role)+" may not do this", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

var loginTmpl = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Cordon · sign in</title>
<style>
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;background:#f3f5f8;color:#17202c}
header{background:#17202c;color:#fff;padding:14px 28px;font-weight:700}
main{max-width:420px;margin:72px auto;background:#fff;border:1px solid #dde2ea;border-radius:10px;padding:28px}
label{display:block;font-weight:600;margin-bottom:6px}
input{width:100%;box-sizing:border-box;padding:9px 10px;border:1px solid #c5ccd8;border-radius:6px;font:inherit}
button{margin-top:16px;background:#2f6fdf;color:#fff;border:0;border-radius:6px;padding:9px 16px;font:inherit;cursor:pointer}
.err{color:#c0392b}
</style></head><body><header>Cordon</header><main>
<h1 style="font-size:20px;margin-top:0">Sign in to reports</h1>
{{if .Error}}<p class="err">{{.Error}}</p>{{end}}
<form method="post" action="/reports/login">
<input type="hidden" name="next" value="{{.Next}}">
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
<p style="color:#5b6577;font-size:13px">Any token works (auditor and up). The first admin token is in <code>&lt;data-dir&gt;/admin.token</code>.</p>
</main></body></html>`))

func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return "/reports"
	}
	return next
}

func (g *gateway) loginPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	loginTmpl.Execute(w, map[string]string{"Next": safeNext(r.URL.Query().Get("next"))})
}

func (g *gateway) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
		return
	}
	tok, next := r.PostForm.Get("token"), safeNext(r.PostForm.Get("next"))
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	rec, err := g.service.AuthenticateToken(ctx, tok)
	cancel()
	if err != nil || !rec.Role.Allows(policies.PermRead) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		loginTmpl.Execute(w, map[string]string{"Next": next, "Error": "That token is not valid."})
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: tokenCookie, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, MaxAge: int((12 * time.Hour).Seconds()),
	})
	http.Redirect(w, r, next, http.StatusSeeOther)
}
