package policies

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/cordon-gw/cordon/internal/obs"
)

// DefaultRecentEvents is the size of the recent-access-event ring used by
// Preview when ServiceConfig.RecentEvents is zero.
const DefaultRecentEvents = 10000

// ServiceConfig configures a Service.
type ServiceConfig struct {
	// Store holds versions, audit, tokens and reviews. Required.
	Store Store
	// Engine, when set, serves every new version as soon as it is stored
	// or seen (Run), and provides the category table policies are
	// validated against.
	Engine *Engine
	// RecentEvents bounds the ring of recent access events Preview
	// replays. Zero means DefaultRecentEvents; negative disables it.
	RecentEvents int
	// Changes holds change requests and the running stage; nil disables
	// change requests (their routes answer 404).
	Changes ChangeStore
	// Edges is the edge registry; nil means an in-process MemoryEdges.
	Edges EdgeStore
	// EdgeName is this process's name in the edge registry; a stage that
	// names it serves every request of this process.
	EdgeName string
	// Logger: nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the service metrics; nil registers nowhere.
	Registerer prometheus.Registerer
}

// Actor is who makes a change, with which role and through which path.
type Actor struct {
	Name   string
	Role   Role
	Source Source
	// Remote is the client address of an API call.
	Remote string
}

// Service manages the shared policy: numbered versions with author, time
// and comment, rollback, diffs, directory and list edits (each one a new
// version), API tokens, the audit log, review requests and impact
// previews. Every change checks the actor's role, validates the whole
// resulting policy, is stored durably with its audit entry, and only then
// reported as done. Safe for concurrent use.
type Service struct {
	store  Store
	engine *Engine
	log    *slog.Logger

	mu  sync.Mutex // serializes this process's writes
	cur atomic.Pointer[Version]

	recent *eventRing

	changes  ChangeStore
	edges    EdgeStore
	edgeName string
	obs      *observer
	stage    atomic.Pointer[Stage] // the stage being served, nil: none

	reviewMu   sync.Mutex
	reviewSeen map[string][]time.Time // per user or client: recent submissions

	mChanges   *prometheus.CounterVec
	mVersion   prometheus.Gauge
	mDropped   prometheus.Counter
	mEmergency prometheus.Counter
	mAutoAbort prometheus.Counter
}

// NewService loads the newest stored version (none: the empty policy,
// version 0) and serves it on the Engine.
func NewService(ctx context.Context, cfg ServiceConfig) (*Service, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("policies: new service: %w: no store", ErrBadRequest)
	}
	s := &Service{store: cfg.Store, engine: cfg.Engine, log: cfg.Logger, changes: cfg.Changes, edges: cfg.Edges,
		edgeName: cfg.EdgeName, obs: newObserver()}
	if s.edges == nil {
		s.edges = &MemoryEdges{}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "policies")
	n := cfg.RecentEvents
	if n == 0 {
		n = DefaultRecentEvents
	}
	if n > 0 {
		s.recent = newEventRing(n)
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	s.mChanges = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "changes_total",
		Help: "Audited changes by source (api, cli, file, page, system).",
	}, []string{"source"})
	s.mVersion = f.NewGauge(prometheus.GaugeOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "stored_version",
		Help: "Newest policy version known to this process's service.",
	})
	s.mDropped = f.NewCounter(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "preview_events_dropped_total",
		Help: "Access events not kept for previews because the ring was busy.",
	})
	s.mEmergency = f.NewCounter(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "emergency_changes_total",
		Help: "Change requests an admin applied or staged as an emergency, without the approvals.",
	})
	s.mAutoAbort = f.NewCounter(prometheus.CounterOpts{
		Namespace: obs.Namespace, Subsystem: subsystem, Name: "stage_auto_aborts_total",
		Help: "Staged rollouts aborted by their block or error rate threshold, or by the live policy moving.",
	})
	v, err := cfg.Store.LatestVersion(ctx)
	switch {
	case errors.Is(err, ErrNotFound):
		v = &Version{Policy: &Policy{}}
	case err != nil:
		return nil, fmt.Errorf("policies: new service: %w", err)
	}
	if err := s.apply(v); err != nil {
		return nil, err
	}
	return s, nil
}

