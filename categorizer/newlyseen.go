package categorizer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/net/publicsuffix"

	"github.com/cordon-gw/cordon/internal/obs"
)

// NewlySeenConfig configures the newly_seen category.
type NewlySeenConfig struct {
	// Disabled turns the newly_seen category off (Check always false).
	Disabled bool `yaml:"disabled"`
	// Window: a registrable domain first seen less than this long ago is
	// newly seen. Default 24h.
	Window time.Duration `yaml:"window"`
	// MaxDomains bounds the domains held in memory; beyond it the oldest
	// half is forgotten (they may count as new again). Default 2,000,000.
	MaxDomains int `yaml:"max_domains"`
	// QueueSize bounds first sightings waiting to be written to the store;
	// overflow is dropped and counted. Default 8192.
	QueueSize int `yaml:"queue_size"`
}

// NewlySeenDefaults returns the defaults.
func NewlySeenDefaults() NewlySeenConfig {
	return NewlySeenConfig{Window: 24 * time.Hour, MaxDomains: 2_000_000, QueueSize: 8192}
}

func (c NewlySeenConfig) effective() NewlySeenConfig {
	d := NewlySeenDefaults()
	if c.Window <= 0 {
		c.Window = d.Window
	}
	if c.MaxDomains <= 0 {
		c.MaxDomains = d.MaxDomains
	}
	if c.QueueSize <= 0 {
		c.QueueSize = d.QueueSize
	}
	return c
}

// Validate reports invalid fields.
func (c NewlySeenConfig) Validate() error {
	var errs []error
	if c.Window < 0 {
		errs = append(errs, fmt.Errorf("categorizer: newly_seen.window: %v is negative", c.Window))
	}
	if c.MaxDomains < 0 {
		errs = append(errs, fmt.Errorf("categorizer: newly_seen.max_domains: %d is negative", c.MaxDomains))
	}
	if c.QueueSize < 0 {
		errs = append(errs, fmt.Errorf("categorizer: newly_seen.queue_size: %d is negative", c.QueueSize))
	}
	return errors.Join(errs...)
}

// FirstSeenStore records the first sighting of registrable domains where
// every edge sees them (redisstore.FirstSeen) or durably on one machine
// (FileFirstSeen).
type FirstSeenStore interface {
	// FirstSeen records at as the first sighting of domain unless one is
	// already recorded, and returns the recorded first sighting.
	FirstSeen(ctx context.Context, domain string, at time.Time) (time.Time, error)
}

// FirstSeenLoader is implemented by stores that can hand every recorded
// sighting to a starting NewlySeen (local stores). With a loader the
// in-memory map is complete, so an unknown domain is new at once; without
// one (a shared store) an unknown domain is reported new only after the
// store confirmed it was not seen earlier by another edge.
type FirstSeenLoader interface {
	Load(ctx context.Context, fn func(domain string, first time.Time)) error
}

// NewlySeen tracks first sightings of registrable domains. Check runs on
// the hot path: it reads memory only and hands first sightings to a
// background writer (Run) through a bounded queue. A nil *NewlySeen is
// valid: Check reports false.
type NewlySeen struct {
	cfg           NewlySeenConfig
	store         FirstSeenStore
	authoritative bool
	log           *slog.Logger
	seed          maphash.Seed
	shards        [64]seenShard
	count         atomic.Int64
	queue         chan sighting
	evictCh       chan struct{}
	dropped       prometheus.Counter
	recorded      prometheus.Counter
	storeErrors   prometheus.Counter
}

type seenShard struct {
	mu sync.RWMutex
	m  map[string]seenEntry
}

// seenEntry is a first sighting in Unix seconds; pending entries wait for
// the shared store to confirm they are the first.
type seenEntry struct {
	first   int64
	pending bool
}

type sighting struct {
	domain string
	at     time.Time
}

