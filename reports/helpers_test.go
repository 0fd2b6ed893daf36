package reports

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// genEvents makes n deterministic events spread over the hours before
// base: users alice, bob, carol (and some without user), groups,
// locations, categories, threats, blocks, monitor rules.
func genEvents(n int, base time.Time, seed uint64) []*policies.AccessEvent {
	r := rand.New(rand.NewPCG(seed, 7))
	users := []string{"alice", "bob", "carol", ""}
	groups := [][]string{{"staff"}, {"staff", "eng"}, {"eng"}, nil}
	locs := []string{"hq", "branch-1", ""}
	hosts := []string{"news.example.com", "Video.Example.net.", "casino.example.org", "malware.example.biz", "docs.example.com", "social.example.io"}
	cats := [][]string{{"news"}, {"streaming", "entertainment"}, {"gambling"}, nil, {"business"}, {"social"}}
	threats := [][]string{nil, nil, nil, {"urlhaus"}, nil, nil}
	out := make([]*policies.AccessEvent, n)
	for i := range out {
		u := r.IntN(len(users))
		h := r.IntN(len(hosts))
		ev := &policies.AccessEvent{
			Time:     base.Add(-time.Duration(r.IntN(20*3600)) * time.Second),
			ID:       fmt.Sprintf("req-%d", i),
			Protocol: policies.Protocol(r.IntN(3)),
			User:     users[u], Groups: groups[u],
			Location: locs[r.IntN(len(locs))],
			ClientIP: netip.AddrFrom4([4]byte{10, 0, 0, byte(u + 1)}),
			Method:   "GET", Host: hosts[h], Path: "/p/" + fmt.Sprint(r.IntN(5)),
			Categories: cats[h], Threats: threats[h],
			Action: "allow", RuleAction: "allow", PolicyVersion: 3, Reason: "default",
			Status: 200, BytesUp: int64(r.IntN(2000)), BytesDown: int64(r.IntN(100000)),
		}
		ev.Proto = ev.Protocol.String()
		switch {
		case h == 2: // gambling blocked by rule
			ev.Action, ev.RuleAction, ev.RuleID, ev.Reason, ev.Status = "block", "block", "no-gambling", "category", 403
		case h == 3: // threat blocked
			ev.Action, ev.RuleAction, ev.RuleID, ev.Reason, ev.Status = "block", "block", "threats", "threat", 403
		case h == 5 && r.IntN(2) == 0: // monitor rule on social
			ev.Action, ev.RuleAction, ev.RuleID, ev.Monitor, ev.Reason = "allow", "block", "social-trial", true, "category"
		case h == 1 && r.IntN(3) == 0:
			ev.Action, ev.RuleAction, ev.RuleID, ev.Reason = "warn", "warn", "streaming-warn", "category"
		}
		out[i] = ev
	}
	return out
}

// expect computes a report the slow, obvious way from the events.
type expected struct {
	Requests, Blocked, Up, Down int64
	Domains, Categories, Blocks map[string]int64
	Users, UserBlocks, Would    map[string]int64
	Threats, Actions, Rules     map[string]int64
	Groups, Locations           map[string]int64
	Attempts                    map[[3]string]int64
	Hours                       map[int64][2]int64
}

func expect(evs []*policies.AccessEvent, match func(*policies.AccessEvent) bool) *expected {
	e := &expected{
		Domains: map[string]int64{}, Categories: map[string]int64{}, Blocks: map[string]int64{},
		Users: map[string]int64{}, UserBlocks: map[string]int64{}, Would: map[string]int64{},
		Threats: map[string]int64{}, Actions: map[string]int64{}, Rules: map[string]int64{},
		Attempts: map[[3]string]int64{}, Hours: map[int64][2]int64{},
		Groups: map[string]int64{}, Locations: map[string]int64{},
	}
	for _, ev := range evs {
		if !match(ev) {
			continue
		}
		host := normalizeHost(ev.Host)
		blocked := ev.Action == "block"
		e.Requests++
		e.Up += ev.BytesUp
		e.Down += ev.BytesDown
		e.Domains[host]++
		e.Actions[ev.Action]++
		e.Rules[ev.RuleID]++
		h := e.Hours[HourOf(ev.Time)]
		h[0]++
		if blocked {
			e.Blocked++
			h[1]++
			cat := ""
			if len(ev.Categories) > 0 {
				cat = ev.Categories[0]
			} else if len(ev.Threats) > 0 {
				cat = ev.Threats[0]
			}
			e.Attempts[[3]string{host, cat, ev.RuleID}]++
		}
		e.Hours[HourOf(ev.Time)] = h
		for _, c := range ev.Categories {
			e.Categories[c]++
			if blocked {
				e.Blocks[c]++
			}
		}
		for _, th := range ev.Threats {
			e.Threats[th]++
		}
		if ev.Monitor && ev.RuleAction != "allow" {
			e.Would[ev.RuleID]++
		}
		if ev.Location != "" {
			e.Locations[ev.Location]++
		}
		for i, g := range ev.Groups {
			if g != "" && !dupBefore(ev.Groups, i) {
				e.Groups[g]++
			}
		}
		if ev.User != "" {
			e.Users[ev.User]++
			if blocked {
				e.UserBlocks[ev.User]++
			}
		}
	}
	return e
}