// apply makes v current (if newer) and serves it on the engine.
func (s *Service) apply(v *Version) error {
	for {
		cur := s.cur.Load()
		if cur != nil && cur.Number >= v.Number {
			return nil
		}
		if s.cur.CompareAndSwap(cur, v) {
			break
		}
	}
	s.mVersion.Set(float64(v.Number))
	if s.engine != nil {
		if err := s.engine.SetPolicy(v.Policy, v.Number); err != nil {
			return fmt.Errorf("policies: serve version %d: %w", v.Number, err)
		}
	}
	return nil
}

// Run follows versions stored by other processes (through Store.Watch)
// and serves each new one, until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	err := s.store.Watch(ctx, func(n int64) {
		if cur := s.cur.Load(); cur != nil && n <= cur.Number {
			return
		}
		if err := s.Sync(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("policy reload failed; the previous version keeps serving", "version", n, "err", err)
		}
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Sync loads the newest stored version and serves it if it is newer.
func (s *Service) Sync(ctx context.Context) error {
	v, err := s.store.LatestVersion(ctx)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("policies: sync: %w", err)
	}
	return s.apply(v)
}

// Current returns the current version. Callers must not modify it.
func (s *Service) Current() *Version { return s.cur.Load() }

func (s *Service) table() CategoryTable {
	if s.engine == nil {
		return nil
	}
	return s.engine.Table()
}

// Validate checks a draft strictly against the categories and threat
// feeds being served.
func (s *Service) Validate(doc *Policy) error { return Validate(doc, s.table()) }

// Put stores doc as a new version. An identical policy creates no
// version and returns the current one.
func (s *Service) Put(ctx context.Context, a Actor, doc *Policy, comment string) (*Version, error) {
	if doc == nil {
		return nil, fmt.Errorf("policies: put: %w: no policy", ErrBadRequest)
	}
	return s.commit(ctx, a, "policy.put", "", comment, 0, func(*Policy) (*Policy, error) { return doc.Clone(), nil })
}

// PutIfCurrent is Put only when the newest version is still base (the
// version the author started from); otherwise it changes nothing and
// returns ErrConflict, so concurrent editors do not overwrite each other.
func (s *Service) PutIfCurrent(ctx context.Context, a Actor, doc *Policy, comment string, base int64) (*Version, error) {
	if doc == nil {
		return nil, fmt.Errorf("policies: put: %w: no policy", ErrBadRequest)
	}
	return s.commit(ctx, a, "policy.put", "", comment, 0, func(cur *Policy) (*Policy, error) {
		return doc.Clone(), nil
	}, base)
}

// Rollback stores the policy of version n as a new version.
func (s *Service) Rollback(ctx context.Context, a Actor, n int64, comment string) (*Version, error) {
	old, err := s.Version(ctx, n)
	if err != nil {
		return nil, err
	}
	if comment == "" {
		comment = fmt.Sprintf("rollback to version %d", n)
	}
	return s.commit(ctx, a, "policy.rollback", fmt.Sprint(n), comment, n, func(*Policy) (*Policy, error) { return old.Policy.Clone(), nil })
}

// Version returns stored version n (0: the empty policy before any).
func (s *Service) Version(ctx context.Context, n int64) (*Version, error) {
	if cur := s.cur.Load(); cur != nil && cur.Number == n {
		return cur, nil
	}
	if n == 0 {
		return &Version{Policy: &Policy{}}, nil
	}
	v, err := s.store.GetVersion(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("policies: version %d: %w", n, err)
	}
	return v, nil
}

// Versions lists every version's metadata, newest first.
func (s *Service) Versions(ctx context.Context) ([]VersionInfo, error) {
	vs, err := s.store.ListVersions(ctx)
	if err != nil {
		return nil, fmt.Errorf("policies: versions: %w", err)
	}
	slices.Reverse(vs)
	return vs, nil
}

