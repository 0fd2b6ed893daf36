package categorizer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SnapshotStore keeps encoded snapshots (EncodeSnapshot) by version and
// tells followers when a new one is published. Implementations: FileStore
// (a local data directory), redisstore.Store (shared by every edge), and
// CachedStore (a remote store with a local fallback). All methods are safe
// for concurrent use.
type SnapshotStore interface {
	// Put stores data as the given version, makes it the latest when it
	// is newer than the current latest, and announces it to subscribers.
	// The store keeps its own copy; data is not modified.
	Put(ctx context.Context, version uint64, data []byte) error
	// Latest returns the newest version and its data, or an error wrapping
	// ErrNoSnapshot when the store is empty.
	Latest(ctx context.Context) (version uint64, data []byte, err error)
	// LatestVersion returns the newest version without its data (a
	// snapshot is tens of MB: followers poll this), or an error wrapping
	// ErrNoSnapshot when the store is empty.
	LatestVersion(ctx context.Context) (uint64, error)
	// Get returns one version, or an error wrapping ErrNoSnapshot.
	Get(ctx context.Context, version uint64) ([]byte, error)
	// Subscribe calls fn with every version announced after it was called
	// (in order per publisher, possibly more than once) until ctx is done;
	// it returns ctx.Err() then. Once the subscription is live it also
	// calls fn with the latest version at that moment (when there is one),
	// so nothing published between a caller's Latest and its Subscribe is
	// missed. Versions may be skipped when they follow each other quickly;
	// the latest is never skipped. fn must not block for long.
	Subscribe(ctx context.Context, fn func(version uint64)) error
}

// FileStore keeps snapshots as files in a directory
// (<dir>/<version>.snapshot, written atomically) and the latest version in
// <dir>/latest. Subscribe sees versions Put by this process at once and
// versions written by other processes through polling.
type FileStore struct {
	dir  string
	keep int
	poll time.Duration

	mu   sync.Mutex
	subs map[chan uint64]struct{}
}

var _ SnapshotStore = (*FileStore)(nil)

// FileStoreConfig configures a FileStore.
type FileStoreConfig struct {
	// Dir holds the snapshot files; created when missing. Required.
	Dir string
	// Keep is how many versions to keep; 0 means 3.
	Keep int
	// Poll is how often Subscribe checks for versions written by other
	// processes; 0 means 5s.
	Poll time.Duration
}

// NewFileStore opens (and creates) a snapshot directory.
func NewFileStore(cfg FileStoreConfig) (*FileStore, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("categorizer: file store: empty directory")
	}
	if cfg.Keep <= 0 {
		cfg.Keep = 3
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 5 * time.Second
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("categorizer: file store: %w", err)
	}
	return &FileStore{dir: cfg.Dir, keep: cfg.Keep, poll: cfg.Poll, subs: map[chan uint64]struct{}{}}, nil
}

func (s *FileStore) path(v uint64) string {
	return filepath.Join(s.dir, strconv.FormatUint(v, 10)+".snapshot")
}

// writeAtomic writes data to path through a temporary file and rename.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

// Put implements SnapshotStore.
func (s *FileStore) Put(ctx context.Context, version uint64, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := writeAtomic(s.path(version), data); err != nil {
		return fmt.Errorf("categorizer: file store put %d: %w", version, err)
	}
	latest, err := s.latestVersion()
	if err != nil && !errors.Is(err, ErrNoSnapshot) {
		return err
	}
	if version > latest {
		if err := writeAtomic(filepath.Join(s.dir, "latest"), []byte(strconv.FormatUint(version, 10)+"\n")); err != nil {
			return fmt.Errorf("categorizer: file store put %d: %w", version, err)
		}
	}
	s.prune()
	for ch := range s.subs {
		select {
		case ch <- version:
		default: // a slow subscriber gets the latest through polling
		}
	}
	return nil
}

// prune removes the oldest versions beyond keep (never the latest).
func (s *FileStore) prune() {
	vs, err := s.versions()
	if err != nil || len(vs) <= s.keep {
		return
	}
	latest, _ := s.latestVersion()
	for _, v := range vs[:len(vs)-s.keep] {
		if v != latest {
			_ = os.Remove(s.path(v))
		}
	}
}

