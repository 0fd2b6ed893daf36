package categorizer

// table is an open-addressing hash table (linear probing) from a 64-bit
// key (never 0) to a uint32 value, in two parallel arrays so a miss only
// touches the keys. It grows while being built and is then read
// concurrently without locks.
type table struct {
	keys []uint64
	vals []uint32
	mask uint64
	n    int
}

// newTable sizes a table for n keys at a load factor of at most 7/10
// (short probe sequences for misses, which are most lookups).
func newTable(n int) table {
	size := 8
	for size*7 < n*10+10 {
		size <<= 1
	}
	return table{keys: make([]uint64, size), vals: make([]uint32, size), mask: uint64(size - 1)}
}

// slot returns the position of key, inserting it with value 0 when absent
// (found = false). Positions are valid until the next insertion.
func (t *table) slot(key uint64) (pos uint64, found bool) {
	if (t.n+1)*10 > len(t.keys)*7 {
		t.grow()
	}
	for i := key & t.mask; ; i = (i + 1) & t.mask {
		switch t.keys[i] {
		case key:
			return i, true
		case 0:
			t.keys[i] = key
			t.n++
			return i, false
		}
	}
}

// put inserts or replaces key.
func (t *table) put(key uint64, val uint32) {
	i, _ := t.slot(key)
	t.vals[i] = val
}

func (t *table) grow() {
	old := *t
	*t = newTable(len(old.keys))
	for i, k := range old.keys {
		if k != 0 {
			t.put(k, old.vals[i])
		}
	}
}

// get returns the value of key.
func (t *table) get(key uint64) (uint32, bool) {
	if t.n == 0 {
		return 0, false
	}
	for i := key & t.mask; ; i = (i + 1) & t.mask {
		k := t.keys[i]
		if k == key {
			return t.vals[i], true
		}
		if k == 0 {
			return 0, false
		}
	}
}

// each calls fn for every key in slot order.
func (t *table) each(fn func(key uint64, val uint32)) {
	for i, k := range t.keys {
		if k != 0 {
			fn(k, t.vals[i])
		}
	}
}
