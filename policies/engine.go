package policies

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cordon-gw/cordon/categorizer"
)

// DefaultTrustedNetworks are the client networks served without
// authentication when EngineConfig.TrustedNetworks is nil: loopback and
// the private ranges.
func DefaultTrustedNetworks() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("fc00::/7"),
	}
}

// DefaultAuthCacheTTL is how long a verified password is remembered when
// EngineConfig.AuthCacheTTL is zero.
const DefaultAuthCacheTTL = time.Minute

// authCacheMax bounds the verified-credential cache.
const authCacheMax = 65536

// EngineConfig configures an Engine. The zero value is usable.
type EngineConfig struct {
	// TrustedNetworks are client networks served without authentication
	// (ClientPrincipal). nil means DefaultTrustedNetworks; an empty
	// non-nil slice trusts no network (only policy locations identify
	// clients).
	TrustedNetworks []netip.Prefix
	// AuthCacheTTL is how long Authenticate remembers a verified user and
	// password (bcrypt and argon2id are deliberately slow). Zero means
	// DefaultAuthCacheTTL; negative disables the cache.
	AuthCacheTTL time.Duration
	// Logger receives swap and warning messages; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the engine's metrics; nil registers them
	// nowhere.
	Registerer prometheus.Registerer
}

// lookupIndex is what the Engine needs of a categorizer index;
// *categorizer.Index satisfies it.
type lookupIndex interface {
	CategoryTable
	Lookup(host, path string, ip netip.Addr) categorizer.Verdict
	CategoryNames() []string
	ThreatNames() []string
}

type countryDB interface {
	Country(ip netip.Addr) categorizer.Country
}

// newlySeenChecker is what the Engine needs of the newly-seen tracker;
// *categorizer.NewlySeen satisfies it.
type newlySeenChecker interface {
	// Check records a sighting and reports whether host is newly seen
	// (the hot path).
	Check(host string, now time.Time) bool
	// Explain answers like Check without recording anything.
	Explain(ctx context.Context, host string, now time.Time) categorizer.NewlySeenExplanation
	// SetIndex hands over the Index in use: its feeds are part of the
	// baseline of established domains.
	SetIndex(ix *categorizer.Index)
}

type geoHolder struct{ g countryDB }
type newlyHolder struct{ n newlySeenChecker }

// engineState is swapped as one: a request sees the index and the policy
// compiled against it, never one without the other.
type engineState struct {
	ix lookupIndex // nil: nothing categorized yet
	c  *Compiled
	// staged, when set, decides the requests of the stage: every request
	// when stageAll (this edge is named by the stage), else those whose
	// location is in stageLocs. It is never older than c.
	staged    *Compiled
	stageLocs map[string]struct{}
	stageAll  bool
}

// with returns a copy of st serving c (and the stage, unless c has
// caught up with it).
func (st *engineState) with(ix lookupIndex, c *Compiled) *engineState {
	n := *st
	n.ix, n.c = ix, c
	if n.staged != nil && n.staged.version <= c.version {
		n.staged, n.stageLocs, n.stageAll = nil, nil, false
	}
	return &n
}

// pick is the compiled policy that decides r: the staged one for a
// request in the stage, else the live one. It allocates nothing.
func (st *engineState) pick(r *Request) *Compiled {
	if st.staged == nil {
		return st.c
	}
	if st.stageAll {
		return st.staged
	}
	loc := ""
	if p := r.Principal; p != nil && p.Location != "" {
		loc = p.Location
	} else if r.ClientIP.IsValid() {
		id := st.c.id
		if l := id.location(r.ClientIP.Unmap()); l >= 0 {
			loc = id.locs[l].principal.Location
		}
	}
	if loc == "" {
		return st.c
	}
	if _, ok := st.stageLocs[loc]; ok {
		return st.staged
	}
	return st.c
}

// Engine is the one entry point both adapters call: identity, categorizer
// lookup, newly-seen, GeoIP and Decide on the current snapshots. It is
// safe for concurrent use; swaps are atomic and a request keeps the
// snapshot it started with. Until SetPolicy is called it serves the empty
// policy (allow everything, version 0).
type Engine struct {
	cfg     EngineConfig
	log     *slog.Logger
	trusted []netip.Prefix
	authTTL time.Duration

	state atomic.Pointer[engineState]
	geo   atomic.Pointer[geoHolder]
	newly atomic.Pointer[newlyHolder]
	mu    sync.Mutex // serializes SetPolicy and SetIndex

	authMu    sync.Mutex
	authCache map[[sha256.Size]byte]time.Time
	// hashSlots bounds concurrent slow-hash verifications (argon2id holds
	// 19 MiB each), so a burst of logins or a brute-force attempt cannot
	// exhaust memory or every CPU.
	hashSlots chan struct{}

	m *engineMetrics
}

