package redisstore

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cordon-gw/cordon/categorizer"
	"github.com/cordon-gw/cordon/internal/testutil"
)

func client(t *testing.T, r *testutil.Redis) redis.UniversalClient {
	t.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:       []string{r.Addr},
		DialTimeout: 300 * time.Millisecond,
		ReadTimeout: time.Second,
		MaxRetries:  1,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// snapshot builds an encoded snapshot of real urlhaus hosts plus one
// marker domain.
func snapshot(t *testing.T, version uint64, marker string) []byte {
	t.Helper()
	b := categorizer.NewBuilder()
	id, err := b.AddFeed("urlhaus", []string{"malware"}, true)
	if err != nil {
		t.Fatal(err)
	}
	f := testutil.Data(t, "urlhaus/hosts")
	if _, err := parseFile(f, b.Emit(id)); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(id, categorizer.Entry{Kind: categorizer.KindDomain, Host: marker}); err != nil {
		t.Fatal(err)
	}
	ix, err := b.Build(version)
	if err != nil {
		t.Fatal(err)
	}
	data, err := categorizer.EncodeSnapshot(ix)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func listed(ix *categorizer.Index, host string) bool {
	return !ix.Lookup(host, "", netip.Addr{}).Threats.Empty()
}

func TestPublishSecondStoreLoads(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	r := testutil.StartRedis(t)
	// Small chunks so the snapshot really is split.
	pub, err := New(client(t, r), Config{ChunkSize: 4096, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	edge, err := New(client(t, r), Config{ChunkSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := edge.Latest(ctx); !errors.Is(err, categorizer.ErrNoSnapshot) {
		t.Fatalf("Latest on empty Redis = %v, want ErrNoSnapshot", err)
	}
	if err := pub.Put(ctx, 1, snapshot(t, 1, "one.example")); err != nil {
		t.Fatal(err)
	}
	applied := make(chan *categorizer.Index, 4)
	go func() {
		_ = categorizer.Follow(ctx, edge, 0, slog.New(slog.NewTextHandler(t.Output(), nil)), nil, func(ix *categorizer.Index) error {
			applied <- ix
			return nil
		})
	}()
	wait := func(v uint64) *categorizer.Index {
		t.Helper()
		for {
			select {
			case ix := <-applied:
				if ix.Version() == v {
					return ix
				}
			case <-ctx.Done():
				t.Fatalf("version %d never applied", v)
			}
		}
	}
	if ix := wait(1); !listed(ix, "one.example") || !listed(ix, "1008691.com") {
		t.Fatal("version 1 lacks its entries")
	}
	time.Sleep(100 * time.Millisecond) // the subscription is up by now
	if err := pub.Put(ctx, 2, snapshot(t, 2, "two.example")); err != nil {
		t.Fatal(err)
	}
	if ix := wait(2); !listed(ix, "two.example") || listed(ix, "one.example") {
		t.Fatal("version 2 has the wrong entries")
	}
	if err := pub.Put(ctx, 3, snapshot(t, 3, "three.example")); err != nil {
		t.Fatal(err)
	}
	wait(3)
	if _, err := edge.Get(ctx, 1); !errors.Is(err, categorizer.ErrNoSnapshot) {
		t.Errorf("Get(1) after keep=2 pruning = %v, want ErrNoSnapshot", err)
	}
}

func TestCorruptSnapshotRejected(t *testing.T) {
	ctx := t.Context()
	r := testutil.StartRedis(t)
	c := client(t, r)
	s, err := New(c, Config{ChunkSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, 7, snapshot(t, 7, "seven.example")); err != nil {
		t.Fatal(err)
	}
	// Damage one chunk in Redis.
	key := s.chunkKey(7, 1)
	b, err := c.Get(ctx, key).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	b[10] ^= 0xff
	if err := c.Set(ctx, key, b, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, 7); !errors.Is(err, categorizer.ErrCorruptSnapshot) {
		t.Errorf("Get of a damaged chunk = %v, want ErrCorruptSnapshot", err)
	}
	// A snapshot whose bytes are consistent in Redis but corrupt inside is
	// rejected by the decoder.
	bad := snapshot(t, 8, "eight.example")
	bad[40] ^= 1
	if err := s.Put(ctx, 8, bad); err != nil {
		t.Fatal(err)
	}
	if _, err := categorizer.LoadLatest(ctx, s); !errors.Is(err, categorizer.ErrCorruptSnapshot) {
		t.Errorf("LoadLatest of a corrupt snapshot = %v, want ErrCorruptSnapshot", err)
	}
}

func TestRestartWithRedisDownServesLocalCache(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	r := testutil.StartRedis(t)
	dataDir := t.TempDir()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	newEdge := func() *categorizer.CachedStore {
		remote, err := New(client(t, r), Config{})
		if err != nil {
			t.Fatal(err)
		}
		local, err := categorizer.NewFileStore(categorizer.FileStoreConfig{Dir: dataDir})
		if err != nil {
			t.Fatal(err)
		}
		return &categorizer.CachedStore{Remote: remote, Local: local, Logger: log}
	}
	pub, err := New(client(t, r), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Put(ctx, 11, snapshot(t, 11, "eleven.example")); err != nil {
		t.Fatal(err)
	}
	// First start: loads from Redis and caches in the data directory.
	ix, err := categorizer.LoadLatest(ctx, newEdge())
	if err != nil || ix.Version() != 11 {
		t.Fatalf("first start: %v", err)
	}
	r.Stop()
	// Restart with Redis down: the local copy serves.
	ix, err = categorizer.LoadLatest(ctx, newEdge())
	if err != nil {
		t.Fatalf("restart with Redis down: %v", err)
	}
	if ix.Version() != 11 || !listed(ix, "eleven.example") {
		t.Fatalf("restart with Redis down: version %d", ix.Version())
	}
	// Redis comes back (its data survived): the edge follows new versions.
	r.Restart()
	if err := pub.Put(ctx, 12, snapshot(t, 12, "twelve.example")); err != nil {
		t.Fatal(err)
	}
	ix, err = categorizer.LoadLatest(ctx, newEdge())
	if err != nil || ix.Version() != 12 {
		t.Fatalf("after Redis restart: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{ChunkSize: 10, Keep: -1}).Validate(); err == nil {
		t.Error("Validate accepted chunk_size 10 and keep -1")
	}
	if err := Defaults().Validate(); err != nil {
		t.Errorf("Defaults().Validate() = %v", err)
	}
}
