package policies

import (
	"crypto/sha256"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gaissmai/bart"

	"github.com/cordon-gw/cordon/categorizer"
)

// Compiled is a policy compiled against one category table: rules as
// bitmasks and sets, identities as dense IDs. It is immutable and safe for
// concurrent use.
type Compiled struct {
	version  int64
	doc      *Policy
	id       *identity
	warnings []FieldError

	defaultAction Action
	dnsBlock      DNSBlockMode
	warnTTL       int32

	rules     []crule
	ruleWords int
	domains   map[string][]domRef
	usesLocs  bool
	// Per-rule prefilter masks (bit i = rule i), so Decide visits only
	// rules that can match the request's categories, threats, domains and
	// identity instead of testing every rule.
	noWhat     []uint64
	catMask    [categorizer.MaxCategories][]uint64
	thrMask    [categorizer.MaxCategories][]uint64
	noWho      []uint64
	userMask   [][]uint64 // by user ID; nil when no rule names the user
	groupMask  [][]uint64 // by group ID
	catNames   [categorizer.MaxCategories]string
	thrNames   [categorizer.MaxCategories]string
	safeSearch safeSearch
}

// identity is the directory part of a compiled policy. It depends only on
// the document, so recompiling rules for a new category table keeps it
// (and every Principal made from it stays valid).
type identity struct {
	gen       uint64
	users     map[string]int32
	userRecs  []userRec
	groups    map[string]int32
	locs      []locRec
	locTable  bart.Table[int32] // longest-prefix match of client address → location
	locByName map[string]int32
	tokens    map[[sha256.Size]byte]int32
	trusted   *Principal // anonymous principal for trusted networks
}

type userRec struct {
	hash      string
	principal *Principal
}

type locRec struct {
	prefixes  []netip.Prefix
	principal *Principal
}

var identityGen atomic.Uint64

type safeSearch struct {
	enabled, all bool
	users        bitset
	groups       bitset
	locs         bitset
}

// crule is one compiled rule.
type crule struct {
	id      string
	action  Action
	monitor bool

	protos    uint8 // bit per Protocol; 0 = any
	hasWho    bool
	users     bitset
	groups    bitset
	hasWhere  bool
	locs      bitset
	cidrs     []netip.Prefix
	hasWhat   bool
	cats      categorizer.Set
	threats   categorizer.Set
	threatAny bool
	hasDom    bool // domains or lists (bit set in the per-request domain mask)
	paths     []string
	countries []categorizer.Country
	ccNames   []string
	sched     *csched
}

type csched struct {
	days     uint8 // bit per time.Weekday; 0 = every day
	allDay   bool
	from, to int // minutes after midnight
	loc      *time.Location
}

// domRef says that rule matches hosts under the map key it is stored at.
type domRef struct {
	rule   uint32
	sub    bool   // strict subdomains only
	prefix string // URL path prefix; "" = whole host
	label  string // what Decision.Match reports: list name or the domain entry
}

// Compile validates p and compiles it for Decide. version is stamped on
// every Decision. Unknown category or threat names (an edge whose feeds
// lag the API's) do not fail compilation: those criteria match nothing and
// are reported by Warnings. table may be nil (no categories known).
func Compile(p *Policy, version int64, table CategoryTable) (*Compiled, error) {
	probs := check(p, table)
	var errs, warns []FieldError
	for _, pr := range probs {
		if pr.Warning {
			warns = append(warns, pr)
		} else {
			errs = append(errs, pr)
		}
	}
	if len(errs) > 0 {
		return nil, &ValidationError{Problems: errs}
	}
	id := compileIdentity(p)
	c := compileRules(p, version, table, id)
	c.warnings = warns
	return c, nil
}

// Version is the policy version stamped on decisions.
func (c *Compiled) Version() int64 { return c.version }

// Policy returns the document c was compiled from. Callers must not
// modify it.
func (c *Compiled) Policy() *Policy { return c.doc }

// Warnings lists problems that did not stop compilation (unknown
// categories or threat feeds, which then match nothing).
func (c *Compiled) Warnings() []FieldError { return slices.Clone(c.warnings) }

// recompile compiles the same document against a new table, keeping the
// identity tables.
func (c *Compiled) recompile(table CategoryTable) *Compiled {
	n := compileRules(c.doc, c.version, table, c.id)
	for _, pr := range check(c.doc, table) {
		if pr.Warning {
			n.warnings = append(n.warnings, pr)
		}
	}
	return n
}

