package proxy

import (
	"net/netip"
	"sync"
	"time"
)

// authLimiter bounds failed proxy logins per client address: password
// hashes are deliberately slow, so unbounded wrong guesses would be both a
// brute-force channel and a CPU sink. Beyond the limit a client gets 429
// without its credentials being checked until the window passes.
type authLimiter struct {
	limit  int
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	fails map[netip.Addr]*authFails
}

type authFails struct {
	n     int
	start time.Time
}

// maxAuthTracked bounds the failure table.
const maxAuthTracked = 100000

func newAuthLimiter(limit int, window time.Duration) *authLimiter {
	return &authLimiter{limit: limit, window: window, now: time.Now, fails: map[netip.Addr]*authFails{}}
}

// blocked reports whether ip used up its failures in the current window.
func (l *authLimiter) blocked(ip netip.Addr) bool {
	if l.limit <= 0 {
		return false
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.fails[ip]
	if !ok {
		return false
	}
	if now.Sub(f.start) >= l.window {
		delete(l.fails, ip)
		return false
	}
	return f.n >= l.limit
}

// failed counts one failed login from ip.
func (l *authLimiter) failed(ip netip.Addr) {
	if l.limit <= 0 {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.fails[ip]
	if !ok || now.Sub(f.start) >= l.window {
		if len(l.fails) >= maxAuthTracked {
			for k, v := range l.fails {
				if now.Sub(v.start) >= l.window {
					delete(l.fails, k)
				}
			}
			if len(l.fails) >= maxAuthTracked {
				return // table full of live entries: count nothing new
			}
		}
		l.fails[ip] = &authFails{n: 1, start: now}
		return
	}
	f.n++
}
