package categorizer

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
)

// BaselineSource names where an established domain comes from.
type BaselineSource uint8

// The baseline sources, in the order Explain reports them.
const (
	// BaselinePopular is the popularity list embedded in the binary
	// (PopularDomains).
	BaselinePopular BaselineSource = iota
	// BaselineFeeds is every registrable domain listed by a non-threat
	// feed of the Index in use.
	BaselineFeeds
	// BaselineConfigured is the operator's list
	// (NewlySeenConfig.Established and EstablishedFiles).
	BaselineConfigured
)

func (s BaselineSource) String() string {
	switch s {
	case BaselinePopular:
		return "popular"
	case BaselineFeeds:
		return "feeds"
	case BaselineConfigured:
		return "configured"
	}
	return "unknown"
}

// DomainSet is an immutable set of registrable domains, held as their
// Index keys (hash.go) in an open-addressing table of 8-byte slots at a
// load of at most 7/10 (about 11.5 bytes a domain). Has allocates
// nothing. The zero value and nil are empty sets.
type DomainSet struct {
	slots []uint64 // 0: empty
	mask  uint64
	n     int
}

// NewDomainSet returns the set of the registrable domains of names
// (normalized host names; see NormalizeHost). Names without one (IP
// literals, public suffixes) are left out.
func NewDomainSet(names []string) *DomainSet {
	keys := make([]uint64, 0, len(names))
	for _, name := range names {
		if d := RegistrableDomain(name); d != "" {
			keys = append(keys, hashName(d))
		}
	}
	return newDomainSetKeys(keys)
}

func newDomainSetKeys(keys []uint64) *DomainSet {
	size := 8
	for size*7 < len(keys)*10+10 {
		size <<= 1
	}
	s := &DomainSet{slots: make([]uint64, size), mask: uint64(size - 1)}
	for _, k := range keys {
		s.insert(k)
	}
	return s
}

func (s *DomainSet) insert(key uint64) {
	for i := key & s.mask; ; i = (i + 1) & s.mask {
		switch s.slots[i] {
		case key:
			return
		case 0:
			s.slots[i] = key
			s.n++
			return
		}
	}
}

// Len is the number of registrable domains in the set.
func (s *DomainSet) Len() int {
	if s == nil {
		return 0
	}
	return s.n
}

// Has reports whether the registrable domain d (normalized) is in the
// set.
func (s *DomainSet) Has(d string) bool { return s.hasKey(hashName(d)) }

func (s *DomainSet) hasKey(key uint64) bool {
	if s == nil || s.n == 0 {
		return false
	}
	for i := key & s.mask; ; i = (i + 1) & s.mask {
		switch s.slots[i] {
		case key:
			return true
		case 0:
			return false
		}
	}
}

// Bytes is the memory the set holds.
func (s *DomainSet) Bytes() int {
	if s == nil {
		return 0
	}
	return 8 * len(s.slots)
}

// DomainListStats counts what ReadDomainList did with its input.
type DomainListStats struct {
	// Domains is the number of lines that gave a registrable domain.
	Domains int
	// Invalid counts lines that are not host names or have no registrable
	// domain (IP literals, public suffixes).
	Invalid int
	// Errors are the first invalid lines ("name:line: why").
	Errors []string
}

// ReadDomainList reads a list of established domains: one host name per
// line, or "rank,domain" lines (the Umbrella and Tranco top-list CSV),
// '#' comments and blank lines skipped. Every name is normalized and
// reduced to its registrable domain. name labels errors.
func ReadDomainList(name string, r io.Reader) ([]string, DomainListStats, error) {
	var st DomainListStats
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	bad := func(why string) {
		st.Invalid++
		if len(st.Errors) < 10 {
			st.Errors = append(st.Errors, fmt.Sprintf("%s:%d: %s", name, line, why))
		}
	}
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if line == 1 {
			s = strings.TrimPrefix(s, "\ufeff")
		}
		if s == "" || s[0] == '#' {
			continue
		}
		if rank, rest, ok := strings.Cut(s, ","); ok && isDigits(rank) {
			s = strings.TrimSpace(rest)
		}
		if f := strings.Fields(s); len(f) > 0 {
			s = f[0]
		}
		host, err := NormalizeHost(s)
		if err != nil {
			bad(err.Error())
			continue
		}
		d := RegistrableDomain(host)
		if d == "" {
			bad(fmt.Sprintf("%q has no registrable domain", host))
			continue
		}
		out = append(out, d)
		st.Domains++
	}
	if err := sc.Err(); err != nil {
		return nil, st, fmt.Errorf("categorizer: domain list %s line %d: %w", name, line+1, err)
	}
	return out, st, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ReadDomainListFile is ReadDomainList on a file (gzip-compressed when its
// name ends in .gz). A file that cannot be read or holds no domain is an
// error.
func ReadDomainListFile(path string) ([]string, DomainListStats, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, DomainListStats{}, fmt.Errorf("categorizer: domain list: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, DomainListStats{}, fmt.Errorf("categorizer: domain list %s: %w", path, err)
		}
		r = zr
	}
	out, st, err := ReadDomainList(path, r)
	if err != nil {
		return nil, st, err
	}
	if st.Domains == 0 {
		return nil, st, fmt.Errorf("categorizer: domain list %s: %w", path, errNoDomains)
	}
	return out, st, nil
}

