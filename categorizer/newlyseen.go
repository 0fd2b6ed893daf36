package categorizer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"log/slog"
	"math"
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
	// Learning is the learning period after the first start of the
	// installation (recorded in the first-seen store: the data directory,
	// or Redis for every edge): domains first seen during it are recorded
	// but never newly seen. Zero means 168h (7 days); negative turns the
	// learning period off.
	Learning time.Duration `yaml:"learning"`
	// Established lists domains that are never newly seen (each reduced
	// to its registrable domain), added to the baseline of the bundled
	// popularity list and the domains of the non-threat feeds.
	Established []string `yaml:"established"`
	// EstablishedFiles are files of such domains: one name per line, or
	// "rank,domain" lines as in the Umbrella and Tranco top lists; '#'
	// comments; gzip-compressed when the name ends in .gz. Read at start.
	EstablishedFiles []string `yaml:"established_files"`
	// MaxDomains bounds the domains held in memory; beyond it the oldest
	// half is forgotten (they may count as new again). Default 2,000,000.
	MaxDomains int `yaml:"max_domains"`
	// QueueSize bounds first sightings waiting to be written to the store;
	// overflow is dropped and counted. Default 8192.
	QueueSize int `yaml:"queue_size"`
}

// DefaultLearning is the learning period when NewlySeenConfig.Learning is
// zero.
const DefaultLearning = 7 * 24 * time.Hour

// NewlySeenDefaults returns the defaults.
func NewlySeenDefaults() NewlySeenConfig {
	return NewlySeenConfig{Window: 24 * time.Hour, Learning: DefaultLearning, MaxDomains: 2_000_000, QueueSize: 8192}
}

func (c NewlySeenConfig) effective() NewlySeenConfig {
	d := NewlySeenDefaults()
	if c.Window <= 0 {
		c.Window = d.Window
	}
	if c.Learning == 0 {
		c.Learning = d.Learning
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
	for i, e := range c.Established {
		h, err := NormalizeHost(e)
		if err == nil && RegistrableDomain(h) == "" {
			err = fmt.Errorf("%q has no registrable domain (a public suffix or an IP address)", e)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("categorizer: newly_seen.established[%d]: %w", i, err))
		}
	}
	for i, f := range c.EstablishedFiles {
		if strings.TrimSpace(f) == "" {
			errs = append(errs, fmt.Errorf("categorizer: newly_seen.established_files[%d]: empty path", i))
		}
	}
	return errors.Join(errs...)
}

// LoadEstablished builds the configured part of the baseline: the
// Established domains and the EstablishedFiles. A file that cannot be
// read or holds no domain is an error; invalid lines are counted in the
// returned stats (one per file).
func (c NewlySeenConfig) LoadEstablished() (*DomainSet, []DomainListStats, error) {
	names := make([]string, 0, len(c.Established))
	for _, e := range c.Established {
		if h, err := NormalizeHost(e); err == nil {
			names = append(names, h)
		}
	}
	var stats []DomainListStats
	var errs []error
	for _, f := range c.EstablishedFiles {
		ds, st, err := ReadDomainListFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("categorizer: newly_seen.established_files: %w", err))
			continue
		}
		names = append(names, ds...)
		stats = append(stats, st)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, stats, err
	}
	return NewDomainSet(names), stats, nil
}

// FirstSeenStore records the first sighting of registrable domains where
// every edge sees them (redisstore.FirstSeen) or durably on one machine
// (FileFirstSeen).
type FirstSeenStore interface {
	// FirstSeen records at as the first sighting of domain unless one is
	// already recorded, and returns the recorded first sighting.
	FirstSeen(ctx context.Context, domain string, at time.Time) (time.Time, error)
	// LearningStart records at as the start of the learning period unless
	// one is recorded (the first start of the installation, shared by
	// every edge of a shared store), and returns the recorded start. A
	// store with sightings but no start (data from before learning
	// periods existed) may record its earliest sighting instead.
	LearningStart(ctx context.Context, at time.Time) (time.Time, error)
	// Sighting returns the recorded first sighting of domain, without
	// recording one (ok false: none recorded).
	Sighting(ctx context.Context, domain string) (first time.Time, ok bool, err error)
}

