package categorizer

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/gaissmai/bart"
)

// MaxFeeds is how many feeds one Index can hold.
const MaxFeeds = 64

// FeedID identifies a feed inside one Builder (and the Index it builds).
type FeedID uint8

// FeedInfo describes one feed of an Index.
type FeedInfo struct {
	Name       string   `json:"name"`
	Categories []string `json:"categories,omitempty"`
	Threat     bool     `json:"threat"`
	Entries    int      `json:"entries"` // entries added (before de-duplication)
}

// Builder collects feed entries and compiles them into an Index. It is
// not safe for concurrent use. Typical use:
//
//	b := categorizer.NewBuilder()
//	f, _ := b.AddFeed("urlhaus", []string{"malware"}, true)
//	categorizer.ParseHosts("urlhaus/hosts", r, func(e categorizer.Entry) { b.Add(f, e) })
//	ix, _ := b.Build(version)
type Builder struct {
	categories []string
	catIDs     map[string]int
	threats    []string
	threatIDs  map[string]int
	feeds      []feedDef

	nodes  table // domain key → 1 + head of its record list
	recs   []domRec
	exc    map[uint64]uint64 // exception domain key → mask of feeds excepted there
	urls   map[urlKey]*acc
	cidrs  map[netip.Prefix]*acc
	status []FeedStatus
	err    error
}

// SetStatus records per-feed status to carry in the Index and its
// snapshots (Index.Status).
func (b *Builder) SetStatus(s []FeedStatus) { b.status = slices.Clone(s) }

type feedDef struct {
	name    string
	cats    Set
	threat  int // threat ID, -1 when not a threat feed
	entries int
}

// domRec is one feed's contribution to one domain.
type domRec struct {
	name      string
	next      int32
	feed      FeedID
	wildcard  bool // only subdomains
	exception bool
	cats      Set
}

type urlKey struct{ host, path string }

// acc accumulates the verdict parts and feeds of a URL or CIDR entry.
type acc struct {
	cats, thr Set
	feeds     uint64
}

// NewBuilder returns an empty Builder; category ID 0 is newly_seen.
func NewBuilder() *Builder {
	return &Builder{
		categories: []string{NewlySeenCategory},
		catIDs:     map[string]int{NewlySeenCategory: NewlySeenID},
		threatIDs:  map[string]int{},
		nodes:      newTable(1024),
		exc:        map[uint64]uint64{},
		urls:       map[urlKey]*acc{},
		cidrs:      map[netip.Prefix]*acc{},
	}
}

// Grow reserves room for n more domain entries, saving the rehashing and
// copying of growth when the size is known (the Syncer knows it from
// validating each feed).
func (b *Builder) Grow(n int) {
	if n <= 0 {
		return
	}
	want := b.nodes.n + n + n/8 // parents of listed names are stored too
	if want*10 > len(b.nodes.slots)*7 {
		old := b.nodes
		b.nodes = newTable(want)
		for i := range old.slots {
			if s := &old.slots[i]; s.lo|s.hi != 0 {
				p, _ := b.nodes.slot(s.key())
				b.nodes.slots[p].val, b.nodes.slots[p].kids = s.val, s.kids
			}
		}
	}
	b.recs = slices.Grow(b.recs, n)
}

// Category returns the ID of a category, registering it on first use.
func (b *Builder) Category(name string) (int, error) {
	if id, ok := b.catIDs[name]; ok {
		return id, nil
	}
	if name == "" {
		return 0, fmt.Errorf("categorizer: empty category name")
	}
	if len(b.categories) >= MaxCategories {
		return 0, fmt.Errorf("categorizer: category %q: %w (at most %d)", name, ErrTooManyCategories, MaxCategories)
	}
	id := len(b.categories)
	b.categories = append(b.categories, name)
	b.catIDs[name] = id
	return id, nil
}

