package policies

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cordon-gw/cordon/categorizer"
)

// recentEvent is the part of an AccessEvent a preview needs, copied so the
// adapter keeps ownership of its event.
type recentEvent struct {
	time       time.Time
	proto      Protocol
	user       string
	groups     []string
	location   string
	clientIP   netip.Addr
	host, path string
	categories []string
	threats    []string
	country    categorizer.Country
}

// eventRing keeps the most recent events, overwriting the oldest.
type eventRing struct {
	mu   sync.Mutex
	buf  []recentEvent
	next int
	full bool
}

func newEventRing(n int) *eventRing { return &eventRing{buf: make([]recentEvent, n)} }

// Record counts ev for the observed effect of stages and the edge
// heartbeat (by policy version, under a short lock), and keeps a copy for
// impact previews: when another goroutine holds the preview ring the copy
// is dropped and counted. It never waits on I/O. It satisfies the
// adapters' EventSink.
func (s *Service) Record(ev *AccessEvent) {
	if ev == nil {
		return
	}
	s.obs.record(ev, time.Now())
	if s.recent == nil {
		return
	}
	r := s.recent
	if !r.mu.TryLock() {
		s.mDropped.Inc()
		return
	}
	e := &r.buf[r.next]
	e.time, e.proto, e.user, e.location, e.clientIP = ev.Time, ev.Protocol, ev.User, ev.Location, ev.ClientIP
	e.host, e.path = ev.Host, ev.Path
	if p, ok := ParseProtocol(ev.Proto); ok {
		e.proto = p
	}
	e.groups = append(e.groups[:0], ev.Groups...)
	e.categories = append(e.categories[:0], ev.Categories...)
	e.threats = append(e.threats[:0], ev.Threats...)
	e.country, _ = categorizer.ParseCountry(ev.Country)
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// snapshot copies the recorded events, oldest first.
func (r *eventRing) snapshot() []recentEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recentEvent
	if r.full {
		out = append(out, r.buf[r.next:]...)
	}
	out = append(out, r.buf[:r.next]...)
	for i := range out {
		out[i].groups = slices.Clone(out[i].groups)
		out[i].categories = slices.Clone(out[i].categories)
		out[i].threats = slices.Clone(out[i].threats)
	}
	return out
}

// PreviewResult says what a draft policy would change over the recent
// access events, compared with the policy being served.
type PreviewResult struct {
	// Events is how many recent events were replayed.
	Events int `json:"events"`
	// From and To bound the replayed events' times.
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
	// CurrentVersion is the version compared against.
	CurrentVersion int64         `json:"current_version"`
	NewlyBlocked   PreviewImpact `json:"newly_blocked"`
	NewlyAllowed   PreviewImpact `json:"newly_allowed"`
	NewlyWarned    PreviewImpact `json:"newly_warned"`
	// Rules counts, per rule id of the draft, the replayed requests it
	// would decide.
	Rules map[string]int `json:"rules"`
}

// PreviewImpact is one kind of change: how many requests, which users and
// hosts (at most 100 of each, most affected first).
type PreviewImpact struct {
	Requests int            `json:"requests"`
	Users    []PreviewCount `json:"users"`
	Hosts    []PreviewCount `json:"hosts"`
}

// PreviewCount is a name with a request count.
type PreviewCount struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
}

type impactAcc struct {
	n            int
	users, hosts map[string]int
}

func (a *impactAcc) add(user, host string) {
	if a.users == nil {
		a.users, a.hosts = map[string]int{}, map[string]int{}
	}
	a.n++
	if user == "" {
		user = "(anonymous)"
	}
	a.users[user]++
	a.hosts[host]++
}

func (a *impactAcc) result() PreviewImpact {
	return PreviewImpact{Requests: a.n, Users: topCounts(a.users, 100), Hosts: topCounts(a.hosts, 100)}
}

func topCounts(m map[string]int, n int) []PreviewCount {
	out := make([]PreviewCount, 0, len(m))
	for k, v := range m {
		out = append(out, PreviewCount{Name: k, Count: v})
	}
	slices.SortFunc(out, func(a, b PreviewCount) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		if a.Name < b.Name {
			return -1
		}
		return 1
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// Preview replays the recent access events through the draft and the
// current policy and reports what would change. The draft is validated
// first (strictly, like Put).
func (s *Service) Preview(draft *Policy) (PreviewResult, error) {
	table := s.table()
	if err := Validate(draft, table); err != nil {
		return PreviewResult{}, err
	}
	cur := s.cur.Load()
	next, err := Compile(draft, cur.Number+1, table)
	if err != nil {
		return PreviewResult{}, err
	}
	var now *Compiled
	if s.engine != nil {
		now = s.engine.Current()
	} else if now, err = Compile(cur.Policy, cur.Number, table); err != nil {
		return PreviewResult{}, err
	}
	res := PreviewResult{CurrentVersion: cur.Number, Rules: map[string]int{}}
	if s.recent == nil {
		return res, nil
	}
	var blocked, allowed, warned impactAcc
	for _, ev := range s.recent.snapshot() {
		r := Request{Time: ev.time, ClientIP: ev.clientIP, Protocol: ev.proto, Host: ev.host, Path: ev.path}
		if ev.user != "" || len(ev.groups) > 0 || ev.location != "" {
			r.Principal = &Principal{User: ev.user, Groups: ev.groups, Location: ev.location}
		}
		v := categorizer.Verdict{Country: ev.country}
		if table != nil {
			for _, c := range ev.categories {
				if id, ok := table.CategoryID(c); ok {
					v.Categories = v.Categories.With(id)
				}
			}
			for _, t := range ev.threats {
				if id, ok := table.ThreatID(t); ok {
					v.Threats = v.Threats.With(id)
				}
			}
		}
		before, after := now.Decide(&r, &v), next.Decide(&r, &v)
		res.Events++
		if res.From.IsZero() || ev.time.Before(res.From) {
			res.From = ev.time
		}
		if ev.time.After(res.To) {
			res.To = ev.time
		}
		if after.RuleID != "" {
			res.Rules[after.RuleID]++
		}
		if before.Action == after.Action {
			continue
		}
		switch after.Action {
		case ActionBlock:
			blocked.add(ev.user, ev.host)
		case ActionWarn:
			warned.add(ev.user, ev.host)
		case ActionAllow:
			allowed.add(ev.user, ev.host)
		}
	}
	res.NewlyBlocked, res.NewlyAllowed, res.NewlyWarned = blocked.result(), allowed.result(), warned.result()
	return res, nil
}
