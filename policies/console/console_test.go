package console

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

func TestLoginSessionLogout(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	res, _ := b.get("/ui/policy")
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/login?next=%2Fui%2Fpolicy" {
		t.Fatalf("GET /ui/policy signed out = %d %s, want the sign-in page", res.StatusCode, res.Header.Get("Location"))
	}
	if body := b.page("/ui/login?next=/ui/policy"); !strings.Contains(body, `name="token"`) || !strings.Contains(body, `value="/ui/policy"`) {
		t.Fatalf("sign-in page lacks the token field or next:\n%s", body)
	}
	res, body := b.post("/ui/login", url.Values{"token": {"not-a-token-0123456789"}}, false)
	if res.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "That token is not valid") {
		t.Fatalf("bad token = %d\n%s", res.StatusCode, body)
	}
	if e.console.sessions.len() != 0 {
		t.Fatalf("a refused sign-in made a session")
	}
	for _, next := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example"} {
		res, _ = e.browser(t).post("/ui/login", url.Values{"token": {e.tokens[policies.RoleNetOps]}, "next": {next}}, false)
		if loc := res.Header.Get("Location"); loc != "/ui/" {
			t.Errorf("sign-in with next=%q redirects to %q, want /ui/", next, loc)
		}
	}
	tok := e.tokens[policies.RoleNetOps]
	res, _ = b.post("/ui/login", url.Values{"token": {tok}, "next": {"/ui/policy"}}, false)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/policy" {
		t.Fatalf("sign-in = %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	var ck *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == CookieName {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure || ck.Path != "/" || ck.Value == tok || len(ck.Value) < 40 {
		t.Fatalf("session cookie = %+v, want HttpOnly, SameSite=Strict, not Secure over plain HTTP, a random ID", ck)
	}
	body = b.page("/ui/policy")
	if !strings.Contains(body, "netops-ana") || !strings.Contains(body, "students-gambling") {
		t.Fatalf("policy page after sign-in lacks the user or the rules:\n%s", body)
	}
	for _, p := range []string{"/ui/", "/ui/policy", "/ui/lists", "/ui/users", "/ui/audit", "/ui/policy/yaml"} {
		if body := b.page(p); strings.Contains(body, tok) {
			t.Errorf("%s shows the API token", p)
		}
	}
	// Sign-out needs the CSRF token, then the session is gone.
	if res, _ := b.post("/ui/logout", url.Values{}, false); res.StatusCode != http.StatusForbidden {
		t.Errorf("sign-out without CSRF token = %d, want 403", res.StatusCode)
	}
	b.page("/ui/")
	n := e.console.sessions.len()
	res, _ = b.post("/ui/logout", url.Values{}, true)
	if res.StatusCode != http.StatusSeeOther || e.console.sessions.len() != n-1 {
		t.Fatalf("sign-out = %d with %d sessions left", res.StatusCode, e.console.sessions.len())
	}
	if res, _ := b.get("/ui/"); res.StatusCode != http.StatusSeeOther {
		t.Errorf("GET /ui/ after sign-out = %d, want a redirect to sign in", res.StatusCode)
	}
}

