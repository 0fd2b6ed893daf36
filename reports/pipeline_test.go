package reports

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cordon-gw/cordon/policies"
)

func testConfig(t *testing.T) Config {
	cfg := Defaults()
	cfg.Dir = t.TempDir()
	cfg.AccessLog.Path = filepath.Join(cfg.Dir, "access.log")
	cfg.FlushInterval = 20 * time.Millisecond
	return cfg
}

func newTestPipeline(t *testing.T, cfg Config, st Store, reg prometheus.Registerer) *Pipeline {
	t.Helper()
	p, err := New(cfg, Deps{Store: st, Logger: testLogger(t), Registerer: reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

func openLocal(t *testing.T, dir string) *LocalStore {
	t.Helper()
	st, err := OpenLocal(Config{Dir: dir}, testLogger(t))
	if err != nil {
		t.Fatalf("OpenLocal: %v", err)
	}
	return st
}

func getJSON(t *testing.T, srv *httptest.Server, path string, into any) {
	t.Helper()
	res, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", path, res.StatusCode)
	}
	if err := json.NewDecoder(res.Body).Decode(into); err != nil {
		t.Fatalf("GET %s: decode: %v", path, err)
	}
}

func record(p *Pipeline, evs []*policies.AccessEvent) {
	for _, ev := range evs {
		p.Record(ev)
	}
}

func flush(t *testing.T, p *Pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// checkAPI queries every report route and compares with the events.
func checkAPI(t *testing.T, srv *httptest.Server, evs []*policies.AccessEvent) {
	t.Helper()
	q := "?from=48h&top=1000"
	var rep Report
	getJSON(t, srv, PathOverview+q, &rep)
	t.Run("overview", func(t *testing.T) {
		checkReport(t, &rep, expect(evs, func(*policies.AccessEvent) bool { return true }), true)
	})
	for _, u := range []string{"alice", "bob", "carol"} {
		var rep Report
		getJSON(t, srv, "/api/v1/reports/users/"+u+q, &rep)
		t.Run("user/"+u, func(t *testing.T) {
			checkReport(t, &rep, expect(evs, func(ev *policies.AccessEvent) bool { return ev.User == u }), false)
		})
	}
	for _, g := range []string{"staff", "eng"} {
		var rep Report
		getJSON(t, srv, "/api/v1/reports/groups/"+g+q, &rep)
		t.Run("group/"+g, func(t *testing.T) {
			checkReport(t, &rep, expect(evs, func(ev *policies.AccessEvent) bool {
				for _, x := range ev.Groups {
					if x == g {
						return true
					}
				}
				return false
			}), true)
		})
	}
	for _, l := range []string{"hq", "branch-1"} {
		var rep Report
		getJSON(t, srv, "/api/v1/reports/locations/"+l+q, &rep)
		t.Run("location/"+l, func(t *testing.T) {
			checkReport(t, &rep, expect(evs, func(ev *policies.AccessEvent) bool { return ev.Location == l }), true)
		})
	}
}

func TestAPINumbersMatchEvents(t *testing.T) {
	cfg := testConfig(t)
	st := openLocal(t, cfg.Dir)
	defer st.Close()
	reg := prometheus.NewRegistry()
	p := newTestPipeline(t, cfg, st, reg)
	evs := genEvents(3000, time.Now(), 1)
	record(p, evs)
	flush(t, p)
	srv := httptest.NewServer(NewHandler(p.Reader(), testLogger(t)).Mux())
	defer srv.Close()
	checkAPI(t, srv, evs)
	if got := promtest.ToFloat64(p.m.storedEvents); got != 3000 {
		t.Errorf("stored_events_total = %v, want 3000", got)
	}
	if problems, err := promtest.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v %v", problems, err)
	}
}

func TestRestartKeepsReports(t *testing.T) {
	cfg := testConfig(t)
	dir := cfg.Dir
	evs := genEvents(2000, time.Now(), 2)

	st := openLocal(t, dir)
	p := newTestPipeline(t, cfg, st, nil)
	record(p, evs[:1000])
	flush(t, p)
	// A crash: the store is never closed, nothing but the fsync'd WAL
	// survives.
	_ = p.Close(context.Background())
	crashed := st
	defer crashed.wal.Close()

	st2 := openLocal(t, dir)
	p2 := newTestPipeline(t, cfg, st2, nil)
	record(p2, evs[1000:1500])
	flush(t, p2)
	// Seal the past hours into segments, then a clean shutdown.
	if err := st2.Compact(t.Context()); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	record(p2, evs[1500:])
	flush(t, p2)
	if err := p2.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := st2.Close(); err != nil {
		t.Fatalf("store Close: %v", err)
	}

	st3 := openLocal(t, dir)
	defer st3.Close()
	r, err := NewReader(st3, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewHandler(r, testLogger(t)).Mux())
	defer srv.Close()
	checkAPI(t, srv, evs)
}

func TestQueueFullDropsAreCounted(t *testing.T) {
	cfg := testConfig(t)
	cfg.QueueSize = 8
	st := openLocal(t, cfg.Dir)
	defer st.Close()
	p, err := newPipeline(cfg, Deps{Store: st, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	evs := genEvents(20, time.Now(), 3)
	record(p, evs) // nothing drains the queue yet
	if got := promtest.ToFloat64(p.m.dropped.WithLabelValues(dropQueueFull)); got != 12 {
		t.Errorf("dropped{queue_full} = %v, want 12", got)
	}
	if got := promtest.ToFloat64(p.m.received); got != 8 {
		t.Errorf("events_total = %v, want 8", got)
	}
	p.start()
	flush(t, p)
	rep, err := p.Reader().Report(t.Context(), ScopeAll, "", Query{From: time.Now().Add(-48 * time.Hour), To: time.Now(), Top: 100})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 8 {
		t.Errorf("overview requests = %d, want the 8 queued", rep.Requests)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.Record(evs[0])
	if got := promtest.ToFloat64(p.m.dropped.WithLabelValues(dropClosed)); got != 1 {
		t.Errorf("dropped{closed} = %v, want 1", got)
	}
}

// failingStore fails Apply while fail is set, then delegates.
type failingStore struct {
	Store
	fail chan bool
	on   bool
}

func (f *failingStore) Apply(ctx context.Context, b *Batch) error {
	select {
	case f.on = <-f.fail:
	default:
	}
	if f.on {
		return os.ErrDeadlineExceeded
	}
	return f.Store.Apply(ctx, b)
}

func TestBufferFullDropsAreCounted(t *testing.T) {
	cfg := testConfig(t)
	cfg.BufferMaxFields = 200
	cfg.SpillMaxMB = -1
	st := openLocal(t, cfg.Dir)
	defer st.Close()
	fs := &failingStore{Store: st, fail: make(chan bool, 1)}
	fs.fail <- true
	p := newTestPipeline(t, cfg, fs, nil)
	evs := genEvents(3000, time.Now(), 4)
	record(p, evs[:1])
	if err := p.sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	record(p, evs[1:])
	if err := p.sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	dropped := promtest.ToFloat64(p.m.dropped.WithLabelValues(dropBufferFull))
	if dropped == 0 {
		t.Fatalf("dropped{buffer_full} = 0, want > 0 with a 200-cell buffer")
	}
	fs.fail <- false
	flush(t, p)
	stored := promtest.ToFloat64(p.m.storedEvents)
	if stored+dropped != 3000 {
		t.Errorf("stored %v + dropped %v = %v, want 3000", stored, dropped, stored+dropped)
	}
	rep, err := p.Reader().Report(t.Context(), ScopeAll, "", Query{From: time.Now().Add(-48 * time.Hour), To: time.Now(), Top: 10})
	if err != nil {
		t.Fatal(err)
	}
	if float64(rep.Requests) != stored {
		t.Errorf("overview requests = %d, want stored %v", rep.Requests, stored)
	}
}

func TestPrivacy(t *testing.T) {
	cfg := testConfig(t)
	cfg.Privacy = PrivacyConfig{PseudonymizeUsers: true, DropPaths: true}
	st := openLocal(t, cfg.Dir)
	defer st.Close()
	p := newTestPipeline(t, cfg, st, nil)
	evs := genEvents(200, time.Now(), 5)
	record(p, evs)
	flush(t, p)
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(cfg.AccessLog.Path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), "alice") || strings.Contains(string(log), `"path"`) {
		t.Errorf("access log holds a user name or a path:\n%.400s", log)
	}
	// Query by real name and by pseudonym; both find the same rows.
	r := p.Reader()
	pseudo := r.Subject(ScopeUser, "alice")
	if !isPseudonym(pseudo) || !strings.Contains(string(log), pseudo) {
		t.Fatalf("pseudonym %q not in log", pseudo)
	}
	q := Query{From: time.Now().Add(-48 * time.Hour), To: time.Now(), Top: 100}
	a, err := r.Report(t.Context(), ScopeUser, "alice", q)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Report(t.Context(), ScopeUser, pseudo, q)
	if err != nil {
		t.Fatal(err)
	}
	want := expect(evs, func(ev *policies.AccessEvent) bool { return ev.User == "alice" })
	if a.Requests != want.Requests || b.Requests != want.Requests || a.Subject != pseudo {
		t.Errorf("alice: %d/%d requests as %q, want %d as %q", a.Requests, b.Requests, a.Subject, want.Requests, pseudo)
	}
	// The generated key is kept: a new Reader maps alice the same way.
	r2, err := NewReader(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := r2.Subject(ScopeUser, "alice"); got != pseudo {
		t.Errorf("pseudonym after restart = %q, want %q", got, pseudo)
	}
	if fi, err := os.Stat(filepath.Join(cfg.Dir, "pseudonym.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("pseudonym.key: %v mode %v, want 0600", err, fi.Mode())
	}
}

func TestAPIErrors(t *testing.T) {
	cfg := testConfig(t)
	st := openLocal(t, cfg.Dir)
	defer st.Close()
	p := newTestPipeline(t, cfg, st, nil)
	srv := httptest.NewServer(NewHandler(p.Reader(), testLogger(t)).Mux())
	defer srv.Close()
	for _, tc := range []struct {
		name, path string
		want       int
	}{
		{"bad from", PathOverview + "?from=yesterday", 400},
		{"from after to", PathOverview + "?from=1h&to=2h", 400},
		{"bad top", "/api/v1/reports/users/alice?top=0", 400},
		{"bad format", "/api/v1/reports/users/alice?format=xml", 400},
		{"too long", PathOverview + "?from=400d", 400},
		{"empty user ok", "/api/v1/reports/users/nobody", 200},
		{"escaped user", "/api/v1/reports/users/" + url.PathEscape("a b@corp") + "?format=csv", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tc.want {
				t.Errorf("GET %s = %d, want %d", tc.path, res.StatusCode, tc.want)
			}
		})
	}
}

// remoteStore hides that a store is local, so the pipeline spills as it
// does for Redis.
type remoteStore struct{ Store }

func TestSpillKeepsOverflow(t *testing.T) {
	cfg := testConfig(t)
	cfg.BufferMaxFields = 200
	st := openLocal(t, cfg.Dir)
	defer st.Close()
	fs := &failingStore{Store: st, fail: make(chan bool, 1)}
	fs.fail <- true
	p := newTestPipeline(t, cfg, fs, nil)
	evs := genEvents(3000, time.Now(), 13)
	record(p, evs[:1])
	if err := p.sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	record(p, evs[1:])
	if err := p.sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := promtest.ToFloat64(p.m.spilled); got == 0 {
		t.Fatal("spilled_events_total = 0 with a 200-cell buffer and a failing store")
	}
	fs.fail <- false
	flush(t, p)
	if got := promtest.ToFloat64(p.m.dropped.WithLabelValues(dropBufferFull)); got != 0 {
		t.Errorf("dropped{buffer_full} = %v, want 0", got)
	}
	rep, err := p.Reader().Report(t.Context(), ScopeAll, "", Query{From: time.Now().Add(-48 * time.Hour), To: time.Now(), Top: 1000})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, expect(evs, func(*policies.AccessEvent) bool { return true }), true)
	if fi, err := os.Stat(filepath.Join(cfg.Dir, "spill.log")); err != nil || fi.Size() != 0 {
		t.Errorf("spill.log after replay: %v size %d, want empty", err, fi.Size())
	}
}

func TestSpillSurvivesRestart(t *testing.T) {
	cfg := testConfig(t)
	st := openLocal(t, cfg.Dir)
	defer st.Close()
	down := &failingStore{Store: st, fail: make(chan bool, 1)}
	down.fail <- true
	p, err := New(cfg, Deps{Store: down, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	evs := genEvents(1000, time.Now(), 14)
	record(p, evs)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close with the store down: %v (want everything spilled)", err)
	}
	if got := promtest.ToFloat64(p.m.spilled); got != 1000 {
		t.Errorf("spilled = %v, want 1000", got)
	}

	p2 := newTestPipeline(t, cfg, remoteStore{st}, nil)
	flush(t, p2)
	rep, err := p2.Reader().Report(t.Context(), ScopeAll, "", Query{From: time.Now().Add(-48 * time.Hour), To: time.Now(), Top: 1000})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, expect(evs, func(*policies.AccessEvent) bool { return true }), true)
}

// TestConcurrentRecord records from many goroutines at once (as the proxy
// and DNS filter do) while flushes run; every event is counted once.
func TestConcurrentRecord(t *testing.T) {
	cfg := testConfig(t)
	cfg.FlushInterval = 5 * time.Millisecond
	st := openLocal(t, cfg.Dir)
	defer st.Close()
	p := newTestPipeline(t, cfg, st, nil)
	evs := genEvents(4000, time.Now(), 15)
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for _, ev := range evs[g*500 : (g+1)*500] {
				p.Record(ev)
			}
		}()
	}
	for range 8 {
		<-done
	}
	flush(t, p)
	if d := promtest.ToFloat64(p.m.dropQueueFull); d != 0 {
		t.Fatalf("dropped %v with a %d-event queue", d, cfg.QueueSize)
	}
	rep, err := p.Reader().Report(t.Context(), ScopeAll, "", Query{From: time.Now().Add(-48 * time.Hour), To: time.Now(), Top: 1000})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, expect(evs, func(*policies.AccessEvent) bool { return true }), true)
}
