package console

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/cordon-gw/cordon/policies"
)

// fields splits a list typed in a form (commas, spaces or new lines).
func fields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

// listPerm is the permission a list of this kind needs to change (the
// API enforces it; the console only hides what would be refused).
func listPerm(kind string) string {
	if kind == policies.ListBypass {
		return "network"
	}
	return "security"
}

type listRow struct {
	policies.List
	Perm   string
	UsedBy []string
}

type listsData struct {
	Lists []listRow
	Kinds []string // kinds the caller may create
}

func (c *Console) policyNow(r *http.Request, s *session) (*policies.Version, error) {
	var v policies.Version
	if err := c.getJSON(r, s, api+"/policy", nil, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

func usedBy(p *policies.Policy, list string) []string {
	var out []string
	for _, ru := range p.Rules {
		if slices.Contains(ru.Lists, list) {
			out = append(out, ru.ID)
		}
	}
	return out
}

func (c *Console) listsPage(w http.ResponseWriter, r *http.Request, s *session) error {
	v, err := c.policyNow(r, s)
	if err != nil {
		return err
	}
	var ls struct {
		Lists []policies.List `json:"lists"`
	}
	if err := c.getJSON(r, s, api+"/lists", nil, &ls); err != nil {
		return err
	}
	d := listsData{}
	for _, l := range ls.Lists {
		d.Lists = append(d.Lists, listRow{List: l, Perm: listPerm(l.Kind), UsedBy: usedBy(v.Policy, l.Name)})
	}
	vw := &view{S: s}
	for _, k := range []string{policies.ListAllow, policies.ListDeny, policies.ListBypass} {
		if vw.Can(listPerm(k)) {
			d.Kinds = append(d.Kinds, k)
		}
	}
	c.render(w, r, s, http.StatusOK, "lists.html", "Lists", "lists", d)
	return nil
}

func (c *Console) listPage(w http.ResponseWriter, r *http.Request, s *session) error {
	var l policies.List
	if err := c.getJSON(r, s, api+"/lists/"+url.PathEscape(r.PathValue("name")), nil, &l); err != nil {
		return err
	}
	v, err := c.policyNow(r, s)
	if err != nil {
		return err
	}
	c.render(w, r, s, http.StatusOK, "list.html", "List "+l.Name, "lists", listRow{List: l, Perm: listPerm(l.Kind), UsedBy: usedBy(v.Policy, l.Name)})
	return nil
}

func (c *Console) listCreate(w http.ResponseWriter, r *http.Request, s *session) error {
	f := r.PostForm
	name := strings.TrimSpace(f.Get("name"))
	if name == "" {
		return &APIError{Status: http.StatusBadRequest, Message: "a list needs a name"}
	}
	body := map[string]any{"kind": f.Get("kind"), "description": strings.TrimSpace(f.Get("description")), "entries": nonNilStrings(fields(f.Get("entries")))}
	if err := c.sendJSON(r, s, http.MethodPut, api+"/lists/"+url.PathEscape(name), body, nil); err != nil {
		return err
	}
	return c.done(w, r, s, Prefix+"lists/"+url.PathEscape(name), "List "+name+" saved.")
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (c *Console) listEntries(w http.ResponseWriter, r *http.Request, s *session, add bool) error {
	name := r.PathValue("name")
	entries := fields(r.PostForm.Get("entries"))
	entries = append(entries, r.PostForm["entry"]...)
	if len(entries) == 0 {
		return &APIError{Status: http.StatusBadRequest, Message: "no entries given"}
	}
	method, verb := http.MethodPost, "added to"
	if !add {
		method, verb = http.MethodDelete, "removed from"
	}
	body := map[string]any{"entries": entries, "comment": strings.TrimSpace(r.PostForm.Get("comment"))}
	if err := c.sendJSON(r, s, method, api+"/lists/"+url.PathEscape(name)+"/entries", body, nil); err != nil {
		return err
	}
	return c.done(w, r, s, Prefix+"lists/"+url.PathEscape(name), plural(len(entries), "entry", "entries")+" "+verb+" "+name+".")
}

func (c *Console) listAddEntries(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.listEntries(w, r, s, true)
}

func (c *Console) listRemoveEntries(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.listEntries(w, r, s, false)
}

func (c *Console) listDelete(w http.ResponseWriter, r *http.Request, s *session) error {
	name := r.PathValue("name")
	if err := c.sendJSON(r, s, http.MethodDelete, api+"/lists/"+url.PathEscape(name), nil, nil); err != nil {
		return err
	}
	return c.done(w, r, s, Prefix+"lists", "List "+name+" deleted.")
}

type userRow struct {
	Name        string   `json:"name"`
	Groups      []string `json:"groups"`
	HasPassword bool     `json:"has_password"`
	DoHToken    string   `json:"doh_token"`
}

type usersData struct {
	Users  []userRow
	Groups []policies.Group
}

func (c *Console) usersPage(w http.ResponseWriter, r *http.Request, s *session) error {
	var us struct {
		Users []userRow `json:"users"`
	}
	if err := c.getJSON(r, s, api+"/users", nil, &us); err != nil {
		return err
	}
	var gs struct {
		Groups []policies.Group `json:"groups"`
	}
	if err := c.getJSON(r, s, api+"/groups", nil, &gs); err != nil {
		return err
	}
	c.render(w, r, s, http.StatusOK, "users.html", "Users", "users", usersData{Users: us.Users, Groups: gs.Groups})
	return nil
}

func (c *Console) userPut(w http.ResponseWriter, r *http.Request, s *session) error {
	f := r.PostForm
	name := strings.TrimSpace(f.Get("name"))
	if name == "" {
		return &APIError{Status: http.StatusBadRequest, Message: "a user needs a name"}
	}
	body := map[string]any{"groups": nonNilStrings(append(fields(f.Get("groups")), f["group"]...))}
	if p := f.Get("password"); p != "" {
		body["password"] = p
	}
	if t := strings.TrimSpace(f.Get("doh_token")); t != "" {
		body["doh_token"] = t
	}
	if err := c.sendJSON(r, s, http.MethodPut, api+"/users/"+url.PathEscape(name), body, nil); err != nil {
		return err
	}
	return c.done(w, r, s, Prefix+"users", "User "+name+" saved.")
}

func (c *Console) userDelete(w http.ResponseWriter, r *http.Request, s *session) error {
	name := r.PathValue("name")
	if err := c.sendJSON(r, s, http.MethodDelete, api+"/users/"+url.PathEscape(name), nil, nil); err != nil {
		return err
	}
	return c.done(w, r, s, Prefix+"users", "User "+name+" deleted.")
}

type groupRow struct {
	policies.Group
	Members int
}

func (c *Console) groupsPage(w http.ResponseWriter, r *http.Request, s *session) error {
	var gs struct {
		Groups []policies.Group `json:"groups"`
	}
	if err := c.getJSON(r, s, api+"/groups", nil, &gs); err != nil {
		return err
	}
	var us struct {
		Users []userRow `json:"users"`
	}
	if err := c.getJSON(r, s, api+"/users", nil, &us); err != nil {
		return err
	}
	var rows []groupRow
	for _, g := range gs.Groups {
		n := 0
		for _, u := range us.Users {
			if slices.Contains(u.Groups, g.Name) {
				n++
			}
		}
		rows = append(rows, groupRow{Group: g, Members: n})
	}
	c.render(w, r, s, http.StatusOK, "groups.html", "Groups", "groups", rows)
	return nil
}

func (c *Console) groupPut(w http.ResponseWriter, r *http.Request, s *session) error {
	name := strings.TrimSpace(r.PostForm.Get("name"))
	if name == "" {
		return &APIError{Status: http.StatusBadRequest, Message: "a group needs a name"}
	}
	if err := c.sendJSON(r, s, http.MethodPut, api+"/groups/"+url.PathEscape(name), map[string]any{"description": strings.TrimSpace(r.PostForm.Get("description"))}, nil); err != nil {
		return err
	}
	return c.done(w, r, s, Prefix+"groups", "Group "+name+" saved.")
}

func (c *Console) groupDelete(w http.ResponseWriter, r *http.Request, s *session) error {
	name := r.PathValue("name")
	if err := c.sendJSON(r, s, http.MethodDelete, api+"/groups/"+url.PathEscape(name), nil, nil); err != nil {
		return err
	}
	return c.done(w, r, s, Prefix+"groups", "Group "+name+" deleted.")
}

type locationRow struct {
	policies.Location
	Rules []string
}

func (c *Console) locationsPage(w http.ResponseWriter, r *http.Request, s *session) error {
	var ls struct {
		Locations []policies.Location `json:"locations"`
	}
	if err := c.getJSON(r, s, api+"/locations", nil, &ls); err != nil {
		return err
	}
	v, err := c.policyNow(r, s)
	if err != nil {
		return err
	}
	var rows []locationRow
	for _, l := range ls.Locations {
		row := locationRow{Location: l}
		for _, ru := range v.Policy.Rules {
			if slices.Contains(ru.Locations, l.Name) {
				row.Rules = append(row.Rules, ru.ID)
			}
		}
		rows = append(rows, row)
	}
	c.render(w, r, s, http.StatusOK, "locations.html", "Locations", "locations", rows)
	return nil
}

func (c *Console) locationPut(w http.ResponseWriter, r *http.Request, s *session) error {
	name := strings.TrimSpace(r.PostForm.Get("name"))
	if name == "" {
		return &APIError{Status: http.StatusBadRequest, Message: "a location needs a name"}
	}
	body := map[string]any{"cidrs": nonNilStrings(fields(r.PostForm.Get("cidrs")))}
	if err := c.sendJSON(r, s, http.MethodPut, api+"/locations/"+url.PathEscape(name), body, nil); err != nil {
		return err
	}
	return c.done(w, r, s, Prefix+"locations", "Location "+name+" saved.")
}

func (c *Console) locationDelete(w http.ResponseWriter, r *http.Request, s *session) error {
	name := r.PathValue("name")
	if err := c.sendJSON(r, s, http.MethodDelete, api+"/locations/"+url.PathEscape(name), nil, nil); err != nil {
		return err
	}
	return c.done(w, r, s, Prefix+"locations", "Location "+name+" deleted.")
}
