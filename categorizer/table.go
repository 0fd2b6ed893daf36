package categorizer

// table is an open-addressing hash table (linear probing) from a 64-bit
// key (never 0) to a uint32 value plus a 32-bit child filter. A slot is
// 16 bytes (the key as two 32-bit halves, value, filter), so a hit reads
// one cache line. It grows while being built and is then read
// concurrently without locks.
type table struct {
	slots []slot
	mask  uint64
	n     int
}

type slot struct {
	lo, hi uint32 // the key; both zero: empty
	val    uint32
	// kids is a one-word Bloom filter of the keys of the entries one
	// label below this one (bit childFilterBit(key)): a lookup skips the
	// probe for a child whose bit is clear.
	kids uint32
}

// childFilterBit is the filter bit of a child key (its top 5 bits; the
// table position uses the low bits).
func childFilterBit(key uint64) uint32 { return 1 << (key >> 59) }

func (s *slot) key() uint64 { return uint64(s.hi)<<32 | uint64(s.lo) }

// newTable sizes a table for n keys at a load factor of at most 7/10
// (short probe sequences for misses, which are most lookups).
func newTable(n int) table {
	size := 8
	for size*7 < n*10+10 {
		size <<= 1
	}
	slots := make([]slot, size)
	adviseHugePages(slots)
	return table{slots: slots, mask: uint64(size - 1)}
}

// slot returns the position of key, inserting it with value 0 when absent
// (found = false). Positions are valid until the next insertion.
func (t *table) slot(key uint64) (pos uint64, found bool) {
	if (t.n+1)*10 > len(t.slots)*7 {
		t.grow()
	}
	lo, hi := uint32(key), uint32(key>>32)
	for i := key & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.lo == lo && s.hi == hi {
			return i, true
		}
		if s.lo == 0 && s.hi == 0 {
			s.lo, s.hi = lo, hi
			t.n++
			return i, false
		}
	}
}

// put inserts or replaces key.
func (t *table) put(key uint64, val uint32) {
	i, _ := t.slot(key)
	t.slots[i].val = val
}

func (t *table) grow() {
	old := t.slots
	*t = newTable(len(old))
	for i := range old {
		if s := &old[i]; s.lo|s.hi != 0 {
			p, _ := t.slot(s.key())
			t.slots[p].val, t.slots[p].kids = s.val, s.kids
		}
	}
}

// get returns the value of key.
func (t *table) get(key uint64) (uint32, bool) {
	if s := t.find(key); s != nil {
		return s.val, true
	}
	return 0, false
}

// find returns the slot of key, or nil.
func (t *table) find(key uint64) *slot {
	if t.n == 0 {
		return nil
	}
	lo, hi := uint32(key), uint32(key>>32)
	for i := key & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.lo == lo && s.hi == hi {
			return s
		}
		if s.lo|s.hi == 0 {
			return nil
		}
	}
}
