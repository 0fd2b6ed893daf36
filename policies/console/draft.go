package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/cordon-gw/cordon/policies"
)

// rollbackTo opens a change request that puts version n back: a rollback
// is a change like any other, approved by the teams it touches.
func (c *Console) rollbackTo(w http.ResponseWriter, r *http.Request, s *session, n int64, comment string) error {
	var v policies.Version
	if err := c.getJSON(r, s, api+"/policy/versions/"+strconv.FormatInt(n, 10), nil, &v); err != nil {
		return err
	}
	if comment == "" {
		comment = fmt.Sprintf("back to version %d", n)
	}
	var ch policies.ChangeRequest
	body := map[string]any{"title": fmt.Sprintf("Roll back to version %d", n), "reason": comment, "policy": v.Policy}
	if err := c.sendJSON(r, s, http.MethodPost, api+"/changes", body, &ch); err != nil {
		return err
	}
	return c.done(w, r, s, Prefix+"changes/"+url.PathEscape(ch.ID), fmt.Sprintf("Change request opened to roll back to version %d.", n))
}

// submitDraft opens a change request with a validated YAML draft,
// based on the version it was drafted against.
func (c *Console) submitDraft(w http.ResponseWriter, r *http.Request, s *session, d editData, doc []byte) error {
	q := url.Values{"title": {d.Title}, "reason": {d.Reason}, "base_version": {strconv.FormatInt(d.Base, 10)}}
	rec, err := c.do(r.Context(), r, s.token, apiCall{method: http.MethodPost, path: api + "/changes", query: q, ctype: "application/yaml", body: doc})
	if err != nil {
		return err
	}
	var ch policies.ChangeRequest
	if err := decodeJSON(rec, &ch); err != nil {
		return err
	}
	return c.done(w, r, s, Prefix+"changes/"+url.PathEscape(ch.ID), "Change request opened. The teams it touches are asked to approve it.")
}