// FirstSeenLoader is implemented by stores that can hand every recorded
// sighting to a starting NewlySeen (local stores). With a loader the
// in-memory map is complete, so an unknown domain is new at once; without
// one (a shared store) an unknown domain is reported new only after the
// store confirmed it was not seen earlier by another edge.
type FirstSeenLoader interface {
	Load(ctx context.Context, fn func(domain string, first time.Time)) error
}

// NewlySeen tracks first sightings of registrable domains. A domain is
// newly seen when its first sighting is less than Window ago, came after
// the learning period, and the domain is not in the baseline of
// established domains (the bundled popularity list, every registrable
// domain of the non-threat feeds of the Index in use, the configured
// list). Check runs on the hot path: it reads memory only and hands
// first sightings to a background writer (Run) through a bounded queue.
// A nil *NewlySeen is valid: Check reports false.
type NewlySeen struct {
	cfg           NewlySeenConfig
	window        int64 // seconds
	store         FirstSeenStore
	authoritative bool
	log           *slog.Logger
	seed          maphash.Seed
	shards        [64]seenShard
	count         atomic.Int64
	queue         chan sighting
	evictCh       chan struct{}

	popular    *DomainSet
	configured atomic.Pointer[DomainSet]
	index      atomic.Pointer[Index]
	// learnStart and learnEnd are Unix seconds; a first sighting before
	// learnEnd is never newly seen. Until the store has answered,
	// learnEnd is math.MaxInt64 (still learning) and learnStart 0.
	learnStart atomic.Int64
	learnEnd   atomic.Int64
	loaded     atomic.Bool
	// gen is the baseline generation, bumped by SetIndex and
	// SetEstablished (seenEntry.gen).
	gen atomic.Uint32

	dropped     prometheus.Counter
	recorded    prometheus.Counter
	storeErrors prometheus.Counter
}

type seenShard struct {
	mu sync.RWMutex
	m  map[string]seenEntry
}

// seenEntry is a first sighting in Unix seconds; pending entries wait for
// the shared store to confirm they are the first. below marks a
// registrable domain with public suffixes below it (longerRegistrable).
// est caches whether the baseline holds the domain, valid while gen is
// the tracker's baseline generation (0: not computed).
type seenEntry struct {
	first   int64
	gen     uint32
	pending bool
	below   bool
	est     bool
}

type sighting struct {
	domain string
	at     time.Time
}

// NewNewlySeen returns a tracker writing first sightings to store (nil:
// memory only, and the learning period starts at Run). Call Run to start
// the writer, the load of a FirstSeenLoader store and the learning
// period; Load does the latter two at once.
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
		cfg: cfg, window: int64(cfg.Window / time.Second), store: store, authoritative: store == nil || loader,
		log: logger.With("component", "categorizer"), seed: maphash.MakeSeed(),
		queue: make(chan sighting, cfg.QueueSize), evictCh: make(chan struct{}, 1),
		popular: PopularDomains(),
		dropped: f.NewCounter(prometheus.CounterOpts{Namespace: obs.Namespace, Subsystem: subsystem, Name: "newly_seen_dropped_total",
			Help: "First sightings not written to the store because the queue was full."}),
		recorded: f.NewCounter(prometheus.CounterOpts{Namespace: obs.Namespace, Subsystem: subsystem, Name: "newly_seen_recorded_total",
			Help: "First sightings of registrable domains recorded by this edge."}),
		storeErrors: f.NewCounter(prometheus.CounterOpts{Namespace: obs.Namespace, Subsystem: subsystem, Name: "newly_seen_store_errors_total",
			Help: "First-seen store writes that failed."}),
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: obs.Namespace, Subsystem: subsystem, Name: "newly_seen_learning_end_timestamp_seconds",
		Help: "Unix time the newly-seen learning period ends (0: off; +Inf: start not known yet)."}, func() float64 {
		switch e := n.learnEnd.Load(); e {
		case math.MaxInt64:
			return math.Inf(1)
		case math.MinInt64:
			return 0
		default:
			return float64(e)
		}
	})
	n.gen.Store(1)
	n.learnEnd.Store(math.MaxInt64)
	if cfg.Learning < 0 {
		n.learnEnd.Store(math.MinInt64)
	}
	for i := range n.shards {
		n.shards[i].m = map[string]seenEntry{}
	}
	return n
}

