package console

import (
	"net/http"
	"net/url"

	"github.com/cordon-gw/cordon/policies"
)

type overviewData struct {
	Live        policies.VersionInfo
	Report      reportCounts
	HasReport   bool
	Chart       *columnChart
	BlockRules  *bars
	Feeds       []feedStatus // all of them
	FeedsShown  []feedStatus // those needing attention, then the largest threat feeds
	HasFeeds    bool
	OldestFeed  *feedStatus
	LastReject  *feedStatus
	FeedEntries int64
	FeedsBad    int
	Reviews     []policies.Review
	OpenReviews int
	overviewChanges
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, s *session) error {
	var d overviewData
	var vs struct {
		Versions []policies.VersionInfo `json:"versions"`
	}
	if err := c.getJSON(r, s, api+"/policy/versions", nil, &vs); err != nil {
		return err
	}
	if len(vs.Versions) > 0 {
		d.Live = vs.Versions[0]
	}
	var err error
	if d.Report, d.HasReport, err = c.report24h(r, s); err != nil {
		return err
	}
	if d.HasReport {
		d.Chart = newColumnChart(d.Report.Timeline, "Requests per hour, last 24 hours")
		var blocking []nameCount
		for _, b := range d.Report.Blocks {
			rule := b.Rule
			if rule == "" {
				rule = "(default action)"
			}
			found := false
			for i := range blocking {
				if blocking[i].Name == rule {
					blocking[i].Count += b.Count
					found = true
				}
			}
			if !found {
				blocking = append(blocking, nameCount{Name: rule, Count: b.Count})
			}
		}
		sortCounts(blocking)
		d.BlockRules = newBars(blocking, "#d64545", func(string) string { return "" }, 8)
	}
	if d.Feeds, d.HasFeeds, err = c.feeds(r, s); err != nil {
		return err
	}
	d.FeedsShown = feedHighlights(d.Feeds, 6)
	for i, f := range d.Feeds {
		d.FeedEntries += f.Entries
		if f.Rejected || f.LastError != "" {
			d.FeedsBad++
		}
		if !f.UpdatedAt.IsZero() && (d.OldestFeed == nil || f.UpdatedAt.Before(d.OldestFeed.UpdatedAt)) {
			d.OldestFeed = &d.Feeds[i]
		}
		if f.Rejections > 0 && (d.LastReject == nil || f.CheckedAt.After(d.LastReject.CheckedAt)) {
			d.LastReject = &d.Feeds[i]
		}
	}
	var rv struct {
		Reviews []policies.Review `json:"reviews"`
	}
	if err := c.getJSON(r, s, api+"/reviews", url.Values{"status": {policies.ReviewOpen}}, &rv); err != nil {
		return err
	}
	d.OpenReviews = len(rv.Reviews)
	d.Reviews = rv.Reviews[:min(5, len(rv.Reviews))]
	if err := c.overviewChangesFor(r, s, &d.overviewChanges); err != nil {
		return err
	}
	c.render(w, r, s, http.StatusOK, "overview.html", "Overview", "overview", d)
	return nil
}

// sortCounts orders by count, largest first, then by name.
func sortCounts(cs []nameCount) {
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && (cs[j].Count > cs[j-1].Count || cs[j].Count == cs[j-1].Count && cs[j].Name < cs[j-1].Name); j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
}

// feedHighlights picks what the overview shows of the feeds: every feed
// that needs attention, then threat feeds and the rest by size, n at most.
func feedHighlights(fs []feedStatus, n int) []feedStatus {
	var bad, threat, other []feedStatus
	for _, f := range fs {
		switch {
		case f.State() != "ok":
			bad = append(bad, f)
		case f.Threat:
			threat = append(threat, f)
		default:
			other = append(other, f)
		}
	}
	bySize := func(s []feedStatus) {
		for i := 1; i < len(s); i++ {
			for j := i; j > 0 && s[j].Entries > s[j-1].Entries; j-- {
				s[j], s[j-1] = s[j-1], s[j]
			}
		}
	}
	bySize(threat)
	bySize(other)
	out := append(append(bad, threat...), other...)
	return out[:min(n, len(out))]
}