// AddFeed declares a feed: the categories its entries get (unless an entry
// names its own) and whether it is a threat feed (its name becomes a
// threat ID).
func (b *Builder) AddFeed(name string, categories []string, threat bool) (FeedID, error) {
	if name == "" {
		return 0, fmt.Errorf("categorizer: add feed: empty name")
	}
	for _, f := range b.feeds {
		if f.name == name {
			return 0, fmt.Errorf("categorizer: add feed %q: duplicate name", name)
		}
	}
	if len(b.feeds) >= MaxFeeds {
		return 0, fmt.Errorf("categorizer: add feed %q: %w (at most %d)", name, ErrTooManyFeeds, MaxFeeds)
	}
	d := feedDef{name: name, threat: -1}
	for _, c := range categories {
		id, err := b.Category(c)
		if err != nil {
			return 0, err
		}
		d.cats = d.cats.With(id)
	}
	if threat {
		if len(b.threats) >= MaxCategories {
			return 0, fmt.Errorf("categorizer: add feed %q: %w (at most %d)", name, ErrTooManyThreats, MaxCategories)
		}
		d.threat = len(b.threats)
		b.threats = append(b.threats, name)
		b.threatIDs[name] = d.threat
	}
	b.feeds = append(b.feeds, d)
	return FeedID(len(b.feeds) - 1), nil
}

// Add adds one parsed entry to a feed. Host names must already be
// normalized (parsers do it; use NormalizeHost otherwise).
func (b *Builder) Add(feed FeedID, e Entry) error {
	if b.err == errBuilt {
		return b.err
	}
	if int(feed) >= len(b.feeds) {
		return fmt.Errorf("categorizer: add entry: unknown feed %d", feed)
	}
	f := &b.feeds[feed]
	cats := f.cats
	if e.Category != "" {
		id, err := b.Category(e.Category)
		if err != nil {
			return err
		}
		cats = Set(0).With(id)
	}
	switch e.Kind {
	case KindDomain:
		if e.Host == "" {
			return fmt.Errorf("categorizer: add entry line %d: %w: empty", e.Line, ErrInvalidHost)
		}
		b.addDomain(feed, e.Host, cats, e.Wildcard, e.Exception)
	case KindURL:
		if e.Host == "" {
			return fmt.Errorf("categorizer: add entry line %d: %w: empty", e.Line, ErrInvalidHost)
		}
		if e.Exception {
			return nil // URL exceptions are not applied (no parser produces them)
		}
		k := urlKey{e.Host, e.Path}
		a := b.urls[k]
		if a == nil {
			a = &acc{}
			b.urls[k] = a
		}
		b.accumulate(a, feed, cats)
	case KindCIDR:
		if !e.Prefix.IsValid() {
			return fmt.Errorf("categorizer: add entry line %d: invalid prefix", e.Line)
		}
		if e.Exception {
			return nil
		}
		p := e.Prefix.Masked()
		a := b.cidrs[p]
		if a == nil {
			a = &acc{}
			b.cidrs[p] = a
		}
		b.accumulate(a, feed, cats)
	default:
		return fmt.Errorf("categorizer: add entry line %d: unknown kind %v", e.Line, e.Kind)
	}
	f.entries++
	return nil
}

// Emit returns a parser callback adding entries to feed; the first error
// is returned by Build.
func (b *Builder) Emit(feed FeedID) func(Entry) {
	return func(e Entry) {
		if err := b.Add(feed, e); err != nil && b.err == nil {
			b.err = err
		}
	}
}

func (b *Builder) accumulate(a *acc, feed FeedID, cats Set) {
	a.cats |= cats
	if t := b.feeds[feed].threat; t >= 0 {
		a.thr = a.thr.With(t)
	}
	a.feeds |= 1 << feed
}

