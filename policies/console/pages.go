package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

type reviewsData struct {
	Status  string
	Reviews []policies.Review
	Counts  map[string]int
}

func (c *Console) reviewsPage(w http.ResponseWriter, r *http.Request, s *session) error {
	st := r.URL.Query().Get("status")
	if st == "" {
		st = policies.ReviewOpen
	}
	if st == "all" {
		st = ""
	}
	var all struct {
		Reviews []policies.Review `json:"reviews"`
	}
	if err := c.getJSON(r, s, api+"/reviews", nil, &all); err != nil {
		return err
	}
	d := reviewsData{Status: st, Counts: map[string]int{"all": len(all.Reviews)}}
	for _, rv := range all.Reviews {
		d.Counts[rv.Status]++
		if st == "" || rv.Status == st {
			d.Reviews = append(d.Reviews, rv)
		}
	}
	if d.Status == "" {
		d.Status = "all"
	}
	c.render(w, r, s, http.StatusOK, "reviews.html", "Review requests", "reviews", d)
	return nil
}

func (c *Console) reviewResolve(w http.ResponseWriter, r *http.Request, s *session) error {
	id := r.PathValue("id")
	st := r.PostForm.Get("status")
	body := map[string]any{"status": st, "note": strings.TrimSpace(r.PostForm.Get("note"))}
	if err := c.sendJSON(r, s, http.MethodPost, api+"/reviews/"+url.PathEscape(id), body, nil); err != nil {
		return err
	}
	return c.done(w, r, s, Prefix+"reviews", "Review request "+id+" marked "+st+".")
}

type lookupData struct {
	URL, User, ClientIP, Protocol string
	Users                         []string
	Result                        *policies.LookupResult
	Error                         string
}

func (c *Console) lookupPage(w http.ResponseWriter, r *http.Request, s *session) error {
	q := r.URL.Query()
	d := lookupData{URL: strings.TrimSpace(q.Get("url")), User: strings.TrimSpace(q.Get("user")), ClientIP: strings.TrimSpace(q.Get("client_ip")), Protocol: q.Get("protocol")}
	var us struct {
		Users []userRow `json:"users"`
	}
	if err := c.getJSON(r, s, api+"/users", nil, &us); err != nil {
		return err
	}
	for _, u := range us.Users {
		d.Users = append(d.Users, u.Name)
	}
	status := http.StatusOK
	if d.URL != "" {
		aq := url.Values{"url": {d.URL}}
		if d.User != "" {
			aq.Set("user", d.User)
		}
		if d.ClientIP != "" {
			aq.Set("client_ip", d.ClientIP)
		}
		if d.Protocol != "" {
			aq.Set("protocol", d.Protocol)
		}
		var res policies.LookupResult
		err := c.getJSON(r, s, api+"/lookup", aq, &res)
		if ae, ok := err.(*APIError); ok && (ae.Status == http.StatusBadRequest || ae.Status == http.StatusNotFound) {
			d.Error, status = sentence(ae.Message), ae.Status
		} else if err != nil {
			return err
		} else {
			d.Result = &res
		}
	}
	c.render(w, r, s, status, "lookup.html", "Lookup", "lookup", d)
	return nil
}

type auditData struct {
	Actor, Action, Source, Target, Since, Until string
	Entries                                     []policies.AuditEntry
	NextHref                                    string
	FirstHref                                   string
	Paged                                       bool
	Error                                       string
}

