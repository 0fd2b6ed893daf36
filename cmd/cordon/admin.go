package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strconv"
	"strings"
	"sync"
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
		pp.HandleFunc("/debug/pprof/mutex", sampledProfile("mutex"))
		pp.HandleFunc("/debug/pprof/block", sampledProfile("block"))
		mux.Handle("/debug/pprof/", g.requireToken(policies.PermAdmin, pp))
	}
	return mux
}

// sampledProfile serves the mutex or block profile with sampling switched
// on only while the request runs: ?seconds=N (default 10, at most 120)
// answers the contention of those N seconds, at no cost the rest of the
// time. Sampling: one mutex contention event in 10; blocking events of
// 10 µs and more.
func sampledProfile(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		secs, err := strconv.Atoi(r.URL.Query().Get("seconds"))
		if err != nil || secs <= 0 {
			secs = 10
		}
		secs = min(secs, 120)
		profileMu.Lock()
		defer profileMu.Unlock()
		switch name {
		case "mutex":
			runtime.SetMutexProfileFraction(10)
			defer runtime.SetMutexProfileFraction(0)
		case "block":
			runtime.SetBlockProfileRate(10_000)
			defer runtime.SetBlockProfileRate(0)
		}
		q := r.URL.Query()
		q.Set("seconds", strconv.Itoa(secs))
		r2 := r.Clone(r.Context())
		r2.URL.RawQuery = q.Encode()
		pprof.Handler(name).ServeHTTP(w, r2)
	}
}

// profileMu keeps one sampled profile at a time (the rates are global).
var profileMu sync.Mutex

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
