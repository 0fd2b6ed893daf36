package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/cordon-gw/cordon/policies"
)

const api = policies.APIPrefix

// reportCounts is the part of a report the console shows (the reports
// API's JSON; the console does not import the reports package).
type reportCounts struct {
	Requests   int64       `json:"requests"`
	Blocked    int64       `json:"blocked"`
	Rules      []nameCount `json:"rules_hit"`
	WouldBlock []nameCount `json:"monitor_would_block"`
	Threats    []nameCount `json:"threats"`
	Actions    []nameCount `json:"actions"`
	Blocks     []struct {
		Domain   string `json:"domain"`
		Category string `json:"category"`
		Rule     string `json:"rule"`
		Count    int64  `json:"count"`
	} `json:"blocked_attempts"`
	Timeline []hourPoint `json:"timeline"`
}

type nameCount struct {
	Name  string `json:"name"`
	Count int64  `json:"count"`
}

// report24h reads the last day's overview report; ok is false when the
// reports API is not mounted (a console over a bare policy API).
func (c *Console) report24h(r *http.Request, s *session) (rep reportCounts, ok bool, err error) {
	err = c.getJSON(r, s, api+"/reports/overview", url.Values{"from": {"24h"}, "top": {"1000"}}, &rep)
	if notFound(err) {
		return rep, false, nil
	}
	return rep, err == nil, err
}

// ruleRow is one rule of the rules table.
type ruleRow struct {
	N       int
	Rule    policies.Rule
	Conds   []condition
	Hits    int64
	Would   int64
	HasHits bool
}

func ruleRows(p *policies.Policy, rep *reportCounts) []ruleRow {
	hits, would := map[string]int64{}, map[string]int64{}
	if rep != nil {
		for _, c := range rep.Rules {
			hits[c.Name] = c.Count
		}
		for _, c := range rep.WouldBlock {
			would[c.Name] = c.Count
		}
	}
	out := make([]ruleRow, 0, len(p.Rules))
	for i, ru := range p.Rules {
		out = append(out, ruleRow{N: i + 1, Rule: ru, Conds: ruleConditions(ru), Hits: hits[ru.ID], Would: would[ru.ID], HasHits: rep != nil})
	}
	return out
}

type policyData struct {
	V       *policies.Version
	Rows    []ruleRow
	HasHits bool
	Tab     string
	Lists   map[string]string // list name -> kind
}

func (c *Console) policyPage(w http.ResponseWriter, r *http.Request, s *session) error {
	var v policies.Version
	if err := c.getJSON(r, s, api+"/policy", nil, &v); err != nil {
		return err
	}
	rep, ok, err := c.report24h(r, s)
	if err != nil {
		return err
	}
	d := policyData{V: &v, HasHits: ok, Tab: "rules", Lists: map[string]string{}}
	if ok {
		d.Rows = ruleRows(v.Policy, &rep)
	} else {
		d.Rows = ruleRows(v.Policy, nil)
	}
	for _, l := range v.Policy.Lists {
		d.Lists[l.Name] = l.Kind
	}
	c.render(w, r, s, http.StatusOK, "policy.html", "Policy", "policy", d)
	return nil
}

type yamlData struct {
	Version int64
	Lines   []yamlLine
	Raw     string
	Tab     string
}

func (c *Console) policyYAML(w http.ResponseWriter, r *http.Request, s *session) error {
	rec, err := c.do(r.Context(), r, s.token, apiCall{method: http.MethodGet, path: api + "/policy", query: url.Values{"format": {"yaml"}}})
	if err != nil {
		return err
	}
	n, _ := strconv.ParseInt(rec.hdr.Get("X-Cordon-Version"), 10, 64)
	doc := rec.body.String()
	c.render(w, r, s, http.StatusOK, "yaml.html", "Policy YAML", "policy", yamlData{Version: n, Lines: yamlLines(doc), Raw: doc, Tab: "yaml"})
	return nil
}

type versionsData struct {
	Versions []policies.VersionInfo
	Current  int64
	Tab      string
}

func (c *Console) versionsPage(w http.ResponseWriter, r *http.Request, s *session) error {
	var vs struct {
		Versions []policies.VersionInfo `json:"versions"`
	}
	if err := c.getJSON(r, s, api+"/policy/versions", nil, &vs); err != nil {
		return err
	}
	d := versionsData{Versions: vs.Versions, Tab: "history"}
	if len(vs.Versions) > 0 {
		d.Current = vs.Versions[0].Number
	}
	c.render(w, r, s, http.StatusOK, "versions.html", "Policy history", "policy", d)
	return nil
}

type versionData struct {
	V       *policies.Version
	HasHits bool
	Rows    []ruleRow
	Current int64
	Tab     string
}

func (c *Console) versionPage(w http.ResponseWriter, r *http.Request, s *session) error {
	n := r.PathValue("version")
	var v policies.Version
	if err := c.getJSON(r, s, api+"/policy/versions/"+url.PathEscape(n), nil, &v); err != nil {
		return err
	}
	var cur policies.Version
	if err := c.getJSON(r, s, api+"/policy", nil, &cur); err != nil {
		return err
	}
	c.render(w, r, s, http.StatusOK, "version.html", fmt.Sprintf("Policy version %d", v.Number), "policy",
		versionData{V: &v, Rows: ruleRows(v.Policy, nil), Current: cur.Number, Tab: "history"})
	return nil
}

// diffRow is one change of a diff, ready to show.
type diffRow struct {
	policies.Change
	Position string
}

type diffData struct {
	From, To int64
	Rows     []diffRow
	Versions []policies.VersionInfo
	Tab      string
}