func (b *Builder) addDomain(feed FeedID, name string, cats Set, wildcard, exception bool) {
	// Hash every suffix (shortest first) in one pass.
	var sfx [maxHostLen/2 + 2]uint64
	n := 0
	h := hashOffset
	for i := len(name) - 1; i >= 0; i-- {
		c := name[i]
		if c == '.' && n < len(sfx) {
			sfx[n] = finish(h)
			n++
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h = (h ^ uint64(c)) * hashPrime
	}
	key := finish(h)
	if exception {
		b.exc[key] |= 1 << feed
	}
	pos, found := b.nodes.slot(key)
	head := int32(b.nodes.slots[pos].val&^childBit) - 1
	for r := head; r >= 0; r = b.recs[r].next {
		rec := &b.recs[r]
		if rec.feed == feed && rec.wildcard == wildcard && rec.exception == exception {
			rec.cats |= cats
			return
		}
	}
	b.recs = append(b.recs, domRec{name: name, next: head, feed: feed, wildcard: wildcard, exception: exception, cats: cats})
	b.nodes.slots[pos].val = b.nodes.slots[pos].val&childBit | uint32(len(b.recs))
	if found && head >= 0 {
		return // parents already marked
	}
	// Mark the parent domains as having listed names below them (inserting
	// them when absent) and add each child to its parent's filter, parent
	// first, stopping at a parent that was marked already (its own
	// parents were marked then).
	child := key
	for j := n - 1; j >= 0; j-- {
		p, _ := b.nodes.slot(sfx[j])
		sl := &b.nodes.slots[p]
		sl.kids |= childFilterBit(child)
		if sl.val&childBit != 0 {
			break
		}
		sl.val |= childBit
		child = sfx[j]
	}
}

// attr is one deduplicated attribute set: what a matching entry adds to a
// Verdict. cats/thr apply when the entry is the host itself, subCats/subThr
// when it is a parent domain of the host. cut marks an exception point:
// the verdict gathered from parent domains is replaced by this entry's
// (which already holds the parents' verdict minus the excepted feeds).
type attr struct {
	cats, subCats Set
	thr, subThr   Set
	cut           bool
}

type attrKey struct {
	a     attr
	feeds uint64
}

// errBuilt is returned by a Builder used after Build.
var errBuilt = errors.New("categorizer: builder already built (use a new Builder)")

// Build compiles everything added so far into an Index with the given
// version. The Builder hands its tables to the Index: Add and Build fail
// afterwards; use a new Builder for the next Index.
func (b *Builder) Build(version uint64) (*Index, error) {
	if b.err != nil {
		return nil, b.err
	}
	b.err = errBuilt
	ix := &Index{
		version:    version,
		categories: slices.Clone(b.categories),
		threats:    slices.Clone(b.threats),
		status:     b.status,
	}
	for _, f := range b.feeds {
		ix.feeds = append(ix.feeds, f.info(b))
	}
	ids := map[attrKey]uint32{{}: 0}
	ix.attrs = append(ix.attrs, attr{}) // ID 0: no verdict (internal nodes)
	ix.attrFeeds = append(ix.attrFeeds, 0)
	var lastKey attrKey
	var lastID uint32
	intern := func(a attr, feeds uint64) uint32 {
		k := attrKey{a, feeds}
		if k == lastKey {
			return lastID
		}
		id, ok := ids[k]
		if !ok {
			id = uint32(len(ix.attrs))
			ix.attrs = append(ix.attrs, a)
			ix.attrFeeds = append(ix.attrFeeds, feeds)
			ids[k] = id
		}
		lastKey, lastID = k, id
		return id
	}

	// Domains: the Builder's table already holds every listed name and
	// every parent of one (marked with childBit, so Lookup stops
	// descending at the first suffix not in the table); replace each
	// record-list head with the resolved attribute set.
	vals := make([]uint32, len(b.nodes.slots))
	for i := range b.nodes.slots {
		sl := &b.nodes.slots[i]
		if sl.lo|sl.hi == 0 {
			continue
		}
		var id uint32
		if head := int32(sl.val&^childBit) - 1; head >= 0 {
			if a, feeds := b.resolve(sl.key(), head); a != (attr{}) {
				id = intern(a, feeds)
				ix.domainCount++
			}
		}
		vals[i] = id | sl.val&childBit
	}
	for i := range b.nodes.slots {
		b.nodes.slots[i].val = vals[i]
	}
	if len(ix.attrs) > attrMask {
		return nil, fmt.Errorf("categorizer: build: %d attribute sets, at most %d", len(ix.attrs), attrMask)
	}
	ix.established = b.markEstablished()
	ix.domains = b.nodes
	b.nodes = newTable(0)
	b.recs = nil

	// URLs: one group of path prefixes per host, sorted.
	type urlRule struct {
		path string
		attr uint32
	}
	byHost := map[string][]urlRule{}
	for k, a := range b.urls {
		id := intern(attr{cats: a.cats, thr: a.thr}, a.feeds)
		byHost[k.host] = append(byHost[k.host], urlRule{k.path, id})
	}
	ix.urlHosts = newTable(len(byHost))
	hosts := make([]string, 0, len(byHost))
	for h := range byHost {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	for _, h := range hosts {
		rules := byHost[h]
		slices.SortFunc(rules, func(x, y urlRule) int { return cmp.Compare(x.path, y.path) })
		ix.urlHosts.put(hashName(h), uint32(len(ix.urlGroups)))
		g := urlGroup{host: h, start: uint32(len(ix.urlPaths))}
		for _, r := range rules {
			ix.urlPaths = append(ix.urlPaths, r.path)
			ix.urlAttrs = append(ix.urlAttrs, r.attr)
		}
		g.end = uint32(len(ix.urlPaths))
		ix.urlGroups = append(ix.urlGroups, g)
	}

	// CIDRs: insert shortest first and fold each covering prefix into the
	// longer ones, so the longest-prefix match carries every feed.
	pfxs := make([]netip.Prefix, 0, len(b.cidrs))
	for p := range b.cidrs {
		pfxs = append(pfxs, p)
	}
	slices.SortFunc(pfxs, comparePrefix)
	ix.cidr = new(bart.Table[uint32])
	for _, p := range pfxs {
		a := *b.cidrs[p]
		if sup, ok := ix.cidr.LookupPrefix(p); ok {
			s := ix.attrs[sup]
			a.cats |= s.cats
			a.thr |= s.thr
			a.feeds |= ix.attrFeeds[sup]
		}
		ix.cidr.Insert(p, intern(attr{cats: a.cats, thr: a.thr}, a.feeds))
	}
	ix.cidrCount = len(pfxs)
	return ix, nil
}

// markEstablished sets establishedBit on the registrable domain of every
// domain entry of a non-threat feed (exceptions excluded) and returns how
// many registrable domains it marked. The registrable domain is in the
// table: the entry itself or one of the parents addDomain inserted.
func (b *Builder) markEstablished() int {
	n := 0
	last := ""
	for i := range b.recs {
		r := &b.recs[i]
		if r.exception || b.feeds[r.feed].threat >= 0 {
			continue
		}
		// Cheap repeat check: feeds list many names of one domain in a row.
		if last != "" && (r.name == last || strings.HasSuffix(r.name, "."+last) && !longerRegistrable(r.name, last)) {
			continue
		}
		d := RegistrableDomain(r.name)
		if d == "" {
			continue
		}
		last = d
		if sl := b.nodes.find(hashName(d)); sl != nil && sl.val&establishedBit == 0 {
			sl.val |= establishedBit
			n++
		}
	}
	return n
}

func comparePrefix(x, y netip.Prefix) int {
	if c := cmp.Compare(x.Bits(), y.Bits()); c != 0 {
		return c
	}
	return x.Addr().Compare(y.Addr())
}

func (f feedDef) info(b *Builder) FeedInfo {
	fi := FeedInfo{Name: f.name, Threat: f.threat >= 0, Entries: f.entries}
	f.cats.IDs(func(id int) { fi.Categories = append(fi.Categories, b.categories[id]) })
	return fi
}

// resolve computes the attribute set of one domain node, applying the
// exception rules: a feed excepted at the node or at any parent domain
// contributes nothing here, and an exception node carries the verdict of
// its parents (minus the excepted feeds) and cuts what Lookup gathered
// above it.
func (b *Builder) resolve(key uint64, head int32) (attr, uint64) {
	var excepted uint64
	name := b.recs[head].name
	get := func(k uint64) int32 {
		v, ok := b.nodes.get(k)
		if !ok {
			return -1
		}
		return int32(v&^childBit) - 1
	}
	if len(b.exc) > 0 {
		suffixHashes(name, func(k uint64, _ int, _ bool) { excepted |= b.exc[k] })
	}
	var a attr
	var feeds uint64
	add := func(r *domRec, self bool) {
		if r.exception || excepted&(1<<r.feed) != 0 {
			return
		}
		thr := Set(0)
		if t := b.feeds[r.feed].threat; t >= 0 {
			thr = thr.With(t)
		}
		if self && !r.wildcard {
			a.cats |= r.cats
			a.thr |= thr
		}
		a.subCats |= r.cats
		a.subThr |= thr
		feeds |= 1 << r.feed
	}
	for r := head; r >= 0; r = b.recs[r].next {
		add(&b.recs[r], true)
	}
	if b.exc[key] != 0 {
		a.cut = true
		// Carry the parents' verdict from the feeds not excepted here.
		suffixHashes(name, func(k uint64, _ int, full bool) {
			if full {
				return
			}
			for r := get(k); r >= 0; r = b.recs[r].next {
				rec := &b.recs[r]
				if rec.exception || excepted&(1<<rec.feed) != 0 {
					continue
				}
				thr := Set(0)
				if t := b.feeds[rec.feed].threat; t >= 0 {
					thr = thr.With(t)
				}
				a.cats |= rec.cats
				a.subCats |= rec.cats
				a.thr |= thr
				a.subThr |= thr
				feeds |= 1 << rec.feed
			}
		})
	}
	return a, feeds
}
