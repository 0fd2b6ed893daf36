package dnsfilter

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// cacheKey identifies one cached answer. Answers differ with the DO and CD
// bits (DNSSEC records, validation), so those are part of the key.
type cacheKey struct {
	name  string // policies.Request.Host form: lower case, no trailing dot
	qtype uint16
	bits  uint8 // keyDO | keyCD
}

const (
	keyDO = 1 << iota
	keyCD
)

// entry is one upstream answer, packed, immutable once stored (only its
// counters change). The same entry type carries answers that are not
// cacheable (ttl 0) through the serve path.
type entry struct {
	wire    []byte   // ID 0, no OPT record, compressed
	qEnd    int      // end of the question section in wire
	ttlOffs []uint16 // offset of every TTL field in wire
	ttls    []uint32 // the TTLs at store time (clamped)
	stored  int64    // unix ns
	expires int64    // unix ns; stored+ttl
	ttl     uint32   // lifetime in seconds; 0 means not cacheable
	rcode   int
	// edeCode and edeText are the upstream's Extended DNS Error, passed
	// on; edeCode is noEDE when there was none.
	edeCode uint16
	edeText string
	// cnames are the CNAME targets in the answer, lower-case without the
	// trailing dot; ips are the A/AAAA addresses. Both are checked against
	// policy on every hit, since the decision depends on the client.
	cnames []string
	ips    []netip.Addr

	hits        atomic.Uint32
	prefetching atomic.Bool
}

// cacheLimits are the TTL clamps.
type cacheLimits struct {
	minTTL, maxTTL, maxNegTTL uint32
}

// newEntry packs r (an upstream answer to key's question) into an entry,
// clamping TTLs. r is modified (ID, OPT removed, TTLs clamped).
func newEntry(r *dns.Msg, now time.Time, lim cacheLimits) (*entry, error) {
	e := &entry{rcode: r.Rcode, stored: now.UnixNano()}
	// Drop the upstream's OPT: the client gets its own, made per query,
	// carrying the upstream's Extended DNS Error (DNSSEC bogus, …) if any.
	e.edeCode = noEDE
	extra := r.Extra[:0:0]
	for _, rr := range r.Extra {
		opt, ok := rr.(*dns.OPT)
		if !ok {
			extra = append(extra, rr)
			continue
		}
		for _, o := range opt.Option {
			if x, ok := o.(*dns.EDNS0_EDE); ok && e.edeCode == noEDE {
				e.edeCode, e.edeText = x.InfoCode, x.ExtraText
				if len(e.edeText) > maxEDEText {
					e.edeText = e.edeText[:maxEDEText]
				}
			}
		}
	}
	r.Extra = extra
	r.Id = 0
	r.Authoritative = false
	r.Truncated = false
	r.RecursionAvailable = true
	r.Compress = true

	clamp := func(t uint32) uint32 { return min(max(t, lim.minTTL), lim.maxTTL) }
	var ttl uint32
	switch {
	case r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0:
		ttl = ^uint32(0)
		for _, rr := range r.Answer {
			h := rr.Header()
			h.Ttl = clamp(h.Ttl)
			ttl = min(ttl, h.Ttl)
			switch v := rr.(type) {
			case *dns.CNAME:
				e.cnames = append(e.cnames, normalizeHost(v.Target))
			case *dns.A:
				if a, ok := netip.AddrFromSlice(v.A); ok {
					e.ips = append(e.ips, a.Unmap())
				}
			case *dns.AAAA:
				if a, ok := netip.AddrFromSlice(v.AAAA); ok {
					e.ips = append(e.ips, a)
				}
			}
		}
		for _, rr := range r.Ns {
			rr.Header().Ttl = clamp(rr.Header().Ttl)
		}
		for _, rr := range r.Extra {
			rr.Header().Ttl = clamp(rr.Header().Ttl)
		}
	case r.Rcode == dns.RcodeSuccess || r.Rcode == dns.RcodeNameError:
		// Negative answer (NODATA or NXDOMAIN): RFC 2308 section 5, the
		// TTL is min(SOA TTL, SOA MINIMUM); without an SOA, not cached.
		for _, rr := range r.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				t := min(soa.Hdr.Ttl, soa.Minttl, lim.maxNegTTL)
				soa.Hdr.Ttl = t
				ttl = t
				break
			}
		}
	}
	wire, err := r.Pack()
	if err != nil {
		return nil, err
	}
	e.wire = wire
	if e.qEnd, e.ttlOffs, err = rrOffsets(wire); err != nil {
		return nil, err
	}
	e.ttls = make([]uint32, len(e.ttlOffs))
	for i, off := range e.ttlOffs {
		e.ttls[i] = binary.BigEndian.Uint32(wire[off:])
	}
	e.ttl = ttl
	e.expires = e.stored + int64(ttl)*int64(time.Second)
	return e, nil
}

// remaining is the whole seconds of lifetime e has left at now.
func (e *entry) remaining(now int64) uint32 {
	if now >= e.expires {
		return 0
	}
	return uint32((e.expires - now) / int64(time.Second))
}