func TestSessionExpiry(t *testing.T) {
	e := newEnv(t)
	b := e.login(t, policies.RoleSecOps)
	e.clock.advance(DefaultIdleTimeout - time.Minute)
	b.page("/ui/policy") // used in time: still signed in
	e.clock.advance(DefaultIdleTimeout + time.Second)
	res, _ := b.get("/ui/policy")
	if loc := res.Header.Get("Location"); res.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "expired=1") {
		t.Fatalf("idle session = %d %s, want the sign-in page saying it expired", res.StatusCode, loc)
	}
	if body := b.page("/ui/login?expired=1"); !strings.Contains(body, "Your session expired") {
		t.Errorf("sign-in page does not say the session expired")
	}
	// A session used all the time still ends at MaxAge.
	b = e.login(t, policies.RoleSecOps)
	for d := time.Duration(0); d <= DefaultMaxAge; d += DefaultIdleTimeout / 2 {
		e.clock.advance(DefaultIdleTimeout / 2)
		b.get("/ui/")
	}
	if res, _ := b.get("/ui/"); res.StatusCode != http.StatusSeeOther {
		t.Errorf("session older than MaxAge = %d, want a redirect to sign in", res.StatusCode)
	}
	// A revoked token ends its session at the next page.
	b = e.login(t, policies.RoleAuditor)
	var id string
	ts, _ := e.svc.Tokens(t.Context())
	for _, tk := range ts {
		if tk.Role == policies.RoleAuditor {
			id = tk.ID
		}
	}
	if err := e.svc.RevokeToken(t.Context(), policies.Actor{Name: "admin", Role: policies.RoleAdmin, Source: policies.SourceSystem}, id); err != nil {
		t.Fatal(err)
	}
	res, _ = b.get("/ui/policy")
	if loc := res.Header.Get("Location"); res.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "revoked=1") {
		t.Errorf("page with a revoked token = %d %s, want the sign-in page", res.StatusCode, loc)
	}
}

func TestCSRF(t *testing.T) {
	e := newEnv(t)
	// An admin writes directly whatever settings.approvals.enforce says,
	// so the last, valid form is saved.
	b := e.login(t, policies.RoleAdmin)
	b.page("/ui/locations")
	form := url.Values{"name": {"lab"}, "cidrs": {"10.9.0.0/16"}}
	for _, tc := range []struct {
		name   string
		csrf   string
		header map[string]string
	}{
		{"no token", "", nil},
		{"wrong token", "forged", nil},
		{"valid token from another site", b.csrf, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		{"valid token with a foreign Origin", b.csrf, map[string]string{"Origin": "https://evil.example"}},
	} {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		if tc.csrf != "" {
			f.Set("csrf", tc.csrf)
		}
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/ui/locations", strings.NewReader(f.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		res, body := b.do(req)
		if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "Request refused") {
			t.Errorf("%s: POST /ui/locations = %d, want 403 refused", tc.name, res.StatusCode)
		}
	}
	for _, l := range e.svc.Current().Policy.Locations {
		if l.Name == "lab" {
			t.Fatal("a forged form created a location")
		}
	}
	b.page("/ui/locations")
	res, _ := b.post("/ui/locations", form, true)
	if body := b.follow(res); !strings.Contains(body, "Location lab saved") || !strings.Contains(body, "10.9.0.0/16") {
		t.Fatalf("location form with its token did not save:\n%s", body)
	}
}

// writeForms are the POST forms a page offers (sign-out excluded).
var formRE = regexp.MustCompile(`<form method="post" action="([^"]+)"`)

func writeForms(body string) []string {
	var out []string
	for _, m := range formRE.FindAllStringSubmatch(body, -1) {
		if m[1] != "/ui/logout" {
			out = append(out, m[1])
		}
	}
	return out
}

// setEnforce stores the live policy with settings.approvals.enforce set
// (an admin's direct write).
func setEnforce(t *testing.T, e *env, on bool) {
	t.Helper()
	p := e.svc.Current().Policy.Clone()
	p.Settings.Approvals.Enforce = &on
	if _, err := e.svc.Put(t.Context(), policies.Actor{Name: "admin", Role: policies.RoleAdmin, Source: policies.SourceSystem}, p, "approvals.enforce"); err != nil {
		t.Fatal(err)
	}
}