// versions lists stored versions, oldest first.
func (s *FileStore) versions() ([]uint64, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var vs []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".snapshot")
		if !ok {
			continue
		}
		if v, err := strconv.ParseUint(name, 10, 64); err == nil {
			vs = append(vs, v)
		}
	}
	slices.Sort(vs)
	return vs, nil
}

func (s *FileStore) latestVersion() (uint64, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, "latest"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("categorizer: file store %s: %w", s.dir, ErrNoSnapshot)
	}
	if err != nil {
		return 0, fmt.Errorf("categorizer: file store: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("categorizer: file store %s/latest: %w", s.dir, err)
	}
	return v, nil
}

// LatestVersion implements SnapshotStore.
func (s *FileStore) LatestVersion(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latestVersion()
}

// Latest implements SnapshotStore.
func (s *FileStore) Latest(ctx context.Context) (uint64, []byte, error) {
	s.mu.Lock()
	v, err := s.latestVersion()
	s.mu.Unlock()
	if err != nil {
		return 0, nil, err
	}
	data, err := s.Get(ctx, v)
	return v, data, err
}

// Get implements SnapshotStore.
func (s *FileStore) Get(ctx context.Context, version uint64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.path(version))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("categorizer: file store version %d: %w", version, ErrNoSnapshot)
	}
	if err != nil {
		return nil, fmt.Errorf("categorizer: file store: %w", err)
	}
	return b, nil
}

// Subscribe implements SnapshotStore.
func (s *FileStore) Subscribe(ctx context.Context, fn func(uint64)) error {
	ch := make(chan uint64, 8)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	last, err := s.latestVersion()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}()
	if err == nil {
		fn(last) // live now: hand over the current latest
	}
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case v := <-ch:
			if v > last {
				last = v
			}
			fn(v)
		case <-t.C:
			s.mu.Lock()
			v, err := s.latestVersion()
			s.mu.Unlock()
			if err == nil && v > last {
				last = v
				fn(v)
			}
		}
	}
}

// CachedStore puts a local store (a FileStore in the data directory) in
// front of a remote one (Redis): what is read from or written to the
// remote is copied to the local store, and when the remote fails Latest
// and Get answer from the local copy, so an edge restarting while Redis is
// down still serves the last snapshot.
type CachedStore struct {
	Remote SnapshotStore
	Local  SnapshotStore
	// Logger receives fallback warnings; nil means slog.Default().
	Logger *slog.Logger
}

var _ SnapshotStore = (*CachedStore)(nil)

func (c *CachedStore) log() *slog.Logger {
	if c.Logger == nil {
		return slog.Default()
	}
	return c.Logger
}

// Put stores in the remote store, then in the local one.
func (c *CachedStore) Put(ctx context.Context, version uint64, data []byte) error {
	if err := c.Remote.Put(ctx, version, data); err != nil {
		return err
	}
	return c.Local.Put(ctx, version, data)
}

// Latest asks the remote store, caching the answer; on a remote error
// other than ErrNoSnapshot it answers from the local store.
func (c *CachedStore) Latest(ctx context.Context) (uint64, []byte, error) {
	v, data, err := c.Remote.Latest(ctx)
	if err == nil {
		if verr := VerifySnapshot(data); verr != nil {
			// a damaged latest copy must not stop an edge that has a
			// good one: answer from the local store instead
			err = fmt.Errorf("remote snapshot %d: %w", v, verr)
		} else {
			c.cache(ctx, v, data)
			return v, data, nil
		}
	}
	lv, ldata, lerr := c.Local.Latest(ctx)
	if lerr != nil {
		return 0, nil, errors.Join(err, lerr)
	}
	if !errors.Is(err, ErrNoSnapshot) {
		c.log().WarnContext(ctx, "snapshot store unreachable, serving the local copy", "version", lv, "err", err)
	}
	return lv, ldata, nil
}

// LatestVersion asks the remote store; on a remote error other than
// ErrNoSnapshot it answers from the local store.
func (c *CachedStore) LatestVersion(ctx context.Context) (uint64, error) {
	v, err := c.Remote.LatestVersion(ctx)
	if err == nil {
		return v, nil
	}
	lv, lerr := c.Local.LatestVersion(ctx)
	if lerr != nil {
		return 0, errors.Join(err, lerr)
	}
	if !errors.Is(err, ErrNoSnapshot) {
		c.log().WarnContext(ctx, "snapshot store unreachable, serving the local copy", "version", lv, "err", err)
	}
	return lv, nil
}

