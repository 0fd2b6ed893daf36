package console

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/categorizer"
	"github.com/cordon-gw/cordon/policies"
)

const testPolicy = `
settings: {default_action: allow}
groups: [{name: staff, description: Everyone employed}, {name: students}]
users:
  - {name: alice, groups: [staff]}
  - {name: bob, groups: [students]}
locations:
  - {name: hq, cidrs: [10.1.0.0/16]}
lists:
  - {name: corporate-allow, kind: allow, entries: [intranet.example.com]}
  - {name: saas-bypass, kind: bypass, entries: [zoom.example]}
rules:
  - {id: allow-corporate, lists: [corporate-allow], action: allow}
  - {id: block-threats, threats: [any], action: block}
  - {id: students-gambling, groups: [students], categories: [gambling], action: block}
  - {id: social-trial, categories: [social], action: block, monitor: true}
`

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	srv     *httptest.Server
	svc     *policies.Service
	console *Console
	clock   *clock
	tokens  map[policies.Role]string
}

// newEnv runs the policy API and the console on one test server, as the
// admin listener mounts them, over a file store and a small real index.
func newEnv(t *testing.T) *env {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := policies.OpenFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	engine := policies.NewEngine(policies.EngineConfig{Logger: logger})
	b := categorizer.NewBuilder()
	for _, f := range []struct {
		name   string
		cats   []string
		threat bool
		hosts  []string
	}{
		{"urlhaus", []string{"malware"}, true, []string{"cdn.evil.example"}},
		{"ut1-gambling", []string{"gambling"}, false, []string{"casino.example"}},
		{"ut1-social", []string{"social"}, false, []string{"social.example"}},
	} {
		id, err := b.AddFeed(f.name, f.cats, f.threat)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range f.hosts {
			if err := b.Add(id, categorizer.Entry{Kind: categorizer.KindDomain, Host: h}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ix, err := b.Build(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := engine.SetIndex(ix); err != nil {
		t.Fatal(err)
	}
	edges := &policies.MemoryEdges{}
	svc, err := policies.NewService(t.Context(), policies.ServiceConfig{Store: st, Changes: st, Edges: edges, Engine: engine, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	api, err := policies.NewAPI(policies.APIConfig{Service: svc, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)}
	con, err := New(Config{API: api, Logger: logger, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/v1/", api)
	mux.Handle(Prefix, con)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e := &env{srv: srv, svc: svc, console: con, clock: clk, tokens: map[policies.Role]string{}}
	admin, _, err := svc.EnsureAdminToken(t.Context(), t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	e.tokens[policies.RoleAdmin] = admin
	system := policies.Actor{Name: "admin", Role: policies.RoleAdmin, Source: policies.SourceSystem}
	for _, r := range []policies.Role{policies.RoleSecOps, policies.RoleNetOps, policies.RoleAuditor} {
		tok, _, err := svc.CreateToken(t.Context(), system, string(r)+"-ana", r)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[r] = tok
	}
	doc, err := policies.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Put(t.Context(), system, doc, "first policy"); err != nil {
		t.Fatal(err)
	}
	// One edge has reported (the heartbeat this process would send).
	if err := edges.PutEdge(t.Context(), svc.Heartbeat(policies.HeartbeatConfig{Name: "edge-paris", Role: "edge", FeedVersion: func() uint64 { return 1 }})); err != nil {
		t.Fatal(err)
	}
	return e
}

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	t    *testing.T
	e    *env
	c    *http.Client
	csrf string
}

func (e *env) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// login signs in with role's token and follows to the overview.
func (e *env) login(t *testing.T, role policies.Role) *browser {
	t.Helper()
	b := e.browser(t)
	res, _ := b.post("/ui/login", url.Values{"token": {e.tokens[role]}, "next": {"/ui/"}}, false)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/" {
		t.Fatalf("login as %s: %d %s", role, res.StatusCode, res.Header.Get("Location"))
	}
	b.get("/ui/")
	return b
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	if m := csrfRE.FindStringSubmatch(string(body)); m != nil {
		b.csrf = m[1]
	}
	return res, string(body)
}

func (b *browser) get(path string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.e.srv.URL+path, nil)
	return b.do(req)
}

// post submits a form; withCSRF adds the token of the last page seen.
func (b *browser) post(path string, form url.Values, withCSRF bool) (*http.Response, string) {
	b.t.Helper()
	if withCSRF {
		form.Set("csrf", b.csrf)
	}
	req, _ := http.NewRequest(http.MethodPost, b.e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// page GETs path and fails unless it is a 200 HTML page.
func (b *browser) page(path string) string {
	b.t.Helper()
	res, body := b.get(path)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		b.t.Fatalf("GET %s = %d %s\n%s", path, res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	return body
}

// flash follows a form's redirect and returns the page it lands on.
func (b *browser) follow(res *http.Response) string {
	b.t.Helper()
	if res.StatusCode != http.StatusSeeOther {
		b.t.Fatalf("form answered %d, want 303", res.StatusCode)
	}
	return b.page(res.Header.Get("Location"))
}