// SetIndex makes the registrable domains of ix's non-threat feeds part of
// the baseline (Index.Established), replacing the previous Index's: call
// it with every Index swapped in. nil-safe.
func (n *NewlySeen) SetIndex(ix *Index) {
	if n != nil {
		n.index.Store(ix)
		n.bumpGen()
	}
}

// SetEstablished sets the configured part of the baseline (see
// NewlySeenConfig.LoadEstablished). nil-safe.
func (n *NewlySeen) SetEstablished(s *DomainSet) {
	if n != nil {
		n.configured.Store(s)
		n.bumpGen()
	}
}

func (n *NewlySeen) bumpGen() {
	if n.gen.Add(1) == 0 {
		n.gen.Add(1) // 0 means not computed
	}
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

// Check reports whether host's registrable domain is newly seen at now,
// and records a first sighting. It never blocks on I/O and allocates
// nothing for a domain it holds; host should be normalized (lower case).
// nil-safe.
func (n *NewlySeen) Check(host string, now time.Time) bool {
	if n == nil || n.cfg.Disabled {
		return false
	}
	host = strings.TrimSuffix(host, ".")
	// find, written out: this is the hot path
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
			if e.below && i > 0 && longerRegistrable(host, s) {
				break
			}
			return n.flagged(s, e, now.Unix())
		}
	}
	// publicsuffix allocates, so it runs only for domains this edge has
	// not seen.
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
		e = seenEntry{first: now.Unix(), pending: !n.authoritative, below: hasSuffixesBelow(d)}
		sh.m[d] = e
	}
	sh.mu.Unlock()
	if ok {
		return n.flagged(d, e, now.Unix())
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
	return n.flagged(d, e, now.Unix())
}

// find returns host's registrable domain and its entry when this edge
// holds it, without allocating: the map holds registrable domains only,
// and the longest suffix of host found in it is host's registrable
// domain unless a public suffix rule lies between the two (a bucket
// under s3.amazonaws.com when amazonaws.com is held): then find reports
// nothing and Check asks the public suffix list.
func (n *NewlySeen) find(host string) (string, seenEntry, bool) {
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
			if e.below && i > 0 && longerRegistrable(host, s) {
				return "", seenEntry{}, false
			}
			return s, e, true
		}
	}
	return "", seenEntry{}, false
}

// flagged decides on a held domain. The order keeps the common case
// cheap: a domain first seen before the window (most traffic, once the
// edge has learned) is answered from the entry alone; the baseline is
// probed only for domains first seen within the window after learning.
// The baseline answer is cached in the entry for the baseline generation
// it was computed for, so a recent domain probes the baseline once per
// swap of the index or the configured list, not on every request.
func (n *NewlySeen) flagged(d string, e seenEntry, now int64) bool {
	if e.pending || now-e.first >= n.window {
		return false // inlined: the common case
	}
	return n.flagRecent(d, e)
}

// flagRecent is flagged for a domain first seen within the window.
func (n *NewlySeen) flagRecent(d string, e seenEntry) bool {
	if e.first < n.learnEnd.Load() {
		return false
	}
	gen := n.gen.Load()
	if e.gen == gen {
		return !e.est
	}
	est := n.established(d)
	sh := &n.shards[maphash.String(n.seed, d)&63]
	sh.mu.Lock()
	if cur, ok := sh.m[d]; ok && cur.first == e.first && cur.pending == e.pending {
		cur.gen, cur.est = gen, est
		// once per domain and swap: the assignment stores its key, and d
		// may be part of a longer host
		sh.m[strings.Clone(d)] = cur
	}
	sh.mu.Unlock()
	return !est
}

