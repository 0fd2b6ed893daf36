package console

import "net/http"

// overviewChanges is the change-request part of the overview.
type overviewChanges struct {
	OpenChanges int
	// HasChanges is false while the API serves no change requests.
	HasChanges bool
}

// overviewChangesFor counts the open change requests, when the API has
// them.
func (c *Console) overviewChangesFor(r *http.Request, s *session, d *overviewChanges) error {
	var out struct {
		Changes []struct {
			ID string `json:"id"`
		} `json:"changes"`
	}
	err := c.getJSON(r, s, api+"/changes", map[string][]string{"state": {"open"}}, &out)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	d.HasChanges, d.OpenChanges = true, len(out.Changes)
	return nil
}

func (c *Console) changeRoutes(page, form func(string, handlerFunc)) {
	page(Prefix+"changes", c.changesPage)
}

func (c *Console) changesPage(w http.ResponseWriter, r *http.Request, s *session) error {
	var d overviewChanges
	if err := c.overviewChangesFor(r, s, &d); err != nil {
		return err
	}
	c.render(w, r, s, http.StatusOK, "changes.html", "Change requests", "changes", d)
	return nil
}
