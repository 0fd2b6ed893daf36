package redisstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/cordon-gw/cordon/internal/testutil"
	"github.com/cordon-gw/cordon/policies"
	"github.com/cordon-gw/cordon/reports"
	"github.com/cordon-gw/cordon/reports/redisstore"
)

func client(t testing.TB, r *testutil.Redis) redis.UniversalClient {
	t.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: []string{r.Addr}, DialTimeout: 200 * time.Millisecond,
		ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: 1,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func reportsStore(c redis.UniversalClient) (*redisstore.Store, error) {
	return redisstore.New(c, redisstore.Config{})
}

func store(t *testing.T, c redis.UniversalClient) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(c, redisstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pipeline(t *testing.T, st reports.Store, reg prometheus.Registerer) *reports.Pipeline {
	t.Helper()
	return pipelineWith(t, st, reg, func(*reports.Config) {})
}

func pipelineWith(t *testing.T, st reports.Store, reg prometheus.Registerer, edit func(*reports.Config)) *reports.Pipeline {
	t.Helper()
	cfg := reports.Defaults()
	cfg.Dir = t.TempDir()
	cfg.AccessLog.Path = filepath.Join(cfg.Dir, "access.log")
	cfg.FlushInterval = 20 * time.Millisecond
	edit(&cfg)
	p, err := reports.New(cfg, reports.Deps{Store: st, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

// events makes n events of users u0..u4 over the last 10 hours.
func events(n int, seed uint64) []*policies.AccessEvent {
	r := rand.New(rand.NewPCG(seed, 1))
	now := time.Now()
	out := make([]*policies.AccessEvent, n)
	for i := range out {
		u := r.IntN(5)
		ev := &policies.AccessEvent{
			Time: now.Add(-time.Duration(r.IntN(36000)) * time.Second),
			User: fmt.Sprintf("u%d", u), Groups: []string{fmt.Sprintf("g%d", u%2)}, Location: "hq",
			ClientIP: netip.MustParseAddr("10.1.1.1"), Method: "GET",
			Host:       fmt.Sprintf("site%d.example.com", r.IntN(8)),
			Categories: []string{[]string{"news", "shopping", "gambling"}[r.IntN(3)]},
			Action:     "allow", BytesUp: int64(r.IntN(500)), BytesDown: int64(r.IntN(50000)),
		}
		if ev.Categories[0] == "gambling" {
			ev.Action, ev.RuleAction, ev.RuleID = "block", "block", "no-gambling"
		}
		if r.IntN(10) == 0 {
			ev.Threats = []string{"urlhaus"}
		}
		out[i] = ev
	}
	return out
}

type totals struct{ req, blk, up, down int64 }

func sum(evs []*policies.AccessEvent, user string) (t totals, attempts int64, last time.Time) {
	for _, ev := range evs {
		if user != "" && ev.User != user {
			continue
		}
		t.req++
		t.up += ev.BytesUp
		t.down += ev.BytesDown
		if ev.Action == "block" {
			t.blk++
			attempts++
			if ev.Time.After(last) {
				last = ev.Time
			}
		}
	}
	return
}

func query(t *testing.T, r *reports.Reader, scope reports.Scope, subject string) *reports.Report {
	t.Helper()
	now := time.Now()
	rep, err := r.Report(t.Context(), scope, subject, reports.Query{From: now.Add(-12 * time.Hour), To: now, Top: 100})
	if err != nil {
		t.Fatalf("Report(%s %q): %v", scope, subject, err)
	}
	return rep
}

func check(t *testing.T, r *reports.Reader, evs []*policies.AccessEvent) {
	t.Helper()
	for _, u := range []string{"", "u0", "u1", "u2", "u3", "u4"} {
		scope := reports.ScopeUser
		if u == "" {
			scope = reports.ScopeAll
		}
		rep := query(t, r, scope, u)
		want, attempts, last := sum(evs, u)
		got := totals{rep.Requests, rep.Blocked, rep.BytesUp, rep.BytesDown}
		if got != want {
			t.Errorf("Report(%s %q) totals = %+v, want %+v", scope, u, got, want)
		}
		if scope == reports.ScopeAll {
			var groups int64
			for _, g := range rep.TopGroups {
				groups += g.Count
			}
			if groups != want.req || len(rep.TopLocations) != 1 || rep.TopLocations[0].Count != want.req {
				t.Errorf("overview groups sum %d, locations %v, want %d", groups, rep.TopLocations, want.req)
			}
		}
		var ga int64
		var gl time.Time
		for _, a := range rep.BlockedAttempts {
			ga += a.Count
			if a.Last.After(gl) {
				gl = a.Last
			}
		}
		if ga != attempts || !gl.Equal(last.Truncate(time.Millisecond).UTC()) {
			t.Errorf("Report(%s %q) attempts = %d last %v, want %d last %v", scope, u, ga, gl, attempts, last.Truncate(time.Millisecond).UTC())
		}
	}
}

func flush(t *testing.T, p *reports.Pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func TestTwoEdgesOneReport(t *testing.T) {
	r := testutil.StartRedis(t)
	a := pipeline(t, store(t, client(t, r)), nil)
	b := pipeline(t, store(t, client(t, r)), nil)
	evs := events(4000, 1)
	for i, ev := range evs {
		if i%3 == 0 {
			a.Record(ev)
		} else {
			b.Record(ev)
		}
	}
	flush(t, a)
	flush(t, b)
	// Either edge (or a third process) reads the combined report.
	check(t, a.Reader(), evs)
	reader, err := reports.NewReader(store(t, client(t, r)), reports.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	check(t, reader, evs)
}

func TestRedisOutageLosesNothingWithinBuffer(t *testing.T) {
	r := testutil.StartRedis(t)
	reg := prometheus.NewRegistry()
	p := pipeline(t, store(t, client(t, r)), reg)
	evs := events(6000, 2)
	for _, ev := range evs[:2000] {
		p.Record(ev)
	}
	flush(t, p)

	r.Stop()
	for _, ev := range evs[2000:4000] {
		p.Record(ev)
	}
	// Wait (bounded) until the pipeline has seen the outage.
	deadline := time.Now().Add(20 * time.Second)
	for errorFlushes(t, reg) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no failed flush observed while Redis was down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, ev := range evs[4000:] {
		p.Record(ev)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	if err := p.Flush(ctx); err == nil {
		t.Error("Flush succeeded while Redis was down")
	}
	cancel()
	r.Restart()
	flush(t, p)
	check(t, p.Reader(), evs)
	if d := metric(t, reg, "cordon_reports_events_dropped_total"); d != 0 {
		t.Errorf("dropped = %v, want 0", d)
	}
}

func errorFlushes(t *testing.T, reg *prometheus.Registry) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "cordon_reports_flushes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == "error" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	if n, err := promtest.GatherAndCount(reg, name); err != nil || n == 0 {
		t.Fatalf("metric %s not registered: %v", name, err)
	}
	return total
}

func TestRetryOfSameBatchCountsOnce(t *testing.T) {
	r := testutil.StartRedis(t)
	c := client(t, r)
	s := store(t, c)
	d := reports.NewDelta()
	for _, ev := range events(100, 3) {
		d.Add(ev)
	}
	b := &reports.Batch{Origin: "edge1", Seq: 1, Rows: d.Rows, Events: d.Events}
	for range 3 {
		if err := s.Apply(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	// A new script cache (restarted node) is handled with EVAL.
	if err := c.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	b2 := &reports.Batch{Origin: "edge1", Seq: 2, Rows: d.Rows, Events: d.Events}
	if err := s.Apply(t.Context(), b2); err != nil {
		t.Fatal(err)
	}
	var want int64
	var hours []int64
	for k, c := range d.Rows {
		if k.Scope == reports.ScopeAll {
			want += c.Requests
			hours = append(hours, k.Hour)
		}
	}
	var got int64
	rows, err := s.Rows(t.Context(), reports.ScopeAll, "", slicesMin(hours), slicesMax(hours))
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		got += row.Counters.Requests
	}
	if got != 2*want {
		t.Errorf("requests after 3 retries of batch 1 and batch 2 = %d, want %d", got, 2*want)
	}
	// Rows expire when the hour leaves the 30-day retention.
	key := s.Key(reports.ScopeAll, "", hours[0])
	ttl, err := c.PTTL(t.Context(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := reports.DefaultRetention-12*time.Hour, reports.DefaultRetention+time.Hour
	if ttl < lo || ttl > hi {
		t.Errorf("PTTL(%s) = %v, want between %v and %v", key, ttl, lo, hi)
	}
}

func slicesMin(s []int64) int64 {
	m := s[0]
	for _, v := range s {
		m = min(m, v)
	}
	return m
}

func slicesMax(s []int64) int64 {
	m := s[0]
	for _, v := range s {
		m = max(m, v)
	}
	return m
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  redisstore.Config
		ok   bool
	}{
		{"zero", redisstore.Config{}, true},
		{"prefix", redisstore.Config{Prefix: "acme:rep", Retention: 48 * time.Hour}, true},
		{"space", redisstore.Config{Prefix: "a b"}, false},
		{"short retention", redisstore.Config{Retention: time.Minute}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestDomainCap(t *testing.T) {
	r := testutil.StartRedis(t)
	s, err := redisstore.New(client(t, r), redisstore.Config{MaxDomainsPerRow: 5})
	if err != nil {
		t.Fatal(err)
	}
	h := reports.HourOf(time.Now())
	var want int64
	for seq := uint64(1); seq <= 4; seq++ {
		d := reports.NewDelta()
		for i := range 10 {
			ev := &policies.AccessEvent{Time: reports.HourTime(h).Add(time.Minute), User: "u",
				Host: fmt.Sprintf("h%d-%d.example", seq, i), Action: "block", RuleID: "r"}
			d.Add(ev)
			want++
		}
		if err := s.Apply(t.Context(), &reports.Batch{Origin: "e", Seq: seq, Rows: d.Rows, Events: d.Events}); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := s.Rows(t.Context(), reports.ScopeUser, "u", h, h)
	if err != nil || len(rows) != 1 {
		t.Fatalf("Rows = %v, %v", rows, err)
	}
	c := rows[0].Counters
	var sum, asum int64
	for _, n := range c.Domains {
		sum += n
	}
	for _, a := range c.Attempts {
		asum += a.Count
	}
	if c.Requests != want || sum != want || asum != want {
		t.Errorf("requests %d, domain sum %d, attempt sum %d, want %d each", c.Requests, sum, asum, want)
	}
	if len(c.Domains) != 6 || c.Domains[reports.OtherName] != want-5 {
		t.Errorf("domains = %v, want 5 names and %s = %d", c.Domains, reports.OtherName, want-5)
	}
	if len(c.Attempts) != 6 || c.Attempts[reports.OtherAttemptKey].Count != want-5 {
		t.Errorf("attempts = %v, want 5 and other = %d", c.Attempts, want-5)
	}
}

// TestRedisOutageBeyondBufferSpills: with a memory buffer far too small
// for the outage, the overflow goes to the spill file and still nothing
// is lost.
func TestRedisOutageBeyondBufferSpills(t *testing.T) {
	r := testutil.StartRedis(t)
	reg := prometheus.NewRegistry()
	p := pipelineWith(t, store(t, client(t, r)), reg, func(c *reports.Config) { c.BufferMaxFields = 300 })
	evs := events(5000, 4)
	for _, ev := range evs[:1000] {
		p.Record(ev)
	}
	flush(t, p)
	r.Stop()
	for i, ev := range evs[1000:] {
		p.Record(ev)
		if i%500 == 0 {
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			_ = p.Flush(ctx) // hands the delta over; the store is down
			cancel()
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	_ = p.Flush(ctx)
	cancel()
	if s := metric(t, reg, "cordon_reports_spilled_events_total"); s == 0 {
		t.Fatal("nothing spilled with a 300-cell buffer during the outage")
	}
	r.Restart()
	flush(t, p)
	check(t, p.Reader(), evs)
	if d := metric(t, reg, "cordon_reports_events_dropped_total"); d != 0 {
		t.Errorf("dropped = %v, want 0", d)
	}
}

func TestEdgesSharePseudonyms(t *testing.T) {
	r := testutil.StartRedis(t)
	pseudo := func(c *reports.Config) { c.Privacy.PseudonymizeUsers = true }
	a := pipelineWith(t, store(t, client(t, r)), nil, pseudo)
	b := pipelineWith(t, store(t, client(t, r)), nil, pseudo)
	evs := events(600, 5)
	for i, ev := range evs {
		if i%2 == 0 {
			a.Record(ev)
		} else {
			b.Record(ev)
		}
	}
	flush(t, a)
	flush(t, b)
	pa, pb := a.Reader().Subject(reports.ScopeUser, "u1"), b.Reader().Subject(reports.ScopeUser, "u1")
	if pa != pb || pa == "u1" {
		t.Fatalf("pseudonyms of u1: %q on edge a, %q on edge b; want one shared pseudonym", pa, pb)
	}
	want, _, _ := sum(evs, "u1")
	for _, p := range []*reports.Pipeline{a, b} {
		rep := query(t, p.Reader(), reports.ScopeUser, "u1")
		if rep.Requests != want.req || rep.Subject != pa {
			t.Errorf("u1 report = %d requests as %q, want %d as %q", rep.Requests, rep.Subject, want.req, pa)
		}
	}
	// An edge starting while Redis is down uses its copy of the shared key.
	cfg := reports.Defaults()
	cfg.Dir = t.TempDir()
	cfg.Privacy.PseudonymizeUsers = true
	st := store(t, client(t, r))
	if _, err := reports.NewReader(st, cfg); err != nil { // while up: copies the key
		t.Fatal(err)
	}
	r.Stop()
	rd, err := reports.NewReader(st, cfg)
	if err != nil {
		t.Fatalf("NewReader with Redis down and a local copy: %v", err)
	}
	if got := rd.Subject(reports.ScopeUser, "u1"); got != pa {
		t.Errorf("pseudonym with Redis down = %q, want %q", got, pa)
	}
	cfg.Dir = t.TempDir() // no local copy
	if _, err := reports.NewReader(st, cfg); err == nil {
		t.Error("NewReader with Redis down and no local key copy succeeded; it must not invent a different key")
	}
}
