package reports

import (
	"context"
	"flag"
	"fmt"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

var update = flag.Bool("update", false, "rewrite testdata/report-user.png from the chromium screenshot")

// demoEvents is a day of plausible traffic for pages and screenshots.
func demoEvents(now time.Time) []*policies.AccessEvent {
	r := rand.New(rand.NewPCG(42, 42))
	type site struct {
		host, cat, threat, rule, action string
		monitor                         bool
		weight                          int
	}
	sites := []site{
		{"docs.google.com", "business", "", "", "allow", false, 30},
		{"github.com", "technology", "", "", "allow", false, 26},
		{"slack.com", "business", "", "", "allow", false, 22},
		{"www.bbc.co.uk", "news", "", "", "allow", false, 12},
		{"www.youtube.com", "streaming", "", "streaming-warn", "warn", false, 10},
		{"www.reddit.com", "social", "", "social-trial", "allow", true, 9},
		{"stackoverflow.com", "technology", "", "", "allow", false, 8},
		{"www.linkedin.com", "social", "", "social-trial", "allow", true, 5},
		{"pokerstars.example", "gambling", "", "no-gambling", "block", false, 4},
		{"bet365.example", "gambling", "", "no-gambling", "block", false, 2},
		{"free-films.example", "piracy", "", "no-piracy", "block", false, 2},
		{"login-micros0ft.example", "", "openphish", "threats", "block", false, 1},
		{"cdn.evil.example", "", "urlhaus", "threats", "block", false, 1},
	}
	total := 0
	for _, s := range sites {
		total += s.weight
	}
	var out []*policies.AccessEvent
	users := []string{"alice", "bob", "carol", "dave", "erin"}
	groupsOf := map[string][]string{
		"alice": {"staff", "engineering"}, "bob": {"staff", "sales"}, "carol": {"staff", "engineering"},
		"dave": {"staff", "finance"}, "erin": {"staff", "sales"},
	}
	locs := []string{"hq", "hq", "hq", "branch-berlin", "branch-berlin", "remote"}
	for i := 0; i < 2400; i++ {
		// Office-hours shape: more traffic in the working hours.
		hoursAgo := r.IntN(24)
		h := now.Add(-time.Duration(hoursAgo) * time.Hour).UTC().Hour()
		if (h < 8 || h > 18) && r.IntN(4) != 0 {
			continue
		}
		pick := r.IntN(total)
		var s site
		for _, s = range sites {
			if pick < s.weight {
				break
			}
			pick -= s.weight
		}
		u := users[r.IntN(len(users))]
		if r.IntN(3) == 0 {
			u = "alice"
		}
		ev := &policies.AccessEvent{
			Time: now.Add(-time.Duration(hoursAgo)*time.Hour - time.Duration(r.IntN(3600))*time.Second),
			User: u, Groups: groupsOf[u], Location: locs[r.IntN(len(locs))], ClientIP: netip.MustParseAddr("10.0.0.7"),
			Protocol: policies.ProtoHTTPS, Method: "CONNECT", Host: s.host,
			Action: s.action, RuleAction: s.action, RuleID: s.rule, Monitor: s.monitor,
			BytesUp: int64(500 + r.IntN(4000)), BytesDown: int64(2000 + r.IntN(400000)), Status: 200,
		}
		if s.monitor {
			ev.RuleAction = "block"
		}
		if s.cat != "" {
			ev.Categories = []string{s.cat}
		}
		if s.threat != "" {
			ev.Threats = []string{s.threat}
		}
		if s.action == "block" {
			ev.Status, ev.BytesDown = 403, 1200
		}
		out = append(out, ev)
	}
	return out
}

func demoServer(t *testing.T) (*httptest.Server, []*policies.AccessEvent) {
	t.Helper()
	cfg := testConfig(t)
	st := openLocal(t, cfg.Dir)
	t.Cleanup(func() { _ = st.Close() })
	p := newTestPipeline(t, cfg, st, nil)
	evs := demoEvents(time.Now())
	record(p, evs)
	flush(t, p)
	srv := httptest.NewServer(NewHandler(p.Reader(), testLogger(t)).Mux())
	t.Cleanup(srv.Close)
	return srv, evs
}

func get(t *testing.T, url string) (string, *http.Response) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), res
}

