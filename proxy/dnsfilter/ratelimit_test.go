package dnsfilter

import (
	"net/netip"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := newLimiter(RateLimitConfig{QPS: 1, Burst: 2, MaxClients: 64})
	now := time.Now()
	tests := []struct {
		client string
		want   bool
	}{
		{"192.0.2.1", true},
		{"192.0.2.1", true},
		{"192.0.2.1", false}, // burst of 2 spent
		{"192.0.2.2", true},  // another client has its own bucket
		{"2001:db8::1", true},
		{"2001:db8::2", true},
		{"2001:db8::3", false},    // same /64
		{"2001:db8:0:1::1", true}, // another /64
	}
	for i, tt := range tests {
		if got := l.allow(netip.MustParseAddr(tt.client), now); got != tt.want {
			t.Errorf("%d: allow(%s) = %v, want %v", i, tt.client, got, tt.want)
		}
	}
	if !l.allow(netip.MustParseAddr("192.0.2.1"), now.Add(2*time.Second)) {
		t.Error("allow after refill = false, want true")
	}
	// Bounded: many clients never grow past MaxClients (per shard bound).
	for i := range 10000 {
		l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), now)
	}
	total := 0
	for i := range l.shards {
		total += len(l.shards[i].m)
	}
	if total > 64+limiterShards {
		t.Errorf("%d clients tracked, want about 64", total)
	}
}
