package redisstore

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/internal/testutil"
	"github.com/cordon-gw/cordon/policies"
)

const stagePolicy = `
locations:
  - {name: branch-a, cidrs: [127.0.0.2/32]}
  - {name: branch-b, cidrs: [127.0.0.3/32]}
lists:
  - {name: deny, kind: deny, entries: [seed.test]}
rules:
  - {id: deny-list, lists: [deny], action: block}
`

// node is one process on the shared Redis, following versions and the
// stage, with its own edge name.
func newNode(t *testing.T, r *testutil.Redis, name string) *edge {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	st := New(newClient(t, r), Config{Logger: log, PollInterval: time.Second})
	e := policies.NewEngine(policies.EngineConfig{Logger: log})
	svc, err := policies.NewService(t.Context(), policies.ServiceConfig{Store: st, Changes: st, Edges: st, EdgeName: name, Engine: e, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{svc.Run, svc.RunStage} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				t.Errorf("run: %v", err)
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &edge{store: st, engine: e, svc: svc}
}

func decideFrom(e *edge, client, host string) policies.Decision {
	ip := netip.MustParseAddr(client)
	pr, _ := e.engine.ClientPrincipal(ip)
	d, _ := e.engine.Check(&policies.Request{ClientIP: ip, Principal: pr, Host: host, Protocol: policies.ProtoDNS})
	return d
}

// waitFor polls cond (bounded) and reports whether it became true.
func waitFor(cond func() bool) bool {
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

func TestChangesAndStageShared(t *testing.T) {
	r := testutil.StartRedis(t)
	ctrl, edgeB := newNode(t, r, "control"), newNode(t, r, "edge-b")
	ctx := t.Context()
	nina := policies.Actor{Name: "nina", Role: policies.RoleSecOps, Source: policies.SourceAPI}
	sam := policies.Actor{Name: "sam", Role: policies.RoleSecOps, Source: policies.SourceAPI}
	admin := policies.Actor{Name: "root", Role: policies.RoleAdmin, Source: policies.SourceAPI}
	p, err := policies.Parse([]byte(stagePolicy))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.svc.Put(ctx, admin, p, "base"); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, edgeB, 1, 10*time.Second)

	c, err := ctrl.svc.OpenChange(ctx, nina, policies.ChangeInput{Title: "deny staged.test",
		Patch: &policies.Patch{Lists: &policies.ListsPatch{AddEntries: map[string][]string{"deny": {"staged.test"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	// The other process sees it and approves it.
	got, err := edgeB.svc.ApproveChange(ctx, sam, c.ID, "ok")
	if err != nil || got.State != policies.ChangeApproved {
		t.Fatalf("approve through the other process: %v %v", got, err)
	}
	if err := ctrl.store.PutChange(ctx, got, got.Rev-1); !errors.Is(err, policies.ErrConflict) {
		t.Errorf("PutChange on an old revision = %v, want ErrConflict", err)
	}
	// Stage on branch-a: both processes serve version 2 there only.
	got, err = ctrl.svc.ApplyChange(ctx, sam, c.ID, policies.ApplyOptions{Stage: &policies.StageRequest{Locations: []string{"branch-a"}}})
	if err != nil || got.State != policies.ChangeStaged || got.Stage.Version != 2 {
		t.Fatalf("stage: %+v %v", got, err)
	}
	for _, n := range []*edge{ctrl, edgeB} {
		if !waitFor(func() bool { return decideFrom(n, "127.0.0.2", "staged.test").Action == policies.ActionBlock }) {
			t.Fatal("the staged change is not served in branch-a")
		}
		if d := decideFrom(n, "127.0.0.2", "staged.test"); d.Version != 2 {
			t.Errorf("staged decision version = %d, want 2", d.Version)
		}
		if d := decideFrom(n, "127.0.0.3", "staged.test"); d.Action != policies.ActionAllow || d.Version != 1 {
			t.Errorf("branch-b decision = %v version %d, want allow by version 1", d.Action, d.Version)
		}
	}
	if _, err := ctrl.svc.ApplyChange(ctx, sam, c.ID, policies.ApplyOptions{}); !errors.Is(err, policies.ErrConflict) {
		t.Errorf("apply while staged = %v, want conflict", err)
	}
	// Abort: everyone back on version 1.
	if got, err = edgeB.svc.AbortChange(ctx, sam, c.ID, "try later"); err != nil || got.State != policies.ChangeApproved || got.Stage.Outcome != policies.StageAborted {
		t.Fatalf("abort: %+v %v", got, err)
	}
	for _, n := range []*edge{ctrl, edgeB} {
		if !waitFor(func() bool { return decideFrom(n, "127.0.0.2", "staged.test").Action == policies.ActionAllow }) {
			t.Fatal("abort did not restore the old version")
		}
	}
	// Stage on the edge by name, then promote: live everywhere.
	if _, err = ctrl.svc.ApplyChange(ctx, sam, c.ID, policies.ApplyOptions{Stage: &policies.StageRequest{Edges: []string{"nope"}}}); err == nil {
		t.Error("stage on an unknown edge accepted")
	}
	if err := edgeB.store.PutEdge(ctx, edgeB.svc.Heartbeat(policies.HeartbeatConfig{Name: "edge-b", Role: "edge"})); err != nil {
		t.Fatal(err)
	}
	if _, err = ctrl.svc.ApplyChange(ctx, sam, c.ID, policies.ApplyOptions{Stage: &policies.StageRequest{Edges: []string{"edge-b"}}}); err != nil {
		t.Fatal(err)
	}
	if !waitFor(func() bool { return decideFrom(edgeB, "127.0.0.3", "staged.test").Action == policies.ActionBlock }) {
		t.Fatal("edge-b does not serve the stage named after it")
	}
	if d := decideFrom(ctrl, "127.0.0.3", "staged.test"); d.Action != policies.ActionAllow {
		t.Errorf("the control (not staged) decides %v", d.Action)
	}
	if got, err = ctrl.svc.PromoteChange(ctx, sam, c.ID, ""); err != nil || got.State != policies.ChangeApplied || got.AppliedVersion != 2 {
		t.Fatalf("promote: %+v %v", got, err)
	}
	for _, n := range []*edge{ctrl, edgeB} {
		if !waitFor(func() bool {
			d := decideFrom(n, "127.0.0.3", "staged.test")
			v, _ := n.engine.StagedVersion()
			return d.Action == policies.ActionBlock && d.Version == 2 && v == 0
		}) {
			t.Fatal("promote did not reach every process")
		}
	}
	es, err := ctrl.svc.Edges(ctx)
	if err != nil || len(es) != 1 || es[0].Name != "edge-b" || es[0].Stale {
		t.Errorf("edges = %+v %v", es, err)
	}
	cs, err := ctrl.svc.Changes(ctx, policies.ChangeApplied)
	if err != nil || len(cs) != 1 || cs[0].Stage.Outcome != policies.StagePromoted {
		t.Errorf("applied changes = %+v %v", cs, err)
	}
}