// TestDirectFormsFollowEnforce: with approvals enforced (the default),
// secops and netops get no direct edit forms, only the way to a change
// request; turned off, they get the forms their permissions allow
// (TestRolesSeeOnlyTheirButtons).
func TestDirectFormsFollowEnforce(t *testing.T) {
	e := newEnv(t)
	pages := []string{"/ui/lists", "/ui/lists/corporate-allow", "/ui/lists/saas-bypass", "/ui/locations", "/ui/users", "/ui/groups"}
	for _, role := range []policies.Role{policies.RoleNetOps, policies.RoleSecOps} {
		b := e.login(t, role)
		for _, p := range pages {
			body := b.page(p)
			if f := writeForms(body); len(f) > 0 {
				t.Errorf("%s on %s with approvals enforced is offered %v", role, p, f)
			}
		}
		if body := b.page("/ui/locations"); role == policies.RoleNetOps && !strings.Contains(body, "go through change requests") {
			t.Errorf("netops locations page does not say how to change them")
		}
		// A forged direct POST is refused by the API.
		before := e.svc.Current().Number
		b.page("/ui/")
		res, body := b.post("/ui/lists/saas-bypass/entries", url.Values{"entries": {"x.example"}}, true)
		if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "change request") {
			t.Errorf("%s direct list POST with approvals enforced = %d, want 403 naming change requests", role, res.StatusCode)
		}
		if e.svc.Current().Number != before {
			t.Errorf("%s direct POST stored a version", role)
		}
	}
	// The admin keeps the forms.
	if f := writeForms(e.login(t, policies.RoleAdmin).page("/ui/locations")); len(f) == 0 {
		t.Error("admin gets no location forms")
	}
	// Turned off, netops gets them on the next page, without signing in again.
	b := e.login(t, policies.RoleNetOps)
	setEnforce(t, e, false)
	if f := writeForms(b.page("/ui/locations")); len(f) == 0 {
		t.Error("netops gets no location forms with approvals.enforce off")
	}
}

func TestRolesSeeOnlyTheirButtons(t *testing.T) {
	e := newEnv(t)
	setEnforce(t, e, false)
	if _, err := e.svc.SubmitReview(t.Context(), policies.Review{User: "bob", Host: "casino.example", URL: "http://casino.example/", RuleID: "students-gambling", Message: "for a class"}); err != nil {
		t.Fatal(err)
	}
	pages := []string{"/ui/", "/ui/policy", "/ui/policy/yaml", "/ui/policy/versions", "/ui/policy/versions/1", "/ui/lists", "/ui/lists/corporate-allow", "/ui/lists/saas-bypass",
		"/ui/users", "/ui/groups", "/ui/locations", "/ui/reviews", "/ui/audit", "/ui/lookup?url=casino.example&user=bob", "/ui/feeds"}
	want := map[policies.Role][]string{
		policies.RoleAuditor: nil,
		policies.RoleNetOps:  {"/ui/lists/saas-bypass/delete", "/ui/lists/saas-bypass/entries", "/ui/lists/saas-bypass/entries/remove", "/ui/locations", "/ui/locations/hq/delete", "/ui/lists"},
		policies.RoleSecOps:  {"/ui/lists/corporate-allow/delete", "/ui/lists/corporate-allow/entries", "/ui/lists/corporate-allow/entries/remove", "/ui/reviews/", "/ui/lists"},
		policies.RoleAdmin:   {"/ui/users", "/ui/users/alice/delete", "/ui/groups", "/ui/groups/staff/delete", "/ui/locations", "/ui/lists/saas-bypass/delete", "/ui/lists/corporate-allow/delete", "/ui/reviews/"},
	}
	for role, forms := range want {
		b := e.login(t, role)
		seen := map[string]bool{}
		for _, p := range pages {
			for _, f := range writeForms(b.page(p)) {
				seen[f] = true
			}
		}
		for _, f := range forms {
			found := false
			for s := range seen {
				found = found || strings.HasPrefix(s, f)
			}
			if !found {
				t.Errorf("%s does not get the form %s (has %v)", role, f, seen)
			}
		}
		if role == policies.RoleAuditor && len(seen) > 0 {
			t.Errorf("auditor is offered write forms: %v", seen)
		}
		if role == policies.RoleNetOps {
			for s := range seen {
				if strings.HasPrefix(s, "/ui/users") || strings.HasPrefix(s, "/ui/reviews/") || strings.Contains(s, "corporate-allow") {
					t.Errorf("netops is offered %s, which its role may not use", s)
				}
			}
		}
		if role == policies.RoleAuditor {
			body := b.page("/ui/policy")
			if strings.Contains(body, "Edit as YAML") {
				t.Errorf("auditor sees the edit button")
			}
		}
	}
	// The auditor's direct POSTs are refused by the API with 403 and
	// change nothing.
	b := e.login(t, policies.RoleAuditor)
	before := e.svc.Current().Number
	for path, form := range map[string]url.Values{
		"/ui/locations":                     {"name": {"lab"}, "cidrs": {"10.9.0.0/16"}},
		"/ui/lists/corporate-allow/entries": {"entries": {"evil.example"}},
		"/ui/users":                         {"name": {"mallory"}},
		"/ui/policy/rollback":               {"version": {"0"}, "comment": {"x"}},
	} {
		b.page("/ui/")
		res, body := b.post(path, form, true)
		if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "Not allowed") || !strings.Contains(body, "auditor") {
			t.Errorf("auditor POST %s = %d, want 403 from the API\n%s", path, res.StatusCode, body)
		}
	}
	if after := e.svc.Current().Number; after != before {
		t.Errorf("auditor POSTs changed the policy: version %d -> %d", before, after)
	}
}

