package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/cordon-gw/cordon/policies"
)

// rollbackTo puts version n back as the live policy.
func (c *Console) rollbackTo(w http.ResponseWriter, r *http.Request, s *session, n int64, comment string) error {
	var res struct {
		Version policies.VersionInfo `json:"version"`
	}
	body := map[string]any{"version": n, "comment": comment}
	if err := c.sendJSON(r, s, http.MethodPost, api+"/policy/rollback", body, &res); err != nil {
		return err
	}
	return c.done(w, r, s, Prefix+"policy", fmt.Sprintf("Rolled back to version %d: the live policy is now version %d.", n, res.Version.Number))
}

// submitDraft stores a validated YAML draft as the new live version, if
// the live version is still the one it was drafted against.
func (c *Console) submitDraft(w http.ResponseWriter, r *http.Request, s *session, d editData, doc []byte) error {
	q := url.Values{"comment": {d.Comment}, "base_version": {strconv.FormatInt(d.Base, 10)}}
	rec, err := c.do(r.Context(), r, s.token, apiCall{method: http.MethodPut, path: api + "/policy", query: q, ctype: "application/yaml", body: doc})
	if err != nil {
		return err
	}
	_ = rec
	return c.done(w, r, s, Prefix+"policy", "The policy was saved as a new version.")
}
