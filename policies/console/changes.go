package console

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

// overviewChanges is the change-request part of the overview.
type overviewChanges struct {
	OpenChanges int
	Changes     []changeRow // open, approved, stale and staged ones, newest first
	// HasChanges is false where the API serves no change requests.
	HasChanges bool
	Edges      []policies.EdgeStatus
	HasEdges   bool
	StaleAfter string
	// Now is the page's clock, for relative times in the partials.
	Now time.Time
}

// changeRow is a change request in a list.
type changeRow struct {
	*policies.ChangeRequest
	Given, Needed int
}

func newChangeRow(c *policies.ChangeRequest) changeRow {
	r := changeRow{ChangeRequest: c, Needed: len(c.RequiredApprovals)}
	for _, ra := range c.RequiredApprovals {
		if ra.ApprovedBy != "" {
			r.Given++
		}
	}
	return r
}

func (c *Console) changes(r *http.Request, s *session, state string) ([]*policies.ChangeRequest, bool, error) {
	var out struct {
		Changes []*policies.ChangeRequest `json:"changes"`
	}
	q := url.Values{}
	if state != "" {
		q.Set("state", state)
	}
	err := c.getJSON(r, s, api+"/changes", q, &out)
	if notFound(err) {
		return nil, false, nil
	}
	return out.Changes, err == nil, err
}

// overviewChangesFor reads the change requests still in flight and the
// edge registry, where the API has them.
func (c *Console) overviewChangesFor(r *http.Request, s *session, d *overviewChanges) error {
	d.Now = c.now()
	all, ok, err := c.changes(r, s, "")
	if err != nil || !ok {
		return err
	}
	d.HasChanges = true
	for _, ch := range all {
		switch ch.State {
		case policies.ChangeOpen, policies.ChangeApproved, policies.ChangeStale, policies.ChangeStaged:
			d.OpenChanges++
			if len(d.Changes) < 6 {
				d.Changes = append(d.Changes, newChangeRow(ch))
			}
		}
	}
	var es struct {
		Edges      []policies.EdgeStatus `json:"edges"`
		StaleAfter string                `json:"stale_after"`
	}
	err = c.getJSON(r, s, api+"/edges", nil, &es)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	d.Edges, d.HasEdges, d.StaleAfter = es.Edges, true, es.StaleAfter
	return nil
}

func (c *Console) changeRoutes(page, form func(string, handlerFunc)) {
	page(Prefix+"changes", c.changesPage)
	page(Prefix+"changes/new", c.editPage)
	form(Prefix+"changes/new", c.editSubmit)
	page(Prefix+"changes/{id}", c.changePage)
	for _, a := range []string{"approve", "reject", "apply", "stage", "emergency", "promote", "abort", "rebase", "withdraw", "comment"} {
		form(Prefix+"changes/{id}/"+a, c.changeAction(a))
	}
	form(Prefix+"reviews/{id}/change", c.reviewChange)
}

type changesData struct {
	State   string
	Tabs    []changeTab
	Changes []changeRow
	Has     bool
}

type changeTab struct {
	State, Label string
	Count        int
}

func (c *Console) changesPage(w http.ResponseWriter, r *http.Request, s *session) error {
	state := r.URL.Query().Get("state")
	if state == "" {
		state = "active"
	}
	all, ok, err := c.changes(r, s, "")
	if err != nil {
		return err
	}
	d := changesData{State: state, Has: ok}
	active := func(st policies.ChangeState) bool {
		return st == policies.ChangeOpen || st == policies.ChangeApproved || st == policies.ChangeStale || st == policies.ChangeStaged
	}
	counts := map[string]int{}
	for _, ch := range all {
		counts[string(ch.State)]++
		if active(ch.State) {
			counts["active"]++
		}
		if state == "all" || state == string(ch.State) || state == "active" && active(ch.State) {
			d.Changes = append(d.Changes, newChangeRow(ch))
		}
	}
	counts["all"] = len(all)
	d.Tabs = append(d.Tabs, changeTab{"active", "In flight", counts["active"]})
	for _, st := range policies.ChangeStates {
		d.Tabs = append(d.Tabs, changeTab{string(st), sentence(string(st)), counts[string(st)]})
	}
	d.Tabs = append(d.Tabs, changeTab{"all", "All", counts["all"]})
	c.render(w, r, s, http.StatusOK, "changes.html", "Change requests", "changes", d)
	return nil
}

