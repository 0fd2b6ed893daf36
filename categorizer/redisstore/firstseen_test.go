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
		n := categorizer.NewNewlySeen(categorizer.NewlySeenConfig{Window: time.Hour}, st, slog.New(slog.NewTextHandler(t.Output(), nil)), nil)
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
