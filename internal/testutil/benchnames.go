package testutil

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// BenchNames returns n distinct host names for the 2 M-entry benchmarks:
// the real names of base (normalized: lower case, no trailing dot) in
// sorted order, then names generated from them, deterministically for a
// given seed and base:
//
//  1. Siblings, until RealShare of n: a random base name with its
//     leftmost label replaced by a label drawn from a character model
//     (order 3) of the base's leftmost labels. They keep the real names'
//     depth and parent domains (a sibling of "x.netlify.app" is another
//     "*.netlify.app", of "casino-x.com" another ".com" name) and their
//     label shapes (lengths, digits, hyphens).
//  2. Subdomains of every name so far under real-looking leading labels
//     ("www.", "cdn.", "m.", "api.", ..., then "www1.", ...), up to n.
//
// This is the shape of the corpus the benchmarks used while their
// domains came from about 930,000 real feed names (half of the 2 M
// replicated under leading labels), so figures stay comparable when the
// real part is smaller (see categorizer/BENCHMARKS.md).
func BenchNames(base []string, n int, seed uint64) []string {
	seen := make(map[string]struct{}, n)
	names := make([]string, 0, n)
	for _, b := range base {
		if _, dup := seen[b]; !dup && b != "" {
			seen[b] = struct{}{}
			names = append(names, b)
		}
	}
	slices.Sort(names)
	if len(names) >= n {
		return names[:n]
	}
	nReal := len(names)
	rng := rand.New(rand.NewPCG(seed, 0x62656e63686e616d))
	m := trainLabels(names)
	siblings := int(float64(n) * RealShare)
	for tries := 0; len(names) < siblings && nReal > 0 && tries < 4*n; tries++ {
		parent := names[rng.IntN(nReal)]
		_, rest, ok := strings.Cut(parent, ".")
		if !ok {
			continue
		}
		label := m.label(rng)
		name := label + "." + rest
		// "www" and the like belong under a name, not next to it.
		if label == "" || slices.Contains(benchPrefixes, label) || len(name) > 253 {
			continue
		}
		if _, dup := seen[name]; dup {
			continue
		}
		seen[name] = struct{}{}
		names = append(names, name)
	}
	stem := len(names)
	for r := 0; len(names) < n; r++ {
		p := benchPrefixes[r%len(benchPrefixes)]
		if r >= len(benchPrefixes) {
			p += strconv.Itoa(r / len(benchPrefixes))
		}
		for _, s := range names[:stem] {
			if len(names) >= n {
				break
			}
			name := p + "." + s
			if _, dup := seen[name]; dup || len(name) > 253 {
				continue
			}
			seen[name] = struct{}{}
			names = append(names, name)
		}
	}
	return names
}

// RealShare is the share of a BenchNames corpus made of base names and
// their siblings; the rest are subdomains of those.
const RealShare = 0.465

var benchPrefixes = []string{"www", "cdn", "m", "api", "static", "img", "mail", "app", "login", "secure", "dl", "news"}

// labelAlphabet is what a generated label is made of; index len is the
// end of the label.
const labelAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789-"

// labelModel counts, for each context of up to three preceding bytes
// (padded with '^' at the start), which byte follows.
type labelModel map[[3]byte]*[len(labelAlphabet) + 1]uint32

func trainLabels(names []string) labelModel {
	m := labelModel{}
	for _, n := range names {
		label, _, _ := strings.Cut(n, ".")
		if label == "" || strings.Trim(label, labelAlphabet) != "" {
			continue
		}
		ctx := [3]byte{'^', '^', '^'}
		for i := 0; i <= len(label); i++ {
			next := len(labelAlphabet)
			if i < len(label) {
				next = strings.IndexByte(labelAlphabet, label[i])
			}
			c := m[ctx]
			if c == nil {
				c = new([len(labelAlphabet) + 1]uint32)
				m[ctx] = c
			}
			c[next]++
			if i < len(label) {
				ctx = [3]byte{ctx[1], ctx[2], label[i]}
			}
		}
	}
	return m
}

// label draws one label; "" when the draw is not a valid LDH label
// (the caller draws again).
func (m labelModel) label(rng *rand.Rand) string {
	var b [64]byte
	n := 0
	ctx := [3]byte{'^', '^', '^'}
	for {
		c := m[ctx]
		if c == nil {
			return ""
		}
		var total uint32
		for _, v := range c {
			total += v
		}
		x := rng.Uint32N(total)
		next := 0
		for ; x >= c[next]; next++ {
			x -= c[next]
		}
		if next == len(labelAlphabet) {
			break
		}
		if n == len(b) {
			return ""
		}
		b[n] = labelAlphabet[next]
		ctx = [3]byte{ctx[1], ctx[2], b[n]}
		n++
	}
	s := string(b[:n])
	if n == 0 || n > 63 || s[0] == '-' || s[n-1] == '-' || (n >= 4 && s[2:4] == "--") {
		return "" // empty, too long, or an (invalid) IDN A-label prefix
	}
	return s
}