// changeCan is what the viewer may do with a change, worked out from
// the API's own answer (state, required approvals, author) and the
// viewer's role; the API checks each action again.
type changeCan struct {
	Approve, Reject, Apply, Stage, Emergency, Promote, Abort, Rebase, Withdraw, Comment bool
}

func (cc changeCan) Any() bool {
	return cc.Approve || cc.Reject || cc.Apply || cc.Stage || cc.Emergency || cc.Promote || cc.Abort || cc.Rebase || cc.Withdraw
}

func canOnChange(me policies.Me, ch *policies.ChangeRequest) changeCan {
	write := slices.Contains(me.Permissions, "write")
	author := me.Name == ch.Author
	admin := me.Role == policies.RoleAdmin
	asked, waiting := false, false
	for _, ra := range ch.RequiredApprovals {
		if ra.Role == me.Role {
			asked = true
			if ra.ApprovedBy == "" {
				waiting = true
			}
		}
	}
	approvedBefore := slices.ContainsFunc(ch.Approvals, func(a policies.ChangeApproval) bool { return a.Actor == me.Name })
	st := ch.State
	var cc changeCan
	reviewable := write && asked && !author && (st == policies.ChangeOpen || st == policies.ChangeApproved)
	cc.Approve = reviewable && waiting && !approvedBefore
	cc.Reject = reviewable
	cc.Apply = write && st == policies.ChangeApproved
	cc.Stage = cc.Apply
	cc.Emergency = admin && (st == policies.ChangeOpen || st == policies.ChangeApproved)
	cc.Promote = write && st == policies.ChangeStaged
	cc.Abort = cc.Promote
	cc.Rebase = (author || admin) && st == policies.ChangeStale
	cc.Withdraw = (author || admin) && (st == policies.ChangeOpen || st == policies.ChangeApproved || st == policies.ChangeStale)
	cc.Comment = write
	return cc
}

// step is one stage of a change's life, for the progress line.
type step struct {
	Label, Class string
}

func changeSteps(ch *policies.ChangeRequest) []step {
	st := ch.State
	done := func(b bool) string {
		if b {
			return "done"
		}
		return ""
	}
	approved := st == policies.ChangeApproved || st == policies.ChangeStaged || st == policies.ChangeApplied || ch.Stage != nil
	out := []step{{"Opened", "done"}}
	switch {
	case st == policies.ChangeOpen:
		out = append(out, step{"Waiting for approval", "now"})
	case st == policies.ChangeStale:
		out = append(out, step{"Stale: rebase needed", "bad"})
	default:
		lbl := "Approved"
		if ch.Emergency {
			lbl = "Emergency (no approval)"
		}
		out = append(out, step{lbl, done(approved || ch.Emergency)})
	}
	switch {
	case st == policies.ChangeStaged:
		out = append(out, step{"Staged", "now"})
	case ch.Stage != nil:
		out = append(out, step{"Staged (" + ch.Stage.Outcome + ")", "done"})
	}
	switch st {
	case policies.ChangeApplied:
		out = append(out, step{fmt.Sprintf("Live as v%d", ch.AppliedVersion), "done"})
	case policies.ChangeRejected:
		out = append(out, step{"Rejected", "bad"})
	case policies.ChangeWithdrawn:
		out = append(out, step{"Withdrawn", "bad"})
	default:
		out = append(out, step{"Live", ""})
	}
	return out
}

