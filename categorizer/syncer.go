package categorizer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SyncerConfig configures a Syncer.
type SyncerConfig struct {
	// Config is the categorizer configuration (Effective is applied).
	Config Config
	// CacheDir keeps the last good copy of every feed and status.json;
	// required (cmd uses <data-dir>/feeds).
	CacheDir string
	// Store receives each compiled snapshot (Put publishes it); nil keeps
	// snapshots in memory only.
	Store SnapshotStore
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Registerer for the metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Client downloads http(s) feeds; nil means a client with
	// Config.Timeout and the proxy from the environment.
	Client *http.Client
	// Progress, when set, is called while a feed downloads (total is -1
	// when unknown), for terminal progress bars.
	Progress func(feed string, done, total int64)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Syncer fetches the configured feeds, validates each new version
// (download failure, parsed to nothing, or shrank by more than max_shrink
// rejects it and keeps the last good one), compiles all last good
// versions into one Index and publishes its snapshot. Safe for concurrent
// use; syncs run one at a time.
type Syncer struct {
	cfg     SyncerConfig
	log     *slog.Logger
	client  *http.Client
	metrics *syncMetrics

	mu      sync.Mutex // held during a sync
	stMu    sync.RWMutex
	feeds   []*feedState
	index   *Index
	version uint64
	dirty   bool // the last build or publish failed: retry on the next Sync
}

type feedState struct {
	cfg    FeedConfig
	status FeedStatus
}

// NewSyncer prepares a Syncer; it reads the cached feed status so
// validators (ETag) and shrink checks survive restarts.
func NewSyncer(cfg SyncerConfig) (*Syncer, error) {
	cfg.Config = cfg.Config.Effective()
	if err := cfg.Config.Validate(); err != nil {
		return nil, err
	}
	if cfg.CacheDir == "" {
		return nil, fmt.Errorf("categorizer: syncer: empty cache directory")
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("categorizer: syncer: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Syncer{cfg: cfg, log: cfg.Logger, client: cfg.Client, metrics: newSyncMetrics(cfg.Registerer)}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "categorizer")
	if s.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		s.client = &http.Client{Timeout: cfg.Config.Timeout, Transport: tr}
	}
	saved, _ := ReadStatus(cfg.CacheDir)
	byName := map[string]FeedStatus{}
	for _, st := range saved {
		byName[st.Name] = st
	}
	for _, f := range cfg.Config.Feeds {
		fs := &feedState{cfg: f, status: FeedStatus{Name: f.Name, Source: f.Source, Format: f.Format, Categories: f.Categories, Threat: f.Threat}}
		if old, ok := byName[f.Name]; ok && old.Source == f.Source && old.Format == f.Format {
			if _, err := os.Stat(s.dataPath(f.Name)); err == nil {
				old.Categories, old.Threat = f.Categories, f.Threat
				fs.status = old
			}
		}
		s.feeds = append(s.feeds, fs)
	}
	return s, nil
}

func (s *Syncer) dataPath(name string) string { return filepath.Join(s.cfg.CacheDir, name+".data") }

// ReadStatus reads the feed status a Syncer saved in cacheDir (for
// `cordon feeds status` in another process).
func ReadStatus(cacheDir string) ([]FeedStatus, error) {
	b, err := os.ReadFile(filepath.Join(cacheDir, "status.json"))
	if err != nil {
		return nil, fmt.Errorf("categorizer: read feed status: %w", err)
	}
	var st []FeedStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("categorizer: read feed status %s: %w", filepath.Join(cacheDir, "status.json"), err)
	}
	return st, nil
}

// Status returns the status of every configured feed.
func (s *Syncer) Status() []FeedStatus {
	s.stMu.RLock()
	defer s.stMu.RUnlock()
	out := make([]FeedStatus, len(s.feeds))
	for i, f := range s.feeds {
		out[i] = f.status
	}
	return out
}

// Index returns the last compiled Index, or nil before the first sync.
func (s *Syncer) Index() *Index {
	s.stMu.RLock()
	defer s.stMu.RUnlock()
	return s.index
}

// Compiled returns the last compiled Index when it is the given version,
// else nil (for Follow: the process that compiled a snapshot serves that
// Index, not a decoded copy of it).
func (s *Syncer) Compiled(version uint64) *Index {
	if ix := s.Index(); ix != nil && ix.Version() == version {
		return ix
	}
	return nil
}

// Sync refreshes every feed that is due (every feed when force is set, or
// that has no good version yet), and when anything changed (or nothing
// was compiled yet) compiles a new Index, stores and announces its
// snapshot and returns it. With nothing changed it returns the current
// Index. Per-feed failures do not fail the sync (see Status); an error
// means no Index could be built or stored.
func (s *Syncer) Sync(ctx context.Context, force bool) (*Index, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := s.Index() == nil || s.dirty
	for _, f := range s.feeds {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.stMu.RLock()
		st := f.status
		s.stMu.RUnlock()
		due := st.UpdatedAt.IsZero() || force || s.cfg.Now().Sub(st.CheckedAt) >= f.cfg.Refresh
		if !due {
			continue
		}
		if s.refresh(ctx, f) {
			changed = true
		}
	}
	if !changed {
		if err := s.saveStatus(s.Status()); err != nil {
			s.log.WarnContext(ctx, "save feed status", "err", err)
		}
		return s.Index(), nil
	}
	ix, err := s.build(ctx)
	s.dirty = err != nil
	if err != nil {
		return nil, err
	}
	return ix, nil
}

// refresh fetches one feed and validates it; it reports whether the
// content in use changed.
func (s *Syncer) refresh(ctx context.Context, f *feedState) bool {
	now := s.cfg.Now()
	s.stMu.RLock()
	prev := f.status
	s.stMu.RUnlock()
	reject := func(reason error) bool {
		s.stMu.Lock()
		f.status.CheckedAt = now
		f.status.LastError = reason.Error()
		f.status.Rejected = true
		f.status.Rejections++
		s.stMu.Unlock()
		s.metrics.syncs.WithLabelValues(f.cfg.Name, "rejected").Inc()
		s.log.WarnContext(ctx, "feed update rejected, keeping the last good version",
			"feed", f.cfg.Name, "source", f.cfg.Source, "entries_in_use", prev.Entries, "err", reason)
		return false
	}
	tmp, err := os.MkdirTemp(s.cfg.CacheDir, ".fetch-"+f.cfg.Name+"-")
	if err != nil {
		return reject(fmt.Errorf("%w: %v", ErrFeedRejected, err))
	}
	defer os.RemoveAll(tmp)
	dst := filepath.Join(tmp, "data")
	ctxTimeout, cancel := context.WithTimeout(ctx, s.cfg.Config.Timeout)
	got, err := s.fetchTo(ctxTimeout, f.cfg, dst, prev)
	cancel()
	if err != nil {
		return reject(fmt.Errorf("%w: download failed: %v", ErrFeedRejected, err))
	}
	if got.notModified || (got.sha256 != "" && got.sha256 == prev.SHA256 && !prev.UpdatedAt.IsZero()) {
		s.stMu.Lock()
		f.status.CheckedAt = now
		f.status.LastError = ""
		f.status.Rejected = false
		s.stMu.Unlock()
		s.metrics.syncs.WithLabelValues(f.cfg.Name, "unchanged").Inc()
		return false
	}
	stats, err := parseFeed(f.cfg, dst, nil)
	if err != nil {
		return reject(fmt.Errorf("%w: %v", ErrFeedRejected, err))
	}
	if stats.Entries == 0 {
		return reject(fmt.Errorf("%w: parsed to nothing (%d lines, %d invalid, %d skipped)", ErrFeedRejected, stats.Lines, stats.Invalid, stats.Skipped))
	}
	if prev.Entries > 0 && float64(stats.Entries) < float64(prev.Entries)*(1-f.cfg.MaxShrink) {
		return reject(fmt.Errorf("%w: shrank from %d to %d entries, more than max_shrink %.0f%%", ErrFeedRejected, prev.Entries, stats.Entries, f.cfg.MaxShrink*100))
	}
	final := s.dataPath(f.cfg.Name)
	if err := os.RemoveAll(final); err != nil {
		return reject(fmt.Errorf("%w: %v", ErrFeedRejected, err))
	}
	if err := os.Rename(dst, final); err != nil {
		return reject(fmt.Errorf("%w: %v", ErrFeedRejected, err))
	}
	st := feedStatus(f.cfg, stats)
	st.UpdatedAt, st.CheckedAt = now, now
	st.Rejections = prev.Rejections
	st.Bytes, st.SHA256, st.ETag, st.LastModified = got.bytes, got.sha256, got.etag, got.lastModified
	s.stMu.Lock()
	f.status = st
	s.stMu.Unlock()
	s.metrics.syncs.WithLabelValues(f.cfg.Name, "updated").Inc()
	s.metrics.entries.WithLabelValues(f.cfg.Name).Set(float64(stats.Entries))
	s.metrics.updated.WithLabelValues(f.cfg.Name).Set(float64(now.Unix()))
	if stats.Invalid > 0 {
		s.log.InfoContext(ctx, "feed has invalid lines", "feed", f.cfg.Name, "invalid", stats.Invalid, "first", stats.Errors[0].Error())
	}
	s.log.InfoContext(ctx, "feed updated", "feed", f.cfg.Name, "entries", stats.Entries, "bytes", got.bytes)
	return true
}

// build compiles the last good version of every feed.
func (s *Syncer) build(ctx context.Context) (*Index, error) {
	start := time.Now()
	b := NewBuilder()
	status := s.Status()
	total := 0
	for _, st := range status {
		total += st.Entries
	}
	b.Grow(total)
	var errs []error
	for i, f := range s.feeds {
		if status[i].UpdatedAt.IsZero() {
			continue // never fetched successfully: nothing to serve
		}
		if _, err := addFeed(b, f.cfg, s.dataPath(f.cfg.Name)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("categorizer: build snapshot: %w", err)
	}
	b.SetStatus(status)
	version := uint64(s.cfg.Now().UnixMilli())
	if s.cfg.Store != nil {
		if v, err := s.cfg.Store.LatestVersion(ctx); err == nil && v >= version {
			version = v + 1
		}
	}
	if version <= s.version {
		version = s.version + 1
	}
	ix, err := b.Build(version)
	if err != nil {
		return nil, fmt.Errorf("categorizer: build snapshot: %w", err)
	}
	if s.cfg.Store != nil {
		data, err := EncodeSnapshot(ix)
		if err != nil {
			return nil, err
		}
		if err := s.cfg.Store.Put(ctx, version, data); err != nil {
			return nil, fmt.Errorf("categorizer: publish snapshot %d: %w", version, err)
		}
	}
	if err := s.saveStatus(status); err != nil {
		s.log.WarnContext(ctx, "save feed status", "err", err)
	}
	s.stMu.Lock()
	s.index, s.version = ix, version
	s.stMu.Unlock()
	s.metrics.version.Set(float64(version))
	s.metrics.indexEntries.Set(float64(ix.Len()))
	s.metrics.build.Observe(time.Since(start).Seconds())
	s.log.InfoContext(ctx, "snapshot compiled", "version", version, "entries", ix.Len(), "took", time.Since(start).Round(time.Millisecond))
	return ix, nil
}

func (s *Syncer) saveStatus(st []FeedStatus) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(s.cfg.CacheDir, "status.json"), b)
}

// Run syncs at once and then whenever a feed is due (checked every
// minute), calling apply with each new Index, until ctx is done.
func (s *Syncer) Run(ctx context.Context, apply func(*Index)) error {
	var applied uint64
	step := func() {
		ix, err := s.Sync(ctx, false)
		if err != nil {
			if ctx.Err() == nil {
				s.log.ErrorContext(ctx, "feed sync", "err", err)
			}
			return
		}
		if ix != nil && ix.Version() != applied && apply != nil {
			apply(ix)
			applied = ix.Version()
		}
	}
	step()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			step()
		}
	}
}
