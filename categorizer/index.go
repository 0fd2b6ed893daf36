package categorizer

import (
	"net/netip"
	"strings"

	"github.com/gaissmai/bart"
)

// Index is an immutable compiled snapshot of all feeds. Safe for
// concurrent use; swap whole Indexes atomically to update.
type Index struct {
	version    uint64
	categories []string // index = category ID; 0 is newly_seen
	threats    []string // index = threat ID; names of threat feeds
	feeds      []FeedInfo

	attrs     []attr
	attrFeeds []uint64 // per attr: mask of contributing feed IDs (Explain)

	domains     table // domain key → attr ID | childBit | establishedBit
	domainCount int   // listed domains (the table also holds their parents)
	established int   // registrable domains marked with establishedBit

	urlHosts  table // host key → urlGroups index
	urlGroups []urlGroup
	urlPaths  []string // per rule: path prefix, sorted within a group
	urlAttrs  []uint32 // per rule: attr ID

	cidr      *bart.Table[uint32] // prefix → attr ID (covering prefixes folded in)
	cidrCount int

	status []FeedStatus // feed status at build time (Builder.SetStatus)
}

type urlGroup struct {
	host       string
	start, end uint32
}

var emptyIndex = func() *Index {
	ix, err := NewBuilder().Build(0)
	if err != nil {
		panic(err)
	}
	return ix
}()

// EmptyIndex returns an Index with no entries (only the built-in
// categories). It is shared and immutable.
func EmptyIndex() *Index { return emptyIndex }

// Lookup returns the categories and threats of a destination: every
// listed parent domain of host (a listed example.com covers
// a.b.example.com), the URL path prefixes listed under exactly this host,
// and the IP prefixes containing ip (or host, when host is an IP literal
// and ip is the zero Addr). host may be in any case and may end with a
// dot; it should already be punycode (NormalizeHost). Country is left
// zero: Geo.Country fills it. Lookup allocates nothing.
func (ix *Index) Lookup(host, path string, ip netip.Addr) Verdict {
	var v Verdict
	n := len(host)
	if n > 0 && host[n-1] == '.' {
		n--
	}
	urls := path != "" && ix.urlHosts.n > 0
	if n > 0 && (ix.domains.n > 0 || urls) {
		// Hash every suffix in one right-to-left pass. A suffix missing
		// from the table has no listed names below it: stop there (or
		// keep hashing only to find the host's URL entries).
		descend := ix.domains.n > 0
		kids := ^uint32(0) // filter of the parent matched last
		h := hashOffset
		for i := n - 1; i >= 0; i-- {
			c := host[i]
			if c == '.' && descend {
				key := finish(h)
				if kids&childFilterBit(key) == 0 {
					descend = false // the filter rules this suffix out
				} else {
					descend, kids = ix.matchDomain(key, false, &v)
				}
				if !descend && !urls {
					break
				}
			}
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			h = (h ^ uint64(c)) * hashPrime
		}
		if descend || urls {
			key := finish(h)
			if descend && kids&childFilterBit(key) != 0 {
				ix.matchDomain(key, true, &v)
			}
			if urls {
				ix.matchURL(key, path, &v)
			}
		}
	}
	if ix.cidrCount > 0 {
		if !ip.IsValid() && n > 0 {
			ip, _ = parseIPLiteral(host[:n])
		}
		if ip.IsValid() {
			if id, ok := ix.cidr.Lookup(ip.Unmap()); ok {
				a := &ix.attrs[id]
				v.Categories |= a.cats
				v.Threats |= a.thr
			}
		}
	}
	return v
}

// childBit marks a domain table value whose name has listed names below it.
const childBit = 1 << 31

// establishedBit marks the domain table value of a registrable domain
// listed, itself or below it, by a non-threat feed: the feeds part of the
// newly-seen baseline (Established).
const establishedBit = 1 << 30

// attrMask extracts the attribute set ID of a domain table value.
const attrMask = establishedBit - 1