// established reports whether a baseline source holds the registrable
// domain d. It allocates nothing.
func (n *NewlySeen) established(d string) bool {
	k := hashName(d)
	return n.popular.hasKey(k) || n.index.Load().establishedKey(k) || n.configured.Load().hasKey(k)
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
	sh.m[d] = seenEntry{first: first.Unix(), below: hasSuffixesBelow(d)}
	sh.mu.Unlock()
}

// Load hands the sightings of a FirstSeenLoader store to memory and
// resolves the learning period's start from the store (recording now as
// the start on a first start). Run calls it; call it first to serve with
// both known (it waits on the store). It may be called again after an
// error.
func (n *NewlySeen) Load(ctx context.Context) error {
	if n == nil {
		return nil
	}
	if !n.loaded.Load() {
		if l, ok := n.store.(FirstSeenLoader); ok {
			if err := l.Load(ctx, func(d string, first time.Time) { n.set(d, first) }); err != nil {
				return fmt.Errorf("categorizer: load first sightings: %w", err)
			}
		}
		n.loaded.Store(true)
	}
	return n.startLearning(ctx, time.Now())
}

func (n *NewlySeen) startLearning(ctx context.Context, now time.Time) error {
	if n.cfg.Learning < 0 || n.learnStart.Load() != 0 {
		return nil
	}
	start := now
	if n.store != nil {
		var err error
		if start, err = n.store.LearningStart(ctx, now); err != nil {
			return fmt.Errorf("categorizer: newly-seen learning start: %w", err)
		}
	}
	n.setLearningStart(start)
	return nil
}

func (n *NewlySeen) setLearningStart(start time.Time) {
	s := start.Unix()
	if s == 0 {
		s = -1 // 0 means unknown
	}
	n.learnEnd.Store(start.Add(n.cfg.Learning).Unix())
	n.learnStart.Store(s)
}

