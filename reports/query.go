package reports

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MaxRange is the longest time range one query may span.
const MaxRange = 366 * 24 * time.Hour

// MaxTop is the largest ?top= a query may ask for.
const MaxTop = 1000

// Query is a parsed report request: the time range (hour granularity:
// From is rounded down and To up to whole hours when rows are read) and
// how many entries each top list holds.
type Query struct {
	From, To time.Time
	Top      int
}

// Format is the response format of a report.
type Format uint8

// Formats.
const (
	FormatJSON Format = iota
	FormatCSV
	FormatHTML
)

var formatNames = [...]string{"json", "csv", "html"}

func (f Format) String() string {
	if int(f) < len(formatNames) {
		return formatNames[f]
	}
	return "unknown"
}

// ParseFormat maps "", "json", "csv" or "html" to a Format ("" is def).
func ParseFormat(s string, def Format) (Format, error) {
	if s == "" {
		return def, nil
	}
	for i, n := range formatNames {
		if strings.EqualFold(s, n) {
			return Format(i), nil
		}
	}
	return 0, fmt.Errorf("%w: format %q: want json, csv or html", ErrBadQuery, s)
}

// ParseTime parses an absolute time (RFC 3339, or a date 2006-01-02 in
// UTC), "now", or a duration back from now: a Go duration ("90m", "24h")
// or a whole number of days or weeks ("7d", "2w").
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("%w: empty time", ErrBadQuery)
	}
	if s == "now" {
		return now, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	d, err := ParseSince(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: time %q: want RFC 3339, a date, now, or a duration like 24h or 7d", ErrBadQuery, s)
	}
	return now.Add(-d), nil
}

// ParseSince parses a non-negative look-back duration: a Go duration or a
// whole number of days ("d") or weeks ("w"), at most MaxRange.
func ParseSince(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	if n := len(s); n > 1 && (s[n-1] == 'd' || s[n-1] == 'w') {
		v, err := strconv.ParseUint(s[:n-1], 10, 16)
		if err != nil {
			return 0, fmt.Errorf("%w: duration %q", ErrBadQuery, s)
		}
		unit := 24 * time.Hour
		if s[n-1] == 'w' {
			unit *= 7
		}
		if v > uint64(MaxRange/unit) {
			return 0, fmt.Errorf("%w: duration %q is longer than %v", ErrBadQuery, s, MaxRange)
		}
		d = time.Duration(v) * unit
	} else {
		var err error
		d, err = time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%w: duration %q", ErrBadQuery, s)
		}
	}
	if d < 0 || d > MaxRange {
		return 0, fmt.Errorf("%w: duration %q must be between 0 and %v", ErrBadQuery, s, MaxRange)
	}
	return d, nil
}

// ParseQuery reads from, to (or since, an alias of a relative from) and
// top from URL query values. Defaults: to = now, from = to − 24h, top =
// defTop. from must not be after to, and the range is at most MaxRange.
func ParseQuery(v url.Values, now time.Time, defTop int) (Query, error) {
	q := Query{To: now, Top: defTop}
	if s := v.Get("to"); s != "" {
		t, err := ParseTime(s, now)
		if err != nil {
			return q, err
		}
		q.To = t
	}
	from := v.Get("from")
	if from == "" {
		from = v.Get("since")
	}
	if from != "" {
		t, err := ParseTime(from, now)
		if err != nil {
			return q, err
		}
		q.From = t
	} else {
		q.From = q.To.Add(-24 * time.Hour)
	}
	if q.From.After(q.To) {
		return q, fmt.Errorf("%w: from %s is after to %s", ErrBadQuery, q.From.Format(time.RFC3339), q.To.Format(time.RFC3339))
	}
	if q.To.Sub(q.From) > MaxRange {
		return q, fmt.Errorf("%w: range longer than %v", ErrBadQuery, MaxRange)
	}
	if y := q.From.Year(); y < 1970 || q.To.Year() > 9999 {
		return q, fmt.Errorf("%w: times must be between 1970 and 9999", ErrBadQuery)
	}
	if s := v.Get("top"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxTop {
			return q, fmt.Errorf("%w: top %q: want 1..%d", ErrBadQuery, s, MaxTop)
		}
		q.Top = n
	}
	if q.Top <= 0 {
		q.Top = DefaultTopN
	}
	return q, nil
}

// Count is one entry of a top list.
type Count struct {
	Name  string `json:"name"`
	Count int64  `json:"count"`
}

// BlockedAttempt is one (domain, category, rule) that was blocked.
type BlockedAttempt struct {
	Domain   string    `json:"domain"`
	Category string    `json:"category,omitempty"`
	Rule     string    `json:"rule,omitempty"`
	Count    int64     `json:"count"`
	Last     time.Time `json:"last"`
}

// HourPoint is one hour of a report's timeline.
type HourPoint struct {
	Hour      time.Time `json:"hour"`
	Requests  int64     `json:"requests"`
	Blocked   int64     `json:"blocked"`
	BytesUp   int64     `json:"bytes_up"`
	BytesDown int64     `json:"bytes_down"`
}