func countsMap(l []Count) map[string]int64 {
	m := make(map[string]int64, len(l))
	for _, c := range l {
		m[c.Name] = c.Count
	}
	return m
}

func sameMap(t *testing.T, what string, got []Count, want map[string]int64) {
	t.Helper()
	g := countsMap(got)
	if len(g) != len(want) {
		t.Errorf("%s: got %d entries %v, want %d %v", what, len(g), g, len(want), want)
		return
	}
	for k, v := range want {
		if g[k] != v {
			t.Errorf("%s[%q] = %d, want %d", what, k, g[k], v)
		}
	}
}

// checkReport compares a report (queried with a large top) with the
// expectation, exactly.
func checkReport(t *testing.T, rep *Report, e *expected, withUsers bool) {
	t.Helper()
	if rep.Requests != e.Requests || rep.Blocked != e.Blocked || rep.BytesUp != e.Up || rep.BytesDown != e.Down {
		t.Errorf("totals = %d req %d blocked %d up %d down, want %d %d %d %d",
			rep.Requests, rep.Blocked, rep.BytesUp, rep.BytesDown, e.Requests, e.Blocked, e.Up, e.Down)
	}
	sameMap(t, "top_domains", rep.TopDomains, e.Domains)
	sameMap(t, "top_categories", rep.TopCategories, e.Categories)
	sameMap(t, "top_blocked_categories", rep.BlockedCategories, e.Blocks)
	sameMap(t, "threats", rep.Threats, e.Threats)
	sameMap(t, "actions", rep.Actions, e.Actions)
	sameMap(t, "rules_hit", rep.Rules, e.Rules)
	sameMap(t, "monitor_would_block", rep.WouldBlock, e.Would)
	if withUsers {
		sameMap(t, "top_users", rep.TopUsers, e.Users)
		sameMap(t, "top_users_by_blocks", rep.TopUsersByBlocks, e.UserBlocks)
	}
	if rep.Scope == "all" {
		sameMap(t, "top_groups", rep.TopGroups, e.Groups)
		sameMap(t, "top_locations", rep.TopLocations, e.Locations)
	} else if len(rep.TopGroups)+len(rep.TopLocations) > 0 {
		t.Errorf("%s report has top groups/locations", rep.Scope)
	}
	if len(rep.BlockedAttempts) != len(e.Attempts) {
		t.Errorf("blocked_attempts: %d entries, want %d", len(rep.BlockedAttempts), len(e.Attempts))
	}
	for _, a := range rep.BlockedAttempts {
		if w := e.Attempts[[3]string{a.Domain, a.Category, a.Rule}]; a.Count != w {
			t.Errorf("blocked_attempts[%s %s %s] = %d, want %d", a.Domain, a.Category, a.Rule, a.Count, w)
		}
	}
	var tlReq, tlBlk int64
	for _, p := range rep.Timeline {
		w := e.Hours[HourOf(p.Hour)]
		if p.Requests != w[0] || p.Blocked != w[1] {
			t.Errorf("timeline %s = %d/%d, want %d/%d", p.Hour, p.Requests, p.Blocked, w[0], w[1])
		}
		tlReq += p.Requests
		tlBlk += p.Blocked
	}
	if tlReq != e.Requests || tlBlk != e.Blocked {
		t.Errorf("timeline sums %d/%d, want %d/%d", tlReq, tlBlk, e.Requests, e.Blocked)
	}
}
