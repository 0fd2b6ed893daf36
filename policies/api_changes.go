package policies

import (
	"mime"
	"net/http"
	"strconv"
)

// changeBody is the JSON form of opening or updating a change request.
type changeBody struct {
	Title       string  `json:"title"`
	Reason      string  `json:"reason"`
	Patch       *Patch  `json:"patch,omitempty"`
	Policy      *Policy `json:"policy,omitempty"`
	BaseVersion *int64  `json:"base_version,omitempty"`
}

// readChange reads a change submission: JSON changeBody, or a YAML draft
// policy (Content-Type application/yaml) with title, reason and
// base_version in the query.
func (a *API) readChange(w http.ResponseWriter, r *http.Request) (ChangeInput, error) {
	mt := "application/json"
	if ct := r.Header.Get("Content-Type"); ct != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(ct); err != nil {
			return ChangeInput{}, badRequest("Content-Type %q: %v", ct, err)
		}
	}
	switch mt {
	case "application/yaml", "application/x-yaml", "text/yaml":
		if err := knownQuery(r, "title", "reason", "base_version"); err != nil {
			return ChangeInput{}, err
		}
		b, err := a.readBody(w, r)
		if err != nil {
			return ChangeInput{}, err
		}
		p, err := Parse(b)
		if err != nil {
			return ChangeInput{}, err
		}
		q := r.URL.Query()
		in := ChangeInput{Title: q.Get("title"), Reason: q.Get("reason"), Policy: p}
		if s := q.Get("base_version"); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil || n < 0 {
				return ChangeInput{}, badRequest("query base_version=%q: want a non-negative integer", s)
			}
			in.BaseVersion = &n
		}
		return in, nil
	case "application/json":
		if err := knownQuery(r); err != nil {
			return ChangeInput{}, err
		}
		var b changeBody
		if err := a.decode(w, r, &b); err != nil {
			return ChangeInput{}, err
		}
		return ChangeInput{Title: b.Title, Reason: b.Reason, Patch: b.Patch, Policy: b.Policy, BaseVersion: b.BaseVersion}, nil
	}
	return ChangeInput{}, badRequest("Content-Type %q: want application/json or application/yaml", mt)
}

// redactDiff hides password hashes and DoH tokens in a diff from
// non-admin readers.
func redactDiff(cs []Change, role Role) []Change {
	if role == RoleAdmin {
		return cs
	}
	out := make([]Change, len(cs))
	for i, c := range cs {
		out[i] = c
		if c.Section != SectionUsers {
			continue
		}
		out[i].Fields = make([]FieldChange, len(c.Fields))
		for j, f := range c.Fields {
			if f.Field == "password_hash" || f.Field == "doh_token" {
				if f.Before != nil {
					f.Before = RedactedSecret
				}
				if f.After != nil {
					f.After = RedactedSecret
				}
			}
			out[i].Fields[j] = f
		}
	}
	return out
}

// redactChange hides secrets of a draft from non-admin readers.
func redactChange(c *ChangeRequest, role Role) *ChangeRequest {
	if c.Impact != nil && role != RoleAdmin {
		im := *c.Impact
		im.Diff = redactDiff(im.Diff, role)
		c.Impact = &im
	}
	if role != RoleAdmin {
		for i := range c.Conflicts {
			if c.Conflicts[i].Section == SectionUsers {
				c.Conflicts[i].Base, c.Conflicts[i].Live, c.Conflicts[i].Change = RedactedSecret, RedactedSecret, RedactedSecret
			}
		}
	}
	if c.Policy != nil {
		c.Policy = redact(c.Policy, role)
	}
	if c.Patch != nil && c.Patch.Users != nil && role != RoleAdmin {
		pt := *c.Patch
		us := *pt.Users
		us.Put = append([]User(nil), us.Put...)
		for i := range us.Put {
			if us.Put[i].PasswordHash != "" {
				us.Put[i].PasswordHash = RedactedSecret
			}
			if us.Put[i].DoHToken != "" {
				us.Put[i].DoHToken = RedactedSecret
			}
		}
		pt.Users = &us
		c.Patch = &pt
	}
	return c
}

