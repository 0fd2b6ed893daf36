package policies

import (
	"net/netip"
	"testing"
	"time"
)

func TestEngineStage(t *testing.T) {
	e, _ := testEngine(t)
	e.setIndex(newTable())
	live := mustParse(t, `
locations:
  - {name: a, cidrs: [10.1.0.0/16]}
  - {name: b, cidrs: [10.2.0.0/16]}
rules:
  - {id: deny, domains: [old.example], action: block}
`)
	if err := e.SetPolicy(live, 1); err != nil {
		t.Fatal(err)
	}
	staged := live.Clone()
	staged.Rules[0].Domains = []string{"new.example"}
	if err := e.SetStage(staged, 1, []string{"a"}, false); err == nil {
		t.Error("a stage not newer than the live version was accepted")
	}
	if err := e.SetStage(staged, 2, []string{"a"}, false); err != nil {
		t.Fatal(err)
	}
	check := func(client, host string) Decision {
		ip := netip.MustParseAddr(client)
		r := Request{ClientIP: ip, Host: host, Time: time.Now()}
		d, _ := e.Check(&r)
		return d
	}
	for _, tc := range []struct {
		client, host string
		block        bool
		version      int64
	}{
		{"10.1.0.5", "new.example", true, 2},
		{"10.1.0.5", "old.example", false, 2},
		{"10.2.0.5", "new.example", false, 1},
		{"10.2.0.5", "old.example", true, 1},
		{"192.0.2.1", "old.example", true, 1}, // no location: live
	} {
		if d := check(tc.client, tc.host); d.Blocked() != tc.block || d.Version != tc.version {
			t.Errorf("Check(%s, %s) = %v by version %d, want blocked=%v by %d", tc.client, tc.host, d.Action, d.Version, tc.block, tc.version)
		}
	}
	// A principal that names its location (a user at an office).
	pr := e.WithLocation(&Principal{User: "x", Location: "a"}, netip.Addr{})
	if d, _ := e.Check(&Request{Principal: pr, Host: "new.example"}); !d.Blocked() || d.Version != 2 {
		t.Errorf("principal at a: %v version %d", d.Action, d.Version)
	}
	r := Request{ClientIP: netip.MustParseAddr("10.1.0.5"), Host: "www.new.example", Time: time.Now()}
	if n := testing.AllocsPerRun(100, func() { e.Check(&r) }); n != 0 {
		t.Errorf("staged Check allocates %v times per call, want 0", n)
	}
	// A new index keeps the stage; the whole edge in the stage.
	e.setIndex(newTable())
	if v, _ := e.StagedVersion(); v != 2 {
		t.Errorf("after an index swap the staged version is %d", v)
	}
	if err := e.SetStage(staged, 2, nil, true); err != nil {
		t.Fatal(err)
	}
	if d := check("10.2.0.5", "new.example"); !d.Blocked() || d.Version != 2 {
		t.Errorf("whole edge staged: %v version %d", d.Action, d.Version)
	}
	// Live catching up (promote) ends the stage.
	if err := e.SetPolicy(staged, 2); err != nil {
		t.Fatal(err)
	}
	if v, _ := e.StagedVersion(); v != 0 {
		t.Errorf("staged version %d after the live version caught up", v)
	}
	e.ClearStage()
	if d := check("10.2.0.5", "new.example"); !d.Blocked() || d.Version != 2 {
		t.Errorf("after promote: %v version %d", d.Action, d.Version)
	}
}

func TestRebaseDraftMerges(t *testing.T) {
	base := mustParse(t, basePolicy)
	mine := base.Clone()
	mine.Rules = append([]Rule{{ID: "news", Categories: []string{"news"}, Action: "warn"}}, mine.Rules...)
	mine.Lists[1].Entries = append(mine.Lists[1].Entries, "cdn.example")
	live := base.Clone()
	live.Rules[1].Monitor = true
	live.Lists[0].Entries = append(live.Lists[0].Entries, "worse.example")
	merged, conflicts, err := rebase3(base, mine, live)
	if err != nil || len(conflicts) != 0 {
		t.Fatalf("rebase3 = %v, %v", conflicts, err)
	}
	if len(merged.Rules) != 3 || merged.Rules[0].ID != "news" || !merged.Rules[2].Monitor {
		t.Errorf("merged rules = %+v", merged.Rules)
	}
	if len(merged.Lists[0].Entries) != 2 || len(merged.Lists[1].Entries) != 2 {
		t.Errorf("merged lists = %+v", merged.Lists)
	}
	// The same list changed on both sides: a conflict naming it.
	live.Lists[1].Entries = append(live.Lists[1].Entries, "other.example")
	if _, conflicts, _ = rebase3(base, mine, live); len(conflicts) != 1 || conflicts[0].Section != SectionBypass || conflicts[0].Name != "bypass" {
		t.Errorf("conflicts = %+v", conflicts)
	}
}
