package proxy

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestWarnMemoryTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWarnMemory()
		w.acknowledge("u:alice", "social.test", time.Hour)
		if !w.acknowledged("u:alice", "social.test") {
			t.Fatal("continue not remembered")
		}
		if w.acknowledged("u:bob", "social.test") || w.acknowledged("u:alice", "other.test") {
			t.Fatal("continue leaked to another user or host")
		}
		time.Sleep(59 * time.Minute)
		if !w.acknowledged("u:alice", "social.test") {
			t.Fatal("continue forgotten before its TTL")
		}
		time.Sleep(2 * time.Minute)
		if w.acknowledged("u:alice", "social.test") {
			t.Fatal("continue remembered after its TTL")
		}
	})
}

func TestWarnMemoryBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWarnMemory()
		for i := range maxWarnEntries + 10 {
			w.acknowledge("ip:"+itoa(uint16(i%65536)), "h"+itoa(uint16(i/65536)), time.Minute)
		}
		if n := len(w.ack); n > maxWarnEntries {
			t.Fatalf("warn memory holds %d entries, bound %d", n, maxWarnEntries)
		}
	})
}
