package policies

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

const stageBase = `
locations:
  - {name: a, cidrs: [10.1.0.0/16]}
  - {name: b, cidrs: [10.2.0.0/16]}
lists:
  - {name: deny, kind: deny, entries: [bad.example]}
rules:
  - {id: deny-list, lists: [deny], action: block}
`

// TestStageAutoAbort stages a change that blocks too much in location a:
// the guard aborts it by itself from the observed effect, and the old
// version decides again.
func TestStageAutoAbort(t *testing.T) {
	s, e, _ := newFileService(t)
	s.edgeName = "edge-1"
	ctx := t.Context()
	if _, err := s.Put(ctx, admin, mustParse(t, stageBase), "base"); err != nil {
		t.Fatal(err)
	}
	sam := Actor{Name: "sam", Role: RoleSecOps, Source: SourceAPI}
	sue := Actor{Name: "sue", Role: RoleSecOps, Source: SourceAPI}
	c, err := s.OpenChange(ctx, sam, ChangeInput{Title: "deny much more",
		Patch: &Patch{Lists: &ListsPatch{AddEntries: map[string][]string{"deny": {"popular.example"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApproveChange(ctx, sue, c.ID, ""); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []*StageRequest{{}, {Locations: []string{"nowhere"}}, {Locations: []string{"a"}, MaxBlockRate: 2}} {
		if _, err := s.ApplyChange(ctx, sam, c.ID, ApplyOptions{Stage: bad}); err == nil {
			t.Errorf("stage %+v accepted", bad)
		}
	}
	if _, err := s.ApplyChange(ctx, sam, c.ID, ApplyOptions{Stage: &StageRequest{Locations: []string{"a"}, MaxBlockRate: 0.5, MinRequests: 10}}); err != nil {
		t.Fatal(err)
	}
	// Traffic: every request from location a hits the new entry.
	for i := 0; i < 20; i++ {
		for _, client := range []string{"10.1.0.1", "10.2.0.1"} {
			ip := netip.MustParseAddr(client)
			pr, _ := e.ClientPrincipal(ip)
			r := Request{ClientIP: ip, Principal: pr, Host: "popular.example", Protocol: ProtoDNS}
			d, _ := e.Check(&r)
			s.Record(&AccessEvent{Protocol: ProtoDNS, Proto: "dns", ClientIP: ip, Host: r.Host, Location: pr.Location,
				Action: d.Action.String(), RuleID: d.RuleID, PolicyVersion: d.Version, Latency: 200 * time.Microsecond})
		}
	}
	if err := s.edges.PutEdge(ctx, s.Heartbeat(HeartbeatConfig{Name: "edge-1", Role: "all"})); err != nil {
		t.Fatal(err)
	}
	got, err := s.Change(ctx, c.ID)
	if err != nil || got.Observed == nil {
		t.Fatalf("observed: %+v %v", got, err)
	}
	if o := got.Observed; o.Staged.Requests != 20 || o.Staged.BlockRate != 1 || o.Rest.Requests != 20 || o.Rest.BlockRate != 0 ||
		o.Staged.LatencyP50MS <= 0 || len(o.Staged.Rules) != 1 || o.Staged.Rules[0].Rule != "deny-list" {
		t.Fatalf("observed effect = %+v", o)
	}
	es, _ := s.Edges(ctx)
	if len(es) != 1 || es[0].StagedVersion != 2 || es[0].InStage != "locations" || es[0].RequestsPerSecond <= 0 || es[0].Effect != nil {
		t.Errorf("edges = %+v", es)
	}
	gctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = s.RunStageGuard(gctx, 10*time.Millisecond) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err = s.Change(ctx, c.ID)
		if err == nil && got.State == ChangeApproved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not auto-aborted: %+v %v", got.State, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if got.Stage.Outcome != StageAutoAborted || !strings.Contains(got.Stage.AbortReason, "block rate 1.0000 over the threshold 0.5000") {
		t.Errorf("stage after the guard = %+v", got.Stage)
	}
	ip := netip.MustParseAddr("10.1.0.1")
	pr, _ := e.ClientPrincipal(ip)
	if d, _ := e.Check(&Request{ClientIP: ip, Principal: pr, Host: "popular.example"}); d.Blocked() || d.Version != 1 {
		t.Errorf("after the auto-abort: %v by version %d", d.Action, d.Version)
	}
	page, _ := s.Audit(ctx, AuditQuery{Action: "change.auto_abort"})
	if len(page.Entries) != 1 || page.Entries[0].Source != SourceSystem {
		t.Errorf("audit = %+v", page.Entries)
	}
}