// NewNewlySeen returns a tracker writing first sightings to store (nil:
// memory only). Call Run to start the writer (and the load of a
// FirstSeenLoader store).
func NewNewlySeen(cfg NewlySeenConfig, store FirstSeenStore, logger *slog.Logger, reg prometheus.Registerer) *NewlySeen {
	cfg = cfg.effective()
	if logger == nil {
		logger = slog.Default()
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	_, loader := store.(FirstSeenLoader)
	f := promauto.With(reg)
	n := &NewlySeen{
		cfg: cfg, store: store, authoritative: store == nil || loader,
		log: logger.With("component", "categorizer"), seed: maphash.MakeSeed(),
		queue: make(chan sighting, cfg.QueueSize), evictCh: make(chan struct{}, 1),
		dropped: f.NewCounter(prometheus.CounterOpts{Namespace: obs.Namespace, Subsystem: subsystem, Name: "newly_seen_dropped_total",
			Help: "First sightings not written to the store because the queue was full."}),
		recorded: f.NewCounter(prometheus.CounterOpts{Namespace: obs.Namespace, Subsystem: subsystem, Name: "newly_seen_recorded_total",
			Help: "First sightings of registrable domains recorded by this edge."}),
		storeErrors: f.NewCounter(prometheus.CounterOpts{Namespace: obs.Namespace, Subsystem: subsystem, Name: "newly_seen_store_errors_total",
			Help: "First-seen store writes that failed."}),
	}
	for i := range n.shards {
		n.shards[i].m = map[string]seenEntry{}
	}
	return n
}

// RegistrableDomain returns the registrable domain (eTLD+1, public
// suffix list) of a normalized host, or "" for IP literals, public
// suffixes and invalid names.
func RegistrableDomain(host string) string {
	host = strings.TrimSuffix(host, ".")
	if host == "" || strings.IndexByte(host, '.') < 0 {
		return ""
	}
	if _, ok := parseIPLiteral(host); ok {
		return ""
	}
	d, err := publicsuffix.EffectiveTLDPlusOne(host)
	if err != nil {
		return ""
	}
	return d
}

// Check reports whether host's registrable domain was first seen within
// the window before now, and records a first sighting. It never blocks
// on I/O; host should be normalized (lower case). nil-safe.
func (n *NewlySeen) Check(host string, now time.Time) bool {
	if n == nil || n.cfg.Disabled {
		return false
	}
	host = strings.TrimSuffix(host, ".")
	// Fast path, no allocation: the map holds registrable domains only,
	// and the longest suffix of host found in it is host's registrable
	// domain (a longer registrable suffix would need a longer public
	// suffix of host). publicsuffix allocates, so it runs only for
	// domains this edge has not seen.
	for i := 0; i < len(host); i++ {
		if i > 0 && host[i-1] != '.' {
			continue
		}
		s := host[i:]
		if strings.IndexByte(s, '.') < 0 {
			break
		}
		sh := &n.shards[maphash.String(n.seed, s)&63]
		sh.mu.RLock()
		e, ok := sh.m[s]
		sh.mu.RUnlock()
		if ok {
			return !e.pending && now.Unix()-e.first < int64(n.cfg.Window/time.Second)
		}
	}
	d := RegistrableDomain(host)
	if d == "" {
		return false
	}
	sh := &n.shards[maphash.String(n.seed, d)&63]
	var e seenEntry
	var ok bool
	// First sighting by this edge.
	d = strings.Clone(d)
	sh.mu.Lock()
	if e, ok = sh.m[d]; !ok {
		e = seenEntry{first: now.Unix(), pending: !n.authoritative}
		sh.m[d] = e
	}
	sh.mu.Unlock()
	if ok {
		return !e.pending && now.Unix()-e.first < int64(n.cfg.Window/time.Second)
	}
	if n.count.Add(1) > int64(n.cfg.MaxDomains) {
		select { // Run evicts in the background
		case n.evictCh <- struct{}{}:
		default:
		}
	}
	n.recorded.Inc()
	if n.store != nil {
		select {
		case n.queue <- sighting{d, now}:
		default:
			n.dropped.Inc()
		}
	}
	return !e.pending
}

// evict bounds memory: it forgets domains first seen before the window
// (they are old anyway; forgotten, they count as new if seen again) and,
// while a shard is still over half its share, arbitrary ones.
func (n *NewlySeen) evict(now time.Time) {
	cut := now.Add(-n.cfg.Window).Unix()
	for i := range n.shards {
		sh := &n.shards[i]
		sh.mu.Lock()
		for d, e := range sh.m {
			if e.first < cut || len(sh.m) > n.cfg.MaxDomains/len(n.shards)/2 {
				delete(sh.m, d)
				n.count.Add(-1)
			}
		}
		sh.mu.Unlock()
	}
}

func (n *NewlySeen) set(d string, first time.Time) {
	sh := &n.shards[maphash.String(n.seed, d)&63]
	sh.mu.Lock()
	if _, ok := sh.m[d]; !ok {
		n.count.Add(1)
	}
	sh.m[d] = seenEntry{first: first.Unix()}
	sh.mu.Unlock()
}

// Run loads a FirstSeenLoader store, writes queued first sightings to the
// store and bounds memory (MaxDomains) until ctx is done. nil-safe.
func (n *NewlySeen) Run(ctx context.Context) error {
	if n == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	if n.store == nil {
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-n.evictCh:
				n.evict(time.Now())
			}
		}
	}
	if l, ok := n.store.(FirstSeenLoader); ok {
		if err := l.Load(ctx, func(d string, first time.Time) { n.set(d, first) }); err != nil {
			n.log.WarnContext(ctx, "load first sightings", "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-n.evictCh:
			n.evict(time.Now())
		case s := <-n.queue:
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			first, err := n.store.FirstSeen(wctx, s.domain, s.at)
			cancel()
			if err != nil {
				n.storeErrors.Inc()
				if ctx.Err() == nil {
					n.log.WarnContext(ctx, "record first sighting", "domain", s.domain, "err", err)
				}
				first = s.at // keep serving with this edge's own sighting
			}
			n.set(s.domain, first)
		}
	}
}

