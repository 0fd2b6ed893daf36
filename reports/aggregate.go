package reports

import (
	"strings"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

// Scope says whose row a Counters value is: everyone's, one user's, one
// group's or one location's.
type Scope uint8

// Scopes. The zero value is ScopeAll (the overview row).
const (
	ScopeAll Scope = iota
	ScopeUser
	ScopeGroup
	ScopeLocation
)

var scopeNames = [...]string{"all", "user", "group", "location"}

func (s Scope) String() string {
	if int(s) < len(scopeNames) {
		return scopeNames[s]
	}
	return "unknown"
}

// Code is the one-letter form used in storage keys: a, u, g, l.
func (s Scope) Code() string {
	if int(s) < len(scopeNames) {
		return scopeNames[s][:1]
	}
	return "?"
}

// ParseScope maps "all", "user", "group", "location" (or their one-letter
// codes) to a Scope.
func ParseScope(s string) (Scope, bool) {
	for i, n := range scopeNames {
		if s == n || s == n[:1] {
			return Scope(i), true
		}
	}
	return 0, false
}

// RowKey names one aggregate row: a scope, a subject (user, group or
// location name; "" for ScopeAll) and an hour (Unix time / 3600, UTC).
type RowKey struct {
	Scope   Scope
	Subject string
	Hour    int64
}

// HourOf returns the Unix hour t falls in.
func HourOf(t time.Time) int64 {
	s := t.Unix()
	if s < 0 {
		return (s - 3599) / 3600
	}
	return s / 3600
}

// HourTime is the start of Unix hour h, in UTC.
func HourTime(h int64) time.Time { return time.Unix(h*3600, 0).UTC() }

// Attempt is one blocked-attempt cell: how many times and when last
// (Unix milliseconds).
type Attempt struct {
	Count int64 `json:"c"`
	Last  int64 `json:"t"`
}

// attemptSep separates domain, category and rule in an attempt key; it
// cannot occur in a host name and is not printable.
const attemptSep = "\x1f"

// AttemptKey joins domain, category and rule into a Counters.Attempts key.
func AttemptKey(domain, category, rule string) string {
	return domain + attemptSep + category + attemptSep + rule
}

// SplitAttemptKey is the inverse of AttemptKey.
func SplitAttemptKey(k string) (domain, category, rule string) {
	domain, rest, _ := strings.Cut(k, attemptSep)
	category, rule, _ = strings.Cut(rest, attemptSep)
	return domain, category, rule
}

// Counters is one aggregate row. Every field is a sum except Attempt.Last,
// which is a maximum, so rows from several edges and flushes merge
// exactly. Nil maps mean "none".
type Counters struct {
	Requests  int64 `json:"req,omitempty"`
	BytesUp   int64 `json:"up,omitempty"`
	BytesDown int64 `json:"down,omitempty"`
	// Blocked counts requests whose enforced action was block.
	Blocked int64 `json:"blk,omitempty"`
	// Domains counts requests per host.
	Domains map[string]int64 `json:"d,omitempty"`
	// Categories counts requests per category (a request in two
	// categories counts in both).
	Categories map[string]int64 `json:"c,omitempty"`
	// BlockedCategories counts blocked requests per category.
	BlockedCategories map[string]int64 `json:"bc,omitempty"`
	// Actions counts requests per enforced action (allow, block, warn).
	Actions map[string]int64 `json:"a,omitempty"`
	// Rules counts requests per matching rule id ("" is the default).
	Rules map[string]int64 `json:"r,omitempty"`
	// WouldBlock counts monitor-mode matches per rule whose own action
	// was block or warn: what the rule would have stopped.
	WouldBlock map[string]int64 `json:"m,omitempty"`
	// Threats counts requests per threat feed that matched.
	Threats map[string]int64 `json:"t,omitempty"`
	// Users counts requests per user (in all, group and location rows).
	Users map[string]int64 `json:"u,omitempty"`
	// UserBlocks counts blocked requests per user (same rows as Users).
	UserBlocks map[string]int64 `json:"ub,omitempty"`
	// Attempts are blocked attempts keyed by AttemptKey(domain,
	// category, rule).
	Attempts map[string]Attempt `json:"b,omitempty"`
	// Groups and Locations count requests per group and per location
	// (overview rows only).
	Groups    map[string]int64 `json:"g,omitempty"`
	Locations map[string]int64 `json:"l,omitempty"`
}

func incr(m *map[string]int64, k string, n int64) {
	if *m == nil {
		*m = make(map[string]int64)
	}
	(*m)[k] += n
}

// Merge adds o into c.
func (c *Counters) Merge(o *Counters) {
	c.mergeRest(o)
	for k, n := range o.Domains {
		incr(&c.Domains, k, n)
	}
	for k, a := range o.Attempts {
		c.AddAttempt(k, a)
	}
}

// mergeRest adds everything but Domains and Attempts.
func (c *Counters) mergeRest(o *Counters) {
	c.Requests += o.Requests
	c.BytesUp += o.BytesUp
	c.BytesDown += o.BytesDown
	c.Blocked += o.Blocked
	for _, p := range [...]struct{ dst, src *map[string]int64 }{
		{&c.Categories, &o.Categories},
		{&c.BlockedCategories, &o.BlockedCategories}, {&c.Actions, &o.Actions},
		{&c.Rules, &o.Rules}, {&c.WouldBlock, &o.WouldBlock}, {&c.Threats, &o.Threats},
		{&c.Users, &o.Users}, {&c.UserBlocks, &o.UserBlocks},
		{&c.Groups, &o.Groups}, {&c.Locations, &o.Locations},
	} {
		for k, n := range *p.src {
			incr(p.dst, k, n)
		}
	}
}

// OtherName is the entry that collects the requests of domains (and
// blocked attempts) beyond the per-row cap.
const OtherName = "(other)"

// OtherAttemptKey is the attempt key of OtherName.
var OtherAttemptKey = AttemptKey(OtherName, "", "")

// MergeCapped adds o into c like Merge, but keeps at most maxDomains
// distinct domains and maxDomains distinct blocked attempts in c: counts
// of new names beyond the cap go to OtherName (OtherAttemptKey). Totals
// stay exact. maxDomains <= 0 means no cap.
func (c *Counters) MergeCapped(o *Counters, maxDomains int) {
	if maxDomains <= 0 {
		c.Merge(o)
		return
	}
	c.mergeRest(o)
	// The "other" entry does not count against the cap.
	names := len(c.Domains)
	if _, ok := c.Domains[OtherName]; ok {
		names--
	}
	for k, n := range o.Domains {
		if _, ok := c.Domains[k]; !ok {
			if names >= maxDomains {
				k = OtherName
			} else if k != OtherName {
				names++
			}
		}
		incr(&c.Domains, k, n)
	}
	names = len(c.Attempts)
	if _, ok := c.Attempts[OtherAttemptKey]; ok {
		names--
	}
	for k, a := range o.Attempts {
		if _, ok := c.Attempts[k]; !ok {
			if names >= maxDomains {
				k = OtherAttemptKey
			} else if k != OtherAttemptKey {
				names++
			}
		}
		c.AddAttempt(k, a)
	}
}

// AddAttempt merges one attempt cell: counts add, Last keeps the maximum.
func (c *Counters) AddAttempt(k string, a Attempt) {
	if c.Attempts == nil {
		c.Attempts = make(map[string]Attempt)
	}
	cur := c.Attempts[k]
	cur.Count += a.Count
	if a.Last > cur.Last {
		cur.Last = a.Last
	}
	c.Attempts[k] = cur
}

// Fields is the number of stored cells in c: the four totals plus every
// map entry. It is what the store buffer is sized in.
func (c *Counters) Fields() int {
	return 4 + len(c.Domains) + len(c.Categories) + len(c.BlockedCategories) +
		len(c.Actions) + len(c.Rules) + len(c.WouldBlock) + len(c.Threats) +
		len(c.Users) + len(c.UserBlocks) + len(c.Attempts) + len(c.Groups) + len(c.Locations)
}

// Clone returns a deep copy of c.
func (c *Counters) Clone() *Counters {
	n := &Counters{}
	n.Merge(c)
	return n
}

// add counts one event in c. user is the (possibly pseudonymized) user
// name, recorded in the per-user maps when track is set.
func (c *Counters) add(ev *policies.AccessEvent, host, user string, track bool) {
	c.Requests++
	c.BytesUp += ev.BytesUp
	c.BytesDown += ev.BytesDown
	blocked := ev.Action == policies.ActionBlock.String()
	if blocked {
		c.Blocked++
	}
	if host != "" {
		incr(&c.Domains, host, 1)
	}
	for _, cat := range ev.Categories {
		incr(&c.Categories, cat, 1)
		if blocked {
			incr(&c.BlockedCategories, cat, 1)
		}
	}
	action := ev.Action
	if action == "" {
		action = policies.ActionAllow.String()
	}
	incr(&c.Actions, action, 1)
	incr(&c.Rules, ev.RuleID, 1)
	if ev.Monitor && (ev.RuleAction == policies.ActionBlock.String() || ev.RuleAction == policies.ActionWarn.String()) {
		incr(&c.WouldBlock, ev.RuleID, 1)
	}
	for _, th := range ev.Threats {
		incr(&c.Threats, th, 1)
	}
	if track && user != "" {
		incr(&c.Users, user, 1)
		if blocked {
			incr(&c.UserBlocks, user, 1)
		}
	}
	if blocked {
		c.AddAttempt(AttemptKey(host, attemptCategory(ev), ev.RuleID), Attempt{Count: 1, Last: ev.Time.UnixMilli()})
	}
}

// attemptCategory is what a blocked attempt is filed under: the first
// category, else the first threat feed, else "".
func attemptCategory(ev *policies.AccessEvent) string {
	if len(ev.Categories) > 0 {
		return ev.Categories[0]
	}
	if len(ev.Threats) > 0 {
		return ev.Threats[0]
	}
	return ""
}

// Delta is a set of rows aggregated since the last flush, plus the number
// of events it holds.
type Delta struct {
	Rows   map[RowKey]*Counters
	Events int64
}

// NewDelta returns an empty Delta.
func NewDelta() *Delta { return &Delta{Rows: make(map[RowKey]*Counters)} }

func (d *Delta) row(k RowKey) *Counters {
	c := d.Rows[k]
	if c == nil {
		c = &Counters{}
		d.Rows[k] = c
	}
	return c
}

// Add counts ev (already privacy-filtered) in the all, user, group and
// location rows of its hour.
func (d *Delta) Add(ev *policies.AccessEvent) {
	d.Events++
	h := HourOf(ev.Time)
	host := normalizeHost(ev.Host)
	all := d.row(RowKey{ScopeAll, "", h})
	all.add(ev, host, ev.User, true)
	if ev.Location != "" {
		incr(&all.Locations, ev.Location, 1)
	}
	if ev.User != "" {
		d.row(RowKey{ScopeUser, ev.User, h}).add(ev, host, ev.User, false)
	}
	for i, g := range ev.Groups {
		if g == "" || dupBefore(ev.Groups, i) {
			continue
		}
		d.row(RowKey{ScopeGroup, g, h}).add(ev, host, ev.User, true)
		incr(&all.Groups, g, 1)
	}
	if ev.Location != "" {
		d.row(RowKey{ScopeLocation, ev.Location, h}).add(ev, host, ev.User, true)
	}
}

func dupBefore(s []string, i int) bool {
	for _, x := range s[:i] {
		if x == s[i] {
			return true
		}
	}
	return false
}

// Merge adds o into d, keeping at most maxDomains domains and attempts
// per row (see Counters.MergeCapped; <= 0: no cap).
func (d *Delta) Merge(o *Delta, maxDomains int) {
	d.Events += o.Events
	for k, c := range o.Rows {
		d.row(k).MergeCapped(c, maxDomains)
	}
}

// Fields is the sum of Counters.Fields over all rows.
func (d *Delta) Fields() int {
	n := 0
	for _, c := range d.Rows {
		n += c.Fields()
	}
	return n
}

// Empty reports whether d holds no rows.
func (d *Delta) Empty() bool { return len(d.Rows) == 0 }

func normalizeHost(h string) string {
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}