// Report answers a user, group, location or overview query. Top lists are
// sorted by count (then name) and cut to Query.Top entries; the totals
// and the timeline are complete.
type Report struct {
	Scope   string    `json:"scope"`
	Subject string    `json:"subject,omitempty"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`

	Requests  int64 `json:"requests"`
	Blocked   int64 `json:"blocked"`
	BytesUp   int64 `json:"bytes_up"`
	BytesDown int64 `json:"bytes_down"`

	TopDomains        []Count          `json:"top_domains"`
	TopCategories     []Count          `json:"top_categories"`
	BlockedCategories []Count          `json:"top_blocked_categories"`
	BlockedAttempts   []BlockedAttempt `json:"blocked_attempts"`
	Actions           []Count          `json:"actions"`
	Rules             []Count          `json:"rules_hit"`
	WouldBlock        []Count          `json:"monitor_would_block"`
	Threats           []Count          `json:"threats"`
	// TopUsers and TopUsersByBlocks are filled for overview, group and
	// location reports.
	TopUsers         []Count `json:"top_users,omitempty"`
	TopUsersByBlocks []Count `json:"top_users_by_blocks,omitempty"`
	// TopGroups and TopLocations (requests) are filled for the overview.
	TopGroups    []Count     `json:"top_groups,omitempty"`
	TopLocations []Count     `json:"top_locations,omitempty"`
	Timeline     []HourPoint `json:"timeline"`
}

// Reader answers report queries from a Store. Safe for concurrent use.
type Reader struct {
	store Store
	priv  *privacy
	topN  int
	now   func() time.Time
}

// NewReader builds a Reader over store with cfg's privacy settings (so a
// query by real user name finds pseudonymized rows) and top-N default.
func NewReader(store Store, cfg Config) (*Reader, error) {
	cfg.fill()
	priv, err := newPrivacy(cfg, store)
	if err != nil {
		return nil, err
	}
	return &Reader{store: store, priv: priv, topN: cfg.TopN, now: time.Now}, nil
}

// Reader returns a Reader over the pipeline's store and settings.
func (p *Pipeline) Reader() *Reader {
	return &Reader{store: p.store, priv: p.priv, topN: p.cfg.TopN, now: p.now}
}

// Now is the Reader's clock (for parsing relative times).
func (r *Reader) Now() time.Time { return r.now() }

// DefaultTop is the configured top-N.
func (r *Reader) DefaultTop() int { return r.topN }

// Subject maps a user name as typed by an operator to the stored subject
// (its pseudonym when pseudonymization is on); other scopes unchanged.
func (r *Reader) Subject(scope Scope, name string) string {
	if scope == ScopeUser {
		return r.priv.User(name)
	}
	return name
}

// Report builds the report of one subject (ignored for ScopeAll, the
// overview) over q.
func (r *Reader) Report(ctx context.Context, scope Scope, subject string, q Query) (*Report, error) {
	if scope == ScopeAll {
		subject = ""
	} else {
		subject = r.Subject(scope, subject)
	}
	if q.Top <= 0 {
		q.Top = r.topN
	}
	fromH, toH := HourOf(q.From), HourOf(q.To)
	if q.To.Equal(HourTime(toH)) && toH > fromH {
		toH-- // an exclusive end on an hour boundary
	}
	rows, err := r.store.Rows(ctx, scope, subject, fromH, toH)
	if err != nil {
		return nil, fmt.Errorf("reports: query %s %q: %w", scope, subject, err)
	}
	return buildReport(scope, subject, q, fromH, toH, rows), nil
}

func buildReport(scope Scope, subject string, q Query, fromH, toH int64, rows []Row) *Report {
	rep := &Report{Scope: scope.String(), Subject: subject, From: q.From.UTC(), To: q.To.UTC()}
	total := &Counters{}
	byHour := make(map[int64]*Counters, len(rows))
	for _, row := range rows {
		if row.Hour < fromH || row.Hour > toH || row.Counters == nil {
			continue
		}
		total.Merge(row.Counters)
		if c := byHour[row.Hour]; c != nil {
			c.Merge(row.Counters)
		} else {
			byHour[row.Hour] = row.Counters
		}
	}
	rep.Requests, rep.Blocked = total.Requests, total.Blocked
	rep.BytesUp, rep.BytesDown = total.BytesUp, total.BytesDown
	rep.TopDomains = top(total.Domains, q.Top)
	rep.TopCategories = top(total.Categories, q.Top)
	rep.BlockedCategories = top(total.BlockedCategories, q.Top)
	rep.Actions = top(total.Actions, len(total.Actions))
	rep.Rules = top(total.Rules, q.Top)
	rep.WouldBlock = top(total.WouldBlock, q.Top)
	rep.Threats = top(total.Threats, q.Top)
	if scope != ScopeUser {
		rep.TopUsers = top(total.Users, q.Top)
		rep.TopUsersByBlocks = top(total.UserBlocks, q.Top)
	}
	if scope == ScopeAll {
		rep.TopGroups = top(total.Groups, q.Top)
		rep.TopLocations = top(total.Locations, q.Top)
	}
	rep.BlockedAttempts = attempts(total.Attempts, q.Top)
	rep.Timeline = make([]HourPoint, 0, toH-fromH+1)
	for h := fromH; h <= toH; h++ {
		pt := HourPoint{Hour: HourTime(h)}
		if c := byHour[h]; c != nil {
			pt.Requests, pt.Blocked, pt.BytesUp, pt.BytesDown = c.Requests, c.Blocked, c.BytesUp, c.BytesDown
		}
		rep.Timeline = append(rep.Timeline, pt)
	}
	return rep
}

func top(m map[string]int64, n int) []Count {
	out := make([]Count, 0, len(m))
	for k, v := range m {
		out = append(out, Count{Name: k, Count: v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Name < out[j].Name
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

func attempts(m map[string]Attempt, n int) []BlockedAttempt {
	out := make([]BlockedAttempt, 0, len(m))
	for k, a := range m {
		d, c, r := SplitAttemptKey(k)
		out = append(out, BlockedAttempt{Domain: d, Category: c, Rule: r, Count: a.Count, Last: time.UnixMilli(a.Last).UTC()})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if !a.Last.Equal(b.Last) {
			return a.Last.After(b.Last)
		}
		return AttemptKey(a.Domain, a.Category, a.Rule) < AttemptKey(b.Domain, b.Category, b.Rule)
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}
