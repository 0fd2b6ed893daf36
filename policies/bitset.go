package policies

import "math/bits"

// bitset is a dense set of small non-negative integers (group and user
// indexes of one compiled policy).
type bitset []uint64

func (b bitset) has(i int) bool {
	w := i >> 6
	return i >= 0 && w < len(b) && b[w]&(1<<uint(i&63)) != 0
}

func (b *bitset) add(i int) {
	w := i >> 6
	for len(*b) <= w {
		*b = append(*b, 0)
	}
	(*b)[w] |= 1 << uint(i&63)
}

// intersects reports whether b and o share a member.
func (b bitset) intersects(o bitset) bool {
	n := min(len(b), len(o))
	for i := 0; i < n; i++ {
		if b[i]&o[i] != 0 {
			return true
		}
	}
	return false
}

// each calls fn for every member in ascending order.
func (b bitset) each(fn func(i int)) {
	for w, x := range b {
		for ; x != 0; x &= x - 1 {
			fn(w<<6 | bits.TrailingZeros64(x))
		}
	}
}