func diffRows(cs []policies.Change) []diffRow {
	out := make([]diffRow, 0, len(cs))
	for _, ch := range cs {
		row := diffRow{Change: ch}
		switch {
		case ch.FromPos > 0 && ch.ToPos > 0 && ch.FromPos != ch.ToPos:
			row.Position = fmt.Sprintf("#%d → #%d", ch.FromPos, ch.ToPos)
		case ch.ToPos > 0:
			row.Position = fmt.Sprintf("#%d", ch.ToPos)
		case ch.FromPos > 0:
			row.Position = fmt.Sprintf("was #%d", ch.FromPos)
		}
		out = append(out, row)
	}
	return out
}

func (c *Console) diffPage(w http.ResponseWriter, r *http.Request, s *session) error {
	q := url.Values{}
	for _, k := range []string{"from", "to"} {
		if v := r.URL.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	var d policies.Diff
	if err := c.getJSON(r, s, api+"/policy/diff", q, &d); err != nil {
		return err
	}
	var vs struct {
		Versions []policies.VersionInfo `json:"versions"`
	}
	if err := c.getJSON(r, s, api+"/policy/versions", nil, &vs); err != nil {
		return err
	}
	c.render(w, r, s, http.StatusOK, "diff.html", fmt.Sprintf("Changes from version %d to %d", d.From, d.To), "policy",
		diffData{From: d.From, To: d.To, Rows: diffRows(d.Changes), Versions: vs.Versions, Tab: "history"})
	return nil
}

func (c *Console) rollback(w http.ResponseWriter, r *http.Request, s *session) error {
	n, err := strconv.ParseInt(r.PostForm.Get("version"), 10, 64)
	if err != nil || n < 0 {
		return &APIError{Status: http.StatusBadRequest, Message: "version: want a version number"}
	}
	return c.rollbackTo(w, r, s, n, strings.TrimSpace(r.PostForm.Get("comment")))
}

type editData struct {
	YAML     string
	Base     int64
	Comment  string
	Problems []policies.FieldError
	Error    string
	Title    string
	Reason   string
}

func (c *Console) editPage(w http.ResponseWriter, r *http.Request, s *session) error {
	rec, err := c.do(r.Context(), r, s.token, apiCall{method: http.MethodGet, path: api + "/policy", query: url.Values{"format": {"yaml"}}})
	if err != nil {
		return err
	}
	n, _ := strconv.ParseInt(rec.hdr.Get("X-Cordon-Version"), 10, 64)
	c.render(w, r, s, http.StatusOK, "edit.html", "Edit the policy", "policy", editData{YAML: rec.body.String(), Base: n})
	return nil
}

// lineRE finds the line a YAML parse message names.
var lineRE = regexp.MustCompile(`line (\d+)`)

// parseProblems turns the API's message for a document that does not
// parse ("line 4: field colour not found…; line 9: …") into problems
// with their lines.
func parseProblems(msg string) []policies.FieldError {
	msg = strings.TrimPrefix(msg, "parse: invalid policy: ")
	var out []policies.FieldError
	for _, part := range strings.Split(msg, "; ") {
		p := policies.FieldError{Field: "document", Message: strings.TrimSpace(part)}
		if m := lineRE.FindStringSubmatch(part); m != nil {
			p.Line, _ = strconv.Atoi(m[1])
			p.Message = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(part), "yaml: "), m[0]+":"))
		}
		out = append(out, p)
	}
	return out
}

// validateResult is the answer of /ui/policy/validate for the editor.
type validateResult struct {
	Valid    bool                  `json:"valid"`
	Problems []policies.FieldError `json:"problems"`
}

// validateYAML asks the API to validate a YAML draft; a draft that does
// not even parse becomes problems with their lines.
func (c *Console) validateYAML(r *http.Request, s *session, doc []byte) (validateResult, error) {
	rec, err := c.do(r.Context(), r, s.token, apiCall{method: http.MethodPost, path: api + "/policy/validate", ctype: "application/yaml", body: doc})
	var res validateResult
	if ae, ok := err.(*APIError); ok && ae.Status == http.StatusBadRequest {
		return validateResult{Valid: false, Problems: parseProblems(ae.Message)}, nil
	}
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal(rec.body.Bytes(), &res); err != nil {
		return res, fmt.Errorf("console: decode validation: %w", err)
	}
	if res.Problems == nil {
		res.Problems = []policies.FieldError{}
	}
	return res, nil
}

// validate serves the editor's live validation: the YAML body in, the
// API's verdict out as JSON.
func (c *Console) validate(w http.ResponseWriter, r *http.Request, s *session) error {
	doc, err := readAllLimit(r, policies.MaxPolicyBytes)
	if err != nil {
		return err
	}
	res, err := c.validateYAML(r, s, doc)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(res)
}

func (c *Console) editSubmit(w http.ResponseWriter, r *http.Request, s *session) error {
	doc := []byte(strings.ReplaceAll(r.PostForm.Get("yaml"), "\r\n", "\n"))
	base := r.PostForm.Get("base_version")
	d := editData{YAML: string(doc), Comment: r.PostForm.Get("comment"), Title: r.PostForm.Get("title"), Reason: r.PostForm.Get("reason")}
	d.Base, _ = strconv.ParseInt(base, 10, 64)
	res, err := c.validateYAML(r, s, doc)
	if err != nil {
		return err
	}
	if !res.Valid {
		d.Problems, d.Error = res.Problems, "The draft has problems; nothing was changed."
		c.render(w, r, s, http.StatusBadRequest, "edit.html", "Edit the policy", "policy", d)
		return nil
	}
	return c.submitDraft(w, r, s, d, doc)
}