var errNoDomains = errors.New("no registrable domain in the file")

// popularFile is the embedded popularity list (see bundled/ATTRIBUTION.md).
const popularFile = "popular-opendns-top.gz"

var popular = sync.OnceValue(func() *DomainSet {
	b, err := fs.ReadFile(bundledFS, popularFile)
	if err != nil {
		panic(fmt.Sprintf("categorizer: bundled %s: %v", popularFile, err))
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		panic(fmt.Sprintf("categorizer: bundled %s: %v", popularFile, err))
	}
	names, _, err := ReadDomainList(popularFile, zr)
	if err != nil {
		panic(err)
	}
	return NewDomainSet(names)
})

// PopularDomains returns the popularity list embedded in the binary as a
// set of registrable domains: the OpenDNS Top Domains list (public
// domain; see BundledAttribution). It is built once and shared.
func PopularDomains() *DomainSet { return popular() }

// psRulesText lists the public suffix rules that lie below a registrable
// domain (s3.amazonaws.com below amazonaws.com, *.kobe.jp below kobe.jp,
// blob.core.windows.net below windows.net, ...), taken from the public
// suffix list golang.org/x/net/publicsuffix compiles in; TestPSParents
// regenerates it with -update-psparents after an upgrade of x/net.
//
//go:embed psparents.txt
var psRulesText string

// psTable is psRulesText compiled: the registrable domains that have
// rules below them, and the rules: a plain rule makes its name a public
// suffix, a wildcard rule "*.base" every name one label below base.
type psTable struct {
	parents map[string]bool
	rules   map[string]psRule
}

type psRule uint8

const (
	psPlain psRule = 1 << iota
	psWildcard
)

var psRules = sync.OnceValue(func() psTable {
	t := psTable{parents: map[string]bool{}, rules: map[string]psRule{}}
	for _, l := range strings.Split(psRulesText, "\n") {
		if l = strings.TrimSpace(l); l != "" && l[0] != '#' {
			for _, p := range psRuleParents(l) {
				t.parents[p] = true
			}
			if base, ok := strings.CutPrefix(l, "*."); ok {
				t.rules[base] |= psWildcard
			} else {
				t.rules[l] |= psPlain
			}
		}
	}
	return t
})

// psRuleParents returns the registrable domains a public suffix rule lies
// below.
func psRuleParents(rule string) []string {
	base := strings.TrimPrefix(rule, "*.")
	var out []string
	for i := 0; i < len(base); i++ {
		if i > 0 && base[i-1] != '.' || i == 0 && base == rule {
			continue // the rule itself is a public suffix, not a parent
		}
		if p := base[i:]; RegistrableDomain(p) == p {
			out = append(out, p)
		}
	}
	return out
}

// hasSuffixesBelow reports whether public suffix rules lie below the
// registrable domain d.
func hasSuffixesBelow(d string) bool { return psRules().parents[d] }

// longerRegistrable reports whether host, which ends in the registrable
// domain d, falls under a public suffix rule below d: its registrable
// domain is then longer than d (a bucket under s3.amazonaws.com is not
// amazonaws.com). It costs a map probe per label of host left of d and
// allocates nothing.
func longerRegistrable(host, d string) bool {
	if !hasSuffixesBelow(d) {
		return false
	}
	rules := psRules().rules
	for i := 0; len(host)-i >= len(d); i++ {
		if i > 0 && host[i-1] != '.' {
			continue
		}
		r := rules[host[i:]]
		if r&psPlain != 0 && len(host)-i > len(d) || r&psWildcard != 0 && i > 0 {
			return true
		}
	}
	return false
}
