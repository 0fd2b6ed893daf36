package redisstore

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cordon-gw/cordon/internal/testutil"
	"github.com/cordon-gw/cordon/policies"
)

func newClient(t *testing.T, r *testutil.Redis) redis.UniversalClient {
	t.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{r.Addr}})
	t.Cleanup(func() { c.Close() })
	return c
}

// edge is one process's view: its own client, store, engine and service.
type edge struct {
	store  *Store
	engine *policies.Engine
	svc    *policies.Service
}

func newEdge(t *testing.T, r *testutil.Redis) *edge {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	st := New(newClient(t, r), Config{Logger: log})
	e := policies.NewEngine(policies.EngineConfig{Logger: log})
	svc, err := policies.NewService(t.Context(), policies.ServiceConfig{Store: st, Engine: e, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := svc.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &edge{store: st, engine: e, svc: svc}
}

// waitVersion polls e's engine until it serves version n, at most limit.
func waitVersion(t *testing.T, e *edge, n int64, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for e.engine.PolicyVersion() != n {
		if time.Since(start) > limit {
			t.Fatalf("edge still serves version %d %v after version %d was stored", e.engine.PolicyVersion(), limit, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

var admin = policies.Actor{Name: "root", Role: policies.RoleAdmin, Source: policies.SourceAPI}

func TestTwoEdgesShareOnePolicy(t *testing.T) {
	r := testutil.StartRedis(t)
	a, b := newEdge(t, r), newEdge(t, r)
	ctx := t.Context()
	// Direct writes by secops: approvals.enforce off.
	p, err := policies.Parse([]byte("settings: {approvals: {enforce: false}}\nlists: [{name: deny, kind: deny, entries: [bad.example]}]\nrules: [{id: deny, lists: [deny], action: block}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	v1, err := a.svc.Put(ctx, admin, p, "first")
	if err != nil {
		t.Fatal(err)
	}
	took := waitVersion(t, b, v1.Number, time.Second)
	t.Logf("edge b served version %d %v after edge a stored it", v1.Number, took)
	req := policies.Request{Host: "www.bad.example"}
	if d, _ := b.engine.Check(&req); d.Action != policies.ActionBlock {
		t.Errorf("edge b decides %v for a listed host, want block", d.Action)
	}
	// A list edit on b reaches a.
	v2, err := b.svc.AddListEntries(ctx, policies.Actor{Name: "sec", Role: policies.RoleSecOps, Source: policies.SourceCLI}, "deny", []string{"worse.example"}, "")
	if err != nil {
		t.Fatal(err)
	}
	waitVersion(t, a, v2.Number, time.Second)
	req = policies.Request{Host: "worse.example"}
	if d, _ := a.engine.Check(&req); d.Action != policies.ActionBlock {
		t.Errorf("edge a decides %v after the list edit on b, want block", d.Action)
	}
	// Rollback on a to version 1 reaches b.
	v3, err := a.svc.Rollback(ctx, admin, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	waitVersion(t, b, v3.Number, time.Second)
	req = policies.Request{Host: "worse.example"}
	if d, _ := b.engine.Check(&req); d.Action != policies.ActionAllow {
		t.Errorf("edge b decides %v after rollback, want allow", d.Action)
	}
	// Both see the whole history and audit.
	vs, err := b.svc.Versions(ctx)
	if err != nil || len(vs) != 3 || vs[0].RollbackOf != 1 {
		t.Fatalf("Versions on b = %+v, %v", vs, err)
	}
	page, err := a.svc.Audit(ctx, policies.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range page.Entries {
		actions = append(actions, e.Action)
	}
	if len(actions) != 3 || actions[0] != "policy.rollback" || actions[1] != "list.entries.add" || actions[2] != "policy.put" {
		t.Errorf("audit = %v", actions)
	}
}

// TestConcurrentWritersNeverLoseAVersion races two edges writing list
// entries: every edit lands in its own version.
func TestConcurrentWritersNeverLoseAVersion(t *testing.T) {
	r := testutil.StartRedis(t)
	a, b := newEdge(t, r), newEdge(t, r)
	ctx := t.Context()
	p, _ := policies.Parse([]byte("lists: [{name: deny, kind: deny, entries: [x.example]}]\n"))
	if _, err := a.svc.Put(ctx, admin, p, ""); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i, e := range []*edge{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				host := string(rune('a'+i)) + string(rune('a'+j)) + ".example"
				if _, err := e.svc.AddListEntries(ctx, admin, "deny", []string{host}, ""); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	latest, err := a.store.LatestVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if latest.Number != 21 || len(latest.Policy.Lists[0].Entries) != 21 {
		t.Errorf("latest version %d with %d entries, want 21 and 21", latest.Number, len(latest.Policy.Lists[0].Entries))
	}
}

func TestStoreBasics(t *testing.T) {
	r := testutil.StartRedis(t)
	st := New(newClient(t, r), Config{Prefix: "t"})
	ctx := t.Context()
	if _, err := st.LatestVersion(ctx); !errors.Is(err, policies.ErrNotFound) {
		t.Errorf("LatestVersion on empty = %v", err)
	}
	v := &policies.Version{VersionInfo: policies.VersionInfo{Number: 1, Author: "a"}, Policy: &policies.Policy{}}
	ae := &policies.AuditEntry{Action: "policy.put", Actor: "a"}
	if err := st.PutVersion(ctx, v, ae); err != nil || ae.Seq != 1 || ae.Version != 1 {
		t.Fatalf("PutVersion = %v, seq %d", err, ae.Seq)
	}
	if err := st.PutVersion(ctx, v, &policies.AuditEntry{}); !errors.Is(err, policies.ErrConflict) {
		t.Errorf("PutVersion(1) again = %v, want conflict", err)
	}
	for i := 0; i < 5; i++ {
		if err := st.AppendAudit(ctx, &policies.AuditEntry{Action: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	es, err := st.AuditBefore(ctx, 5, 2)
	if err != nil || len(es) != 2 || es[0].Seq != 4 || es[1].Seq != 3 {
		t.Errorf("AuditBefore(5, 2) = %+v, %v", es, err)
	}
	if es, _ := st.AuditBefore(ctx, 0, 100); len(es) != 6 || es[5].Action != "policy.put" || es[5].Seq != 1 {
		t.Errorf("AuditBefore(0) = %+v", es)
	}
	tok := policies.TokenRecord{ID: "abc", Name: "n", Role: policies.RoleAuditor, Hash: "h"}
	if err := st.PutToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if got, err := st.GetToken(ctx, "abc"); err != nil || got != tok {
		t.Errorf("GetToken = %+v, %v", got, err)
	}
	if err := st.DeleteToken(ctx, "abc"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteToken(ctx, "abc"); !errors.Is(err, policies.ErrNotFound) {
		t.Errorf("second DeleteToken = %v", err)
	}
}