// Run loads the store and starts the learning period (Load, retried with
// a capped backoff while the store fails: until it answers the learning
// period holds), writes queued first sightings to the store and bounds
// memory (MaxDomains) until ctx is done. nil-safe.
func (n *NewlySeen) Run(ctx context.Context) error {
	if n == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	retry := time.NewTimer(0)
	defer retry.Stop()
	backoff := time.Second
	var queue chan sighting
	if n.store != nil {
		queue = n.queue
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-retry.C:
			if err := n.Load(ctx); err != nil {
				if ctx.Err() == nil {
					n.log.WarnContext(ctx, "newly seen: store not ready; retrying, domains are not flagged meanwhile", "err", err, "retry", backoff)
				}
				retry.Reset(backoff)
				backoff = min(2*backoff, time.Minute)
			}
		case <-n.evictCh:
			n.evict(time.Now())
		case s := <-queue:
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

// Learning returns the start and end of the learning period; ok is false
// when they are not known yet (the store has not answered) or learning
// is off (off true).
func (n *NewlySeen) Learning() (start, end time.Time, ok, off bool) {
	if n == nil || n.cfg.Disabled || n.cfg.Learning < 0 {
		return time.Time{}, time.Time{}, false, true
	}
	s := n.learnStart.Load()
	if s == 0 {
		return time.Time{}, time.Time{}, false, false
	}
	e := n.learnEnd.Load()
	if s == -1 {
		s = 0
	}
	return time.Unix(s, 0).UTC(), time.Unix(e, 0).UTC(), true, false
}

// NewlySeenReason says why a domain is or is not newly seen.
type NewlySeenReason uint8

// The reasons, in the order Explain tests them.
const (
	// ReasonDisabled: the newly_seen category is off.
	ReasonDisabled NewlySeenReason = iota
	// ReasonNoDomain: the host has no registrable domain (an IP address,
	// a single label, a public suffix).
	ReasonNoDomain
	// ReasonEstablished: the domain is in the baseline.
	ReasonEstablished
	// ReasonLearning: first seen during the learning period, or not seen
	// and learning still runs.
	ReasonLearning
	// ReasonNotSeen: never seen; its first request will be newly seen.
	ReasonNotSeen
	// ReasonPending: first seen by this edge, waiting for the shared
	// store to say whether another edge saw it earlier.
	ReasonPending
	// ReasonRecent: first seen within the window: newly seen.
	ReasonRecent
	// ReasonOld: first seen longer than the window ago.
	ReasonOld
	// ReasonUnknown: the shared store could not be asked.
	ReasonUnknown
)

var newlySeenReasons = [...]string{"disabled", "no_registrable_domain", "established", "learning", "not_seen", "pending", "first_seen_recently", "first_seen_before_window", "store_unavailable"}

func (r NewlySeenReason) String() string {
	if int(r) < len(newlySeenReasons) {
		return newlySeenReasons[r]
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler.
func (r NewlySeenReason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *NewlySeenReason) UnmarshalText(b []byte) error {
	for i, s := range newlySeenReasons {
		if s == string(b) {
			*r = NewlySeenReason(i)
			return nil
		}
	}
	return fmt.Errorf("categorizer: unknown newly-seen reason %q", b)
}

// NewlySeenExplanation says why a host is or is not newly seen
// (NewlySeen.Explain): for people, not the hot path.
type NewlySeenExplanation struct {
	// Domain is the registrable domain the category applies to.
	Domain    string          `json:"domain,omitempty"`
	NewlySeen bool            `json:"newly_seen"`
	Reason    NewlySeenReason `json:"reason"`
	// FirstSeen is the recorded first sighting, if any.
	FirstSeen *time.Time `json:"first_seen,omitempty"`
	// Baseline names every baseline source holding the domain.
	Baseline []string `json:"baseline,omitempty"`
	// LearningUntil is when the learning period ends (ended); absent when
	// learning is off or its start is not known yet.
	LearningUntil *time.Time `json:"learning_until,omitempty"`
	Learning      bool       `json:"learning"`
	// WindowSeconds is the newly-seen window.
	WindowSeconds float64 `json:"window_seconds"`
	// Error is set when the shared store could not be asked.
	Error string `json:"error,omitempty"`
}

// Explain says whether host is newly seen at now and why, without
// recording a sighting: an administrator looking a URL up is not
// traffic. It asks the store for a domain this process does not hold
// (another edge may have seen it), so it may block on I/O; nil-safe.
func (n *NewlySeen) Explain(ctx context.Context, host string, now time.Time) NewlySeenExplanation {
	if n == nil || n.cfg.Disabled {
		return NewlySeenExplanation{Reason: ReasonDisabled}
	}
	ex := NewlySeenExplanation{WindowSeconds: n.cfg.Window.Seconds()}
	_, end, known, off := n.Learning()
	if known {
		ex.LearningUntil = &end
	}
	learnEnd := n.learnEnd.Load()
	ex.Learning = !off && now.Unix() < learnEnd
	host = strings.TrimSuffix(host, ".")
	d, e, ok := n.find(host)
	if !ok {
		if d = RegistrableDomain(host); d == "" {
			ex.Reason = ReasonNoDomain
			return ex
		}
		sh := &n.shards[maphash.String(n.seed, d)&63]
		sh.mu.RLock()
		e, ok = sh.m[d]
		sh.mu.RUnlock()
	}
	ex.Domain = d
	if !ok && n.store != nil {
		first, found, err := n.store.Sighting(ctx, d)
		switch {
		case err != nil:
			ex.Error = err.Error()
		case found:
			e, ok = seenEntry{first: first.Unix()}, true
		}
	}
	if ok {
		t := time.Unix(e.first, 0).UTC()
		ex.FirstSeen = &t
	}
	for s := BaselinePopular; s <= BaselineConfigured; s++ {
		k := hashName(d)
		if s == BaselinePopular && n.popular.hasKey(k) || s == BaselineFeeds && n.index.Load().establishedKey(k) ||
			s == BaselineConfigured && n.configured.Load().hasKey(k) {
			ex.Baseline = append(ex.Baseline, s.String())
		}
	}
	switch {
	case len(ex.Baseline) > 0:
		ex.Reason = ReasonEstablished
	case ex.Error != "":
		ex.Reason = ReasonUnknown
	case !ok && ex.Learning || ok && e.first < learnEnd:
		ex.Reason = ReasonLearning
	case !ok:
		ex.Reason, ex.NewlySeen = ReasonNotSeen, true
	case e.pending:
		ex.Reason = ReasonPending
	case now.Unix()-e.first < n.window:
		ex.Reason, ex.NewlySeen = ReasonRecent, true
	default:
		ex.Reason = ReasonOld
	}
	return ex
}

// NewlySeenInfo is the state of the tracker (NewlySeen.Info).
type NewlySeenInfo struct {
	Enabled       bool    `json:"enabled"`
	WindowSeconds float64 `json:"window_seconds"`
	// Learning is true while the learning period runs (or its start is
	// not known yet); LearningStart and LearningUntil are absent when
	// learning is off or not known yet.
	Learning      bool       `json:"learning"`
	LearningStart *time.Time `json:"learning_start,omitempty"`
	LearningUntil *time.Time `json:"learning_until,omitempty"`
	// Baseline counts the registrable domains of each baseline source.
	Baseline map[string]int `json:"baseline"`
	// Domains is how many registrable domains this process holds.
	Domains int64 `json:"domains"`
}

// Info returns the tracker's state at now. nil-safe.
func (n *NewlySeen) Info(now time.Time) NewlySeenInfo {
	if n == nil || n.cfg.Disabled {
		return NewlySeenInfo{Baseline: map[string]int{}}
	}
	in := NewlySeenInfo{Enabled: true, WindowSeconds: n.cfg.Window.Seconds(), Domains: n.count.Load()}
	start, end, known, off := n.Learning()
	if known {
		in.LearningStart, in.LearningUntil = &start, &end
	}
	in.Learning = !off && now.Unix() < n.learnEnd.Load()
	feeds := 0
	if ix := n.index.Load(); ix != nil {
		feeds = ix.EstablishedCount()
	}
	in.Baseline = map[string]int{
		BaselinePopular.String(): n.popular.Len(), BaselineFeeds.String(): feeds, BaselineConfigured.String(): n.configured.Load().Len(),
	}
	return in
}

// FileFirstSeen is a FirstSeenStore in an append-only file of
// "domain unix-seconds" lines, for a single node without Redis. The
// learning start is kept beside it, in the same name with the extension
// ".start".
type FileFirstSeen struct {
	path      string
	startPath string
	mu        sync.Mutex
	seen      map[string]time.Time
	f         *os.File
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
	s := &FileFirstSeen{path: path, startPath: strings.TrimSuffix(path, filepath.Ext(path)) + ".start", seen: map[string]time.Time{}}
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

// Sighting implements FirstSeenStore.
func (s *FileFirstSeen) Sighting(_ context.Context, domain string) (time.Time, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.seen[domain]
	return t, ok, nil
}

// LearningStart implements FirstSeenStore: the start is read from the
// start file, or written there on the first call: at, or the earliest
// recorded sighting when the file predates learning periods (an install
// that has been recording for weeks has learned already).
func (s *FileFirstSeen) LearningStart(_ context.Context, at time.Time) (time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := os.ReadFile(s.startPath)
	if err == nil {
		sec, perr := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if perr != nil {
			return time.Time{}, fmt.Errorf("categorizer: learning start %s: %q is not Unix seconds", s.startPath, bytes.TrimSpace(b))
		}
		return time.Unix(sec, 0), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return time.Time{}, fmt.Errorf("categorizer: learning start: %w", err)
	}
	start := at.Truncate(time.Second)
	for _, t := range s.seen {
		if t.Before(start) {
			start = t
		}
	}
	if err := writeAtomic(s.startPath, []byte(strconv.FormatInt(start.Unix(), 10)+"\n")); err != nil {
		return time.Time{}, fmt.Errorf("categorizer: learning start: %w", err)
	}
	return start, nil
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
