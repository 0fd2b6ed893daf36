package proxy

import (
	"net/http"
	"net/netip"
	"net/url"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

func TestAuthLimiterWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newAuthLimiter(3, time.Minute)
		a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
		for range 3 {
			if l.blocked(a) {
				t.Fatal("blocked before the limit")
			}
			l.failed(a)
		}
		if !l.blocked(a) || l.blocked(b) {
			t.Fatalf("after 3 failures: a blocked %v, b blocked %v; want true, false", l.blocked(a), l.blocked(b))
		}
		time.Sleep(time.Minute)
		if l.blocked(a) {
			t.Fatal("still blocked after the window")
		}
		if off := newAuthLimiter(-1, time.Minute); func() bool { off.failed(a); return off.blocked(a) }() {
			t.Fatal("a disabled limiter blocks")
		}
	})
}

func TestAuthFailuresRateLimited(t *testing.T) {
	h := newHarness(t, harnessOpt{
		cfg:     Config{AuthFailuresPerMinute: 3},
		trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	target := h.httpURL("allowed.test", "/")
	for i := range 3 {
		if resp, _ := get(t, h.client(url.UserPassword("alice", "guess")), target); resp.StatusCode != http.StatusProxyAuthRequired {
			t.Fatalf("wrong password %d = %d, want 407", i, resp.StatusCode)
		}
	}
	resp, _ := get(t, h.client(url.UserPassword("alice", "wonderland")), target)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("login after 3 failures = %d, want 429 with Retry-After", resp.StatusCode)
	}
	ev := h.events.wait(t, func(ev *policies.AccessEvent) bool { return ev.Status == http.StatusTooManyRequests })
	if ev.Reason != "auth_rate" || ev.Action != "block" {
		t.Errorf("event = %+v", ev)
	}
}