func TestPagesRender(t *testing.T) {
	e := newEnv(t)
	if _, err := e.svc.SubmitReview(t.Context(), policies.Review{User: "bob", Host: "casino.example", URL: "http://casino.example/", RuleID: "students-gambling", Message: "for a class"}); err != nil {
		t.Fatal(err)
	}
	b := e.login(t, policies.RoleAdmin)
	for _, tc := range []struct {
		path string
		has  []string
	}{
		{"/ui/", []string{"Overview", `id="live-version">v1`, "casino.example", "Reports are not available on this server", "edge-paris", `<span class="edge-version">v1</span>`, "No change is waiting"}},
		{"/ui/policy", []string{`<span class="badge live">version 1</span>`, "students-gambling", `<span class="badge monitor"`, "first policy", "corporate-allow · allow"}},
		{"/ui/policy/yaml", []string{`<span class="k">rules:</span>`, "students-gambling"}},
		{"/ui/policy/versions", []string{"v1", "first policy", `name="from"`}},
		{"/ui/policy/diff?from=0&to=1", []string{"Version 0 → 1", `<span class="chg added">added</span>`, "students-gambling"}},
		{"/ui/lists", []string{"corporate-allow", "saas-bypass", "allow-corporate"}},
		{"/ui/lists/corporate-allow", []string{"intranet.example.com", "Add entries"}},
		{"/ui/users", []string{"alice", "students", "Add or change a user"}},
		{"/ui/groups", []string{"Everyone employed", "Add or change a group"}},
		{"/ui/locations", []string{"10.1.0.0/16"}},
		{"/ui/reviews", []string{"casino.example", "for a class", "Accept"}},
		{"/ui/lookup?url=http://casino.example/&user=bob", []string{`<span class="badge block">block</span>`, "students-gambling", "ut1-gambling", "casino.example"}},
		{"/ui/lookup?url=social.example&user=alice", []string{"Monitor rule <b>social-trial</b> would block"}},
		{"/ui/audit", []string{"policy.put", "first policy", "token.create"}},
		{"/ui/feeds", []string{"does not sync feeds"}},
		{"/ui/policy/edit", []string{`<textarea id="yaml"`, "students-gambling", "/ui/static/editor.js"}},
	} {
		body := b.page(tc.path)
		for _, s := range tc.has {
			if !strings.Contains(body, s) {
				t.Errorf("GET %s lacks %q", tc.path, s)
			}
		}
		if regexp.MustCompile(`(src|href)="https?:`).MatchString(body) || strings.Contains(body, "style=") {
			t.Errorf("GET %s has an external reference or an inline style", tc.path)
		}
		if strings.Contains(body, `{"`) {
			t.Errorf("GET %s shows raw JSON", tc.path)
		}
	}
	res, body := b.get("/ui/nope")
	if res.StatusCode != http.StatusNotFound || !strings.Contains(body, "Page not found") {
		t.Errorf("GET /ui/nope = %d", res.StatusCode)
	}
	res, body = b.get("/ui/lookup?url=http://")
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "not a URL") {
		t.Errorf("lookup of a bad URL = %d", res.StatusCode)
	}
	res, _ = b.get("/ui/static/editor.js")
	if res.StatusCode != http.StatusOK {
		t.Errorf("editor.js = %d", res.StatusCode)
	}
	res, body = b.get("/ui/static/cordon.css")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, ".mainnav") {
		t.Errorf("cordon.css = %d", res.StatusCode)
	}
	res, _ = b.get("/ui/policy")
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP = %q", csp)
	}
}