func (a *API) registerChanges() {
	p := APIPrefix
	writeChange := func(w http.ResponseWriter, code int, c *ChangeRequest, act Actor) {
		writeJSON(w, code, redactChange(c, act.Role))
	}
	a.handle("POST", p+"/changes", PermWrite, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		in, err := a.readChange(w, r)
		if err != nil {
			return err
		}
		c, err := a.svc.OpenChange(r.Context(), act, in)
		if err != nil {
			return err
		}
		writeChange(w, http.StatusCreated, c, act)
		return nil
	})
	a.handle("GET", p+"/changes", PermRead, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		if err := knownQuery(r, "state"); err != nil {
			return err
		}
		cs, err := a.svc.Changes(r.Context(), ChangeState(r.URL.Query().Get("state")))
		if err != nil {
			return err
		}
		for _, c := range cs {
			redactChange(c, act.Role)
		}
		writeJSON(w, http.StatusOK, map[string]any{"changes": cs})
		return nil
	})
	a.handle("GET", p+"/changes/{id}", PermRead, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		c, err := a.svc.Change(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		writeChange(w, http.StatusOK, c, act)
		return nil
	})
	a.handle("PUT", p+"/changes/{id}", PermWrite, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		in, err := a.readChange(w, r)
		if err != nil {
			return err
		}
		c, err := a.svc.UpdateChange(r.Context(), act, r.PathValue("id"), in)
		if err != nil {
			return err
		}
		writeChange(w, http.StatusOK, c, act)
		return nil
	})
	a.handle("POST", p+"/changes/{id}/comments", PermWrite, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		var b struct {
			Text string `json:"text"`
		}
		if err := a.decode(w, r, &b); err != nil {
			return err
		}
		cm, err := a.svc.CommentChange(r.Context(), act, r.PathValue("id"), b.Text)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, cm)
		return nil
	})
	type commentBody struct {
		Comment string `json:"comment"`
	}
	step := func(f func(r *http.Request, act Actor, id, comment string) (*ChangeRequest, error)) func(w http.ResponseWriter, r *http.Request, act Actor) error {
		return func(w http.ResponseWriter, r *http.Request, act Actor) error {
			var b commentBody
			if r.ContentLength != 0 {
				if err := a.decode(w, r, &b); err != nil {
					return err
				}
			}
			c, err := f(r, act, r.PathValue("id"), b.Comment)
			if err != nil {
				return err
			}
			writeChange(w, http.StatusOK, c, act)
			return nil
		}
	}
	a.handle("POST", p+"/changes/{id}/approve", PermWrite, step(func(r *http.Request, act Actor, id, comment string) (*ChangeRequest, error) {
		return a.svc.ApproveChange(r.Context(), act, id, comment)
	}))
	a.handle("POST", p+"/changes/{id}/reject", PermWrite, step(func(r *http.Request, act Actor, id, comment string) (*ChangeRequest, error) {
		return a.svc.RejectChange(r.Context(), act, id, comment)
	}))
	a.handle("POST", p+"/changes/{id}/withdraw", PermWrite, step(func(r *http.Request, act Actor, id, comment string) (*ChangeRequest, error) {
		return a.svc.WithdrawChange(r.Context(), act, id, comment)
	}))
	a.handle("POST", p+"/changes/{id}/promote", PermWrite, step(func(r *http.Request, act Actor, id, comment string) (*ChangeRequest, error) {
		return a.svc.PromoteChange(r.Context(), act, id, comment)
	}))
	a.handle("POST", p+"/changes/{id}/abort", PermWrite, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		var b struct {
			Reason string `json:"reason"`
		}
		if r.ContentLength != 0 {
			if err := a.decode(w, r, &b); err != nil {
				return err
			}
		}
		c, err := a.svc.AbortChange(r.Context(), act, r.PathValue("id"), b.Reason)
		if err != nil {
			return err
		}
		writeChange(w, http.StatusOK, c, act)
		return nil
	})
	a.handle("POST", p+"/changes/{id}/rebase", PermWrite, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		if r.ContentLength != 0 {
			var b struct{}
			if err := a.decode(w, r, &b); err != nil {
				return err
			}
		}
		c, err := a.svc.RebaseChange(r.Context(), act, r.PathValue("id"))
		if err != nil {
			return err
		}
		writeChange(w, http.StatusOK, c, act)
		return nil
	})
	a.handle("POST", p+"/changes/{id}/apply", PermWrite, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		var b struct {
			Emergency bool          `json:"emergency"`
			Reason    string        `json:"reason"`
			Stage     *StageRequest `json:"stage"`
		}
		if r.ContentLength != 0 {
			if err := a.decode(w, r, &b); err != nil {
				return err
			}
		}
		c, err := a.svc.ApplyChange(r.Context(), act, r.PathValue("id"), ApplyOptions{Emergency: b.Emergency, Reason: b.Reason, Stage: b.Stage})
		if err != nil {
			return err
		}
		writeChange(w, http.StatusOK, c, act)
		return nil
	})
	a.handle("GET", p+"/changes/{id}/effect", PermRead, func(w http.ResponseWriter, r *http.Request, _ Actor) error {
		c, err := a.svc.Change(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		eff, err := a.svc.ObservedEffect(r.Context(), c)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, eff)
		return nil
	})
	a.handle("POST", p+"/reviews/{id}/change", PermWrite, func(w http.ResponseWriter, r *http.Request, act Actor) error {
		var b struct {
			List   string `json:"list"`
			Title  string `json:"title"`
			Reason string `json:"reason"`
		}
		if r.ContentLength != 0 {
			if err := a.decode(w, r, &b); err != nil {
				return err
			}
		}
		c, err := a.svc.ChangeFromReview(r.Context(), act, r.PathValue("id"), b.List, b.Title, b.Reason)
		if err != nil {
			return err
		}
		writeChange(w, http.StatusCreated, c, act)
		return nil
	})
	a.handle("GET", p+"/edges", PermRead, func(w http.ResponseWriter, r *http.Request, _ Actor) error {
		if err := knownQuery(r); err != nil {
			return err
		}
		es, err := a.svc.Edges(r.Context())
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"edges": es, "stale_after": EdgeStaleAfter.String()})
		return nil
	})
}