// appendAnswer appends e as the answer to q: ID and question case from the
// query, RD/CD echoed, AD only when the client asked for it (RFC 6840
// 5.8), TTLs decremented by the time e has been cached, and an OPT record
// when the query had one.
func (e *entry) appendAnswer(buf []byte, q *dns.Msg, ed ednsInfo, maxUDP uint16, now int64) []byte {
	start := len(buf)
	buf = append(buf, e.wire...)
	out := buf[start:]
	binary.BigEndian.PutUint16(out, q.Id)
	out[2] &^= flagRD | flagTC | flagAA
	if q.RecursionDesired {
		out[2] |= flagRD
	}
	out[3] &^= flagCD
	if q.CheckingDisabled {
		out[3] |= flagCD
	}
	if !q.AuthenticatedData && !ed.do {
		out[3] &^= flagAD
	}
	// Question case preservation: write the client's spelling over ours.
	// The name is packed aside first: only a name of the same wire length
	// (always, for a query that maps to this entry) may replace ours.
	if len(q.Question) == 1 {
		var name [256]byte // a wire name is at most 255 octets
		if end, err := dns.PackDomainName(q.Question[0].Name, name[:], 0, nil, false); err == nil && headerLen+end+4 == e.qEnd {
			copy(out[headerLen:], name[:end])
		}
	}
	elapsed := uint32(0)
	if now > e.stored {
		elapsed = uint32((now - e.stored) / int64(time.Second))
	}
	for i, off := range e.ttlOffs {
		t := e.ttls[i]
		if t > elapsed {
			t -= elapsed
		} else {
			t = 0
		}
		binary.BigEndian.PutUint32(out[off:], t)
	}
	if ed.present {
		buf = appendOPT(buf, maxUDP, ed.do, e.edeCode, e.edeText)
	}
	return buf
}

// cache is the sharded answer cache: each shard has its own lock, so hits
// on different names never contend; there is no global lock.
type cache struct {
	shards   [cacheShards]cacheShard
	seed     maphash.Seed
	perShard int
	lim      cacheLimits
	size     atomic.Int64
	evicted  func()
	disabled bool // maxEntries 0: nothing is stored
}

const cacheShards = 64

type cacheShard struct {
	mu sync.RWMutex
	m  map[cacheKey]*entry
	// inflight coalesces concurrent misses on one key into one upstream
	// query.
	inflight map[cacheKey]*flight
}

// flight is one upstream resolution others can wait for: goroutines on
// done, UDP queries (which have no goroutine of their own) in waiters.
type flight struct {
	done    chan struct{}
	e       *entry
	err     error
	waiters []*query // guarded by the shard's lock until finish
}

func newCache(maxEntries int, lim cacheLimits, evicted func()) *cache {
	c := &cache{seed: maphash.MakeSeed(), lim: lim, evicted: evicted, disabled: maxEntries <= 0}
	c.perShard = max(1, (maxEntries+cacheShards-1)/cacheShards)
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]*entry)
		c.shards[i].inflight = make(map[cacheKey]*flight)
	}
	return c
}

func (c *cache) shard(k cacheKey) *cacheShard {
	h := maphash.String(c.seed, k.name) ^ uint64(k.qtype)*0x9E3779B97F4A7C15 ^ uint64(k.bits)
	return &c.shards[h%cacheShards]
}

// get returns the live entry for k, or nil.
func (c *cache) get(k cacheKey, now int64) *entry {
	s := c.shard(k)
	s.mu.RLock()
	e := s.m[k]
	s.mu.RUnlock()
	if e == nil || now >= e.expires {
		return nil
	}
	return e
}

// put stores e under k when it is cacheable. A full shard evicts: expired
// entries among a small sample first, else the sampled entry closest to
// expiry.
func (c *cache) put(k cacheKey, e *entry) {
	if e.ttl == 0 || c.disabled {
		return
	}
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; !ok && len(s.m) >= c.perShard {
		c.evictLocked(s, e.stored)
	}
	if _, ok := s.m[k]; !ok {
		c.size.Add(1)
	}
	s.m[k] = e
}

func (c *cache) evictLocked(s *cacheShard, now int64) {
	var (
		victim    cacheKey
		victimExp int64
		found     bool
		n         int
	)
	for k, e := range s.m {
		if e.expires <= now {
			delete(s.m, k)
			c.size.Add(-1)
			return
		}
		if !found || e.expires < victimExp {
			victim, victimExp, found = k, e.expires, true
		}
		if n++; n >= 8 {
			break
		}
	}
	if found {
		delete(s.m, victim)
		c.size.Add(-1)
		if c.evicted != nil {
			c.evicted()
		}
	}
}

// len is the number of stored entries (live or expired, not yet evicted).
func (c *cache) len() int { return int(c.size.Load()) }

// join registers a resolution of k: the first caller (leader=true) must
// call finish; the others wait on f.done.
func (c *cache) join(k cacheKey) (f *flight, leader bool) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.inflight[k]; f != nil {
		return f, false
	}
	f = &flight{done: make(chan struct{})}
	s.inflight[k] = f
	return f, true
}

// joinWait is join for a query that waits without a goroutine: when a
// resolution of k is under way q is added to its waiters (leader=false);
// otherwise a new flight is made with q as its first waiter, and the
// caller must resolve it and call finish.
func (c *cache) joinWait(k cacheKey, q *query) (f *flight, leader bool) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.inflight[k]; f != nil {
		f.waiters = append(f.waiters, q)
		return f, false
	}
	f = &flight{done: make(chan struct{}), waiters: []*query{q}}
	s.inflight[k] = f
	return f, true
}

// finish ends flight f of k (f.e and f.err set): it wakes the waiting
// goroutines and returns the waiting queries for the caller to answer.
func (c *cache) finish(k cacheKey, f *flight) []*query {
	s := c.shard(k)
	s.mu.Lock()
	delete(s.inflight, k)
	ws := f.waiters
	f.waiters = nil
	s.mu.Unlock()
	close(f.done)
	return ws
}

// normalizeHost lower-cases a DNS name and drops the trailing dot: the form
// policies.Request.Host takes. It allocates only when the name has upper
// case letters.
func normalizeHost(name string) string {
	name = strings.TrimSuffix(name, ".")
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}
