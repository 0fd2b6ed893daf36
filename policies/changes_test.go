package policies

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// changeEnv is the admin API with a token per person: two netops and two
// secops people, an admin and an auditor.
type changeEnv struct {
	*apiEnv
}

func newChangeEnv(t *testing.T) *changeEnv {
	t.Helper()
	env := newAPIEnv(t)
	for _, p := range []struct {
		name string
		role Role
	}{{"nina", RoleNetOps}, {"ned", RoleNetOps}, {"sam", RoleSecOps}, {"sue", RoleSecOps}, {"ann", RoleAuditor}} {
		tk, _, err := env.svc.CreateToken(t.Context(), admin, p.name, p.role)
		if err != nil {
			t.Fatal(err)
		}
		env.tokens[Role(p.name)] = tk
	}
	if _, err := env.svc.Put(t.Context(), admin, mustParse(t, basePolicy), "base"); err != nil {
		t.Fatal(err)
	}
	return &changeEnv{env}
}

// call sends body as JSON as person who ("admin" or a name) and decodes
// the answer; it returns the status.
func (e *changeEnv) call(t *testing.T, who, method, path string, body any, out any) int {
	t.Helper()
	s := ""
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		s = string(b)
	}
	ct := ""
	if body != nil {
		ct = "application/json"
	}
	return e.do(t, Role(who), method, path, ct, s, out)
}

