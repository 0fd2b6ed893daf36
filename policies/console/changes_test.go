package console

import (
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cordon-gw/cordon/policies"
)

var changeLocRE = regexp.MustCompile(`^/ui/changes/([0-9a-f-]+)$`)

// openChange drafts the test policy plus one rule in the editor and
// opens it as a change request; it returns the change's ID.
func openChange(t *testing.T, b *browser, title, extraRule string) string {
	t.Helper()
	body := b.page("/ui/changes/new")
	if !strings.Contains(body, "New change request") {
		t.Fatalf("editor page lacks its heading")
	}
	m := regexp.MustCompile(`name="base_version" value="(\d+)"`).FindStringSubmatch(body)
	doc := b.e.svc.Current().Policy.YAML()
	res, body := b.post("/ui/changes/new", url.Values{"yaml": {string(doc) + extraRule}, "base_version": {m[1]},
		"title": {title}, "reason": {"asked for by the helpdesk"}}, true)
	loc := res.Header.Get("Location")
	mm := changeLocRE.FindStringSubmatch(loc)
	if res.StatusCode != http.StatusSeeOther || mm == nil {
		t.Fatalf("open change = %d %s\n%s", res.StatusCode, loc, body)
	}
	return mm[1]
}

func TestChangeFlow(t *testing.T) {
	e := newEnv(t)
	netops := e.login(t, policies.RoleNetOps)
	id := openChange(t, netops, "Block the casino mirror", "  - {id: block-casino-mirror, domains: [casino-mirror.example], action: block}\n")
	page := netops.page("/ui/changes/" + id)
	for _, want := range []string{"Block the casino mirror", `<span class="badge open">open</span>`, "asked for by the helpdesk", "block-casino-mirror",
		`<span class="chg added">added</span>`, "0 of 1 given", "<b>secops</b> <span class=\"muted\">waiting</span>", "Add a comment"} {
		if !strings.Contains(page, want) {
			t.Errorf("change page as its author lacks %q", want)
		}
	}
	if strings.Contains(page, "/approve") || strings.Contains(page, "/apply") {
		t.Errorf("the author (netops) is offered approve or apply")
	}
	res, _ := netops.post("/ui/changes/"+id+"/comment", url.Values{"text": {"needed before Monday"}}, true)
	netops.follow(res)

	// An auditor sees everything and may do nothing.
	aud := e.login(t, policies.RoleAuditor)
	page = aud.page("/ui/changes/" + id)
	if f := writeForms(page); len(f) > 0 || !strings.Contains(page, "needed before Monday") {
		t.Errorf("auditor on a change page: forms %v", f)
	}
	res, body := aud.post("/ui/changes/"+id+"/approve", url.Values{}, true)
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "auditor") {
		t.Errorf("auditor approve = %d, want 403 from the API", res.StatusCode)
	}

	// secops approves, stages it in hq, promotes it.
	sec := e.login(t, policies.RoleSecOps)
	page = sec.page("/ui/changes/" + id)
	if !strings.Contains(page, `action="/ui/changes/`+id+`/approve"`) || !strings.Contains(page, `action="/ui/changes/`+id+`/reject"`) {
		t.Fatalf("secops is not offered approve and reject")
	}
	res, _ = sec.post("/ui/changes/"+id+"/approve", url.Values{"comment": {"fine"}}, true)
	page = sec.follow(res)
	if !strings.Contains(page, "You approved the change") || !strings.Contains(page, `<span class="badge approved">approved</span>`) ||
		!strings.Contains(page, `id="stage"`) || !strings.Contains(page, `value="hq"`) {
		t.Fatalf("after approval the page lacks the approved state or the stage form")
	}
	live := e.svc.Current().Number
	res, body = sec.post("/ui/changes/"+id+"/stage", url.Values{"location": {"hq"}, "max_block_rate": {"50"}}, true)
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("stage = %d\n%s", res.StatusCode, body)
	}
	page = sec.follow(res)
	for _, want := range []string{`<span class="badge staged">staged</span>`, "location hq", "Observed effect", "Block rate", `id="promote"`, `id="abort"`, "block rate above 50.00%"} {
		if !strings.Contains(page, want) {
			t.Errorf("staged change page lacks %q", want)
		}
	}
	if e.svc.Current().Number != live {
		t.Fatalf("staging changed the live version")
	}
	if ov := sec.page("/ui/"); !strings.Contains(ov, "Block the casino mirror") || !strings.Contains(ov, `<span class="badge staged">staged</span>`) || !strings.Contains(ov, "edge-paris") {
		t.Errorf("overview during the stage lacks the change in flight or the edge")
	}
	res, _ = sec.post("/ui/changes/"+id+"/promote", url.Values{}, true)
	page = sec.follow(res)
	if cur := e.svc.Current(); cur.Number != live+1 || !strings.Contains(page, "Promoted") || !strings.Contains(page, `<span class="badge applied">applied</span>`) {
		t.Fatalf("after promote: live v%d (want v%d)", cur.Number, live+1)
	}
	if ov := sec.page("/ui/"); !strings.Contains(ov, `id="live-version">v`+itoa64(live+1)+`<`) {
		t.Errorf("overview does not show the promoted version v%d", live+1)
	}
	if list := sec.page("/ui/changes?state=applied"); !strings.Contains(list, "Block the casino mirror") {
		t.Errorf("applied list lacks the change")
	}
	if list := sec.page("/ui/changes"); strings.Contains(list, "Block the casino mirror") {
		t.Errorf("in-flight list shows an applied change")
	}
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