// matchDomain applies the entry of one suffix and reports whether names
// below it are listed, with the filter of their keys.
func (ix *Index) matchDomain(key uint64, self bool, v *Verdict) (bool, uint32) {
	sl := ix.domains.find(key)
	if sl == nil {
		return false, 0
	}
	val := sl.val
	a := &ix.attrs[val&attrMask]
	if a.cut {
		v.Categories, v.Threats = 0, 0
	}
	if self {
		v.Categories |= a.cats
		v.Threats |= a.thr
	} else {
		v.Categories |= a.subCats
		v.Threats |= a.subThr
	}
	return val&childBit != 0, sl.kids
}

func (ix *Index) matchURL(key uint64, path string, v *Verdict) {
	gi, ok := ix.urlHosts.get(key)
	if !ok {
		return
	}
	g := ix.urlGroups[gi]
	for i := g.start; i < g.end; i++ {
		if strings.HasPrefix(path, ix.urlPaths[i]) {
			a := &ix.attrs[ix.urlAttrs[i]]
			v.Categories |= a.cats
			v.Threats |= a.thr
		}
	}
}

// CategoryID returns the ID of a category name. ID 0 is always newly_seen.
func (ix *Index) CategoryID(name string) (int, bool) {
	for i, c := range ix.categories {
		if c == name {
			return i, true
		}
	}
	return 0, false
}

// CategoryName returns the name of a category ID, or "" when unknown.
func (ix *Index) CategoryName(id int) string {
	if id < 0 || id >= len(ix.categories) {
		return ""
	}
	return ix.categories[id]
}

// CategoryNames returns every category name; the index is the ID. The
// slice must not be modified.
func (ix *Index) CategoryNames() []string { return ix.categories }

// ThreatID returns the ID of a threat feed by feed name.
func (ix *Index) ThreatID(name string) (int, bool) {
	for i, t := range ix.threats {
		if t == name {
			return i, true
		}
	}
	return 0, false
}

// ThreatName returns the feed name of a threat ID, or "" when unknown.
func (ix *Index) ThreatName(id int) string {
	if id < 0 || id >= len(ix.threats) {
		return ""
	}
	return ix.threats[id]
}

// ThreatNames returns every threat feed name; the index is the ID. The
// slice must not be modified.
func (ix *Index) ThreatNames() []string { return ix.threats }

// Version is the snapshot version the Index was built or loaded as.
func (ix *Index) Version() uint64 { return ix.version }

// Len is the number of distinct entries: domains, URL prefixes and IP
// prefixes.
func (ix *Index) Len() int { return ix.domainCount + len(ix.urlPaths) + ix.cidrCount }

// Established reports whether the registrable domain d (normalized, as
// RegistrableDomain returns it) is listed, itself or by a name below it,
// by a non-threat feed of the Index: such a domain is part of the
// newly-seen baseline. A domain only threat feeds list is not: being on a
// malware list says nothing about its age. It allocates nothing.
func (ix *Index) Established(d string) bool { return ix.establishedKey(hashName(d)) }

func (ix *Index) establishedKey(key uint64) bool {
	if ix == nil || ix.established == 0 {
		return false
	}
	sl := ix.domains.find(key)
	return sl != nil && sl.val&establishedBit != 0
}

// EstablishedCount is the number of registrable domains Established
// reports.
func (ix *Index) EstablishedCount() int { return ix.established }

// Feeds describes the feeds compiled into the Index. The slice must not be
// modified.
func (ix *Index) Feeds() []FeedInfo { return ix.feeds }

// Status returns the per-feed status recorded when the Index was built
// (by the Syncer), so an edge that loaded a snapshot can show it. The
// slice must not be modified.
func (ix *Index) Status() []FeedStatus { return ix.status }

// Names returns the category and threat names of a Verdict (allocates).
func (ix *Index) Names(v Verdict) (categories, threats []string) {
	v.Categories.IDs(func(id int) { categories = append(categories, ix.CategoryName(id)) })
	v.Threats.IDs(func(id int) { threats = append(threats, ix.ThreatName(id)) })
	return categories, threats
}