func TestPagesRender(t *testing.T) {
	srv, evs := demoServer(t)
	want := expect(evs, func(ev *policies.AccessEvent) bool { return ev.User == "alice" })
	for _, tc := range []struct {
		path string
		has  []string
	}{
		{"/reports/users/alice", []string{`<span class="kind">user</span>alice`, "Requests per hour", "<svg", "pokerstars.example", "no-gambling",
			formatNum(want.Requests), "Export CSV", "social-trial"}},
		{"/reports?from=7d", []string{"Traffic overview", "Top users by blocks", `href="/reports/users/alice"`, "openphish", "social-trial", `class="on">7 days`,
			`href="/reports/locations/hq"`, `href="/reports/groups/staff"`}},
		{"/reports/users/alice?from=30d", []string{"Requests per day", `class="on">30 days`}},
		{"/reports/groups/staff", []string{`<span class="kind">group</span>staff`, "Top users by blocks", `href="/reports/users/alice"`}},
		{"/reports/locations/hq", []string{`<span class="kind">location</span>hq`, "pokerstars.example"}},
		{"/reports/users/" + "%3Cscript%3E", []string{`<span class="kind">user</span>&lt;script&gt;`, "Nothing was blocked"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			body, res := get(t, srv.URL+tc.path)
			if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
				t.Fatalf("GET %s = %d %s", tc.path, res.StatusCode, res.Header.Get("Content-Type"))
			}
			for _, s := range tc.has {
				if !strings.Contains(body, s) {
					t.Errorf("GET %s: page lacks %q", tc.path, s)
				}
			}
			if strings.Contains(body, "<script") || strings.Contains(body, "http://") || strings.Contains(body, "https://") {
				t.Errorf("GET %s: page has a script or an external reference", tc.path)
			}
		})
	}
	if body, res := get(t, srv.URL+"/reports?from=never"); res.StatusCode != 400 {
		t.Errorf("GET /reports?from=never = %d %q, want 400", res.StatusCode, body)
	}
}

func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not installed")
	}
	t.Skip("chromium not installed")
	return ""
}

// TestPageScreenshot renders the user page in headless Chromium and checks
// the picture has the page's colours (the header, red blocked bars). With
// -update it refreshes testdata/report-user.png for the README.
func TestPageScreenshot(t *testing.T) {
	bin := chromium(t)
	srv, _ := demoServer(t)
	out := filepath.Join(t.TempDir(), "shot.png")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--hide-scrollbars", "--user-data-dir="+t.TempDir(),
		"--screenshot="+out, "--window-size=1366,900", srv.URL+"/reports/users/alice")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 1366 || b.Dy() != 900 {
		t.Errorf("screenshot is %v, want 1366x900", b)
	}
	header, red := countColor(img, 0x16, 0x20, 0x2c), countColor(img, 0xd6, 0x45, 0x45)
	if header < 1366*30 || red < 100 {
		t.Errorf("screenshot has %d header pixels and %d red pixels: page not rendered?", header, red)
	}
	if *update {
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata", "report-user.png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote testdata/report-user.png (%d bytes)", len(b))
	}
}

func countColor(img image.Image, r, g, b uint8) int {
	n := 0
	bd := img.Bounds()
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if near(cr, r) && near(cg, g) && near(cb, b) {
				n++
			}
		}
	}
	return n
}

func near(c uint32, want uint8) bool {
	d := int(c>>8) - int(want)
	return d > -8 && d < 8
}

var _ = fmt.Sprint
