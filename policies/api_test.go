package policies

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

type apiEnv struct {
	srv    *httptest.Server
	svc    *Service
	engine *Engine
	api    *API
	admin  string
	tokens map[Role]string
}

func newAPIEnv(t *testing.T) *apiEnv {
	t.Helper()
	s, e, _ := newFileService(t)
	reg := prometheus.NewRegistry()
	api, err := NewAPI(APIConfig{Service: s, Logger: slog.New(slog.DiscardHandler), Registerer: reg, MaxBodyBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	env := &apiEnv{srv: srv, svc: s, engine: e, api: api, tokens: map[Role]string{}}
	tok, _, err := s.EnsureAdminToken(t.Context(), t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	env.admin = tok
	env.tokens[RoleAdmin] = tok
	for _, r := range []Role{RoleSecOps, RoleNetOps, RoleAuditor} {
		tk, _, err := s.CreateToken(t.Context(), admin, string(r)+"-token", r)
		if err != nil {
			t.Fatal(err)
		}
		env.tokens[r] = tk
	}
	t.Cleanup(func() {
		if n, err := promtest.GatherAndLint(reg); err != nil || len(n) > 0 {
			t.Errorf("metric lint: %v %v", n, err)
		}
	})
	return env
}

// do sends a request and decodes a JSON answer into out (when not nil).
func (e *apiEnv) do(t *testing.T, role Role, method, path, ctype, body string, out any) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if role != "" {
		req.Header.Set("Authorization", "Bearer "+e.tokens[role])
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

func TestAPIPolicyLifecycle(t *testing.T) {
	env := newAPIEnv(t)
	yamlDoc := basePolicy
	var vr struct {
		Version VersionInfo `json:"version"`
	}
	if code := env.do(t, RoleSecOps, "PUT", "/api/v1/policy?comment=secops+first", "application/yaml", yamlDoc, &vr); code != 403 {
		t.Fatalf("secops PUT with users/locations: %d, want 403", code)
	}
	if code := env.do(t, RoleAdmin, "PUT", "/api/v1/policy?comment=first", "application/yaml", yamlDoc, &vr); code != 200 || vr.Version.Number != 1 {
		t.Fatalf("admin PUT yaml: %d %+v", code, vr)
	}
	// JSON form, rules only change: secops may.
	var cur Version
	if code := env.do(t, RoleSecOps, "GET", "/api/v1/policy", "", "", &cur); code != 200 || cur.Number != 1 {
		t.Fatalf("GET policy: %d %+v", code, cur.VersionInfo)
	}
	cur.Policy.Rules[1].Action = "warn"
	body, _ := json.Marshal(policyBody{Comment: "warn gambling", Policy: cur.Policy})
	if code := env.do(t, RoleSecOps, "PUT", "/api/v1/policy", "application/json", string(body), &vr); code != 200 || vr.Version.Number != 2 {
		t.Fatalf("secops PUT json: %d %+v", code, vr)
	}
	// A PUT based on a stale version is refused.
	var stale apiError
	if code := env.do(t, RoleSecOps, "PUT", "/api/v1/policy?base_version=1", "application/json", string(body), &stale); code != 409 || !strings.Contains(stale.Error, "changed since version 1 (now 2)") {
		t.Fatalf("stale PUT: %d %+v", code, stale)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "PUT", env.srv.URL+"/api/v1/policy", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+env.tokens[RoleSecOps])
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("If-Match", `"v1"`)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 409 {
		t.Fatalf("PUT with a stale If-Match: %v %v", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}
	var d Diff
	if code := env.do(t, RoleAuditor, "GET", "/api/v1/policy/diff?from=1&to=2", "", "", &d); code != 200 || len(d.Changes) != 1 || d.Changes[0].Name != "gambling" {
		t.Fatalf("diff: %d %+v", code, d)
	}
	if code := env.do(t, RoleAuditor, "POST", "/api/v1/policy/rollback", "application/json", `{"version": 1}`, nil); code != 403 {
		t.Fatalf("auditor rollback: %d, want 403", code)
	}
	if code := env.do(t, RoleSecOps, "POST", "/api/v1/policy/rollback", "application/json", `{"version": 1, "comment": "undo"}`, &vr); code != 200 || vr.Version.Number != 3 || vr.Version.RollbackOf != 1 {
		t.Fatalf("rollback: %d %+v", code, vr)
	}
	if env.engine.PolicyVersion() != 3 {
		t.Errorf("engine serves %d after rollback, want 3", env.engine.PolicyVersion())
	}
	var vs struct{ Versions []VersionInfo }
	if code := env.do(t, RoleAuditor, "GET", "/api/v1/policy/versions", "", "", &vs); code != 200 || len(vs.Versions) != 3 {
		t.Fatalf("versions: %d %+v", code, vs)
	}
	var v1 Version
	if code := env.do(t, RoleAuditor, "GET", "/api/v1/policy/versions/1", "", "", &v1); code != 200 || v1.Policy.Rules[1].Action != "block" {
		t.Fatalf("version 1: %d %+v", code, v1)
	}
	// Validate: problems with lines, 200.
	var vres struct {
		Valid    bool
		Problems []FieldError
	}
	if code := env.do(t, RoleAuditor, "POST", "/api/v1/policy/validate", "application/yaml", "rules:\n  - id: x\n    categories: [gamblin]\n    action: block\n", &vres); code != 200 || vres.Valid || len(vres.Problems) != 1 || vres.Problems[0].Line != 3 {
		t.Fatalf("validate: %d %+v", code, vres)
	}
	// Lookup explains the decision.
	var lr LookupResult
	if code := env.do(t, RoleAuditor, "GET", "/api/v1/lookup?url=https://www.bad.example/x&user=alice&client_ip=10.1.2.3", "", "", &lr); code != 200 {
		t.Fatalf("lookup: %d", code)
	}
	if lr.Decision.Action != "block" || lr.Decision.Rule != "deny-list" || lr.Decision.Reason != "list" || lr.Decision.Match != "deny" || lr.Location != "hq" || lr.Rule == nil || lr.Protocol != "https" {
		t.Errorf("lookup = %+v", lr)
	}
}

func TestAPIBadInput(t *testing.T) {
	env := newAPIEnv(t)
	if code := env.do(t, RoleAdmin, "PUT", "/api/v1/policy", "application/yaml", basePolicy, nil); code != 200 {
		t.Fatal(code)
	}
	big := `{"entries": ["` + strings.Repeat("a", 70<<10) + `"]}`
	tests := []struct {
		name, method, path, ctype, body string
		want                            int
		msg                             string
	}{
		{"unknown field", "POST", "/api/v1/lists/deny/entries", "application/json", `{"entries": ["a.example"], "entrys": 1}`, 400, `unknown field \"entrys\"`},
		{"wrong type", "POST", "/api/v1/lists/deny/entries", "application/json", `{"entries": "a.example"}`, 400, `field \"entries\": got JSON string`},
		{"malformed", "POST", "/api/v1/lists/deny/entries", "application/json", `{"entries": [`, 400, "truncated JSON"},
		{"trailing", "POST", "/api/v1/lists/deny/entries", "application/json", `{"entries": ["a.example"]} {}`, 400, "unexpected data after"},
		{"oversized", "POST", "/api/v1/lists/deny/entries", "application/json", big, 400, "body larger than"},
		{"invalid entry", "POST", "/api/v1/lists/deny/entries", "application/json", `{"entries": ["ok.example", "not a host"]}`, 400, "bad entry"},
		{"yaml unknown key", "PUT", "/api/v1/policy", "application/yaml", "rulez: []\n", 400, "line 1: field rulez not found"},
		{"wrong content type", "PUT", "/api/v1/policy", "text/plain", "x", 400, "want application/json or application/yaml"},
		{"json policy unknown field", "PUT", "/api/v1/policy", "application/json", `{"policy": {"rules": [{"id": "a", "action": "block", "nope": 1}]}}`, 400, `unknown field \"nope\"`},
		{"missing policy", "PUT", "/api/v1/policy", "application/json", `{"comment": "x"}`, 400, `missing field \"policy\"`},
		{"bad query", "GET", "/api/v1/audit?limit=x", "", "", 400, "want a non-negative integer"},
		{"unknown query", "GET", "/api/v1/audit?limt=3", "", "", 400, `unknown query parameter \"limt\"`},
		{"unknown list", "POST", "/api/v1/lists/nope/entries", "application/json", `{"entries": ["a.example"]}`, 404, "list"},
		{"bad version", "GET", "/api/v1/policy/versions/abc", "", "", 400, "want a non-negative integer"},
		{"no version", "GET", "/api/v1/policy/versions/99", "", "", 404, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tt.method, env.srv.URL+tt.path, strings.NewReader(tt.body))
			req.Header.Set("Authorization", "Bearer "+env.admin)
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want || !bytes.Contains(b, []byte(tt.msg)) {
				t.Errorf("%s %s = %d %s; want %d containing %q", tt.method, tt.path, resp.StatusCode, b, tt.want, tt.msg)
			}
		})
	}
	if env.svc.Current().Number != 1 {
		t.Errorf("bad input created versions: now %d", env.svc.Current().Number)
	}
}

func TestAPIAuthAndRoles(t *testing.T) {
	env := newAPIEnv(t)
	if code := env.do(t, "", "GET", "/healthz", "", "", nil); code != 200 {
		t.Errorf("healthz without token: %d", code)
	}
	if code := env.do(t, "", "GET", "/readyz", "", "", nil); code != 200 {
		t.Errorf("readyz without token: %d", code)
	}
	for _, rt := range env.api.Routes() {
		path := regexp.MustCompile(`\{[^}]+\}`).ReplaceAllString(rt.Pattern, "x")
		if code := env.do(t, "", rt.Method, path, "", "", nil); code != 401 {
			t.Errorf("%s %s without token: %d, want 401", rt.Method, path, code)
		}
		for _, role := range Roles {
			if role.Allows(rt.Permission) {
				continue
			}
			var e apiError
			code := env.do(t, role, rt.Method, path, "", "", &e)
			if code != 403 || e.Code != "forbidden" || e.Role != role || e.Required != rt.Permission.String() {
				t.Errorf("%s %s as %s: %d %+v, want a clear 403", rt.Method, path, role, code, e)
			}
		}
	}
	var tok struct {
		Token  string
		Record tokenView
	}
	if code := env.do(t, RoleAdmin, "POST", "/api/v1/tokens", "application/json", `{"name": "ci", "role": "auditor"}`, &tok); code != 201 || tok.Token == "" {
		t.Fatalf("create token: %d", code)
	}
	env.tokens["ci"] = tok.Token
	if code := env.do(t, "ci", "GET", "/api/v1/audit", "", "", nil); code != 200 {
		t.Errorf("new auditor token: %d", code)
	}
	var list struct{ Tokens []map[string]any }
	env.do(t, RoleAdmin, "GET", "/api/v1/tokens", "", "", &list)
	for _, tv := range list.Tokens {
		if _, ok := tv["hash"]; ok {
			t.Errorf("token list exposes hashes: %v", tv)
		}
	}
	if code := env.do(t, RoleAdmin, "DELETE", "/api/v1/tokens/"+tok.Record.ID, "", "", nil); code != 200 {
		t.Errorf("revoke: %d", code)
	}
	if code := env.do(t, "ci", "GET", "/api/v1/audit", "", "", nil); code != 401 {
		t.Errorf("revoked token: %d, want 401", code)
	}
	// Secrets are redacted for non-admins and kept on write-back.
	if code := env.do(t, RoleAdmin, "PUT", "/api/v1/users/alice", "application/json", `{"password": "pw-alice-1", "doh_token": "alice-token-0123456789"}`, nil); code != 200 {
		t.Fatalf("put user: %d", code)
	}
	// The write-back below is secops writing directly: approvals.enforce
	// must be off for that (an admin turns it off).
	var adm Version
	env.do(t, RoleAdmin, "GET", "/api/v1/policy", "", "", &adm)
	off := false
	adm.Policy.Settings.Approvals.Enforce = &off
	admBody, _ := json.Marshal(policyBody{Policy: adm.Policy})
	if code := env.do(t, RoleAdmin, "PUT", "/api/v1/policy", "application/json", string(admBody), nil); code != 200 {
		t.Fatalf("admin turns approvals.enforce off: %d", code)
	}
	var cur Version
	env.do(t, RoleSecOps, "GET", "/api/v1/policy", "", "", &cur)
	if cur.Policy.Users[0].PasswordHash != RedactedSecret || cur.Policy.Users[0].DoHToken != RedactedSecret {
		t.Fatalf("secops reads secrets: %+v", cur.Policy.Users[0])
	}
	cur.Policy.Rules = append(cur.Policy.Rules, Rule{ID: "news", Categories: []string{"news"}, Action: "warn"})
	body, _ := json.Marshal(policyBody{Policy: cur.Policy})
	if code := env.do(t, RoleSecOps, "PUT", "/api/v1/policy", "application/json", string(body), nil); code != 200 {
		t.Fatalf("secops write-back: %d", code)
	}
	if _, ok := env.engine.Authenticate("alice", "pw-alice-1"); !ok {
		t.Error("password lost after a redacted write-back")
	}
	if p, ok := env.engine.TokenPrincipal("alice-token-0123456789"); !ok || p.User != "alice" {
		t.Error("DoH token lost after a redacted write-back")
	}
	// Audit has every change with who and from where.
	var page AuditPage
	env.do(t, RoleAuditor, "GET", "/api/v1/audit?limit=1000", "", "", &page)
	var actions []string
	for _, e := range page.Entries {
		actions = append(actions, e.Action+"/"+e.Actor)
		if e.Source == SourceAPI && e.Remote != "127.0.0.1" {
			t.Errorf("audit entry without remote address: %+v", e)
		}
	}
	want := "policy.put/secops-token,policy.put/admin,user.put/admin,token.revoke/admin,token.create/admin"
	if got := strings.Join(actions[:5], ","); got != want {
		t.Errorf("audit = %s, want prefix %s", got, want)
	}
}

func TestAPIMountAndOpenAPI(t *testing.T) {
	env := newAPIEnv(t)
	env.api.Mount("GET", "/things/{id}", PermRead, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := ActorFrom(r.Context())
		if !ok {
			t.Error("mounted handler without actor")
		}
		io.WriteString(w, a.Name+":"+r.PathValue("id"))
	}))
	req, _ := http.NewRequest("GET", env.srv.URL+"/api/v1/things/7", nil)
	req.Header.Set("Authorization", "Bearer "+env.tokens[RoleAuditor])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "auditor-token:7" {
		t.Errorf("mounted route answered %d %q", resp.StatusCode, b)
	}
	if got := env.api.UndocumentedRoutes(); len(got) != 1 || got[0].Pattern != "/api/v1/things/{id}" {
		t.Fatalf("UndocumentedRoutes = %+v, want the mounted route", got)
	}
	frag := `{"paths": {"/api/v1/things/{id}": {"get": {"summary": "A thing", "x-permission": "read",
		"responses": {"200": {"description": "OK"}}}}}}`
	if err := env.api.AddOpenAPI([]byte(frag)); err != nil {
		t.Fatal(err)
	}
	if err := env.api.AddOpenAPI([]byte(frag)); err == nil {
		t.Error("documenting the same operation twice was accepted")
	}
	if got := env.api.UndocumentedRoutes(); len(got) != 0 {
		t.Errorf("UndocumentedRoutes after AddOpenAPI = %+v", got)
	}
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if code := env.do(t, RoleAuditor, "GET", "/api/v1/openapi.json", "", "", &doc); code != 200 || doc.OpenAPI == "" || doc.Paths["/api/v1/things/{id}"]["get"] == nil {
		t.Fatalf("openapi.json: %d, merged path missing", code)
	}
}

// TestOpenAPIListsEveryRoute checks the embedded document against the
// API's route table: every route (this package's and, when run with the
// mounted routes of other rooms, theirs) must be documented, and every
// documented /api/v1 operation of this package must exist.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	env := newAPIEnv(t)
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	routes := map[string]bool{}
	for _, rt := range env.api.Routes() {
		key := strings.ToLower(rt.Method) + " " + rt.Pattern
		routes[key] = true
		ops, ok := doc.Paths[rt.Pattern]
		if !ok {
			t.Errorf("route %s %s is not in openapi.json", rt.Method, rt.Pattern)
			continue
		}
		op, ok := ops[strings.ToLower(rt.Method)].(map[string]any)
		if !ok {
			t.Errorf("route %s %s: method not in openapi.json", rt.Method, rt.Pattern)
			continue
		}
		if op["x-permission"] == nil || !strings.HasPrefix(op["x-permission"].(string), rt.Permission.String()) {
			t.Errorf("route %s %s: x-permission %v, want %s", rt.Method, rt.Pattern, op["x-permission"], rt.Permission)
		}
	}
	for path, ops := range doc.Paths {
		if !strings.HasPrefix(path, APIPrefix) {
			continue
		}
		for m := range ops {
			if !routes[m+" "+path] && OwnedByPolicies(path) {
				t.Errorf("openapi.json documents %s %s but no such route is registered", strings.ToUpper(m), path)
			}
		}
	}
}

// TestOpenAPIRefsResolve checks every $ref of the document points at a
// defined component.
func TestOpenAPIRefsResolve(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	comps := doc["components"].(map[string]any)
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				parts := strings.Split(strings.TrimPrefix(ref, "#/components/"), "/")
				sec, _ := comps[parts[0]].(map[string]any)
				if len(parts) != 2 || sec[parts[1]] == nil {
					t.Errorf("unresolved $ref %q", ref)
				}
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(doc)
	if doc["openapi"] != "3.0.3" {
		t.Errorf("openapi = %v", doc["openapi"])
	}
}
