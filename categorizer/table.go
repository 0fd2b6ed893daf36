package categorizer

// table is an open-addressing hash table (linear probing) from a 64-bit
// key (never 0) to a uint32 value. A slot is 12 bytes (the key as two
// 32-bit halves and the value) so a hit reads one cache line and the
// table costs 12 bytes per slot. It grows while being built and is then
// read concurrently without locks.
type table struct {
	slots []slot
	mask  uint64
	n     int
}

type slot struct {
	lo, hi uint32 // the key; both zero: empty
	val    uint32
}

func (s *slot) key() uint64 { return uint64(s.hi)<<32 | uint64(s.lo) }

// newTable sizes a table for n keys at a load factor of at most 7/10
// (short probe sequences for misses, which are most lookups).
func newTable(n int) table {
	size := 8
	for size*7 < n*10+10 {
		size <<= 1
	}
	return table{slots: make([]slot, size), mask: uint64(size - 1)}
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
			t.put(s.key(), s.val)
		}
	}
}

// get returns the value of key.
func (t *table) get(key uint64) (uint32, bool) {
	if t.n == 0 {
		return 0, false
	}
	lo, hi := uint32(key), uint32(key>>32)
	for i := key & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.lo == lo && s.hi == hi {
			return s.val, true
		}
		if s.lo|s.hi == 0 {
			return 0, false
		}
	}
}

// each calls fn for every key in slot order.
func (t *table) each(fn func(key uint64, val uint32)) {
	for i := range t.slots {
		if s := &t.slots[i]; s.lo|s.hi != 0 {
			fn(s.key(), s.val)
		}
	}
}
