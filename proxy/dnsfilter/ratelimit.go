package dnsfilter

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a per-client token bucket keyed by client IP, sharded so
// clients do not contend on one lock. The number of tracked clients is
// bounded: a full shard forgets its longest-idle client (sampled).
type limiter struct {
	shards   [limiterShards]limiterShard
	seed     maphash.Seed
	qps      rate.Limit
	burst    int
	perShard int
}

const limiterShards = 32

type limiterShard struct {
	mu sync.Mutex
	m  map[netip.Addr]*clientBucket
}

type clientBucket struct {
	lim  *rate.Limiter
	last atomic.Int64 // unix ns of the last query
}

func newLimiter(cfg RateLimitConfig) *limiter {
	l := &limiter{seed: maphash.MakeSeed(), qps: rate.Limit(cfg.QPS), burst: cfg.Burst}
	l.perShard = max(1, (cfg.MaxClients+limiterShards-1)/limiterShards)
	for i := range l.shards {
		l.shards[i].m = make(map[netip.Addr]*clientBucket)
	}
	return l
}

// allow reports whether client may send one more query at now. IPv6
// clients share a bucket per /64 (one host's worth of addresses), so
// rotating through a prefix does not escape the limit.
func (l *limiter) allow(client netip.Addr, now time.Time) bool {
	if client.Is6() && !client.Is4In6() {
		client = netip.PrefixFrom(client, 64).Masked().Addr()
	}
	s := &l.shards[maphash.Comparable(l.seed, client)%limiterShards]
	s.mu.Lock()
	b := s.m[client]
	if b == nil {
		if len(s.m) >= l.perShard {
			l.forgetIdleLocked(s)
		}
		b = &clientBucket{lim: rate.NewLimiter(l.qps, l.burst)}
		s.m[client] = b
	}
	s.mu.Unlock()
	b.last.Store(now.UnixNano())
	return b.lim.AllowN(now, 1)
}

func (l *limiter) forgetIdleLocked(s *limiterShard) {
	var (
		victim netip.Addr
		oldest int64
		n      int
	)
	for a, b := range s.m {
		if t := b.last.Load(); n == 0 || t < oldest {
			victim, oldest = a, t
		}
		if n++; n >= 8 {
			break
		}
	}
	delete(s.m, victim)
}