func TestChangeStaleRebaseAndReview(t *testing.T) {
	e := newEnv(t)
	netops := e.login(t, policies.RoleNetOps)
	id := openChange(t, netops, "Warn on social", "  - {id: warn-social, categories: [social], action: warn}\n")
	// The live policy moves under the change: it becomes stale.
	admin := policies.Actor{Name: "admin", Role: policies.RoleAdmin, Source: policies.SourceSystem}
	if _, err := e.svc.PutGroup(t.Context(), admin, policies.Group{Name: "interns"}); err != nil {
		t.Fatal(err)
	}
	page := netops.page("/ui/changes/" + id)
	if !strings.Contains(page, `<span class="badge stale">stale</span>`) || !strings.Contains(page, `id="rebase"`) {
		t.Fatalf("stale change page lacks the stale state or the rebase button")
	}
	sec := e.login(t, policies.RoleSecOps)
	if p := sec.page("/ui/changes/" + id); strings.Contains(p, `id="rebase"`) || strings.Contains(p, `/approve"`) {
		t.Errorf("secops (not the author) is offered rebase, or approval of a stale change")
	}
	res, _ := netops.post("/ui/changes/"+id+"/rebase", url.Values{}, true)
	page = netops.follow(res)
	if !strings.Contains(page, "Rebased on the live version") || !strings.Contains(page, `<span class="badge open">open</span>`) {
		t.Errorf("after rebase the change is not open again")
	}
	// A review request becomes a change request in one click.
	rid, err := e.svc.SubmitReview(t.Context(), policies.Review{User: "bob", Host: "casino.example", URL: "http://casino.example/", RuleID: "students-gambling"})
	if err != nil {
		t.Fatal(err)
	}
	if p := sec.page("/ui/reviews"); !strings.Contains(p, `action="/ui/reviews/`+rid+`/change"`) {
		t.Fatalf("reviews page lacks the open-as-change-request form")
	}
	res, body := sec.post("/ui/reviews/"+rid+"/change", url.Values{}, true)
	if res.StatusCode != http.StatusSeeOther || !changeLocRE.MatchString(res.Header.Get("Location")) {
		t.Fatalf("open review as change = %d\n%s", res.StatusCode, body)
	}
	page = sec.follow(res)
	if !strings.Contains(page, "from review request") || !strings.Contains(page, "casino.example") {
		t.Errorf("change from a review lacks the review link or the host")
	}
	if p := e.login(t, policies.RoleAuditor).page("/ui/reviews"); strings.Contains(p, "/change\"") {
		t.Errorf("auditor is offered open-as-change-request")
	}
}