func compileIdentity(p *Policy) *identity {
	id := &identity{
		gen:       identityGen.Add(1),
		users:     make(map[string]int32, len(p.Users)),
		userRecs:  make([]userRec, len(p.Users)),
		groups:    make(map[string]int32, len(p.Groups)),
		locs:      make([]locRec, len(p.Locations)),
		locByName: make(map[string]int32, len(p.Locations)),
		tokens:    make(map[[sha256.Size]byte]int32),
	}
	for i, g := range p.Groups {
		id.groups[g.Name] = int32(i)
	}
	for i, l := range p.Locations {
		id.locByName[l.Name] = int32(i)
		rec := locRec{principal: &Principal{Location: l.Name, gen: id.gen, userID: -1, locID: int32(i)}}
		for _, s := range l.CIDRs {
			if pfx, err := parseCIDR(s); err == nil {
				rec.prefixes = append(rec.prefixes, pfx)
			}
		}
		id.locs[i] = rec
	}
	// Most specific network wins; on equal networks, the first location.
	for i := len(id.locs) - 1; i >= 0; i-- {
		for _, pfx := range id.locs[i].prefixes {
			id.locTable.Insert(pfx, int32(i))
		}
	}
	for i, u := range p.Users {
		id.users[u.Name] = int32(i)
		pr := &Principal{User: u.Name, Groups: slices.Clone(u.Groups), gen: id.gen, userID: int32(i), locID: -1}
		for _, g := range u.Groups {
			if gi, ok := id.groups[g]; ok {
				pr.groups = append(pr.groups, gi)
			}
		}
		id.userRecs[i] = userRec{hash: u.PasswordHash, principal: pr}
		if u.DoHToken != "" {
			id.tokens[sha256.Sum256([]byte(u.DoHToken))] = int32(i)
		}
	}
	id.trusted = &Principal{gen: id.gen, userID: -1, locID: -1}
	return id
}

// location returns the location whose networks contain ip most
// specifically, or -1.
func (id *identity) location(ip netip.Addr) int32 {
	if !ip.IsValid() {
		return -1
	}
	if l, ok := id.locTable.Lookup(ip.Unmap()); ok {
		return l
	}
	return -1
}

func compileRules(p *Policy, version int64, table CategoryTable, id *identity) *Compiled {
	c := &Compiled{
		version:   version,
		doc:       p,
		id:        id,
		rules:     make([]crule, len(p.Rules)),
		ruleWords: (len(p.Rules) + 63) / 64,
		domains:   make(map[string][]domRef),
		warnTTL:   int32(DefaultWarnTTL / time.Second),
	}
	s := p.Settings
	c.defaultAction, _ = ParseAction(s.DefaultAction)
	c.dnsBlock, _ = ParseDNSBlockMode(s.DNSBlockMode)
	if s.WarnTTL > 0 {
		c.warnTTL = int32(time.Duration(s.WarnTTL) / time.Second)
	}
	defaultZone := time.UTC
	if s.TimeZone != "" {
		if z, err := time.LoadLocation(s.TimeZone); err == nil {
			defaultZone = z
		}
	}
	if ss := s.SafeSearch; ss.Enabled {
		c.safeSearch.enabled = true
		c.safeSearch.all = len(ss.Users)+len(ss.Groups)+len(ss.Locations) == 0
		for _, n := range ss.Users {
			c.safeSearch.users.add(int(id.users[n]))
		}
		for _, n := range ss.Groups {
			c.safeSearch.groups.add(int(id.groups[n]))
		}
		for _, n := range ss.Locations {
			c.safeSearch.locs.add(int(id.locByName[n]))
		}
	}
	if t, ok := table.(interface{ CategoryNames() []string }); ok && table != nil {
		for i, n := range t.CategoryNames() {
			if i < len(c.catNames) {
				c.catNames[i] = n
			}
		}
	}
	if t, ok := table.(interface{ ThreatNames() []string }); ok && table != nil {
		for i, n := range t.ThreatNames() {
			if i < len(c.thrNames) {
				c.thrNames[i] = n
			}
		}
	}
	lists := make(map[string]*List, len(p.Lists))
	for i := range p.Lists {
		lists[p.Lists[i].Name] = &p.Lists[i]
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		cr := &c.rules[i]
		cr.id = r.ID
		cr.action, _ = ParseAction(r.Action)
		cr.monitor = r.Monitor
		for _, s := range r.Protocols {
			if pr, ok := ParseProtocol(s); ok {
				cr.protos |= 1 << pr
			}
		}
		cr.hasWho = len(r.Users)+len(r.Groups) > 0
		for _, n := range r.Users {
			cr.users.add(int(id.users[n]))
		}
		for _, n := range r.Groups {
			cr.groups.add(int(id.groups[n]))
		}
		cr.hasWhere = len(r.Locations)+len(r.ClientCIDRs) > 0
		for _, n := range r.Locations {
			cr.locs.add(int(id.locByName[n]))
			c.usesLocs = true
		}
		for _, s := range r.ClientCIDRs {
			if pfx, err := parseCIDR(s); err == nil {
				cr.cidrs = append(cr.cidrs, pfx)
			}
		}
		cr.hasWhat = len(r.Categories)+len(r.Threats)+len(r.Domains)+len(r.Lists) > 0
		for _, n := range r.Categories {
			if table == nil {
				continue
			}
			if cid, ok := table.CategoryID(n); ok {
				cr.cats = cr.cats.With(cid)
				if cid >= 0 && cid < len(c.catNames) && c.catNames[cid] == "" {
					c.catNames[cid] = n
				}
			}
		}
		for _, n := range r.Threats {
			if n == ThreatAny {
				cr.threatAny = true
				continue
			}
			if table == nil {
				continue
			}
			if tid, ok := table.ThreatID(n); ok {
				cr.threats = cr.threats.With(tid)
				if tid >= 0 && tid < len(c.thrNames) && c.thrNames[tid] == "" {
					c.thrNames[tid] = n
				}
			}
		}
		for _, d := range r.Domains {
			if e, err := parseEntry(d); err == nil {
				c.addDomain(e, i, d)
				cr.hasDom = true
			}
		}
		for _, ln := range r.Lists {
			l := lists[ln]
			if l == nil {
				continue
			}
			cr.hasDom = true
			for _, s := range l.Entries {
				if e, err := parseEntry(s); err == nil {
					c.addDomain(e, i, l.Name)
				}
			}
		}
		cr.paths = r.Paths
		for _, s := range r.Countries {
			if cc, ok := categorizer.ParseCountry(s); ok {
				cr.countries = append(cr.countries, cc)
				cr.ccNames = append(cr.ccNames, cc.String())
			}
		}
		if sc := r.Schedule; sc != nil {
			cs := &csched{loc: defaultZone, allDay: sc.From == ""}
			for _, d := range sc.Days {
				if wd, ok := parseDay(d); ok {
					cs.days |= 1 << uint(wd)
				}
			}
			cs.from, _ = parseClock(sc.From)
			cs.to, _ = parseClock(sc.To)
			if sc.To == "24:00" {
				cs.to = 24 * 60
			}
			if sc.TimeZone != "" {
				if z, err := time.LoadLocation(sc.TimeZone); err == nil {
					cs.loc = z
				}
			}
			cr.sched = cs
		}
	}
	c.buildMasks()
	return c
}