func TestForms(t *testing.T) {
	e := newEnv(t)
	id, err := e.svc.SubmitReview(t.Context(), policies.Review{User: "bob", Host: "casino.example", URL: "http://casino.example/"})
	if err != nil {
		t.Fatal(err)
	}
	b := e.login(t, policies.RoleAdmin)
	step := func(page, path string, form url.Values, want string) {
		t.Helper()
		b.page(page)
		res, body := b.post(path, form, true)
		if res.StatusCode != http.StatusSeeOther {
			t.Fatalf("POST %s = %d\n%s", path, res.StatusCode, body)
		}
		if got := b.follow(res); !strings.Contains(got, want) {
			t.Fatalf("after POST %s the page lacks %q", path, want)
		}
	}
	step("/ui/lists", "/ui/lists", url.Values{"name": {"blocked-extra"}, "kind": {"deny"}, "entries": {"a.example\nb.example"}}, "List blocked-extra saved")
	step("/ui/lists/blocked-extra", "/ui/lists/blocked-extra/entries", url.Values{"entries": {"c.example, d.example"}, "comment": {"more"}}, "2 entries added to blocked-extra")
	step("/ui/lists/blocked-extra", "/ui/lists/blocked-extra/entries/remove", url.Values{"entry": {"a.example", "c.example"}}, "2 entries removed from blocked-extra")
	l := e.svc.Current().Policy.Lists[2]
	if l.Name != "blocked-extra" || strings.Join(l.Entries, ",") != "b.example,d.example" {
		t.Fatalf("list after the forms = %+v", l)
	}
	step("/ui/lists/blocked-extra", "/ui/lists/blocked-extra/delete", url.Values{}, "List blocked-extra deleted")
	step("/ui/users", "/ui/users", url.Values{"name": {"carol"}, "groups": {"staff, students"}, "password": {"pw-carol-123"}}, "User carol saved")
	if _, ok := e.svc.Current().Policy.Users[2], true; !ok || e.svc.Current().Policy.Users[2].Name != "carol" {
		t.Fatal("user not saved")
	}
	step("/ui/groups", "/ui/groups", url.Values{"name": {"contractors"}, "description": {"External"}}, "Group contractors saved")
	step("/ui/groups", "/ui/groups/contractors/delete", url.Values{}, "Group contractors deleted")
	step("/ui/reviews", "/ui/reviews/"+id, url.Values{"status": {"accepted"}, "note": {"ok for class"}}, "marked accepted")
	rs, _ := e.svc.Reviews(t.Context(), policies.ReviewAccepted)
	if len(rs) != 1 || rs[0].ResolvedBy != "admin" || rs[0].Note != "ok for class" {
		t.Fatalf("review after accept = %+v", rs)
	}
	n := e.svc.Current().Number
	step("/ui/policy/versions/1", "/ui/policy/rollback", url.Values{"version": {"1"}, "comment": {"undo the directory edits"}}, "Change request opened to roll back to version 1")
	chs, err := e.svc.Changes(t.Context(), "")
	if err != nil || len(chs) != 1 || chs[0].Title != "Roll back to version 1" || chs[0].Reason != "undo the directory edits" || e.svc.Current().Number != n {
		t.Fatalf("rollback from the console = %+v %v (live v%d, was v%d): want an open change request and the live version kept", chs, err, e.svc.Current().Number, n)
	}
	// Bad input comes back with the API's message and its status.
	b.page("/ui/locations")
	res, body := b.post("/ui/locations", url.Values{"name": {"bad"}, "cidrs": {"10.0.0.0/33"}}, true)
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "10.0.0.0/33") {
		t.Errorf("bad CIDR = %d\n%s", res.StatusCode, body)
	}
	// Audit: filtered by actor and source, paged.
	body = b.page("/ui/audit?actor=admin&source=console")
	if !strings.Contains(body, "list.put") || strings.Contains(body, "first policy") {
		t.Errorf("audit filtered by console source is wrong")
	}
	body = b.page("/ui/audit?since=2000-01-02T15:04")
	if !strings.Contains(body, "change.open") {
		t.Errorf("audit since 2000 lacks the rollback change request")
	}
	if res, _ := b.get("/ui/audit?since=yesterday"); res.StatusCode != http.StatusBadRequest {
		t.Errorf("audit since=yesterday = %d, want 400", res.StatusCode)
	}
	for i := 0; i < 60; i++ {
		if _, err := e.svc.PutGroup(t.Context(), policies.Actor{Name: "admin", Role: policies.RoleAdmin, Source: policies.SourceSystem}, policies.Group{Name: "g", Description: strings.Repeat("x", i)}); err != nil {
			t.Fatal(err)
		}
	}
	body = b.page("/ui/audit")
	m := regexp.MustCompile(`href="(/ui/audit\?before=\d+)" rel="next"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("audit page with 60+ entries has no older link")
	}
	older := b.page(strings.ReplaceAll(m[1], "&amp;", "&"))
	if !strings.Contains(older, "« Newest") || !strings.Contains(older, "token.create") {
		t.Errorf("older audit page lacks the first entries")
	}
}

func TestEditorValidation(t *testing.T) {
	e := newEnv(t)
	b := e.login(t, policies.RoleSecOps)
	b.page("/ui/policy/edit")
	validate := func(doc string) validateResult {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/ui/policy/validate", strings.NewReader(doc))
		req.Header.Set("Content-Type", "application/yaml")
		req.Header.Set("X-CSRF-Token", b.csrf)
		res, body := b.do(req)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("validate = %d %s", res.StatusCode, body)
		}
		var v validateResult
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := validate(testPolicy); !v.Valid || len(v.Problems) != 0 {
		t.Errorf("valid policy = %+v", v)
	}
	bad := strings.Replace(testPolicy, "categories: [gambling]", "categories: [gambling, casinos]", 1)
	v := validate(bad)
	line := strings.Count(bad[:strings.Index(bad, "casinos")], "\n") + 1
	if v.Valid || len(v.Problems) != 1 || v.Problems[0].Line != line || !strings.Contains(v.Problems[0].Message, "casinos") {
		t.Errorf("unknown category = %+v, want one problem at line %d", v, line)
	}
	v = validate("rules:\n  - id: x\n    colour: red\n    action: block\n")
	if v.Valid || len(v.Problems) != 1 || v.Problems[0].Line != 3 || !strings.Contains(v.Problems[0].Message, "colour") {
		t.Errorf("unknown field = %+v, want a problem at line 3", v)
	}
	v = validate("rules: [\n")
	if v.Valid || len(v.Problems) != 1 || v.Problems[0].Line == 0 {
		t.Errorf("broken YAML = %+v, want a problem with its line", v)
	}
	// Without the CSRF header the validation call is refused.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/ui/policy/validate", strings.NewReader(testPolicy))
	if res, _ := b.do(req); res.StatusCode != http.StatusForbidden {
		t.Errorf("validate without CSRF = %d, want 403", res.StatusCode)
	}
	// Submitting a broken draft shows the problems at their lines and
	// changes nothing.
	b.page("/ui/policy/edit")
	res, body := b.post("/ui/policy/edit", url.Values{"yaml": {bad}, "base_version": {"1"}, "comment": {"x"}}, true)
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, `data-line="`+strconv.Itoa(line)+`"`) || e.svc.Current().Number != 1 {
		t.Errorf("broken draft = %d (version %d)\n%s", res.StatusCode, e.svc.Current().Number, body)
	}
}
