package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cordon-gw/cordon/internal/testutil"
	"github.com/cordon-gw/cordon/policies"
	polredis "github.com/cordon-gw/cordon/policies/redisstore"
)

// An edge reading the policy while Redis is down gets the last version it
// cached; before any cache it gets Redis's error.
func TestCachedPolicyStoreServesLastVersionWhenRedisIsDown(t *testing.T) {
	r := testutil.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: 0, DialTimeout: 300 * time.Millisecond})
	defer rdb.Close()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	remote := polredis.New(rdb, polredis.Config{Prefix: "t", Logger: log})
	cache := filepath.Join(t.TempDir(), "policy-cache.json")

	svc, err := policies.NewService(ctx, policies.ServiceConfig{Store: newCachedPolicyStore(remote, cache, log)})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := policies.Parse([]byte("rules:\n  - id: r1\n    domains: [blocked.example]\n    action: block\n"))
	if err != nil {
		t.Fatal(err)
	}
	actor := policies.Actor{Name: "test", Role: policies.RoleAdmin, Source: policies.SourceCLI}
	if _, err := svc.Put(ctx, actor, doc, "first"); err != nil {
		t.Fatal(err)
	}

	// a fresh reader caches version 1 while Redis is up
	store := newCachedPolicyStore(remote, cache, log)
	if v, err := store.LatestVersion(ctx); err != nil || v.Number != 1 {
		t.Fatalf("with redis up: %v, %v", v, err)
	}
	r.Stop()
	v, err := store.LatestVersion(ctx)
	if err != nil {
		t.Fatalf("with redis down: %v", err)
	}
	if v.Number != 1 || len(v.Policy.Rules) != 1 || v.Policy.Rules[0].ID != "r1" {
		t.Fatalf("cached version = %d %+v", v.Number, v.Policy.Rules)
	}
	// a service starting now (an edge restarting during the outage) serves it
	svc2, err := policies.NewService(ctx, policies.ServiceConfig{Store: newCachedPolicyStore(remote, cache, log)})
	if err != nil {
		t.Fatalf("service start with redis down: %v", err)
	}
	if svc2.Current().Number != 1 {
		t.Fatalf("service serves version %d, want 1", svc2.Current().Number)
	}
	// without a cache, the outage is an error, not an empty policy
	empty := newCachedPolicyStore(remote, filepath.Join(t.TempDir(), "none.json"), log)
	if _, err := empty.LatestVersion(ctx); err == nil {
		t.Fatal("no cache and redis down: want an error")
	}
}