// buildMasks fills the prefilter masks from the compiled rules.
func (c *Compiled) buildMasks() {
	w := c.ruleWords
	set := func(m *[]uint64, i int) {
		if *m == nil {
			*m = make([]uint64, w)
		}
		(*m)[i>>6] |= 1 << uint(i&63)
	}
	c.userMask = make([][]uint64, len(c.id.userRecs))
	c.groupMask = make([][]uint64, len(c.id.groups))
	for i := range c.rules {
		cr := &c.rules[i]
		if !cr.hasWhat {
			set(&c.noWhat, i)
		}
		cr.cats.IDs(func(id int) { set(&c.catMask[id], i) })
		if cr.threatAny {
			for id := range c.thrMask {
				set(&c.thrMask[id], i)
			}
		}
		cr.threats.IDs(func(id int) { set(&c.thrMask[id], i) })
		if !cr.hasWho {
			set(&c.noWho, i)
		}
		cr.users.each(func(u int) {
			if u < len(c.userMask) {
				set(&c.userMask[u], i)
			}
		})
		cr.groups.each(func(g int) {
			if g < len(c.groupMask) {
				set(&c.groupMask[g], i)
			}
		})
	}
}

func (c *Compiled) addDomain(e entry, rule int, label string) {
	refs := c.domains[e.host]
	for _, r := range refs {
		if r.rule == uint32(rule) && r.sub == e.sub && r.prefix == e.prefix {
			return // duplicate entry
		}
	}
	c.domains[e.host] = append(refs, domRef{rule: uint32(rule), sub: e.sub, prefix: e.prefix, label: label})
}

// listHas reports whether host (and path) fall under list entries of the
// given kind in p, for PAC bypass and similar non-hot-path uses.
func listHas(l *List, host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, s := range l.Entries {
		e, err := parseEntry(s)
		if err != nil || e.prefix != "" {
			continue
		}
		if host == e.host && !e.sub {
			return true
		}
		if strings.HasSuffix(host, "."+e.host) {
			return true
		}
	}
	return false
}

// BypassHosts returns the entries of every bypass list (host patterns
// without paths), for PAC files: "example.com" and "*.example.com".
func (p *Policy) BypassHosts() []string {
	var out []string
	for _, l := range p.Lists {
		if l.Kind != ListBypass {
			continue
		}
		for _, s := range l.Entries {
			if e, err := parseEntry(s); err == nil && e.prefix == "" {
				if e.sub {
					out = append(out, "*."+e.host)
				} else {
					out = append(out, e.host)
				}
			}
		}
	}
	return out
}

// Bypassed reports whether host is on a bypass list of c's policy.
func (c *Compiled) Bypassed(host string) bool {
	for i := range c.doc.Lists {
		if c.doc.Lists[i].Kind == ListBypass && listHas(&c.doc.Lists[i], host) {
			return true
		}
	}
	return false
}
