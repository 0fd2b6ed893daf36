package categorizer

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func testSnapshot(t *testing.T, version uint64, domain string) []byte {
	t.Helper()
	b := NewBuilder()
	id, _ := b.AddFeed("f", []string{"c"}, true)
	if err := b.Add(id, Entry{Kind: KindDomain, Host: domain}); err != nil {
		t.Fatal(err)
	}
	ix, err := b.Build(version)
	if err != nil {
		t.Fatal(err)
	}
	data, err := EncodeSnapshot(ix)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestFileStore(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "snapshots")
	s, err := NewFileStore(FileStoreConfig{Dir: dir, Keep: 2, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Latest(ctx); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("Latest on empty store = %v, want ErrNoSnapshot", err)
	}
	for v := uint64(1); v <= 3; v++ {
		if err := s.Put(ctx, v, testSnapshot(t, v, "a.example")); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, 2, testSnapshot(t, 2, "a.example")); err != nil { // an older version never moves latest back
		t.Fatal(err)
	}
	v, data, err := s.Latest(ctx)
	if err != nil || v != 3 {
		t.Fatalf("Latest = %d, %v; want 3", v, err)
	}
	if ix, err := DecodeSnapshot(data); err != nil || ix.Version() != 3 {
		t.Fatalf("decode latest: %v", err)
	}
	if _, err := s.Get(ctx, 1); !errors.Is(err, ErrNoSnapshot) {
		t.Errorf("Get(1) after pruning to 2 versions = %v, want ErrNoSnapshot", err)
	}

	// A second store on the same directory (another process) sees new
	// versions through polling; the first sees its own at once.
	other, err := NewFileStore(FileStoreConfig{Dir: dir, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	seen := make(chan uint64, 4)
	go func() { _ = other.Subscribe(sctx, func(v uint64) { seen <- v }) }()
	own := make(chan uint64, 4)
	go func() { _ = s.Subscribe(sctx, func(v uint64) { own <- v }) }()
	time.Sleep(50 * time.Millisecond) // let both subscriptions start
	if err := s.Put(ctx, 4, testSnapshot(t, 4, "b.example")); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]chan uint64{"other process": seen, "same process": own} {
		for want := uint64(3); want <= 4; {
			select {
			case v := <-ch:
				if v == want {
					want++
				} else if v != want-1 {
					t.Fatalf("%s: announced %d, want %d", name, v, want)
				}
			case <-sctx.Done():
				t.Fatalf("%s: no announcement of %d", name, want)
			}
		}
	}
}

// failingStore is a remote store that is down.
type failingStore struct{ calls atomic.Int32 }

var errDown = errors.New("connection refused")

func (f *failingStore) Put(context.Context, uint64, []byte) error { f.calls.Add(1); return errDown }
func (f *failingStore) Latest(context.Context) (uint64, []byte, error) {
	f.calls.Add(1)
	return 0, nil, errDown
}
func (f *failingStore) LatestVersion(context.Context) (uint64, error) {
	f.calls.Add(1)
	return 0, errDown
}
func (f *failingStore) Get(context.Context, uint64) ([]byte, error) {
	f.calls.Add(1)
	return nil, errDown
}
func (f *failingStore) Subscribe(ctx context.Context, _ func(uint64)) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestCachedStoreFallback(t *testing.T) {
	ctx := t.Context()
	local, err := NewFileStore(FileStoreConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	remote, err := NewFileStore(FileStoreConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	c := &CachedStore{Remote: remote, Local: local, Logger: log}
	if err := remote.Put(ctx, 5, testSnapshot(t, 5, "a.example")); err != nil {
		t.Fatal(err)
	}
	if v, _, err := c.Latest(ctx); err != nil || v != 5 {
		t.Fatalf("Latest = %d, %v", v, err)
	}
	if _, err := local.Get(ctx, 5); err != nil {
		t.Fatalf("Latest did not cache locally: %v", err)
	}
	down := &CachedStore{Remote: &failingStore{}, Local: local, Logger: log}
	v, data, err := down.Latest(ctx)
	if err != nil || v != 5 {
		t.Fatalf("Latest with the remote down = %d, %v; want the cached 5", v, err)
	}
	if _, err := DecodeSnapshot(data); err != nil {
		t.Fatal(err)
	}
	if v, err := down.LatestVersion(ctx); err != nil || v != 5 {
		t.Fatalf("LatestVersion with the remote down = %d, %v; want the cached 5", v, err)
	}
	empty := &CachedStore{Remote: &failingStore{}, Local: &FileStore{dir: t.TempDir()}, Logger: log}
	if _, _, err := empty.Latest(ctx); !errors.Is(err, errDown) {
		t.Errorf("Latest with remote down and no cache = %v, want the remote error", err)
	}
	if _, err := empty.LatestVersion(ctx); !errors.Is(err, errDown) {
		t.Errorf("LatestVersion with remote down and no cache = %v, want the remote error", err)
	}
}

// countingStore counts the calls that move a snapshot's data.
type countingStore struct {
	SnapshotStore
	data     atomic.Int32 // Latest and Get
	versions chan uint64  // every LatestVersion answer
}

func (c *countingStore) Latest(ctx context.Context) (uint64, []byte, error) {
	c.data.Add(1)
	return c.SnapshotStore.Latest(ctx)
}

func (c *countingStore) Get(ctx context.Context, v uint64) ([]byte, error) {
	c.data.Add(1)
	return c.SnapshotStore.Get(ctx, v)
}

func (c *countingStore) LatestVersion(ctx context.Context) (uint64, error) {
	v, err := c.SnapshotStore.LatestVersion(ctx)
	c.versions <- v
	return v, err
}

// followStore is a counting file store holding one snapshot of the given
// version, and that snapshot's Index.
func followStore(t *testing.T, version uint64) (*countingStore, *Index) {
	t.Helper()
	fs, err := NewFileStore(FileStoreConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	b := NewBuilder()
	id, _ := b.AddFeed("f", []string{"c"}, false)
	_ = b.Add(id, Entry{Kind: KindDomain, Host: "a.example"})
	ix, err := b.Build(version)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := EncodeSnapshot(ix)
	if err := fs.Put(t.Context(), version, data); err != nil {
		t.Fatal(err)
	}
	return &countingStore{SnapshotStore: fs, versions: make(chan uint64, 4)}, ix
}

// A follower that already serves the latest snapshot asks only for the
// version: it never transfers the snapshot again (tens of MB from Redis
// on every poll).
func TestFollowUpToDateFetchesNoData(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cs, _ := followStore(t, 7)
	done := make(chan error, 1)
	applied := atomic.Int32{}
	go func() {
		done <- Follow(ctx, cs, 7, nil, nil, func(*Index) error { applied.Add(1); return nil })
	}()
	select {
	case v := <-cs.versions:
		if v != 7 {
			t.Fatalf("LatestVersion = %d, want 7", v)
		}
	case <-ctx.Done():
		t.Fatal("Follow never asked for the latest version")
	}
	// The subscription's first announcement (7 again) must not load either.
	time.Sleep(50 * time.Millisecond)
	cancel()
	<-done
	if n := cs.data.Load(); n != 0 {
		t.Errorf("Follow fetched snapshot data %d times while up to date", n)
	}
	if n := applied.Load(); n != 0 {
		t.Errorf("Follow applied %d snapshots while up to date", n)
	}
}

func TestFollow(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	s, err := NewFileStore(FileStoreConfig{Dir: t.TempDir(), Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, 1, testSnapshot(t, 1, "one.example")); err != nil {
		t.Fatal(err)
	}
	applied := make(chan *Index, 8)
	done := make(chan error, 1)
	go func() {
		done <- Follow(ctx, s, 0, slog.New(slog.NewTextHandler(t.Output(), nil)), nil, func(ix *Index) error {
			applied <- ix
			return nil
		})
	}()
	next := func() *Index {
		t.Helper()
		select {
		case ix := <-applied:
			return ix
		case <-ctx.Done():
			t.Fatal("no snapshot applied")
			return nil
		}
	}
	if ix := next(); ix.Version() != 1 || ix.Lookup("one.example", "", noIP).Categories.Empty() {
		t.Fatalf("first applied version %d", ix.Version())
	}
	// A corrupt snapshot is skipped; the next good one is applied.
	bad := testSnapshot(t, 2, "two.example")
	bad[len(bad)/2] ^= 1
	if err := s.Put(ctx, 2, bad); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, 3, testSnapshot(t, 3, "three.example")); err != nil {
		t.Fatal(err)
	}
	if ix := next(); ix.Version() != 3 || ix.Lookup("three.example", "", noIP).Categories.Empty() {
		t.Fatalf("applied version %d, want 3", ix.Version())
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Follow returned %v", err)
	}
}

// The process that compiled a snapshot applies its own Index for it: no
// fetch of the data, no decoded second copy.
func TestFollowAppliesCompiledIndex(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cs, own := followStore(t, 8)
	compiled := func(v uint64) *Index {
		if v == own.Version() {
			return own
		}
		return nil
	}
	applied := make(chan *Index, 1)
	done := make(chan error, 1)
	go func() {
		done <- Follow(ctx, cs, 0, nil, compiled, func(ix *Index) error { applied <- ix; return nil })
	}()
	select {
	case ix := <-applied:
		if ix != own {
			t.Errorf("Follow applied a copy of version %d, want the compiled Index", ix.Version())
		}
	case <-ctx.Done():
		t.Fatal("Follow applied nothing")
	}
	cancel()
	<-done
	if n := cs.data.Load(); n != 0 {
		t.Errorf("Follow fetched snapshot data %d times for a version it compiled", n)
	}
}
