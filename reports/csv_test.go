package reports

import (
	"bytes"
	"encoding/csv"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

func TestWriteCSV(t *testing.T) {
	h0 := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	rows := []Row{
		{Hour: HourOf(h0), Counters: &Counters{Requests: 3, Blocked: 1, BytesUp: 30, BytesDown: 300,
			Domains: map[string]int64{"a.example": 2, "b.example": 1}, Categories: map[string]int64{"news": 2, "gambling": 1},
			BlockedCategories: map[string]int64{"gambling": 1}, Actions: map[string]int64{"allow": 2, "block": 1},
			Rules: map[string]int64{"": 2, "no-gambling": 1}, Users: map[string]int64{"=cmd|calc": 3},
			Attempts: map[string]Attempt{AttemptKey("b.example", "gambling", "no-gambling"): {1, h0.Add(5 * time.Minute).UnixMilli()}}}},
		{Hour: HourOf(h0) + 1, Counters: &Counters{Requests: 1, BytesDown: 10, Domains: map[string]int64{"a.example": 1},
			Actions: map[string]int64{"allow": 1}, Rules: map[string]int64{"": 1}, WouldBlock: map[string]int64{"trial": 1},
			Threats: map[string]int64{"urlhaus": 1}, Users: map[string]int64{"=cmd|calc": 1}}},
	}
	q := Query{From: h0, To: h0.Add(2 * time.Hour), Top: 10}
	rep := buildReport(ScopeGroup, "eng", q, HourOf(h0), HourOf(h0)+1, rows)
	var b bytes.Buffer
	if err := rep.WriteCSV(&b); err != nil {
		t.Fatal(err)
	}
	want := `section,name,category,rule,count,blocked,bytes_up,bytes_down,time
summary,eng,,,4,1,30,310,2026-11-23T09:00:00Z
timeline,,,,3,1,30,300,2026-11-23T09:00:00Z
timeline,,,,1,0,0,10,2026-11-23T10:00:00Z
domain,a.example,,,3,,,,
domain,b.example,,,1,,,,
category,news,,,2,,,,
category,gambling,,,1,,,,
blocked_category,gambling,,,1,,,,
action,allow,,,3,,,,
action,block,,,1,,,,
rule,,,,3,,,,
rule,no-gambling,,,1,,,,
would_block,trial,,,1,,,,
threat,urlhaus,,,1,,,,
user,'=cmd|calc,,,4,,,,
blocked,b.example,gambling,no-gambling,1,,,,2026-11-23T09:05:00Z
`
	if b.String() != want {
		t.Errorf("WriteCSV =\n%s\nwant\n%s", b.String(), want)
	}
}

func TestAPICSVMatchesJSON(t *testing.T) {
	cfg := testConfig(t)
	st := openLocal(t, cfg.Dir)
	defer st.Close()
	p := newTestPipeline(t, cfg, st, nil)
	evs := genEvents(800, time.Now(), 11)
	record(p, evs)
	flush(t, p)
	srv := httptest.NewServer(NewHandler(p.Reader(), testLogger(t)).Mux())
	defer srv.Close()
	var rep Report
	getJSON(t, srv, "/api/v1/reports/users/bob?from=48h&top=1000", &rep)
	res, err := http.Get(srv.URL + "/api/v1/reports/users/bob?from=48h&top=1000&format=csv")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	recs, err := csv.NewReader(res.Body).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var domains, timeline int64
	for _, r := range recs[1:] {
		n, _ := strconv.ParseInt(r[4], 10, 64)
		switch r[0] {
		case "summary":
			if n != rep.Requests || r[1] != "bob" {
				t.Errorf("summary = %v, want %d requests for bob", r, rep.Requests)
			}
		case "domain":
			domains += n
		case "timeline":
			timeline += n
		}
	}
	if domains != rep.Requests || timeline != rep.Requests {
		t.Errorf("csv domain sum %d, timeline sum %d, want %d", domains, timeline, rep.Requests)
	}
	_, _ = io.Copy(io.Discard, res.Body)
}