// NewEngine returns an Engine serving the empty policy.
func NewEngine(cfg EngineConfig) *Engine {
	e := &Engine{cfg: cfg, log: cfg.Logger, authTTL: cfg.AuthCacheTTL, authCache: make(map[[sha256.Size]byte]time.Time),
		hashSlots: make(chan struct{}, 2*runtime.GOMAXPROCS(0))}
	if e.log == nil {
		e.log = slog.Default()
	}
	e.log = e.log.With("component", "policies")
	e.trusted = cfg.TrustedNetworks
	if e.trusted == nil {
		e.trusted = DefaultTrustedNetworks()
	}
	if e.authTTL == 0 {
		e.authTTL = DefaultAuthCacheTTL
	}
	e.m = newEngineMetrics(cfg.Registerer)
	c, err := Compile(&Policy{}, 0, nil)
	if err != nil {
		panic(fmt.Sprintf("policies: compile the empty policy: %v", err))
	}
	e.state.Store(&engineState{c: c})
	return e
}

// Check categorizes and decides one request on the current snapshots. A
// zero r.Time is set to now. It allocates nothing.
func (e *Engine) Check(r *Request) (Decision, categorizer.Verdict) {
	st := e.state.Load()
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	newly := false
	if h := e.newly.Load(); h != nil && r.Host != "" {
		newly = h.n.Check(r.Host, r.Time)
	}
	d, v := e.decide(st, r, newly)
	e.m.decision(d)
	return d, v
}

// Explain decides r like Check but is not traffic: the newly-seen
// tracker is only read (nothing is recorded; a domain this process does
// not hold is asked of the shared store, so it may wait on it) and no
// decision metric is counted. It returns why the host is or is not newly
// seen, nil without a tracker. For the admin lookup, not the hot path.
func (e *Engine) Explain(ctx context.Context, r *Request) (Decision, categorizer.Verdict, *categorizer.NewlySeenExplanation) {
	st := e.state.Load()
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	var ns *categorizer.NewlySeenExplanation
	if h := e.newly.Load(); h != nil && r.Host != "" {
		ex := h.n.Explain(ctx, r.Host, r.Time)
		ns = &ex
	}
	d, v := e.decide(st, r, ns != nil && ns.NewlySeen)
	return d, v, ns
}

func (e *Engine) decide(st *engineState, r *Request, newly bool) (Decision, categorizer.Verdict) {
	var v categorizer.Verdict
	if st.ix != nil {
		v = st.ix.Lookup(r.Host, r.Path, r.DestIP)
	}
	if newly {
		v.Categories = v.Categories.With(categorizer.NewlySeenID)
	}
	if !v.Country.Known() && r.DestIP.IsValid() {
		if h := e.geo.Load(); h != nil {
			v.Country = h.g.Country(r.DestIP)
		}
	}
	return st.pick(r).Decide(r, &v), v
}

