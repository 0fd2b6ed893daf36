package categorizer

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// noLearning turns the learning period off for tests about the window.
const noLearning = -time.Second

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
	n := NewNewlySeen(NewlySeenConfig{Window: time.Hour, Learning: noLearning}, nil, nil, reg)
	defer func() {
		if problems, err := promtest.GatherAndLint(reg); err != nil || len(problems) > 0 {
			t.Errorf("metric lint: %v %v", problems, err)
		}
	}()
	t0 := time.Unix(1_800_000_000, 0)
	if !n.Check("www.new.example", t0) {
		t.Error("first sighting not newly seen")
	}
	if !n.Check("mail.new.example", t0.Add(30*time.Minute)) {
		t.Error("same registrable domain within the window not newly seen")
	}
	if n.Check("new.example", t0.Add(2*time.Hour)) {
		t.Error("newly seen after the window")
	}
	if n.Check("192.0.2.1", t0) || n.Check("localhost", t0) {
		t.Error("IP or single label reported newly seen")
	}
	var nilN *NewlySeen
	if nilN.Check("x.example.com", t0) {
		t.Error("nil NewlySeen reported newly seen")
	}
	if n := testing.AllocsPerRun(200, func() { n.Check("a.b.new.example", t0) }); n != 0 {
		t.Errorf("Check of a known domain allocates %v", n)
	}
	off := NewNewlySeen(NewlySeenConfig{Disabled: true}, nil, nil, nil)
	if off.Check("x.example.org", t0) {
		t.Error("disabled NewlySeen reported newly seen")
	}
}

// startFileTracker opens a FileFirstSeen in dir whose learning period
// started at start (when not zero), and a loaded tracker on it.
func startFileTracker(t *testing.T, dir string, cfg NewlySeenConfig, start time.Time) (*NewlySeen, *FileFirstSeen) {
	t.Helper()
	st, err := NewFileFirstSeen(filepath.Join(dir, "firstseen.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if !start.IsZero() {
		if _, err := st.LearningStart(t.Context(), start); err != nil {
			t.Fatal(err)
		}
	}
	n := NewNewlySeen(cfg, st, nil, nil)
	if err := n.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	return n, st
}

// TestNewlySeenFreshInstall: on the first day a popular domain is not
// newly seen, and neither is any other (the learning period), although
// both are recorded.
func TestNewlySeenFreshInstall(t *testing.T) {
	dir := t.TempDir()
	n, st := startFileTracker(t, dir, NewlySeenConfig{}, time.Time{})
	now := time.Now()
	_, end, ok, _ := n.Learning()
	if !ok || end.Sub(now) < DefaultLearning-time.Minute || end.Sub(now) > DefaultLearning+time.Minute {
		t.Fatalf("fresh install: learning until %v (known %v), want about now + %v", end, ok, DefaultLearning)
	}
	for _, h := range []string{"www.bet365.com", "never-seen-before.example"} {
		if n.Check(h, now) {
			t.Errorf("fresh install: Check(%q) = newly seen", h)
		}
	}
	ex := n.Explain(t.Context(), "www.bet365.com", now)
	if ex.NewlySeen || ex.Reason != ReasonEstablished || !slices.Contains(ex.Baseline, "popular") {
		t.Errorf("Explain(www.bet365.com) = %+v, want established by the popularity list", ex)
	}
	ex = n.Explain(t.Context(), "never-seen-before.example", now)
	if ex.NewlySeen || ex.Reason != ReasonLearning || ex.FirstSeen == nil || ex.LearningUntil == nil || !ex.LearningUntil.Equal(end) {
		t.Errorf("Explain(never-seen-before.example) = %+v, want recorded, learning until %v", ex, end)
	}
	// The start is durable: a restart a day later keeps it.
	b, err := os.ReadFile(filepath.Join(dir, "firstseen.start"))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	n2, _ := startFileTracker(t, dir, NewlySeenConfig{}, time.Time{})
	if _, end2, _, _ := n2.Learning(); !end2.Equal(end) {
		t.Errorf("after a restart learning ends %v, want %v (start file %q)", end2, end, b)
	}
}

// TestNewlySeenLearningPeriod: domains first seen during the learning
// period are recorded, never flagged, also after it ends; a domain first
// seen after it is flagged for the window.
func TestNewlySeenLearningPeriod(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	cfg := NewlySeenConfig{Window: 24 * time.Hour, Learning: 7 * 24 * time.Hour}
	n, st := startFileTracker(t, dir, cfg, t0)
	end := t0.Add(7 * 24 * time.Hour)
	if _, e, ok, _ := n.Learning(); !ok || !e.Equal(end) {
		t.Fatalf("learning until %v, want %v", e, end)
	}
	late := end.Add(-time.Hour)
	for _, c := range []struct {
		host string
		at   time.Time
	}{{"early.example", t0.Add(time.Minute)}, {"late.example", late}} {
		if n.Check("www."+c.host, c.at) {
			t.Errorf("during learning: Check(www.%s) = newly seen", c.host)
		}
	}
	// After the learning period, within the window of their first
	// sighting: still learned, not new.
	if n.Check("late.example", end.Add(time.Hour)) {
		t.Error("a domain first seen an hour before learning ended is newly seen after it")
	}
	if ex := n.Explain(t.Context(), "late.example", end.Add(time.Hour)); ex.NewlySeen || ex.Reason != ReasonLearning || ex.FirstSeen == nil || !ex.FirstSeen.Equal(late) {
		t.Errorf("Explain(late.example) = %+v, want first seen %v during learning", ex, late)
	}
	after := end.Add(48 * time.Hour)
	if ex := n.Explain(t.Context(), "fresh.example", after); !ex.NewlySeen || ex.Reason != ReasonNotSeen || ex.FirstSeen != nil {
		t.Errorf("Explain(fresh.example) after learning = %+v, want not seen: newly seen", ex)
	}
	if !n.Check("www.fresh.example", after) {
		t.Error("a never-seen domain after the learning period is not newly seen")
	}
	if !n.Check("fresh.example", after.Add(23*time.Hour)) {
		t.Error("within the window: not newly seen")
	}
	if n.Check("fresh.example", after.Add(25*time.Hour)) {
		t.Error("after the window: still newly seen")
	}
	if n.Check("www.bet365.com", after) {
		t.Error("a popular domain seen for the first time after learning is newly seen")
	}
	// Recorded: the store holds the sightings once written (Run).
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = n.Run(ctx); close(done) }()
	waitFor(t, func() bool { _, ok, _ := st.Sighting(t.Context(), "early.example"); return ok }, "early.example written to the store")
	cancel()
	<-done
}