// Diff compares versions a and b rule by rule.
func (s *Service) Diff(ctx context.Context, a, b int64) (*Diff, error) {
	va, err := s.Version(ctx, a)
	if err != nil {
		return nil, err
	}
	vb, err := s.Version(ctx, b)
	if err != nil {
		return nil, err
	}
	return &Diff{From: a, To: b, Changes: DiffPolicies(va.Policy, vb.Policy)}, nil
}

// DirectWrites reports whether a may change the live policy at once
// (within its role's permissions) rather than through a change request.
func (s *Service) DirectWrites(a Actor) bool {
	var p *Policy
	if v := s.Current(); v != nil {
		p = v.Policy
	}
	return directWrites(p, a)
}

// directWrites: admin tokens, the system (starter policy) and policy as
// code (policy.file, reviewed where it is kept) always write directly;
// other roles only while the policy's settings.approvals.enforce is off.
func directWrites(p *Policy, a Actor) bool {
	if a.Role == RoleAdmin || a.Source == SourceSystem || a.Source == SourceFile {
		return true
	}
	return p != nil && !p.Settings.Approvals.Enforced()
}

// maxCommitAttempts bounds retries when another process stored a version
// between reading the current one and writing the next.
const maxCommitAttempts = 10

// commit applies change to the newest stored policy and stores the result
// as the next version, after role checks and strict validation.
func (s *Service) commit(ctx context.Context, a Actor, action, target, comment string, rollbackOf int64,
	change func(cur *Policy) (*Policy, error), base ...int64) (*Version, error) {
	var o commitOpts
	if len(base) > 0 {
		o.base = &base[0]
	}
	return s.commitWith(ctx, a, action, target, comment, rollbackOf, change, o)
}

// commitOpts are the variants of commit.
type commitOpts struct {
	// base: store only if the newest version is still this one.
	base *int64
	// approved: the change went through a change request (or is an
	// admin's emergency change): its approvals, not the actor's role,
	// authorize it.
	approved  bool
	emergency bool
}