// FileFirstSeen is a FirstSeenStore in an append-only file of
// "domain unix-seconds" lines, for a single node without Redis.
type FileFirstSeen struct {
	path string
	mu   sync.Mutex
	seen map[string]time.Time
	f    *os.File
}

var (
	_ FirstSeenStore  = (*FileFirstSeen)(nil)
	_ FirstSeenLoader = (*FileFirstSeen)(nil)
)

// NewFileFirstSeen opens (creating) the file; unparsable lines are skipped.
func NewFileFirstSeen(path string) (*FileFirstSeen, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("categorizer: first-seen file: %w", err)
	}
	s := &FileFirstSeen{path: path, seen: map[string]time.Time{}}
	if fh, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			d, ts, ok := strings.Cut(sc.Text(), " ")
			if sec, err := strconv.ParseInt(ts, 10, 64); ok && err == nil && d != "" {
				if _, dup := s.seen[d]; !dup {
					s.seen[d] = time.Unix(sec, 0)
				}
			}
		}
		fh.Close()
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("categorizer: first-seen file: %w", err)
	}
	s.f = f
	return s, nil
}

// FirstSeen implements FirstSeenStore.
func (s *FileFirstSeen) FirstSeen(_ context.Context, domain string, at time.Time) (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.seen[domain]; ok {
		return t, nil
	}
	if _, err := fmt.Fprintf(s.f, "%s %d\n", domain, at.Unix()); err != nil {
		return at, fmt.Errorf("categorizer: first-seen file %s: %w", s.path, err)
	}
	s.seen[domain] = at.Truncate(time.Second)
	return at, nil
}

// Load implements FirstSeenLoader.
func (s *FileFirstSeen) Load(_ context.Context, fn func(string, time.Time)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d, t := range s.seen {
		fn(d, t)
	}
	return nil
}

// Close closes the file.
func (s *FileFirstSeen) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Close()
}
