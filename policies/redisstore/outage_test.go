package redisstore

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/internal/testutil"
	"github.com/cordon-gw/cordon/policies"
)

// TestRedisOutage: while Redis is down, edges keep serving the last good
// policy and refuse changes (nothing is reported durable that is not);
// after Redis returns, a change on one edge reaches the other.
func TestRedisOutage(t *testing.T) {
	r := testutil.StartRedis(t)
	log := slog.New(slog.DiscardHandler)
	mk := func() *edge {
		st := New(newClient(t, r), Config{Logger: log, PollInterval: 100 * time.Millisecond})
		e := policies.NewEngine(policies.EngineConfig{Logger: log})
		svc, err := policies.NewService(t.Context(), policies.ServiceConfig{Store: st, Engine: e, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); _ = svc.Run(ctx) }()
		t.Cleanup(func() { cancel(); wg.Wait() })
		return &edge{store: st, engine: e, svc: svc}
	}
	a, b := mk(), mk()
	p, _ := policies.Parse([]byte("lists: [{name: deny, kind: deny, entries: [bad.example]}]\nrules: [{id: deny, lists: [deny], action: block}]\n"))
	if _, err := a.svc.Put(t.Context(), admin, p, "first"); err != nil {
		t.Fatal(err)
	}
	waitVersion(t, b, 1, 5*time.Second)

	r.Stop()
	req := policies.Request{Host: "bad.example"}
	if d, _ := b.engine.Check(&req); d.Action != policies.ActionBlock || d.Version != 1 {
		t.Errorf("during the outage edge b decides %v (version %d), want block by version 1", d.Action, d.Version)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	_, err := a.svc.AddListEntries(ctx, admin, "deny", []string{"worse.example"}, "")
	cancel()
	if err == nil {
		t.Fatal("a change was reported stored while Redis was down")
	}
	if a.svc.Current().Number != 1 || a.engine.PolicyVersion() != 1 {
		t.Errorf("failed change altered edge a: service %d, engine %d", a.svc.Current().Number, a.engine.PolicyVersion())
	}

	r.Restart()
	var v *policies.Version
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err = a.svc.AddListEntries(t.Context(), admin, "deny", []string{"worse.example"}, "")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge a cannot write 10s after Redis restarted: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v.Number != 2 {
		t.Errorf("version after the outage = %d, want 2 (version 1 survived the restart)", v.Number)
	}
	waitVersion(t, b, 2, 10*time.Second)
	req = policies.Request{Host: "worse.example"}
	if d, _ := b.engine.Check(&req); d.Action != policies.ActionBlock {
		t.Errorf("edge b after the outage decides %v for worse.example, want block", d.Action)
	}
}
