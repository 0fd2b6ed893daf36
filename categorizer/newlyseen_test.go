package categorizer

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRegistrableDomain(t *testing.T) {
	for in, want := range map[string]string{
		"www.example.co.uk": "example.co.uk", "a.b.example.com.": "example.com", "example.com": "example.com",
		"com": "", "co.uk": "", "192.0.2.1": "", "": "", "foo.github.io": "foo.github.io",
	} {
		if got := RegistrableDomain(in); got != want {
			t.Errorf("RegistrableDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewlySeenMemory(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := NewNewlySeen(NewlySeenConfig{Window: time.Hour}, nil, nil, reg)
	defer func() {
		if problems, err := promtest.GatherAndLint(reg); err != nil || len(problems) > 0 {
			t.Errorf("metric lint: %v %v", problems, err)
		}
	}()
	t0 := time.Unix(1_800_000_000, 0)
	if !n.Check("www.new.example.com", t0) {
		t.Error("first sighting not newly seen")
	}
	if !n.Check("mail.new.example.com", t0.Add(30*time.Minute)) {
		t.Error("same registrable domain within the window not newly seen")
	}
	if n.Check("new.example.com", t0.Add(2*time.Hour)) {
		t.Error("newly seen after the window")
	}
	if n.Check("192.0.2.1", t0) || n.Check("localhost", t0) {
		t.Error("IP or single label reported newly seen")
	}
	var nilN *NewlySeen
	if nilN.Check("x.example.com", t0) {
		t.Error("nil NewlySeen reported newly seen")
	}
	if n := testing.AllocsPerRun(200, func() { n.Check("a.b.new.example.com", t0) }); n != 0 {
		t.Errorf("Check of a known domain allocates %v", n)
	}
	off := NewNewlySeen(NewlySeenConfig{Disabled: true}, nil, nil, nil)
	if off.Check("x.example.org", t0) {
		t.Error("disabled NewlySeen reported newly seen")
	}
}

func TestNewlySeenFileStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "newly_seen.log")
	t0 := time.Unix(1_800_000_000, 0)
	run := func(fn func(n *NewlySeen)) {
		st, err := NewFileFirstSeen(path)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		n := NewNewlySeen(NewlySeenConfig{}, st, nil, nil)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { _ = n.Run(ctx); close(done) }()
		fn(n)
		// Wait until the queue is drained (bounded).
		for i := 0; i < 500 && len(n.queue) > 0; i++ {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond)
		cancel()
		<-done
	}
	run(func(n *NewlySeen) {
		if !n.Check("old.example.net", t0) {
			t.Error("first sighting not new")
		}
	})
	// A restart two days later remembers the domain as old (once the
	// background load ran).
	run(func(n *NewlySeen) {
		for i := 0; i < 400; i++ {
			if !n.Check("www.old.example.net", t0.Add(48*time.Hour)) {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Error("domain first seen two days ago is still newly seen after restart")
	})
}

func TestNewlySeenBounded(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	n := NewNewlySeen(NewlySeenConfig{MaxDomains: 1000}, nil, nil, nil)
	done := make(chan struct{})
	go func() { _ = n.Run(ctx); close(done) }()
	t0 := time.Unix(1_800_000_000, 0)
	for i := 0; i < 5000; i++ {
		n.Check(fmt.Sprintf("d%d.example%d.com", i, i), t0)
	}
	for i := 0; i < 400 && n.count.Load() > 1000; i++ {
		time.Sleep(5 * time.Millisecond)
		n.Check(fmt.Sprintf("late%d.example.org", i), t0)
	}
	if c := n.count.Load(); c > 1000 {
		t.Errorf("%d domains held, bound 1000", c)
	}
	cancel()
	<-done
}
