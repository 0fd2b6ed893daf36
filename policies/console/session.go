package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

// Session lifetimes when Config leaves them zero.
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultMaxAge      = 12 * time.Hour
	// maxSessions bounds the store; the least recently used session is
	// dropped beyond it.
	maxSessions = 10000
)

// session is one signed-in browser.
type session struct {
	id      string
	token   string // the API token; never rendered
	csrf    string
	me      policies.Me
	created time.Time
	seen    time.Time

	mu    sync.Mutex
	flash *flash
}

// flash is a one-time message shown on the next page.
type flash struct {
	Kind string // ok, err, info
	Text string
}

func (s *session) setFlash(kind, text string) {
	s.mu.Lock()
	s.flash = &flash{Kind: kind, Text: text}
	s.mu.Unlock()
}

func (s *session) takeFlash() *flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flash
	s.flash = nil
	return f
}

// checkCSRF compares a submitted token with the session's in constant
// time.
func (s *session) checkCSRF(got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}

// sessions is the in-memory session store of one console process.
type sessions struct {
	idle, maxAge time.Duration
	now          func() time.Time

	mu sync.Mutex
	m  map[string]*session
}

func newSessions(idle, maxAge time.Duration, now func() time.Time) *sessions {
	return &sessions{idle: idle, maxAge: maxAge, now: now, m: map[string]*session{}}
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create stores a new session for token.
func (st *sessions) create(token string, me policies.Me) *session {
	now := st.now()
	s := &session{id: randomToken(), token: token, csrf: randomToken(), me: me, created: now, seen: now}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.sweepLocked(now)
	if len(st.m) >= maxSessions {
		var oldest *session
		for _, o := range st.m {
			if oldest == nil || o.seen.Before(oldest.seen) {
				oldest = o
			}
		}
		delete(st.m, oldest.id)
	}
	st.m[s.id] = s
	return s
}

// get returns the live session with id and marks it used; expired
// reports whether id named a session that has just expired.
func (st *sessions) get(id string) (s *session, expired bool) {
	if id == "" {
		return nil, false
	}
	now := st.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	s, ok := st.m[id]
	if !ok {
		return nil, false
	}
	if now.Sub(s.seen) > st.idle || now.Sub(s.created) > st.maxAge {
		delete(st.m, id)
		return nil, true
	}
	s.seen = now
	return s, false
}

func (st *sessions) delete(id string) {
	st.mu.Lock()
	delete(st.m, id)
	st.mu.Unlock()
}

// sweepLocked drops expired sessions.
func (st *sessions) sweepLocked(now time.Time) {
	for id, s := range st.m {
		if now.Sub(s.seen) > st.idle || now.Sub(s.created) > st.maxAge {
			delete(st.m, id)
		}
	}
}

func (st *sessions) len() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.m)
}