// auditTime accepts what a datetime-local input sends ("2026-01-02T15:04",
// taken as UTC) or RFC 3339.
func auditTime(s string) (string, bool) {
	if s == "" {
		return "", true
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC().Format(time.RFC3339), true
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC().Format(time.RFC3339), true
		}
	}
	return "", false
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, s *session) error {
	q := r.URL.Query()
	d := auditData{Actor: strings.TrimSpace(q.Get("actor")), Action: strings.TrimSpace(q.Get("action")), Source: q.Get("source"),
		Target: strings.TrimSpace(q.Get("target")), Since: q.Get("since"), Until: q.Get("until")}
	aq := url.Values{"limit": {"50"}}
	for k, v := range map[string]string{"actor": d.Actor, "action": d.Action, "source": d.Source, "target": d.Target} {
		if v != "" {
			aq.Set(k, v)
		}
	}
	for k, v := range map[string]string{"since": d.Since, "until": d.Until} {
		t, ok := auditTime(v)
		if !ok {
			d.Error = k + " " + strconv.Quote(v) + ": want a date and time like 2026-01-02T15:04 (UTC)"
			c.render(w, r, s, http.StatusBadRequest, "audit.html", "Audit log", "audit", d)
			return nil
		}
		if t != "" {
			aq.Set(k, t)
		}
	}
	if b := q.Get("before"); b != "" {
		aq.Set("before", b)
		d.Paged = true
	}
	var page policies.AuditPage
	if err := c.getJSON(r, s, api+"/audit", aq, &page); err != nil {
		if ae, ok := err.(*APIError); ok && ae.Status == http.StatusBadRequest {
			d.Error = sentence(ae.Message)
			c.render(w, r, s, http.StatusBadRequest, "audit.html", "Audit log", "audit", d)
			return nil
		}
		return err
	}
	d.Entries = page.Entries
	keep := url.Values{}
	for _, k := range []string{"actor", "action", "source", "target", "since", "until"} {
		if v := q.Get(k); v != "" {
			keep.Set(k, v)
		}
	}
	d.FirstHref = Prefix + "audit?" + keep.Encode()
	if page.Next > 0 {
		keep.Set("before", strconv.FormatInt(page.Next, 10))
		d.NextHref = Prefix + "audit?" + keep.Encode()
	}
	c.render(w, r, s, http.StatusOK, "audit.html", "Audit log", "audit", d)
	return nil
}

// feedStatus is the part of GET /api/v1/feeds the console shows.
type feedStatus struct {
	Name       string    `json:"name"`
	Source     string    `json:"source"`
	Format     string    `json:"format"`
	Categories []string  `json:"categories"`
	Threat     bool      `json:"threat"`
	Entries    int64     `json:"entries"`
	Invalid    int64     `json:"invalid"`
	UpdatedAt  time.Time `json:"updated_at"`
	CheckedAt  time.Time `json:"checked_at"`
	LastError  string    `json:"last_error"`
	Rejected   bool      `json:"rejected"`
	Rejections int       `json:"rejections"`
	AgeSeconds float64   `json:"age_seconds"`
	// Ago is UpdatedAt relative to now, for display.
	Ago string `json:"-"`
}

// State is a one-word health of the feed.
func (f feedStatus) State() string {
	switch {
	case f.Rejected:
		return "rejected"
	case f.LastError != "":
		return "error"
	case f.UpdatedAt.IsZero():
		return "never synced"
	}
	return "ok"
}

// feeds reads the feed status; ok is false where this process serves no
// feed status (an API without a feed syncer).
func (c *Console) feeds(r *http.Request, s *session) ([]feedStatus, bool, error) {
	var fs []feedStatus
	err := c.getJSON(r, s, api+"/feeds", nil, &fs)
	if notFound(err) {
		return nil, false, nil
	}
	now := c.now()
	for i := range fs {
		fs[i].Ago = ago(fs[i].UpdatedAt, now)
	}
	return fs, err == nil, err
}

type feedsData struct {
	Feeds     []feedStatus
	Available bool
	Entries   int64
	Rejected  int
}

func (c *Console) feedsPage(w http.ResponseWriter, r *http.Request, s *session) error {
	fs, ok, err := c.feeds(r, s)
	if err != nil {
		return err
	}
	d := feedsData{Feeds: fs, Available: ok}
	for _, f := range fs {
		d.Entries += f.Entries
		if f.Rejected || f.LastError != "" {
			d.Rejected++
		}
	}
	c.render(w, r, s, http.StatusOK, "feeds.html", "Feeds", "feeds", d)
	return nil
}
