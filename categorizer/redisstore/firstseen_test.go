package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/categorizer"
	"github.com/cordon-gw/cordon/internal/testutil"
)

func TestFirstSeenSharedBetweenEdges(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	r := testutil.StartRedis(t)
	edge := func() *categorizer.NewlySeen {
		st, err := NewFirstSeen(client(t, r), Config{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		n := categorizer.NewNewlySeen(categorizer.NewlySeenConfig{Window: time.Hour, Learning: -1}, st, slog.New(slog.NewTextHandler(t.Output(), nil)), nil)
		go func() { _ = n.Run(ctx) }()
		return n
	}
	// eventually polls Check until it answers want (Check never blocks;
	// the shared store answers in the background).
	eventually := func(n *categorizer.NewlySeen, host string, at time.Time, want bool) {
		t.Helper()
		for i := 0; i < 400; i++ {
			if n.Check(host, at) == want {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Errorf("Check(%q, %v) never became %v", host, at, want)
	}
	t0 := time.Unix(1_800_000_000, 0)
	a, b, c := edge(), edge(), edge()
	a.Check("www.fresh.example.org", t0) // edge A sees it first
	eventually(a, "fresh.example.org", t0, true)
	// Edge B sees it 30 minutes later: newly seen, from A's first sighting.
	eventually(b, "mail.fresh.example.org", t0.Add(30*time.Minute), true)
	// Edge C sees it two hours later: not new, although C never saw it.
	c.Check("fresh.example.org", t0.Add(2*time.Hour))
	time.Sleep(100 * time.Millisecond)
	if c.Check("fresh.example.org", t0.Add(2*time.Hour)) {
		t.Error("edge C reports a domain first seen two hours ago by edge A as newly seen")
	}
	st, _ := NewFirstSeen(client(t, r), Config{}, 0)
	if first, err := st.FirstSeen(ctx, "example.org", t0.Add(5*time.Hour)); err != nil || !first.Equal(t0) {
		t.Errorf("stored first sighting = %v, %v; want %v", first, err, t0)
	}
	// Redis down: Check still answers at once, from memory.
	r.Stop()
	for i := 0; i < 100; i++ {
		c.Check(fmt.Sprintf("h%d.example.com", i), t0)
	}
	if !c.Check("fresh.example.org", t0.Add(10*time.Minute)) {
		t.Error("with Redis down, a known newly seen domain is no longer reported")
	}
}

// TestLearningStartShared: every edge on one Redis agrees on the first
// start of the installation, so the learning period ends at the same
// time everywhere; explaining a domain records nothing in Redis.
func TestLearningStartShared(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	r := testutil.StartRedis(t)
	now := time.Now().Truncate(time.Second)
	first := now.Add(-3 * 24 * time.Hour) // the first edge started three days ago
	stA, err := NewFirstSeen(client(t, r), Config{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := stA.LearningStart(ctx, first); err != nil || !got.Equal(first) {
		t.Fatalf("first LearningStart = %v, %v; want %v", got, err, first)
	}
	edge := func() *categorizer.NewlySeen {
		st, err := NewFirstSeen(client(t, r), Config{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		n := categorizer.NewNewlySeen(categorizer.NewlySeenConfig{}, st, slog.New(slog.NewTextHandler(t.Output(), nil)), nil)
		if err := n.Load(ctx); err != nil {
			t.Fatal(err)
		}
		go func() { _ = n.Run(ctx) }()
		return n
	}
	b, c := edge(), edge()
	wantEnd := first.Add(categorizer.DefaultLearning)
	for name, n := range map[string]*categorizer.NewlySeen{"B": b, "C": c} {
		if start, end, ok, _ := n.Learning(); !ok || !start.Equal(first) || !end.Equal(wantEnd) {
			t.Errorf("edge %s: learning %v to %v (known %v), want %v to %v", name, start, end, ok, first, wantEnd)
		}
	}
	// Still learning on edge B (four days left): recorded, not flagged.
	if b.Check("www.during-learning.example", now) {
		t.Error("edge B flags a domain during the learning period")
	}
	waitRedis(t, func() bool { _, ok, _ := stA.Sighting(ctx, "during-learning.example"); return ok })
	after := wantEnd.Add(time.Hour)
	// (a first sighting is pending until Redis says no edge saw it earlier)
	b.Check("after-learning.example", after)
	waitRedis(t, func() bool { return b.Check("after-learning.example", after) })
	// Edge C never saw it: the lookup asks Redis, and records nothing.
	waitRedis(t, func() bool { _, ok, _ := stA.Sighting(ctx, "after-learning.example"); return ok })
	ex := c.Explain(ctx, "www.after-learning.example", after.Add(time.Minute))
	if !ex.NewlySeen || ex.FirstSeen == nil || !ex.FirstSeen.Equal(after) {
		t.Errorf("edge C Explain = %+v, want newly seen since %v (edge B's sighting)", ex, after)
	}
	if ex := c.Explain(ctx, "only-explained.example", after); !ex.NewlySeen || ex.Reason != categorizer.ReasonNotSeen {
		t.Errorf("Explain of an unseen domain = %+v", ex)
	}
	if _, ok, err := stA.Sighting(ctx, "only-explained.example"); ok || err != nil {
		t.Errorf("Explain wrote a sighting to Redis (found %v, %v)", ok, err)
	}

	// A store with sightings from before learning periods existed starts
	// its learning period at the earliest one.
	up, err := NewFirstSeen(client(t, r), Config{Prefix: "upgraded"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Unix(1_700_000_000, 0)
	for i, d := range []string{"a.example", "b.example", "c.example"} {
		if _, err := up.FirstSeen(ctx, d, old.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := up.LearningStart(ctx, now); err != nil || !got.Equal(old) {
		t.Errorf("LearningStart over old sightings = %v, %v; want %v", got, err, old)
	}
}

func waitRedis(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 400; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("timed out waiting for a write to Redis")
}