// Get asks the local store first (snapshots never change), then the
// remote one.
func (c *CachedStore) Get(ctx context.Context, version uint64) ([]byte, error) {
	if data, err := c.Local.Get(ctx, version); err == nil {
		return data, nil
	}
	data, err := c.Remote.Get(ctx, version)
	if err != nil {
		return nil, err
	}
	c.cache(ctx, version, data)
	return data, nil
}

func (c *CachedStore) cache(ctx context.Context, v uint64, data []byte) {
	if _, err := c.Local.Get(ctx, v); err == nil {
		return
	}
	if err := VerifySnapshot(data); err != nil {
		// never keep a damaged copy: a restart would load it
		c.log().WarnContext(ctx, "not caching a damaged snapshot", "version", v, "err", err)
		return
	}
	if err := c.Local.Put(ctx, v, data); err != nil {
		c.log().WarnContext(ctx, "cache snapshot locally", "version", v, "err", err)
	}
}

// Subscribe follows the remote store's announcements.
func (c *CachedStore) Subscribe(ctx context.Context, fn func(uint64)) error {
	return c.Remote.Subscribe(ctx, fn)
}

// LoadLatest loads and decodes the newest snapshot of a store.
func LoadLatest(ctx context.Context, store SnapshotStore) (*Index, error) {
	_, data, err := store.Latest(ctx)
	if err != nil {
		return nil, err
	}
	return DecodeSnapshot(data)
}

// Follow keeps an edge on the newest snapshot: it subscribes, then loads
// the latest snapshot, then every announced newer one, and calls apply
// with each decoded Index (apply swaps it in, e.g. Engine.SetIndex). A
// snapshot that fails to load or decode is logged and skipped; the
// current one keeps serving. Follow returns when ctx is done. current is
// the version already applied (0 for none). compiled, when not nil,
// returns the Index of a version this process compiled itself (nil
// otherwise): Follow applies it as it is instead of fetching and decoding
// a second copy.
func Follow(ctx context.Context, store SnapshotStore, current uint64, logger *slog.Logger, compiled func(version uint64) *Index, apply func(*Index) error) error {
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("component", "categorizer")
	notify := make(chan uint64, 1)
	subDone := make(chan error, 1)
	go func() {
		subDone <- store.Subscribe(ctx, func(v uint64) {
			select {
			case notify <- v:
			default:
				select { // replace the pending one: only the newest matters
				case <-notify:
				default:
				}
				select {
				case notify <- v:
				default:
				}
			}
		})
	}()
	load := func(v uint64, latest bool) {
		var err error
		if latest {
			// Only the version first: the data is fetched when it is new.
			v, err = store.LatestVersion(ctx)
		}
		if err == nil && v <= current {
			return
		}
		var ix *Index
		if err == nil && compiled != nil {
			ix = compiled(v) // this process built it: no fetch, no decode
		}
		if ix == nil && err == nil {
			var data []byte
			if data, err = store.Get(ctx, v); err == nil {
				if ix, err = DecodeSnapshot(data); err != nil {
					logger.ErrorContext(ctx, "rejected snapshot", "version", v, "err", err)
					return
				}
			}
		}
		if err != nil {
			if !errors.Is(err, ErrNoSnapshot) && ctx.Err() == nil {
				logger.WarnContext(ctx, "load snapshot", "version", v, "err", err)
			}
			return
		}
		if err := apply(ix); err != nil {
			logger.ErrorContext(ctx, "apply snapshot", "version", v, "err", err)
			return
		}
		current = v
		logger.InfoContext(ctx, "snapshot applied", "version", v, "entries", ix.Len())
	}
	load(0, true)
	retry := time.NewTicker(30 * time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case v := <-notify:
			if v > current {
				load(v, false)
			}
		case <-retry.C:
			load(0, true) // catches announcements missed while disconnected
		case err := <-subDone:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			logger.WarnContext(ctx, "snapshot subscription ended, resubscribing", "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
			go func() {
				subDone <- store.Subscribe(ctx, func(v uint64) {
					select {
					case notify <- v:
					default:
					}
				})
			}()
		}
	}
}