func (s *Service) commitWith(ctx context.Context, a Actor, action, target, comment string, rollbackOf int64,
	change func(cur *Policy) (*Policy, error), o commitOpts) (*Version, error) {
	if err := checkActor(a); err != nil {
		return nil, err
	}
	if len(comment) > 1000 {
		return nil, fmt.Errorf("policies: %s: %w: comment longer than 1000 characters", action, ErrBadRequest)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 0; attempt < maxCommitAttempts; attempt++ {
		cur, err := s.store.LatestVersion(ctx)
		if errors.Is(err, ErrNotFound) {
			cur, err = &Version{Policy: &Policy{}}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("policies: %s: %w", action, err)
		}
		if o.base != nil && *o.base != cur.Number {
			return nil, fmt.Errorf("policies: %s: %w: the policy changed since version %d (now %d); diff %d..%d and retry",
				action, ErrConflict, *o.base, cur.Number, *o.base, cur.Number)
		}
		if !o.approved && !directWrites(cur.Policy, a) {
			return nil, &ForbiddenError{Role: a.Role, Permission: PermAdmin,
				What: "change the policy directly while settings.approvals.enforce is on: open a change request (POST /api/v1/changes)"}
		}
		next, err := change(cur.Policy.Clone())
		if err != nil {
			return nil, err
		}
		restoreSecrets(next, cur.Policy)
		for p, whats := range requiredPermissions(cur.Policy, next) {
			if !o.approved && !a.Role.Allows(p) {
				return nil, &ForbiddenError{Role: a.Role, Permission: p, What: strings.Join(whats, ", ")}
			}
		}
		if jsonEqual(cur.Policy, next) {
			if err := s.apply(cur); err != nil {
				return nil, err
			}
			return cur, nil
		}
		if err := Validate(next, s.table()); err != nil {
			return nil, err
		}
		now := time.Now().UTC()
		v := &Version{
			VersionInfo: VersionInfo{Number: cur.Number + 1, Time: now, Author: a.Name, Source: a.Source,
				Comment: comment, RollbackOf: rollbackOf, Rules: len(next.Rules)},
			Policy: next,
		}
		e := &AuditEntry{Time: now, Actor: a.Name, Role: a.Role, Source: a.Source, Remote: a.Remote,
			Action: action, Target: target, Detail: comment, Emergency: o.emergency}
		err = s.store.PutVersion(ctx, v, e)
		if errors.Is(err, ErrConflict) {
			// Another process stored a version meanwhile: back off a
			// random while (so racing writers spread out) and redo the
			// change on top of it.
			wait := time.Duration(mrand.Int64N(int64(2*time.Millisecond) << min(attempt, 5)))
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("policies: %s: %w", action, ctx.Err())
			case <-time.After(wait):
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("policies: %s: store version %d: %w", action, v.Number, err)
		}
		s.mChanges.WithLabelValues(string(a.Source)).Inc()
		s.log.Info("policy version stored", "version", v.Number, "actor", a.Name, "source", a.Source, "action", action)
		if err := s.apply(v); err != nil {
			return v, err
		}
		return v, nil
	}
	return nil, fmt.Errorf("policies: %s: %w: other writers kept storing versions; retry", action, ErrConflict)
}

// restoreSecrets replaces RedactedSecret markers (what non-admin callers
// read) with the stored values of the same user, so a read-modify-write
// keeps password hashes and DoH tokens; a marker on a new user clears it.
func restoreSecrets(next, cur *Policy) {
	old := make(map[string]*User, len(cur.Users))
	for i := range cur.Users {
		old[cur.Users[i].Name] = &cur.Users[i]
	}
	for i := range next.Users {
		u := &next.Users[i]
		o := old[u.Name]
		if u.PasswordHash == RedactedSecret {
			u.PasswordHash = ""
			if o != nil {
				u.PasswordHash = o.PasswordHash
			}
		}
		if u.DoHToken == RedactedSecret {
			u.DoHToken = ""
			if o != nil {
				u.DoHToken = o.DoHToken
			}
		}
	}
}

func checkActor(a Actor) error {
	if a.Name == "" {
		return fmt.Errorf("policies: %w: change without an author", ErrBadRequest)
	}
	if !a.Role.Valid() {
		return fmt.Errorf("policies: %w: unknown role %q", ErrForbidden, a.Role)
	}
	switch a.Source {
	case SourceAPI, SourceCLI, SourceFile, SourceSystem, SourcePage, SourceConsole:
		return nil
	}
	return fmt.Errorf("policies: %w: unknown source %q", ErrBadRequest, a.Source)
}

// audit appends a change that is not a policy version (tokens, reviews).
func (s *Service) audit(ctx context.Context, a Actor, action, target, detail string) error {
	e := &AuditEntry{Time: time.Now().UTC(), Actor: a.Name, Role: a.Role, Source: a.Source, Remote: a.Remote,
		Action: action, Target: target, Detail: detail}
	if err := s.store.AppendAudit(ctx, e); err != nil {
		return fmt.Errorf("policies: audit %s: %w", action, err)
	}
	s.mChanges.WithLabelValues(string(a.Source)).Inc()
	return nil
}

// upsert replaces the item named name in items (or appends it).
func upsert[T any](items []T, item T, name func(T) string) []T {
	n := name(item)
	for i := range items {
		if name(items[i]) == n {
			items[i] = item
			return items
		}
	}
	return append(items, item)
}

// remove deletes the item named n; ErrNotFound when absent.
func remove[T any](items []T, n, what string, name func(T) string) ([]T, error) {
	for i := range items {
		if name(items[i]) == n {
			return slices.Delete(items, i, i+1), nil
		}
	}
	return nil, fmt.Errorf("policies: %w: %s %q", ErrNotFound, what, n)
}

// PutUser adds or replaces a user.
func (s *Service) PutUser(ctx context.Context, a Actor, u User) (*Version, error) {
	return s.commit(ctx, a, "user.put", u.Name, "user "+u.Name, 0, func(p *Policy) (*Policy, error) {
		p.Users = upsert(p.Users, u, func(x User) string { return x.Name })
		return p, nil
	})
}

// DeleteUser removes a user.
func (s *Service) DeleteUser(ctx context.Context, a Actor, name string) (*Version, error) {
	return s.commit(ctx, a, "user.delete", name, "delete user "+name, 0, func(p *Policy) (*Policy, error) {
		var err error
		p.Users, err = remove(p.Users, name, "user", func(x User) string { return x.Name })
		return p, err
	})
}

// PutGroup adds or replaces a group.
func (s *Service) PutGroup(ctx context.Context, a Actor, g Group) (*Version, error) {
	return s.commit(ctx, a, "group.put", g.Name, "group "+g.Name, 0, func(p *Policy) (*Policy, error) {
		p.Groups = upsert(p.Groups, g, func(x Group) string { return x.Name })
		return p, nil
	})
}

// DeleteGroup removes a group (refused while users or rules name it).
func (s *Service) DeleteGroup(ctx context.Context, a Actor, name string) (*Version, error) {
	return s.commit(ctx, a, "group.delete", name, "delete group "+name, 0, func(p *Policy) (*Policy, error) {
		var err error
		p.Groups, err = remove(p.Groups, name, "group", func(x Group) string { return x.Name })
		return p, err
	})
}

// PutLocation adds or replaces a location.
func (s *Service) PutLocation(ctx context.Context, a Actor, l Location) (*Version, error) {
	return s.commit(ctx, a, "location.put", l.Name, "location "+l.Name, 0, func(p *Policy) (*Policy, error) {
		p.Locations = upsert(p.Locations, l, func(x Location) string { return x.Name })
		return p, nil
	})
}

// DeleteLocation removes a location (refused while rules name it).
func (s *Service) DeleteLocation(ctx context.Context, a Actor, name string) (*Version, error) {
	return s.commit(ctx, a, "location.delete", name, "delete location "+name, 0, func(p *Policy) (*Policy, error) {
		var err error
		p.Locations, err = remove(p.Locations, name, "location", func(x Location) string { return x.Name })
		return p, err
	})
}

// PutList adds or replaces a custom list.
func (s *Service) PutList(ctx context.Context, a Actor, l List) (*Version, error) {
	return s.commit(ctx, a, "list.put", l.Name, "list "+l.Name, 0, func(p *Policy) (*Policy, error) {
		p.Lists = upsert(p.Lists, l, func(x List) string { return x.Name })
		return p, nil
	})
}

// DeleteList removes a custom list (refused while rules name it).
func (s *Service) DeleteList(ctx context.Context, a Actor, name string) (*Version, error) {
	return s.commit(ctx, a, "list.delete", name, "delete list "+name, 0, func(p *Policy) (*Policy, error) {
		var err error
		p.Lists, err = remove(p.Lists, name, "list", func(x List) string { return x.Name })
		return p, err
	})
}

// AddListEntries adds entries to a list (entries already present are
// skipped).
func (s *Service) AddListEntries(ctx context.Context, a Actor, list string, entries []string, comment string) (*Version, error) {
	if comment == "" {
		comment = fmt.Sprintf("add %d entr(ies) to %s", len(entries), list)
	}
	return s.commit(ctx, a, "list.entries.add", list, comment, 0, func(p *Policy) (*Policy, error) {
		i := slices.IndexFunc(p.Lists, func(l List) bool { return l.Name == list })
		if i < 0 {
			return nil, fmt.Errorf("policies: %w: list %q", ErrNotFound, list)
		}
		for _, e := range entries {
			if !slices.Contains(p.Lists[i].Entries, e) {
				p.Lists[i].Entries = append(p.Lists[i].Entries, e)
			}
		}
		return p, nil
	})
}

// RemoveListEntries removes entries from a list; an entry not on the list
// is an error (nothing is removed).
func (s *Service) RemoveListEntries(ctx context.Context, a Actor, list string, entries []string, comment string) (*Version, error) {
	if comment == "" {
		comment = fmt.Sprintf("remove %d entr(ies) from %s", len(entries), list)
	}
	return s.commit(ctx, a, "list.entries.remove", list, comment, 0, func(p *Policy) (*Policy, error) {
		i := slices.IndexFunc(p.Lists, func(l List) bool { return l.Name == list })
		if i < 0 {
			return nil, fmt.Errorf("policies: %w: list %q", ErrNotFound, list)
		}
		for _, e := range entries {
			j := slices.Index(p.Lists[i].Entries, e)
			if j < 0 {
				return nil, fmt.Errorf("policies: %w: %q is not on list %q", ErrNotFound, e, list)
			}
			p.Lists[i].Entries = slices.Delete(p.Lists[i].Entries, j, j+1)
		}
		return p, nil
	})
}

// AuditQuery filters and pages the audit log. Zero fields do not filter.
type AuditQuery struct {
	// Before returns entries with a smaller Seq (0: from the newest).
	Before int64
	// Limit is the page size: 1..1000, 0 means 100.
	Limit  int
	Actor  string
	Action string // exact, or a prefix ending in "." ("list.")
	Source Source
	Target string
	Since  time.Time
	Until  time.Time
}

// AuditPage is one page of the audit log, newest first.
type AuditPage struct {
	Entries []AuditEntry `json:"entries"`
	// Next is the Before of the next page, 0 when there is none.
	Next int64 `json:"next,omitempty"`
}

func (q *AuditQuery) match(e *AuditEntry) bool {
	switch {
	case q.Actor != "" && e.Actor != q.Actor,
		q.Source != "" && e.Source != q.Source,
		q.Target != "" && e.Target != q.Target,
		!q.Since.IsZero() && e.Time.Before(q.Since),
		!q.Until.IsZero() && !e.Time.Before(q.Until):
		return false
	case q.Action != "":
		if strings.HasSuffix(q.Action, ".") {
			return strings.HasPrefix(e.Action, q.Action)
		}
		return e.Action == q.Action
	}
	return true
}

// Audit returns one page of the audit log.
func (s *Service) Audit(ctx context.Context, q AuditQuery) (AuditPage, error) {
	if q.Limit == 0 {
		q.Limit = 100
	}
	if q.Limit < 0 || q.Limit > 1000 {
		return AuditPage{}, fmt.Errorf("policies: audit: %w: limit %d: want 1..1000", ErrBadRequest, q.Limit)
	}
	page := AuditPage{Entries: []AuditEntry{}}
	before := q.Before
	const chunk = 500
	for {
		es, err := s.store.AuditBefore(ctx, before, chunk)
		if err != nil {
			return AuditPage{}, fmt.Errorf("policies: audit: %w", err)
		}
		for i := range es {
			if !q.match(&es[i]) {
				continue
			}
			if len(page.Entries) == q.Limit {
				page.Next = page.Entries[len(page.Entries)-1].Seq
				return page, nil
			}
			page.Entries = append(page.Entries, es[i])
		}
		if len(es) < chunk {
			return page, nil
		}
		before = es[len(es)-1].Seq
		if !q.Since.IsZero() && es[len(es)-1].Time.Before(q.Since) {
			return page, nil
		}
	}
}

// randomID returns n random bytes in hex.
func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("policies: random: %v", err)) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

