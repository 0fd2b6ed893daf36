package proxy

import (
	"sync"
	"time"
)

// maxWarnEntries bounds the warn memory; beyond it expired entries are
// swept and, if still full, the oldest-expiring half is dropped.
const maxWarnEntries = 200000

// warnMemory remembers "continue" on warn pages per user (or client
// address) and host until a deadline.
type warnMemory struct {
	mu  sync.Mutex
	ack map[warnKey]time.Time
	now func() time.Time
}

type warnKey struct{ user, host string }

func newWarnMemory() *warnMemory {
	return &warnMemory{ack: map[warnKey]time.Time{}, now: time.Now}
}

// acknowledge remembers that user chose to continue to host for ttl.
func (w *warnMemory) acknowledge(user, host string, ttl time.Duration) {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ack) >= maxWarnEntries {
		w.sweep(now)
	}
	w.ack[warnKey{user, host}] = now.Add(ttl)
}

// acknowledged reports whether user continued to host within its TTL.
func (w *warnMemory) acknowledged(user, host string) bool {
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	until, ok := w.ack[warnKey{user, host}]
	if ok && !now.Before(until) {
		delete(w.ack, warnKey{user, host})
		return false
	}
	return ok
}

func (w *warnMemory) sweep(now time.Time) {
	for k, until := range w.ack {
		if !now.Before(until) {
			delete(w.ack, k)
		}
	}
	if len(w.ack) < maxWarnEntries {
		return
	}
	// Still full of live entries: drop those expiring soonest.
	cut := now.Add(time.Hour)
	for len(w.ack) >= maxWarnEntries/2 {
		for k, until := range w.ack {
			if until.Before(cut) {
				delete(w.ack, k)
			}
		}
		cut = cut.Add(cut.Sub(now))
	}
}
