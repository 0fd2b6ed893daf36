package categorizer

import "math/bits"

// MaxCategories is how many distinct categories (and, separately, threat
// feeds) one Index can name: a Set is one machine word.
const MaxCategories = 64

// NewlySeenCategory is the built-in category given to a registrable domain
// first seen within the configured window. Every Index reserves ID 0 for it.
const NewlySeenCategory = "newly_seen"

// NewlySeenID is the category ID of NewlySeenCategory in every Index.
const NewlySeenID = 0

// Set is a set of up to 64 small IDs (category IDs or threat-feed IDs of
// one Index). The zero value is the empty set.
type Set uint64

// Has reports whether id is in s.
func (s Set) Has(id int) bool { return id >= 0 && id < 64 && s&(1<<uint(id)) != 0 }

// With returns s with id added.
func (s Set) With(id int) Set {
	if id < 0 || id >= 64 {
		return s
	}
	return s | 1<<uint(id)
}

// Len is the number of IDs in s.
func (s Set) Len() int { return bits.OnesCount64(uint64(s)) }

// Empty reports whether s has no IDs.
func (s Set) Empty() bool { return s == 0 }

// IDs calls fn for each ID in s in ascending order.
func (s Set) IDs(fn func(id int)) {
	for v := uint64(s); v != 0; v &= v - 1 {
		fn(bits.TrailingZeros64(v))
	}
}

// Country is an ISO 3166-1 alpha-2 code in upper case; the zero value means
// unknown (no GeoIP database, no address, or no country for it).
type Country [2]byte

// Known reports whether c names a country.
func (c Country) Known() bool { return c[0] != 0 }

// String returns the two-letter code, or "" when unknown.
func (c Country) String() string {
	if !c.Known() {
		return ""
	}
	return string(c[:])
}

// ParseCountry turns a two-letter code (any case) into a Country; anything
// else gives the zero Country and false.
func ParseCountry(s string) (Country, bool) {
	if len(s) != 2 {
		return Country{}, false
	}
	var c Country
	for i := 0; i < 2; i++ {
		b := s[i]
		if b >= 'a' && b <= 'z' {
			b -= 'a' - 'A'
		}
		if b < 'A' || b > 'Z' {
			return Country{}, false
		}
		c[i] = b
	}
	return c, true
}

// Verdict is what the categorizer knows about one destination. It is a
// small value: computing it allocates nothing.
type Verdict struct {
	// Categories holds category IDs of the Index the verdict came from
	// (see Index.CategoryName).
	Categories Set
	// Threats holds threat-feed IDs of the Index (see Index.ThreatName).
	Threats Set
	// Country is the destination country from GeoIP, zero when unknown.
	Country Country
}
