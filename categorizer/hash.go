package categorizer

// The domain hash is FNV-1a over the name's bytes read right to left
// (ASCII lower-cased on the fly), finished with the MurmurHash3 fmix64
// mixer. Reading right to left lets Lookup hash every suffix of a host in
// one pass: the state after the bytes of "example.com" is the state to
// continue with for "www.example.com". The function is fixed (no seed) so
// compiled snapshots are valid in every process; changing it requires a
// new snapshot format version.
const (
	hashOffset uint64 = 14695981039346656037
	hashPrime  uint64 = 1099511628211
)

// finish mixes an FNV state into a table key; 0 is reserved for "empty".
func finish(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	if h == 0 {
		h = 1
	}
	return h
}

// hashName returns the table key of a name (any ASCII case).
func hashName(s string) uint64 {
	h := hashOffset
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h = (h ^ uint64(c)) * hashPrime
	}
	return finish(h)
}

// suffixHashes calls fn with the key of each dot-separated suffix of name,
// shortest first, ending with the whole name (full = true).
func suffixHashes(name string, fn func(key uint64, start int, full bool)) {
	h := hashOffset
	for i := len(name) - 1; i >= 0; i-- {
		c := name[i]
		if c == '.' {
			fn(finish(h), i+1, false)
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h = (h ^ uint64(c)) * hashPrime
	}
	fn(finish(h), 0, true)
}