// effectRow is one line of the side-by-side observed effect.
type effectRow struct {
	Metric, Staged, Rest, Delta, DeltaClass string
}

type ruleEffectRow struct {
	Rule                                                string
	StagedRequests, StagedBlocked, RestReq, RestBlocked int64
}

type effectView struct {
	E     *policies.ObservedEffect
	Rows  []effectRow
	Rules []ruleEffectRow
}

func rateStr(r float64) string { return strconv.FormatFloat(100*r, 'f', 2, 64) + "%" }

func newEffectView(e *policies.ObservedEffect) *effectView {
	if e == nil {
		return nil
	}
	v := &effectView{E: e}
	st, rs := e.Staged, e.Rest
	// A side with no requests has no rates to show or compare (the rest
	// of the traffic may be idle while a stage runs).
	both := st.Requests > 0 && rs.Requests > 0
	delta := func(a, b float64, unit string, f func(float64) string, worseUp bool) (string, string) {
		d := a - b
		if !both || d == 0 || a == 0 && b == 0 {
			return "—", ""
		}
		cls := "delta-down"
		if (d > 0) == worseUp {
			cls = "delta-up"
		}
		sign := "+"
		if d < 0 {
			sign = "−"
			d = -d
		}
		return sign + f(d) + unit, cls
	}
	pp := func(f float64) string { return strconv.FormatFloat(100*f, 'f', 2, 64) }
	msf := func(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) }
	side := func(n int64, s string) string {
		if n == 0 {
			return "—"
		}
		return s
	}
	add := func(metric, a, b string, d, cls string) {
		v.Rows = append(v.Rows, effectRow{metric, a, b, d, cls})
	}
	add("Requests", formatNum(st.Requests), formatNum(rs.Requests), "", "")
	d, cls := delta(st.BlockRate, rs.BlockRate, " pt", pp, true)
	add("Block rate", side(st.Requests, rateStr(st.BlockRate)), side(rs.Requests, rateStr(rs.BlockRate)), d, cls)
	d, cls = delta(st.WarnRate, rs.WarnRate, " pt", pp, true)
	add("Warn rate", side(st.Requests, rateStr(st.WarnRate)), side(rs.Requests, rateStr(rs.WarnRate)), d, cls)
	d, cls = delta(st.ErrorRate, rs.ErrorRate, " pt", pp, true)
	add("Error rate", side(st.Requests, rateStr(st.ErrorRate)), side(rs.Requests, rateStr(rs.ErrorRate)), d, cls)
	d, cls = delta(st.LatencyP50MS, rs.LatencyP50MS, " ms", msf, true)
	add("Added latency p50", side(st.Requests, formatMillis(st.LatencyP50MS)), side(rs.Requests, formatMillis(rs.LatencyP50MS)), d, cls)
	d, cls = delta(st.LatencyP99MS, rs.LatencyP99MS, " ms", msf, true)
	add("Added latency p99", side(st.Requests, formatMillis(st.LatencyP99MS)), side(rs.Requests, formatMillis(rs.LatencyP99MS)), d, cls)
	rules := map[string]*ruleEffectRow{}
	var order []string
	get := func(name string) *ruleEffectRow {
		if name == "" {
			name = "(default action)"
		}
		if r, ok := rules[name]; ok {
			return r
		}
		r := &ruleEffectRow{Rule: name}
		rules[name] = r
		order = append(order, name)
		return r
	}
	for _, re := range st.Rules {
		r := get(re.Rule)
		r.StagedRequests, r.StagedBlocked = re.Requests, re.Blocked
	}
	for _, re := range rs.Rules {
		r := get(re.Rule)
		r.RestReq, r.RestBlocked = re.Requests, re.Blocked
	}
	for _, n := range order {
		v.Rules = append(v.Rules, *rules[n])
	}
	return v
}