// Review limits.
const (
	maxReviewMessage = 2000
	maxReviewURL     = 4096
	// maxReviewsPerHour bounds submissions per user (or client address
	// for anonymous users), so a block page cannot be used to flood the
	// review queue.
	maxReviewsPerHour = 20
)

// reviewAllowed counts a submission for key and reports whether it is
// within maxReviewsPerHour.
func (s *Service) reviewAllowed(key string, now time.Time) bool {
	s.reviewMu.Lock()
	defer s.reviewMu.Unlock()
	if s.reviewSeen == nil {
		s.reviewSeen = map[string][]time.Time{}
	}
	if len(s.reviewSeen) > 100000 {
		clear(s.reviewSeen)
	}
	ts := s.reviewSeen[key]
	for len(ts) > 0 && now.Sub(ts[0]) > time.Hour {
		ts = ts[1:]
	}
	if len(ts) >= maxReviewsPerHour {
		s.reviewSeen[key] = ts
		return false
	}
	s.reviewSeen[key] = append(ts, now)
	return true
}

// SubmitReview records a review request sent from a block page and
// returns its ID. It needs no token: the proxy calls it for the user.
// More than 20 requests in an hour from one user (or one client address
// when anonymous) are refused with ErrConflict.
func (s *Service) SubmitReview(ctx context.Context, r Review) (string, error) {
	if r.Host == "" && r.URL == "" {
		return "", fmt.Errorf("policies: submit review: %w: no host or URL", ErrBadRequest)
	}
	if len(r.Message) > maxReviewMessage || len(r.URL) > maxReviewURL || len(r.Host) > 253 {
		return "", fmt.Errorf("policies: submit review: %w: message over %d or URL over %d characters", ErrBadRequest, maxReviewMessage, maxReviewURL)
	}
	key := "user:" + r.User
	if r.User == "" {
		key = "client:" + r.ClientIP
	}
	if !s.reviewAllowed(key, time.Now()) {
		return "", fmt.Errorf("policies: submit review: %w: more than %d review requests in an hour", ErrConflict, maxReviewsPerHour)
	}
	r.ID = time.Now().UTC().Format("20060102") + "-" + randomID(6)
	r.Time = time.Now().UTC()
	r.Status = ReviewOpen
	r.ResolvedBy, r.ResolvedAt, r.Note = "", time.Time{}, ""
	if err := s.store.PutReview(ctx, r); err != nil {
		return "", fmt.Errorf("policies: submit review: %w", err)
	}
	actor := r.User
	if actor == "" {
		actor = "anonymous"
	}
	if err := s.audit(ctx, Actor{Name: actor, Source: SourcePage, Remote: r.ClientIP}, "review.submit", r.ID, r.URL); err != nil {
		return "", err
	}
	return r.ID, nil
}

