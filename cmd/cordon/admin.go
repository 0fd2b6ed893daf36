package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cordon-gw/cordon/policies"
	"github.com/cordon-gw/cordon/policies/console"
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
		// One sign-in for the console and the report pages.
		mux.HandleFunc("GET /reports/login", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, console.LoginURL(safeNext(r.URL.Query().Get("next"))), http.StatusSeeOther)
		})
		mux.Handle(console.Prefix, g.console)
		mux.Handle("GET /ui", http.RedirectHandler(console.Prefix, http.StatusMovedPermanently))
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

// requireToken admits a request carrying an API token whose role has perm:
// as a bearer header (API clients, curl) or through the admin console's
// session (browsers signed in at /ui/login). Browsers without one are sent
// to the console's sign-in page and come back afterwards.
func (g *gateway) requireToken(perm policies.Permission, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := ""
		if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "Bearer ") {
			tok = strings.TrimSpace(strings.TrimPrefix(a, "Bearer "))
		} else if g.console != nil {
			tok, _ = g.console.Token(r)
		}
		if tok == "" {
			if strings.Contains(r.Header.Get("Accept"), "text/html") {
				http.Redirect(w, r, console.LoginURL(r.URL.RequestURI()), http.StatusSeeOther)
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

// safeNext keeps a sign-in redirect on this site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return "/reports"
	}
	return next
}