// waitFor polls cond (bounded) for background writes.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestNewlySeenUpgrade: a first-seen file from before learning periods
// starts the learning period at its earliest sighting.
func TestNewlySeenUpgrade(t *testing.T) {
	dir := t.TempDir()
	old := time.Unix(1_700_000_000, 0)
	if err := os.WriteFile(filepath.Join(dir, "firstseen.log"), []byte(fmt.Sprintf("old.example %d\nnewer.example %d\n", old.Unix(), old.Unix()+86400)), 0o644); err != nil {
		t.Fatal(err)
	}
	n, _ := startFileTracker(t, dir, NewlySeenConfig{}, time.Time{})
	if start, _, ok, _ := n.Learning(); !ok || !start.Equal(old) {
		t.Errorf("learning start %v, want the earliest recorded sighting %v", start, old)
	}
}

func TestNewlySeenBaseline(t *testing.T) {
	b := NewBuilder()
	shop, _ := b.AddFeed("shops", []string{"shopping"}, false)
	mal, _ := b.AddFeed("malware", []string{"malware"}, true)
	for _, e := range []struct {
		f    FeedID
		host string
	}{{shop, "listed.example"}, {shop, "deep.sub.parent.example"}, {mal, "evil.example"}, {mal, "www.both.example"}, {shop, "both.example"}} {
		if err := b.Add(e.f, Entry{Kind: KindDomain, Host: e.host}); err != nil {
			t.Fatal(err)
		}
	}
	ix, err := b.Build(1)
	if err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]bool{
		"listed.example": true, "parent.example": true, "both.example": true, "evil.example": false, "example": false, "other.example": false,
	} {
		if got := ix.Established(d); got != want {
			t.Errorf("Index.Established(%q) = %v, want %v", d, got, want)
		}
	}
	if ix.EstablishedCount() != 3 {
		t.Errorf("EstablishedCount = %d, want 3", ix.EstablishedCount())
	}
	// The feeds part travels in snapshots.
	data, err := EncodeSnapshot(ix)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := DecodeSnapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	if !dec.Established("parent.example") || dec.Established("evil.example") || dec.EstablishedCount() != 3 {
		t.Errorf("decoded snapshot: established parent.example=%v evil.example=%v count %d", dec.Established("parent.example"), dec.Established("evil.example"), dec.EstablishedCount())
	}
	// A format 2 snapshot (before the baseline) is still read, with no
	// domain established by the feeds.
	v2 := append([]byte(nil), data[:len(data)-sha256.Size]...)
	binary.LittleEndian.PutUint32(v2[8:12], 2)
	sum := sha256.Sum256(v2)
	old, err := DecodeSnapshot(append(v2, sum[:]...))
	if err != nil {
		t.Fatalf("format 2 snapshot: %v", err)
	}
	if old.EstablishedCount() != 0 || len(old.Explain("listed.example", "", noIP).Matches) != 1 {
		t.Errorf("format 2 snapshot: %d established, explain %+v", old.EstablishedCount(), old.Explain("listed.example", "", noIP))
	}

	dir := t.TempDir()
	list := filepath.Join(dir, "top.csv")
	if err := os.WriteFile(list, []byte("# rank,domain\n1,www.listed-in-file.example\n2,not a host\n3,co.uk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := NewlySeenConfig{Learning: noLearning, Established: []string{"Corp.Example."}, EstablishedFiles: []string{list}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	set, stats, err := cfg.LoadEstablished()
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() != 2 || len(stats) != 1 || stats[0].Domains != 1 || stats[0].Invalid != 2 {
		t.Errorf("configured baseline: %d domains, stats %+v", set.Len(), stats)
	}
	n := NewNewlySeen(cfg, nil, nil, nil)
	n.SetEstablished(set)
	n.SetIndex(ix)
	now := time.Unix(1_800_000_000, 0)
	for host, want := range map[string]bool{
		"www.listed.example": false, "a.parent.example": false, "both.example": false, "evil.example": true,
		"mail.corp.example": false, "listed-in-file.example": false, "www.bet365.com": false, "unknown.example": true,
	} {
		if got := n.Check(host, now); got != want {
			t.Errorf("Check(%q) = %v, want %v", host, got, want)
		}
		if got := n.Check(host, now.Add(time.Minute)); got != want {
			t.Errorf("Check(%q) again = %v, want %v", host, got, want)
		}
	}
	ex := n.Explain(t.Context(), "x.parent.example", now)
	if ex.Domain != "parent.example" || ex.Reason != ReasonEstablished || !slices.Equal(ex.Baseline, []string{"feeds"}) {
		t.Errorf("Explain(x.parent.example) = %+v, want established by the feeds", ex)
	}
	if ex := n.Explain(t.Context(), "evil.example", now); !ex.NewlySeen || len(ex.Baseline) != 0 {
		t.Errorf("Explain(evil.example) = %+v: a domain only a threat feed lists must not be established", ex)
	}
	// Rebuilt when the feeds are swapped: an index without the shop feed.
	n.SetIndex(EmptyIndex())
	if !n.Check("www.listed.example", now.Add(2*time.Minute)) {
		t.Error("after a swap to an index without it, a feed domain is still established")
	}
	info := n.Info(now)
	if info.Baseline["popular"] < 9000 || info.Baseline["configured"] != 2 || info.Baseline["feeds"] != 0 {
		t.Errorf("Info baseline = %v", info.Baseline)
	}
	// The baseline check of a held domain within the window allocates
	// nothing.
	if a := testing.AllocsPerRun(200, func() { n.Check("www.evil.example", now); n.Check("www.bet365.com", now) }); a != 0 {
		t.Errorf("Check with the baseline allocates %v", a)
	}
	if err := (NewlySeenConfig{Established: []string{"co.uk", "a..b"}}).Validate(); err == nil {
		t.Error("Validate accepted a public suffix and an invalid name as established domains")
	}
	if _, _, err := (NewlySeenConfig{EstablishedFiles: []string{filepath.Join(dir, "missing.txt")}}).LoadEstablished(); err == nil {
		t.Error("LoadEstablished accepted a missing file")
	}
}

// TestNewlySeenPublicSuffixBelow: a bucket under s3.amazonaws.com has its
// own registrable domain, newly seen although amazonaws.com is
// established and held.
func TestNewlySeenPublicSuffixBelow(t *testing.T) {
	n := NewNewlySeen(NewlySeenConfig{Learning: noLearning}, nil, nil, nil)
	now := time.Unix(1_800_000_000, 0)
	if n.Check("www.amazonaws.com", now) {
		t.Fatal("amazonaws.com (popular) newly seen")
	}
	if !n.Check("phish-bucket.s3.amazonaws.com", now) {
		t.Error("a new bucket under s3.amazonaws.com is not newly seen")
	}
	if !n.Check("x.phish-bucket.s3.amazonaws.com", now.Add(time.Minute)) {
		t.Error("a name under the new bucket is not newly seen")
	}
	if n.Check("sts.amazonaws.com", now) {
		t.Error("sts.amazonaws.com newly seen")
	}
	if ex := n.Explain(t.Context(), "other.s3.amazonaws.com", now); ex.Domain != "other.s3.amazonaws.com" || !ex.NewlySeen {
		t.Errorf("Explain(other.s3.amazonaws.com) = %+v", ex)
	}
	if a := testing.AllocsPerRun(100, func() { n.Check("sts.amazonaws.com", now) }); a != 0 {
		t.Errorf("Check under a domain with public suffixes below allocates %v", a)
	}
}

// TestNewlySeenExplainRecordsNothing: explaining a domain is not traffic.
func TestNewlySeenExplainRecordsNothing(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Unix(1_800_000_000, 0)
	n, st := startFileTracker(t, dir, NewlySeenConfig{Learning: time.Hour}, t0)
	later := t0.Add(48 * time.Hour)
	for i := 0; i < 3; i++ {
		if ex := n.Explain(t.Context(), "www.looked-up.example", later.Add(time.Duration(i)*time.Hour)); !ex.NewlySeen || ex.Reason != ReasonNotSeen || ex.FirstSeen != nil {
			t.Fatalf("Explain #%d = %+v, want not seen", i, ex)
		}
	}
	if c := n.count.Load(); c != 0 {
		t.Errorf("Explain put %d domains in memory", c)
	}
	if _, ok, _ := st.Sighting(t.Context(), "looked-up.example"); ok {
		t.Error("Explain recorded a sighting in the store")
	}
	// The first real request is the first sighting.
	if !n.Check("looked-up.example", later.Add(3*time.Hour)) {
		t.Error("first request after explanations not newly seen")
	}
	if ex := n.Explain(t.Context(), "looked-up.example", later.Add(4*time.Hour)); ex.Reason != ReasonRecent || ex.FirstSeen == nil || !ex.FirstSeen.Equal(later.Add(3*time.Hour)) {
		t.Errorf("Explain after the request = %+v", ex)
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
		n := NewNewlySeen(NewlySeenConfig{Learning: noLearning}, st, nil, nil)
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

func TestReadDomainList(t *testing.T) {
	in := "\ufeff# comment\n\nwww.Example.ORG\n2,mail.google.com\n3,bücher.example\n4,co.uk\n5,192.0.2.1\nexa mple.com\n"
	got, st, err := ReadDomainList("list", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"example.org", "google.com", "xn--bcher-kva.example"}
	if !slices.Equal(got, want) || st.Domains != 3 || st.Invalid != 3 || len(st.Errors) != 3 {
		t.Errorf("ReadDomainList = %v %+v, want %v and 3 invalid", got, st, want)
	}
}

func TestCanonicalHost(t *testing.T) {
	long := ""
	for len(long) < 250 {
		long += "abcdefghi."
	}
	for _, c := range []struct{ in, want, err string }{
		{"Example.COM.", "example.com", ""},
		{"bücher.example", "xn--bcher-kva.example", ""},
		{"[2001:DB8::1]", "2001:db8::1", ""},
		{"::ffff:192.0.2.1", "192.0.2.1", ""},
		{"a..b", "", "empty label"},
		{".", "", "empty"},
		{strings.Repeat("x", 64) + ".example", "", "label longer than 63 bytes"},
		{strings.Repeat("x", 300) + ".example", "", "longer than 253 bytes"},
		{long + "example", "", "longer than 253 bytes"},
		{"exa mple.com", "", "not allowed"},
		{"fe80::1%eth0", "", "not allowed"},
		{"[example.com]", "", "not an IP address"},
	} {
		got, err := CanonicalHost(c.in)
		if got != c.want || (c.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("CanonicalHost(%.40q) = %q, %v; want %q, %q", c.in, got, err, c.want, c.err)
		}
	}
}
