package categorizer

// table is an open-addressing hash table (linear probing) from a 64-bit
// key (never 0) to a uint32 value, in two parallel arrays so a miss only
// touches the keys. It is built once and then read concurrently.
type table struct {
	keys []uint64
	vals []uint32
	mask uint64
	n    int
}

// newTable sizes a table for n keys at a load factor of at most 3/4.
func newTable(n int) table {
	size := 8
	for size*3 < n*4+4 {
		size <<= 1
	}
	return table{keys: make([]uint64, size), vals: make([]uint32, size), mask: uint64(size - 1)}
}

// put inserts or replaces key.
func (t *table) put(key uint64, val uint32) {
	for i := key & t.mask; ; i = (i + 1) & t.mask {
		switch t.keys[i] {
		case 0:
			t.keys[i], t.vals[i] = key, val
			t.n++
			return
		case key:
			t.vals[i] = val
			return
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