// SetStage serves doc (as version) to the requests of a stage: those from
// the named locations, or every request when all is true (this edge is
// in the stage). The live policy keeps serving the rest. An invalid doc
// returns an error and changes nothing.
func (e *Engine) SetStage(doc *Policy, version int64, locations []string, all bool) error {
	if doc == nil {
		return fmt.Errorf("policies: set stage: %w: nil policy", ErrBadRequest)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.state.Load()
	if version <= st.c.version {
		return fmt.Errorf("policies: set stage: %w: staged version %d is not newer than the live version %d", ErrConflict, version, st.c.version)
	}
	c, err := Compile(doc, version, tableOf(st.ix))
	if err != nil {
		e.m.swapErrors.Inc()
		return fmt.Errorf("policies: set stage version %d: %w", version, err)
	}
	e.warn(c)
	n := *st
	n.staged, n.stageAll = c, all
	n.stageLocs = make(map[string]struct{}, len(locations))
	for _, l := range locations {
		n.stageLocs[l] = struct{}{}
	}
	e.state.Store(&n)
	e.m.swaps.WithLabelValues("stage").Inc()
	e.log.Info("staged policy serving", "version", version, "locations", locations, "whole_edge", all)
	return nil
}

// ClearStage stops serving the staged policy: every request gets the live
// one again.
func (e *Engine) ClearStage() {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.state.Load()
	if st.staged == nil {
		return
	}
	n := *st
	v := n.staged.version
	n.staged, n.stageLocs, n.stageAll = nil, nil, false
	e.state.Store(&n)
	e.m.swaps.WithLabelValues("stage").Inc()
	e.log.Info("staged policy stopped", "version", v)
}

// StagedVersion is the version of the staged policy being served (0: no
// stage) and whether this whole edge is in the stage.
func (e *Engine) StagedVersion() (version int64, wholeEdge bool) {
	st := e.state.Load()
	if st.staged == nil {
		return 0, false
	}
	return st.staged.version, st.stageAll
}

// Current returns the compiled policy being served.
func (e *Engine) Current() *Compiled { return e.state.Load().c }

// PolicyVersion is the version of the policy being served (0 before the
// first SetPolicy).
func (e *Engine) PolicyVersion() int64 { return e.state.Load().c.version }

// SetPolicy compiles doc against the current index and swaps it in. An
// invalid policy returns an error and leaves the current one serving.
// Unknown categories or threat feeds are logged and match nothing.
func (e *Engine) SetPolicy(doc *Policy, version int64) error {
	if doc == nil {
		return fmt.Errorf("policies: set policy: %w: nil policy", ErrBadRequest)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.state.Load()
	c, err := Compile(doc, version, tableOf(st.ix))
	if err != nil {
		e.m.swapErrors.Inc()
		return fmt.Errorf("policies: set policy version %d: %w", version, err)
	}
	e.warn(c)
	e.state.Store(st.with(st.ix, c))
	e.m.version.Set(float64(version))
	e.m.swaps.WithLabelValues("policy").Inc()
	e.log.Info("policy swapped", "version", version, "rules", len(doc.Rules))
	return nil
}

// setIndex recompiles the current policy against ix and swaps both at
// once.
func (e *Engine) setIndex(ix lookupIndex) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.state.Load()
	c := st.c.recompile(ix)
	e.warn(c)
	n := st.with(ix, c)
	if n.staged != nil {
		n.staged = n.staged.recompile(ix)
	}
	e.state.Store(n)
	if h := e.newly.Load(); h != nil {
		h.n.SetIndex(categorizerIndex(ix))
	}
	e.m.swaps.WithLabelValues("index").Inc()
}

func (e *Engine) setGeo(g countryDB) {
	if g == nil {
		e.geo.Store(nil)
		return
	}
	e.geo.Store(&geoHolder{g: g})
}

func (e *Engine) setNewlySeen(n newlySeenChecker) {
	if n == nil {
		e.newly.Store(nil)
		return
	}
	e.mu.Lock() // an index swap in between would hand n the old index
	defer e.mu.Unlock()
	n.SetIndex(categorizerIndex(e.state.Load().ix))
	e.newly.Store(&newlyHolder{n: n})
}

// categorizerIndex is ix when it is a *categorizer.Index (tests serve
// other lookupIndex implementations), else nil.
func categorizerIndex(ix lookupIndex) *categorizer.Index {
	c, _ := ix.(*categorizer.Index)
	return c
}

func (e *Engine) warn(c *Compiled) {
	for _, w := range c.warnings {
		e.log.Warn("policy refers to something the feeds do not have; the criterion matches nothing",
			"version", c.version, "field", w.Field, "problem", w.Message)
	}
}

func tableOf(ix lookupIndex) CategoryTable {
	if ix == nil {
		return nil
	}
	return ix
}

// Table returns the category table the current policy was compiled
// against (nil before the first index).
func (e *Engine) Table() CategoryTable { return tableOf(e.state.Load().ix) }

// Authenticate checks a proxy Basic credential against the user
// directory. Verified credentials are remembered for AuthCacheTTL so the
// slow hash runs once per user and password, not per request. Unknown
// users cost the same as wrong passwords.
func (e *Engine) Authenticate(user, password string) (*Principal, bool) {
	id := e.state.Load().c.id
	ui, ok := id.users[user]
	if !ok || id.userRecs[ui].hash == "" {
		e.verify(dummyHash(), password)
		e.m.authFail.Inc()
		return nil, false
	}
	rec := &id.userRecs[ui]
	key := credKey(user, password, rec.hash)
	now := time.Now()
	if e.authTTL > 0 {
		e.authMu.Lock()
		exp, hit := e.authCache[key]
		e.authMu.Unlock()
		if hit && now.Before(exp) {
			e.m.authCached.Inc()
			return rec.principal, true
		}
	}
	if !e.verify(rec.hash, password) {
		e.m.authFail.Inc()
		return nil, false
	}
	if e.authTTL > 0 {
		e.authMu.Lock()
		if len(e.authCache) >= authCacheMax {
			for k, exp := range e.authCache {
				if !now.Before(exp) {
					delete(e.authCache, k)
				}
			}
			if len(e.authCache) >= authCacheMax {
				clear(e.authCache)
			}
		}
		e.authCache[key] = now.Add(e.authTTL)
		e.authMu.Unlock()
	}
	e.m.authOK.Inc()
	return rec.principal, true
}

// verify runs the slow hash check within the concurrency bound.
func (e *Engine) verify(hash, password string) bool {
	e.hashSlots <- struct{}{}
	defer func() { <-e.hashSlots }()
	return verifyPassword(hash, password)
}

// dummyHash is verified for unknown users so that timing does not reveal
// which user names exist.
var dummyHash = sync.OnceValue(func() string {
	h, err := HashPassword("cordon-dummy-password")
	if err != nil {
		panic(err)
	}
	return h
})

// credKey binds a cache entry to the user, the password and the hash it
// was verified against, so a password change invalidates it. Usual sizes
// are hashed from a stack buffer without allocating.
func credKey(user, password, hash string) [sha256.Size]byte {
	var buf [512]byte
	if n := len(user) + len(password) + len(hash) + 2; n <= len(buf) {
		b := append(append(append(append(append(buf[:0], user...), 0), password...), 0), hash...)
		return sha256.Sum256(b)
	}
	h := sha256.New()
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(password))
	h.Write([]byte{0})
	h.Write([]byte(hash))
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// ClientPrincipal identifies a client by address: the policy location
// whose networks contain ip most specifically, else an anonymous principal
// when ip is in a trusted network. ok is false otherwise (the client must
// authenticate or be refused).
func (e *Engine) ClientPrincipal(ip netip.Addr) (*Principal, bool) {
	id := e.state.Load().c.id
	ip = ip.Unmap()
	if l := id.location(ip); l >= 0 {
		return id.locs[l].principal, true
	}
	for _, p := range e.trusted {
		if p.Contains(ip) {
			return id.trusted, true
		}
	}
	return nil, false
}

// TokenPrincipal identifies a DoH client by the per-user token in its
// path.
func (e *Engine) TokenPrincipal(token string) (*Principal, bool) {
	if token == "" {
		return nil, false
	}
	id := e.state.Load().c.id
	ui, ok := id.tokens[sha256.Sum256([]byte(token))]
	if !ok {
		return nil, false
	}
	return id.userRecs[ui].principal, true
}

// Principal returns the directory principal of a user name.
func (e *Engine) Principal(user string) (*Principal, bool) {
	id := e.state.Load().c.id
	ui, ok := id.users[user]
	if !ok {
		return nil, false
	}
	return id.userRecs[ui].principal, true
}

// WithLocation returns a principal for user p at the location containing
// ip (p itself when there is none); for adapters that identify a user by
// password or token and still want the office in the decision. It
// allocates when a location applies.
func (e *Engine) WithLocation(p *Principal, ip netip.Addr) *Principal {
	if p == nil {
		return nil
	}
	id := e.state.Load().c.id
	l := id.location(ip)
	if l < 0 || p.gen != id.gen {
		return p
	}
	q := *p
	q.Location, q.locID = id.locs[l].principal.Location, l
	return &q
}

// Names returns the category and threat names of v (allocates; for
// events and pages).
func (e *Engine) Names(v categorizer.Verdict) (categories, threats []string) {
	st := e.state.Load()
	var cn, tn []string
	if st.ix != nil {
		cn, tn = st.ix.CategoryNames(), st.ix.ThreatNames()
	}
	v.Categories.IDs(func(id int) {
		if id < len(cn) {
			categories = append(categories, cn[id])
		} else if n := st.c.catNames[id]; n != "" {
			categories = append(categories, n)
		}
	})
	v.Threats.IDs(func(id int) {
		if id < len(tn) {
			threats = append(threats, tn[id])
		} else if n := st.c.thrNames[id]; n != "" {
			threats = append(threats, n)
		}
	})
	return categories, threats
}