// Reviews lists review requests, newest first; status "" means all.
func (s *Service) Reviews(ctx context.Context, status string) ([]Review, error) {
	rs, err := s.store.ListReviews(ctx)
	if err != nil {
		return nil, fmt.Errorf("policies: reviews: %w", err)
	}
	out := rs[:0]
	for _, r := range rs {
		if status == "" || r.Status == status {
			out = append(out, r)
		}
	}
	slices.Reverse(out)
	return out, nil
}

// ResolveReview accepts or rejects a review request.
func (s *Service) ResolveReview(ctx context.Context, a Actor, id, status, note string) (Review, error) {
	if err := checkActor(a); err != nil {
		return Review{}, err
	}
	if !a.Role.Allows(PermSecurity) {
		return Review{}, &ForbiddenError{Role: a.Role, Permission: PermSecurity, What: "resolve review requests"}
	}
	if status != ReviewAccepted && status != ReviewRejected {
		return Review{}, fmt.Errorf("policies: resolve review: %w: status %q: want accepted or rejected", ErrBadRequest, status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.store.GetReview(ctx, id)
	if err != nil {
		return Review{}, fmt.Errorf("policies: review %s: %w", id, err)
	}
	r.Status, r.ResolvedBy, r.ResolvedAt, r.Note = status, a.Name, time.Now().UTC(), note
	if err := s.store.PutReview(ctx, r); err != nil {
		return Review{}, fmt.Errorf("policies: resolve review: %w", err)
	}
	return r, s.audit(ctx, a, "review."+status, id, note)
}