type changeData struct {
	C         *policies.ChangeRequest
	Row       changeRow
	Can       changeCan
	Steps     []step
	Diff      []diffRow
	Effect    *effectView
	Locations []string
	Edges     []policies.EdgeStatus
	Patch     []string
}

func (c *Console) changePage(w http.ResponseWriter, r *http.Request, s *session) error {
	var ch policies.ChangeRequest
	if err := c.getJSON(r, s, api+"/changes/"+url.PathEscape(r.PathValue("id")), nil, &ch); err != nil {
		return err
	}
	d := changeData{C: &ch, Row: newChangeRow(&ch), Can: canOnChange(s.me, &ch), Steps: changeSteps(&ch), Patch: patchSummary(ch.Patch)}
	if ch.Impact != nil {
		d.Diff = diffRows(ch.Impact.Diff)
	}
	eff := ch.Observed
	if eff == nil && ch.Stage != nil {
		var e policies.ObservedEffect
		err := c.getJSON(r, s, api+"/changes/"+url.PathEscape(ch.ID)+"/effect", nil, &e)
		if err != nil && !notFound(err) {
			return err
		}
		if err == nil {
			eff = &e
		}
	}
	d.Effect = newEffectView(eff)
	if d.Can.Stage {
		v, err := c.policyNow(r, s)
		if err != nil {
			return err
		}
		for _, l := range v.Policy.Locations {
			d.Locations = append(d.Locations, l.Name)
		}
		var es struct {
			Edges []policies.EdgeStatus `json:"edges"`
		}
		if err := c.getJSON(r, s, api+"/edges", nil, &es); err != nil && !notFound(err) {
			return err
		}
		d.Edges = es.Edges
	}
	c.render(w, r, s, http.StatusOK, "change.html", ch.Title, "changes", d)
	return nil
}

// patchSummary says in words what a patch does.
func patchSummary(p *policies.Patch) []string {
	if p == nil {
		return nil
	}
	var out []string
	if p.Rules != nil {
		for _, a := range p.Rules.Add {
			s := "add rule " + a.Rule.ID
			if a.Before != "" {
				s += " before " + a.Before
			}
			out = append(out, s)
		}
		for _, u := range p.Rules.Update {
			out = append(out, "change rule "+u.ID)
		}
		for _, id := range p.Rules.Delete {
			out = append(out, "delete rule "+id)
		}
	}
	if p.Lists != nil {
		for _, l := range p.Lists.Put {
			out = append(out, "put list "+l.Name)
		}
		for _, n := range p.Lists.Delete {
			out = append(out, "delete list "+n)
		}
		for n, es := range p.Lists.AddEntries {
			out = append(out, "add "+strings.Join(es, ", ")+" to list "+n)
		}
		for n, es := range p.Lists.RemoveEntries {
			out = append(out, "remove "+strings.Join(es, ", ")+" from list "+n)
		}
	}
	if b := p.Bypass; b != nil {
		if len(b.Add) > 0 {
			out = append(out, "bypass "+strings.Join(b.Add, ", "))
		}
		if len(b.Remove) > 0 {
			out = append(out, "stop bypassing "+strings.Join(b.Remove, ", "))
		}
	}
	if l := p.Locations; l != nil {
		for _, x := range l.Put {
			out = append(out, "put location "+x.Name+" ("+strings.Join(x.CIDRs, ", ")+")")
		}
		for _, n := range l.Delete {
			out = append(out, "delete location "+n)
		}
	}
	if p.Users != nil {
		for _, u := range p.Users.Put {
			out = append(out, "put user "+u.Name)
		}
		for _, n := range p.Users.Delete {
			out = append(out, "delete user "+n)
		}
	}
	if p.Groups != nil {
		for _, g := range p.Groups.Put {
			out = append(out, "put group "+g.Name)
		}
		for _, n := range p.Groups.Delete {
			out = append(out, "delete group "+n)
		}
	}
	if p.Settings != nil {
		out = append(out, "replace the settings")
	}
	slices.Sort(out)
	return out
}

