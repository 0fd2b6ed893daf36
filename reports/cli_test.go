package reports

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

func TestReportCLI(t *testing.T) {
	cfg := testConfig(t)
	st := openLocal(t, cfg.Dir)
	defer st.Close()
	p := newTestPipeline(t, cfg, st, nil)
	evs := genEvents(500, time.Now(), 6)
	record(p, evs)
	flush(t, p)
	mux := NewHandler(p.Reader(), testLogger(t)).Mux()
	// Stand-in for the admin API's bearer check.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	defer srv.Close()

	var out, errb bytes.Buffer
	err := ReportCLI(t.Context(), []string{"user", "alice", "--since", "24h", "--api", srv.URL, "--token", "s3cret", "--top", "50"}, &out, &errb)
	if err != nil {
		t.Fatalf("ReportCLI: %v\n%s", err, errb.String())
	}
	want := expect(evs, func(ev *policies.AccessEvent) bool { return ev.User == "alice" && time.Since(ev.Time) < 24*time.Hour })
	s := out.String()
	for _, sub := range []string{"User alice", "Requests " + formatNum(want.Requests), "Blocked " + formatNum(want.Blocked),
		"TOP DOMAINS", "casino.example.org", "BLOCKED DOMAIN", "no-gambling", "HOUR (UTC)"} {
		if !strings.Contains(s, sub) {
			t.Errorf("table lacks %q:\n%s", sub, s)
		}
	}

	out.Reset()
	if err := ReportCLI(t.Context(), []string{"user", "alice", "--since", "7d", "--api", srv.URL, "--token", "s3cret"}, &out, &errb); err != nil {
		t.Fatalf("ReportCLI --since 7d: %v", err)
	}
	if !strings.Contains(out.String(), "DAY (UTC)") || strings.Contains(out.String(), "HOUR (UTC)") {
		t.Errorf("a 7-day table should list days:\n%s", out.String())
	}

	t.Setenv("CORDON_TOKEN", "s3cret")
	out.Reset()
	if err := ReportCLI(t.Context(), []string{"--api", srv.URL, "overview", "--format", "csv"}, &out, &errb); err != nil {
		t.Fatalf("ReportCLI overview csv: %v", err)
	}
	if !strings.HasPrefix(out.String(), strings.Join(CSVHeader, ",")) {
		t.Errorf("csv output starts %q", out.String()[:min(80, out.Len())])
	}

	t.Setenv("CORDON_TOKEN", "wrong")
	if err := ReportCLI(t.Context(), []string{"group", "eng", "--api", srv.URL}, &out, &errb); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("ReportCLI with a wrong token = %v, want a 401 error", err)
	}
	for _, args := range [][]string{{}, {"user"}, {"users", "x"}, {"user", "a", "--format", "xml"}, {"user", "a", "--since", "forever"}, {"user", "a", "--api", "ftp://x"}} {
		if err := ReportCLI(t.Context(), args, &out, &errb); err == nil {
			t.Errorf("ReportCLI(%q) = nil, want an error", args)
		}
	}
	t.Setenv("CORDON_TOKEN", "s3cret")
	nf := httptest.NewServer(http.NotFoundHandler())
	defer nf.Close()
	if err := ReportCLI(t.Context(), []string{"user", "a", "--api", nf.URL}, &out, &errb); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReportCLI against a 404 = %v, want ErrNotFound", err)
	}
}