func (e *changeEnv) open(t *testing.T, who string, body map[string]any) ChangeRequest {
	t.Helper()
	var c ChangeRequest
	var raw json.RawMessage
	if code := e.call(t, who, "POST", "/api/v1/changes", body, &raw); code != 201 {
		t.Fatalf("open change as %s: %d %s", who, code, raw)
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func wantError(t *testing.T, what string, code, want int, e apiError, contains string) {
	t.Helper()
	if code != want || !strings.Contains(e.Error, contains) {
		t.Errorf("%s: %d %q, want %d with %q", what, code, e.Error, want, contains)
	}
}

func TestChangeBypassNeedsNetopsAndSecops(t *testing.T) {
	env := newChangeEnv(t)
	c := env.open(t, "nina", map[string]any{"title": "bypass payroll", "reason": "uploads break",
		"patch": map[string]any{"bypass": map[string]any{"add": []string{"payroll.example"}}}})
	if c.State != ChangeOpen || c.BaseVersion != 1 || len(c.Sections) != 1 || c.Sections[0] != SectionBypass {
		t.Fatalf("opened: state %s base %d sections %v", c.State, c.BaseVersion, c.Sections)
	}
	if got := c.Impact.RequiredRoles; len(got) != 2 || got[0] != RoleNetOps || got[1] != RoleSecOps {
		t.Fatalf("required roles = %v, want [netops secops]", got)
	}
	if len(c.Impact.Diff) != 1 || c.Impact.Diff[0].Name != "bypass" || c.Impact.Preview == nil || len(c.Impact.Problems) != 0 {
		t.Fatalf("impact = %+v", c.Impact)
	}
	id := "/api/v1/changes/" + c.ID
	var e apiError
	wantError(t, "self-approval", env.call(t, "nina", "POST", id+"/approve", map[string]any{}, &e), 403, e, "author may not approve their own change")
	e = apiError{}
	wantError(t, "auditor approval", env.call(t, "ann", "POST", id+"/approve", nil, &e), 403, e, "")
	e = apiError{}
	wantError(t, "apply unapproved", env.call(t, "nina", "POST", id+"/apply", nil, &e), 409, e, "needs an approval from netops and secops")

	var got ChangeRequest
	if code := env.call(t, "sam", "POST", id+"/approve", map[string]any{"comment": "fine by security"}, &got); code != 200 || got.State != ChangeOpen {
		t.Fatalf("secops approval: %d state %s", code, got.State)
	}
	e = apiError{}
	wantError(t, "approving twice", env.call(t, "sam", "POST", id+"/approve", nil, &e), 409, e, "sam already approved it")
	e = apiError{}
	wantError(t, "second secops does not count as netops", env.call(t, "sue", "POST", id+"/approve", nil, &e), 200, e, "")
	if code := env.call(t, "nina", "GET", id, nil, &got); code != 200 || got.State != ChangeOpen || got.RequiredApprovals[0].ApprovedBy != "" {
		t.Fatalf("after two secops approvals: %d %s %+v", code, got.State, got.RequiredApprovals)
	}
	e = apiError{}
	wantError(t, "apply with only secops", env.call(t, "nina", "POST", id+"/apply", nil, &e), 409, e, "needs an approval from netops")
	if code := env.call(t, "ned", "POST", id+"/approve", nil, &got); code != 200 || got.State != ChangeApproved {
		t.Fatalf("netops approval: %d state %s %+v", code, got.State, got.RequiredApprovals)
	}
	if code := env.call(t, "nina", "POST", id+"/apply", nil, &got); code != 200 || got.State != ChangeApplied || got.AppliedVersion != 2 {
		t.Fatalf("apply: %d %s version %d", code, got.State, got.AppliedVersion)
	}
	if !env.engine.Current().Bypassed("payroll.example") {
		t.Error("the applied bypass entry is not served")
	}
	e = apiError{}
	wantError(t, "apply twice", env.call(t, "nina", "POST", id+"/apply", nil, &e), 409, e, "the change is applied")

	var page AuditPage
	if code := env.call(t, "admin", "GET", "/api/v1/audit?action=change.", nil, &page); code != 200 {
		t.Fatalf("audit: %d", code)
	}
	var actions []string
	for _, en := range page.Entries {
		actions = append(actions, en.Action+" "+en.Actor+" "+string(en.Role))
	}
	want := []string{"change.apply nina netops", "change.approve ned netops", "change.approve sue secops", "change.approve sam secops", "change.open nina netops"}
	if strings.Join(actions, "|") != strings.Join(want, "|") {
		t.Errorf("audit = %q, want %q", actions, want)
	}
}

func TestChangeBadInput(t *testing.T) {
	env := newChangeEnv(t)
	for _, tc := range []struct {
		name string
		body map[string]any
		want string
	}{
		{"no title", map[string]any{"patch": map[string]any{"bypass": map[string]any{"add": []string{"x.example"}}}}, "a title is required"},
		{"neither", map[string]any{"title": "t"}, "give a patch or a full policy"},
		{"update of a missing rule", map[string]any{"title": "t", "patch": map[string]any{"rules": map[string]any{"update": []any{map[string]any{"id": "nope", "action": "block"}}}}}, `rules.update: rule "nope" does not exist`},
		{"delete of a missing rule", map[string]any{"title": "t", "patch": map[string]any{"rules": map[string]any{"delete": []string{"nope"}}}}, `rules.delete: rule "nope" does not exist`},
		{"before a missing rule", map[string]any{"title": "t", "patch": map[string]any{"rules": map[string]any{"add": []any{map[string]any{"rule": map[string]any{"id": "n", "action": "block", "domains": []string{"a.example"}}, "before": "nope"}}}}}, `rule "nope" (before) does not exist`},
		{"entries of a missing list", map[string]any{"title": "t", "patch": map[string]any{"lists": map[string]any{"add_entries": map[string]any{"nope": []string{"a.example"}}}}}, `list "nope" does not exist`},
		{"nothing changes", map[string]any{"title": "t", "patch": map[string]any{"bypass": map[string]any{"add": []string{"update.example"}}}}, "changes nothing"},
		{"unknown field", map[string]any{"title": "t", "patch": map[string]any{"rulez": map[string]any{}}}, `unknown field "rulez"`},
	} {
		var e apiError
		code := env.call(t, "sam", "POST", "/api/v1/changes", tc.body, &e)
		if code != 400 || !strings.Contains(e.Error, tc.want) {
			t.Errorf("%s: %d %q, want 400 with %q", tc.name, code, e.Error, tc.want)
		}
	}
	var ve apiError
	if code := env.call(t, "sam", "POST", "/api/v1/changes", map[string]any{"title": "t",
		"patch": map[string]any{"settings": map[string]any{"approvals": map[string]any{"security": []string{"boss"}}}}}, &ve); code != 400 ||
		len(ve.Problems) != 1 || !strings.Contains(ve.Problems[0].Message, `role "boss" cannot approve`) {
		t.Errorf("unknown approver role: %d %+v", code, ve)
	}
	var list struct {
		Changes []ChangeRequest `json:"changes"`
	}
	if code := env.call(t, "sam", "GET", "/api/v1/changes", nil, &list); code != 200 || len(list.Changes) != 0 {
		t.Errorf("after bad input: %d, %d changes stored; want none", code, len(list.Changes))
	}
	var e apiError
	wantError(t, "unknown state", env.call(t, "sam", "GET", "/api/v1/changes?state=merged", nil, &e), 400, e, `state "merged"`)
	e = apiError{}
	wantError(t, "unknown change", env.call(t, "sam", "POST", "/api/v1/changes/nope/approve", nil, &e), 404, e, "not found")

	// Rejected: final.
	c := env.open(t, "sam", map[string]any{"title": "warn gambling",
		"patch": map[string]any{"rules": map[string]any{"update": []any{map[string]any{"id": "gambling", "categories": []string{"gambling"}, "action": "warn"}}}}})
	id := "/api/v1/changes/" + c.ID
	e = apiError{}
	wantError(t, "reject without a reason", env.call(t, "sue", "POST", id+"/reject", map[string]any{}, &e), 400, e, "say why")
	e = apiError{}
	wantError(t, "netops rejects a rules change", env.call(t, "nina", "POST", id+"/reject", map[string]any{"comment": "no"}, &e), 403, e, "role netops is not asked")
	var got ChangeRequest
	if code := env.call(t, "sue", "POST", id+"/reject", map[string]any{"comment": "users need the block"}, &got); code != 200 || got.State != ChangeRejected {
		t.Fatalf("reject: %d %s", code, got.State)
	}
	e = apiError{}
	wantError(t, "apply rejected", env.call(t, "admin", "POST", id+"/apply", nil, &e), 409, e, "the change is rejected")
	e = apiError{}
	wantError(t, "approve rejected", env.call(t, "sam", "POST", id+"/approve", nil, &e), 409, e, "the change is rejected")
	if env.svc.Current().Number != 1 {
		t.Errorf("live version %d after refused steps, want 1", env.svc.Current().Number)
	}
}

func TestChangeStaleRebaseConflict(t *testing.T) {
	env := newChangeEnv(t)
	ctx := t.Context()
	// Two changes drafted on version 1: one edits the gambling rule,
	// the other adds a deny entry.
	edit := env.open(t, "sam", map[string]any{"title": "warn gambling",
		"patch": map[string]any{"rules": map[string]any{"update": []any{map[string]any{"id": "gambling", "categories": []string{"gambling"}, "action": "warn"}}}}})
	entry := env.open(t, "sam", map[string]any{"title": "deny worse.example",
		"patch": map[string]any{"lists": map[string]any{"add_entries": map[string]any{"deny": []string{"worse.example"}}}}})
	for _, c := range []ChangeRequest{edit, entry} {
		var got ChangeRequest
		if code := env.call(t, "sue", "POST", "/api/v1/changes/"+c.ID+"/approve", nil, &got); code != 200 || got.State != ChangeApproved {
			t.Fatalf("approve %s: %d %s", c.Title, code, got.State)
		}
	}
	// Meanwhile someone changes the same rule and the same list directly.
	p := env.svc.Current().Policy.Clone()
	p.Rules[1].Monitor = true
	p.Lists[0].Entries = append(p.Lists[0].Entries, "other.example")
	if _, err := env.svc.Put(ctx, admin, p, "monitor gambling"); err != nil {
		t.Fatal(err)
	}
	var got ChangeRequest
	if code := env.call(t, "sam", "GET", "/api/v1/changes/"+edit.ID, nil, &got); code != 200 || got.State != ChangeStale || got.LiveVersion != 2 {
		t.Fatalf("after a direct change: %d state %s live %d, want stale on 2", code, got.State, got.LiveVersion)
	}
	var e apiError
	wantError(t, "apply stale", env.call(t, "sam", "POST", "/api/v1/changes/"+edit.ID+"/apply", nil, &e), 409, e, "stale: the live policy is version 2, the change was based on 1; rebase it")
	var list struct {
		Changes []ChangeRequest `json:"changes"`
	}
	if code := env.call(t, "sam", "GET", "/api/v1/changes?state=stale", nil, &list); code != 200 || len(list.Changes) != 2 {
		t.Errorf("stale list: %d %d, want both", code, len(list.Changes))
	}
	// The rule changed on both sides: a conflict, reported, nothing lost.
	e = apiError{}
	code := env.call(t, "sam", "POST", "/api/v1/changes/"+edit.ID+"/rebase", map[string]any{}, &e)
	if code != 409 || len(e.Conflicts) != 1 || e.Conflicts[0].Section != "rules" || e.Conflicts[0].Name != "gambling" {
		t.Fatalf("conflicting rebase: %d %+v", code, e)
	}
	live, _ := json.Marshal(e.Conflicts[0].Live)
	mine, _ := json.Marshal(e.Conflicts[0].Change)
	if !strings.Contains(string(live), `"monitor":true`) || !strings.Contains(string(mine), `"action":"warn"`) {
		t.Errorf("conflict live %s change %s", live, mine)
	}
	if code := env.call(t, "sam", "GET", "/api/v1/changes/"+edit.ID, nil, &got); code != 200 || len(got.Conflicts) != 1 || got.State != ChangeStale {
		t.Errorf("after the conflict: state %s conflicts %d", got.State, len(got.Conflicts))
	}
	// The list entry merges with the other edit of the list: rebased,
	// approvals kept (its own diff is the same), applied.
	if code := env.call(t, "sam", "POST", "/api/v1/changes/"+entry.ID+"/rebase", nil, &got); code != 200 || got.State != ChangeApproved || got.BaseVersion != 2 {
		t.Fatalf("clean rebase: %d state %s base %d", code, got.State, got.BaseVersion)
	}
	if code := env.call(t, "sam", "POST", "/api/v1/changes/"+entry.ID+"/apply", nil, &got); code != 200 || got.AppliedVersion != 3 {
		t.Fatalf("apply rebased: %d %+v", code, got.AppliedVersion)
	}
	deny := env.svc.Current().Policy.Lists[0].Entries
	if strings.Join(deny, ",") != "bad.example,other.example,worse.example" {
		t.Errorf("deny list after merge = %v: someone's entry was lost", deny)
	}
	if !env.svc.Current().Policy.Rules[1].Monitor {
		t.Error("the direct rule edit was overwritten")
	}
}

func TestChangeEmergencyAuditedAndCounted(t *testing.T) {
	env := newChangeEnv(t)
	c := env.open(t, "sam", map[string]any{"title": "block outbreak",
		"patch": map[string]any{"lists": map[string]any{"add_entries": map[string]any{"deny": []string{"outbreak.example"}}}}})
	id := "/api/v1/changes/" + c.ID
	var e apiError
	wantError(t, "secops emergency", env.call(t, "sam", "POST", id+"/apply", map[string]any{"emergency": true, "reason": "now"}, &e), 403, e, "emergency")
	e = apiError{}
	wantError(t, "emergency without reason", env.call(t, "admin", "POST", id+"/apply", map[string]any{"emergency": true}, &e), 400, e, "needs a reason")
	var got ChangeRequest
	if code := env.call(t, "admin", "POST", id+"/apply", map[string]any{"emergency": true, "reason": "active outbreak"}, &got); code != 200 ||
		got.State != ChangeApplied || !got.Emergency || got.EmergencyReason != "active outbreak" {
		t.Fatalf("emergency apply: %d %+v", code, got.State)
	}
	var page AuditPage
	env.call(t, "admin", "GET", "/api/v1/audit?action=change.apply", nil, &page)
	if len(page.Entries) != 1 || !page.Entries[0].Emergency || !strings.Contains(page.Entries[0].Detail, "active outbreak") || page.Entries[0].Version != 2 {
		t.Errorf("audit of the emergency = %+v", page.Entries)
	}
	if n := env.svc.mEmergency; n == nil {
		t.Fatal("no emergency metric")
	}
	if got := testutilCounter(env.svc.mEmergency); got != 1 {
		t.Errorf("cordon_policies_emergency_changes_total = %v, want 1", got)
	}
}

func TestChangeFromReview(t *testing.T) {
	env := newChangeEnv(t)
	id, err := env.svc.SubmitReview(t.Context(), Review{User: "alice", URL: "http://tools.example/x", Host: "tools.example", Message: "needed for work"})
	if err != nil {
		t.Fatal(err)
	}
	var c ChangeRequest
	if code := env.call(t, "sam", "POST", "/api/v1/reviews/"+id+"/change", nil, &c); code != 201 {
		t.Fatalf("review change: %d", code)
	}
	if c.ReviewID != id || c.Patch == nil || c.Patch.Lists == nil || c.Patch.Rules == nil || !strings.Contains(c.Reason, "needed for work") {
		t.Fatalf("review change = %+v", c)
	}
	if got := c.Impact.RequiredRoles; len(got) != 1 || got[0] != RoleSecOps {
		t.Errorf("required = %v, want secops", got)
	}
	var got ChangeRequest
	env.call(t, "sue", "POST", "/api/v1/changes/"+c.ID+"/approve", nil, &got)
	if code := env.call(t, "sue", "POST", "/api/v1/changes/"+c.ID+"/apply", nil, &got); code != 200 {
		t.Fatalf("apply: %d", code)
	}
	d, _ := env.engine.Check(&Request{Host: "tools.example", Protocol: ProtoHTTP})
	if d.RuleID != "allow-reviewed" || d.Action != ActionAllow {
		t.Errorf("after the review change: %+v", d)
	}
	var e apiError
	wantError(t, "list not allow", env.call(t, "sam", "POST", "/api/v1/reviews/"+id+"/change", map[string]any{"list": "deny"}, &e), 400, e, "not an allow list")
	e = apiError{}
	wantError(t, "unknown review", env.call(t, "sam", "POST", "/api/v1/reviews/nope/change", nil, &e), 404, e, "")
}

func testutilCounter(c interface{ Desc() *prometheus.Desc }) float64 {
	return promtest.ToFloat64(c.(prometheus.Collector))
}

func TestChangeSecretsRedacted(t *testing.T) {
	env := newChangeEnv(t)
	const hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	c := env.open(t, "admin", map[string]any{"title": "password for bob",
		"patch": map[string]any{"users": map[string]any{"put": []any{map[string]any{"name": "bob", "password_hash": hash}}}}})
	if got := c.Impact.RequiredRoles; len(got) != 1 || got[0] != RoleAdmin {
		t.Errorf("required for a user change = %v, want admin", got)
	}
	for _, who := range []string{"ann", "sam"} {
		var raw json.RawMessage
		if code := env.call(t, who, "GET", "/api/v1/changes/"+c.ID, nil, &raw); code != 200 || strings.Contains(string(raw), "argon2id") {
			t.Errorf("%s reads the change: %d, hash shown: %v", who, code, strings.Contains(string(raw), "argon2id"))
		}
	}
	var got ChangeRequest
	if code := env.call(t, "admin", "POST", "/api/v1/changes/"+c.ID+"/apply", map[string]any{"emergency": true, "reason": "locked out"}, &got); code != 200 {
		t.Fatalf("apply: %d", code)
	}
	var raw json.RawMessage
	if code := env.call(t, "ann", "GET", "/api/v1/policy/diff", nil, &raw); code != 200 || strings.Contains(string(raw), "argon2id") || !strings.Contains(string(raw), "redacted") {
		t.Errorf("auditor reads the diff: %d %s", code, raw)
	}
}

// TestApprovalsEnforcedByDefault: with no approvals settings, secops and
// netops cannot change the live policy directly; their changes go through
// change requests the other team approves. Admin keeps direct writes, and
// only an admin can turn enforcement off.
func TestApprovalsEnforcedByDefault(t *testing.T) {
	env := newChangeEnv(t)
	enforced := strings.Replace(basePolicy, "settings: {approvals: {enforce: false}}\n", "", 1)
	if enforced == basePolicy {
		t.Fatal("basePolicy no longer sets approvals.enforce: update this test")
	}
	if code := env.do(t, RoleAdmin, "PUT", "/api/v1/policy", "application/yaml", enforced, nil); code != 200 {
		t.Fatalf("admin PUT of a policy without approvals settings: %d", code)
	}
	live := env.svc.Current()
	if live.Policy.Settings.Approvals.Enforce != nil || !live.Policy.Settings.Approvals.Enforced() {
		t.Fatalf("live approvals = %+v, want unset and enforced", live.Policy.Settings.Approvals)
	}
	direct := func(who string) bool {
		t.Helper()
		var me Me
		if code := env.call(t, who, "GET", "/api/v1/me", nil, &me); code != 200 {
			t.Fatalf("GET /me as %s: %d", who, code)
		}
		return me.DirectWrites
	}
	if !direct("admin") || direct("sam") || direct("nina") {
		t.Errorf("direct_writes admin/sam/nina = %v/%v/%v, want true/false/false", direct("admin"), direct("sam"), direct("nina"))
	}

	refused := []struct {
		who, method, path, ctype, body string
	}{
		{"sam", "POST", "/api/v1/lists/deny/entries", "application/json", `{"entries": ["worse.example"]}`},
		{"sam", "PUT", "/api/v1/policy", "application/yaml", strings.Replace(enforced, "action: block}", "action: warn}", 1)},
		{"nina", "PUT", "/api/v1/locations/lab", "application/json", `{"cidrs": ["10.9.0.0/16"]}`},
		{"nina", "POST", "/api/v1/lists/bypass/entries", "application/json", `{"entries": ["payroll.example"]}`},
		{"sam", "POST", "/api/v1/policy/rollback", "application/json", `{"version": 1, "comment": "back"}`},
		// Turning enforcement off is itself a direct write.
		{"sam", "PUT", "/api/v1/policy", "application/yaml", "settings: {approvals: {enforce: false}}\n" + enforced},
	}
	for _, r := range refused {
		var e apiError
		code := env.do(t, Role(r.who), r.method, r.path, r.ctype, r.body, &e)
		if code != 403 || e.Code != "forbidden" || !strings.Contains(e.Error, "POST /api/v1/changes") {
			t.Errorf("%s %s as %s: %d %+v, want 403 naming the change-request route", r.method, r.path, r.who, code, e)
		}
	}
	if v := env.svc.Current(); v.Number != live.Number {
		t.Fatalf("refused direct writes stored version %d (live was %d)", v.Number, live.Number)
	}

	// The same bypass through a change request: both teams approve.
	c := env.open(t, "nina", map[string]any{"title": "bypass payroll", "reason": "uploads break",
		"patch": map[string]any{"bypass": map[string]any{"add": []string{"payroll.example"}}}})
	id := "/api/v1/changes/" + c.ID
	for _, who := range []string{"sam", "ned"} {
		if code := env.call(t, who, "POST", id+"/approve", map[string]any{}, nil); code != 200 {
			t.Fatalf("approve as %s: %d", who, code)
		}
	}
	var got ChangeRequest
	if code := env.call(t, "nina", "POST", id+"/apply", nil, &got); code != 200 || got.State != ChangeApplied {
		t.Fatalf("apply the approved change as its netops author: %d %s", code, got.State)
	}
	if !env.engine.Current().Bypassed("payroll.example") {
		t.Error("the approved bypass is not served")
	}

	// An admin turns enforcement off: secops writes directly again.
	cur := env.svc.Current().Policy.Clone()
	off := false
	cur.Settings.Approvals.Enforce = &off
	if _, err := env.svc.Put(t.Context(), admin, cur, "direct writes for the teams"); err != nil {
		t.Fatal(err)
	}
	if !direct("sam") {
		t.Error("direct_writes for secops after enforce: false = false")
	}
	if code := env.do(t, "sam", "POST", "/api/v1/lists/deny/entries", "application/json", `{"entries": ["worse.example"]}`, nil); code != 200 {
		t.Errorf("secops list edit with enforce off: %d", code)
	}
}