// changeAction runs one step of a change through the API.
func (c *Console) changeAction(action string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, s *session) error {
		id := r.PathValue("id")
		f := r.PostForm
		path := api + "/changes/" + url.PathEscape(id) + "/" + action
		var body any
		msg := ""
		switch action {
		case "approve":
			body, msg = map[string]string{"comment": strings.TrimSpace(f.Get("comment"))}, "You approved the change."
		case "reject":
			body, msg = map[string]string{"comment": strings.TrimSpace(f.Get("comment"))}, "You rejected the change."
		case "withdraw":
			body, msg = map[string]string{"comment": strings.TrimSpace(f.Get("comment"))}, "The change was withdrawn."
		case "promote":
			body, msg = map[string]string{"comment": strings.TrimSpace(f.Get("comment"))}, "Promoted: the change is live everywhere."
		case "abort":
			body, msg = map[string]string{"reason": strings.TrimSpace(f.Get("reason"))}, "The stage was aborted; it runs the live version again."
		case "rebase":
			body, msg = map[string]any{}, "Rebased on the live version."
		case "comment":
			path = api + "/changes/" + url.PathEscape(id) + "/comments"
			body, msg = map[string]string{"text": f.Get("text")}, "Comment added."
		case "apply":
			body, msg = map[string]any{}, "Applied: the change is live."
		case "emergency":
			path = api + "/changes/" + url.PathEscape(id) + "/apply"
			body, msg = map[string]any{"emergency": true, "reason": strings.TrimSpace(f.Get("reason"))}, "Applied as an emergency change (flagged in the audit log)."
		case "stage":
			path = api + "/changes/" + url.PathEscape(id) + "/apply"
			st := map[string]any{"locations": nonNilStrings(f["location"]), "edges": nonNilStrings(f["edge"])}
			for _, k := range []string{"max_block_rate", "max_error_rate"} {
				if v := strings.TrimSpace(f.Get(k)); v != "" {
					pct, err := strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
					if err != nil || pct < 0 || pct > 100 {
						return &APIError{Status: http.StatusBadRequest, Message: k + " " + strconv.Quote(v) + ": want a percentage from 0 to 100"}
					}
					st[k] = pct / 100
				}
			}
			if v := strings.TrimSpace(f.Get("min_requests")); v != "" {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 0 {
					return &APIError{Status: http.StatusBadRequest, Message: "min_requests " + strconv.Quote(v) + ": want a whole number"}
				}
				st["min_requests"] = n
			}
			body, msg = map[string]any{"stage": st}, "Staged: the stage runs the new version, the rest keeps the live one."
		}
		if err := c.sendJSON(r, s, http.MethodPost, path, body, nil); err != nil {
			if ae, ok := err.(*APIError); ok && ae.Status == http.StatusConflict && action == "rebase" {
				s.setFlash("err", sentence(ae.Message)+" — see the conflicts below.")
				http.Redirect(w, r, Prefix+"changes/"+url.PathEscape(id), http.StatusSeeOther)
				return nil
			}
			return err
		}
		return c.done(w, r, s, Prefix+"changes/"+url.PathEscape(id), msg)
	}
}

// reviewChange turns a review request into a change request that allows
// the site, and opens it.
func (c *Console) reviewChange(w http.ResponseWriter, r *http.Request, s *session) error {
	var ch policies.ChangeRequest
	body := map[string]string{}
	if t := strings.TrimSpace(r.PostForm.Get("title")); t != "" {
		body["title"] = t
	}
	if err := c.sendJSON(r, s, http.MethodPost, api+"/reviews/"+url.PathEscape(r.PathValue("id"))+"/change", body, &ch); err != nil {
		return err
	}
	return c.done(w, r, s, Prefix+"changes/"+url.PathEscape(ch.ID), "Change request opened from the review request.")
}
