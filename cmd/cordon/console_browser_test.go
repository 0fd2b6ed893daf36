package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image/png"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cordon-gw/cordon/policies"

	"github.com/cordon-gw/cordon/internal/testutil"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the console screenshots to docs/screenshots/ for the README")

// browserSession is one headless Chromium driven over the DevTools
// protocol, with a fresh profile.
type browserSession struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string // screenshots
}

func newBrowser(t *testing.T, base string) *browserSession {
	t.Helper()
	bin := testutil.Command(t, "chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 800),
	}
	actx, cancelA := chromedp.NewExecAllocator(t.Context(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelC := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(func() { cancelC(); cancelB(); cancelA() })
	return &browserSession{t: t, ctx: ctx, base: base, dir: t.TempDir()}
}

func (b *browserSession) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browserSession) open(path string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base+path), chromedp.WaitReady("body"))
}

func (b *browserSession) eval(js string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		b.t.Fatalf("eval %s: %v", js, err)
	}
	return v
}

func (b *browserSession) text(sel string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Text(sel))
	if err != nil {
		b.t.Fatalf("text %s: %v", sel, err)
	}
	return v
}

func (b *browserSession) body() string { return b.eval(`document.body.innerText`) }

// signIn signs in with token through the sign-in form.
func (b *browserSession) signIn(token string) {
	b.t.Helper()
	b.open("/ui/login")
	b.do(chromedp.SendKeys("#token", token), chromedp.Submit("#token"), chromedp.WaitVisible("main.page"))
}

func (b *browserSession) signOut() {
	b.t.Helper()
	b.do(chromedp.Click(`.whoami button`), chromedp.WaitVisible("#token"))
}

// clickAndWait presses a button and waits for the page that follows.
func (b *browserSession) clickAndWait(sel string) {
	b.t.Helper()
	b.eval(`window.__old = true; ""`)
	b.do(chromedp.Click(sel))
	b.waitNewPage()
}

// waitNewPage waits until the page marked with window.__old has been
// replaced by a loaded one (evaluations fail while it navigates).
func (b *browserSession) waitNewPage() {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`window.__old === undefined && document.readyState === "complete"`))
		if err == nil && v {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("no new page after 30 s (last error %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writeForms counts the POST forms of the page other than sign-out.
func (b *browserSession) writeForms() string {
	return b.eval(`[...document.querySelectorAll('form[method=post]')].map(f => f.getAttribute('action')).filter(a => a !== '/ui/logout').join(' ')`)
}

// shot saves a screenshot of the viewport (of the whole page with full)
// as name.png.
func (b *browserSession) shot(name string, full ...bool) string {
	b.t.Helper()
	capture := chromedp.CaptureScreenshot()
	if len(full) > 0 && full[0] {
		capture = chromedp.FullScreenshot(100)
	}
	buf, err := chromedp.Run(b.ctx, capture)
	if err != nil {
		b.t.Fatal(err)
	}
	p := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		b.t.Fatal(err)
	}
	return p
}

func apiJSON(t *testing.T, base, token, method, path string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, base+path, body)
	req.Header.Set("Authorization", "Bearer "+token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if out != nil {
		if err := json.NewDecoder(res.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return res.StatusCode
}

// TestConsoleInBrowser drives the console in headless Chromium the way
// the two teams use it: netops drafts a change in the YAML editor (whose
// live validation marks a bad line), secops approves it, stages it in one
// location, real proxy traffic shows its effect side by side, secops
// promotes it and the Overview shows the new live version. A forged form
// is refused; an auditor sees no write button and a direct POST is 403.
// Screenshots go to a temporary folder (and to docs/screenshots/ with
// -update-screenshots).
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	tg := startGateway(t, func(c *Config) { c.Name = "edge-lab"; c.Reports.FlushInterval = 100 * time.Millisecond })
	base := "http://" + tg.adminLn.Addr().String()
	tokens := map[policies.Role]string{policies.RoleAdmin: tg.token}
	for name, role := range map[string]policies.Role{"nina": policies.RoleNetOps, "sam": policies.RoleSecOps, "ada": policies.RoleAuditor} {
		var res struct{ Token string }
		if code := apiJSON(t, base, tg.token, "POST", "/api/v1/tokens", map[string]any{"name": name, "role": role}, &res); code != 201 {
			t.Fatalf("create token %s: %d", name, code)
		}
		tokens[role] = res.Token
	}
	// The clients of this test (loopback) are the "lab" office: set up
	// by the admin (netops would go through a change request, since
	// approvals are enforced by default).
	if code := apiJSON(t, base, tg.token, "PUT", "/api/v1/locations/lab", map[string]any{"cidrs": []string{"127.0.0.0/8"}}, nil); code != 200 {
		t.Fatalf("put location: %d", code)
	}
	demoTraffic(tg)
	b := newBrowser(t, base)

	// Keyboard: the first Tab on a page reaches the skip link.
	b.signIn(tokens[policies.RoleNetOps])
	b.do(chromedp.KeyEvent("\t"))
	if got := b.eval(`document.activeElement.className + ":" + document.activeElement.getAttribute("href")`); got != "skip:#main" {
		t.Errorf("first Tab focuses %q, want the skip link", got)
	}

	// netops drafts a change in the YAML editor.
	b.open("/ui/changes/new")
	b.do(chromedp.SendKeys("#title", "Block allowed.test at the lab"), chromedp.SendKeys("#reason", "The lab must not reach allowed.test any more."))
	setYAML := func(extra string) {
		b.eval(`(() => { const ta = document.getElementById("yaml"); ta.value = ta.defaultValue + ` + jsString(extra) + `; ta.dispatchEvent(new Event("input", {bubbles: true})); return ""; })()`)
	}
	setYAML("  - id: block-allowed-lab\n    locations: [lab]\n    domains: [allowed.test]\n    action: blokc\n")
	badLine := b.eval(`String(document.getElementById("yaml").value.split("\n").findIndex(l => l.includes("blokc")) + 1)`)
	b.do(chromedp.Poll[chromedp.Void](`document.querySelector("#problems li") !== null`))
	if got := b.text("#problems"); !strings.Contains(got, "line "+badLine) || !strings.Contains(got, "blokc") {
		t.Errorf("live validation shows %q, want the bad action at line %s", got, badLine)
	}
	if marked := b.eval(`[...document.querySelectorAll("#gutter span.bad")].map(s => s.textContent).join(",")`); marked != badLine {
		t.Errorf("gutter marks lines %q, want %s", marked, badLine)
	}
	setYAML("  - id: block-allowed-lab\n    locations: [lab]\n    domains: [allowed.test]\n    action: block\n")
	b.do(chromedp.Poll[chromedp.Void](`document.getElementById("vstatus").textContent === "Valid"`))
	b.clickAndWait(`#draft-form button[type=submit]`)
	changeURL := b.eval(`location.pathname`)
	if !strings.HasPrefix(changeURL, "/ui/changes/") || !strings.Contains(b.body(), "Change request opened") {
		t.Fatalf("after submitting the draft the browser is at %s:\n%s", changeURL, b.body())
	}
	if f := b.writeForms(); strings.Contains(f, "/approve") || strings.Contains(f, "/apply") {
		t.Errorf("the author is offered %s", f)
	}
	b.signOut()

	// secops approves and stages it in the lab.
	b.signIn(tokens[policies.RoleSecOps])
	b.open(changeURL)
	b.do(chromedp.SendKeys("#ap-c", "ok for security"))
	b.clickAndWait("#approve")
	if !strings.Contains(b.body(), "You approved the change") {
		t.Fatalf("approve:\n%s", b.body())
	}
	b.do(chromedp.Click(`input[name=location][value=lab]`))
	b.clickAndWait("#stage")
	if got := b.text("h1"); !strings.Contains(got, "staged") {
		t.Fatalf("after staging the heading is %q", got)
	}
	// Real traffic from the lab: the staged version blocks allowed.test.
	client := tg.proxyClient()
	blocked := 0
	for range 30 {
		res, err := client.Get(tg.origin.URL + "/")
		if err == nil {
			res.Body.Close()
		}
		req, _ := http.NewRequest("GET", "http://allowed.test:"+strings.Split(tg.origin.Listener.Addr().String(), ":")[1]+"/page", nil)
		if res, err := client.Do(req); err == nil {
			if res.StatusCode == http.StatusForbidden {
				blocked++
			}
			res.Body.Close()
		}
	}
	if blocked != 30 {
		t.Errorf("staged rule blocked %d of 30 requests from the lab, want 30", blocked)
	}
	// The edge's heartbeat carries the effect (every 2 s).
	deadline := time.Now().Add(20 * time.Second)
	for {
		b.open(changeURL)
		if strings.Contains(b.eval(`document.querySelector("table.vs") ? document.querySelector("table.vs").innerText : ""`), "block-allowed-lab") ||
			strings.Contains(b.eval(`[...document.querySelectorAll("table.vs")].map(t => t.innerText).join("\n")`), "block-allowed-lab") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the observed effect never showed the staged rule:\n%s", b.body())
		}
		time.Sleep(500 * time.Millisecond)
	}
	shots := map[string]string{}
	shots["change"] = b.shot("change", true)

	// A forged form without the CSRF token is refused and changes nothing.
	before := tg.service.Current().Number
	b.eval(`(() => { const f = document.createElement("form"); f.method = "post"; f.action = "/ui/locations";
	  for (const [k, v] of [["name", "forged"], ["cidrs", "10.66.0.0/16"]]) { const i = document.createElement("input"); i.name = k; i.value = v; f.appendChild(i); }
	  document.body.appendChild(f); window.__old = true; setTimeout(() => f.submit(), 0); return ""; })()`)
	b.waitNewPage()
	if body := b.body(); !strings.Contains(body, "Request refused") || tg.service.Current().Number != before {
		t.Errorf("forged form: %s (version %d -> %d)", body, before, tg.service.Current().Number)
	}

	// secops promotes; the Overview shows the new live version.
	b.open(changeURL)
	b.clickAndWait("#promote")
	live := tg.service.Current().Number
	if !strings.Contains(b.body(), "Promoted") || live != before+1 {
		t.Fatalf("promote: live v%d (was v%d)\n%s", live, before, b.body())
	}
	b.open("/ui/")
	if got := b.text("#live-version"); got != fmt.Sprintf("v%d", live) {
		t.Errorf("Overview shows live version %q, want v%d", got, live)
	}
	deadline = time.Now().Add(10 * time.Second)
	for b.text(".edges .edge-version") != fmt.Sprintf("v%d", live) || strings.Contains(b.text(".edges"), "stage") {
		if time.Now().After(deadline) {
			t.Fatalf("the edge table never showed v%d: %s", live, b.text(".edges"))
		}
		time.Sleep(300 * time.Millisecond)
		b.open("/ui/")
	}
	shots["overview"] = b.shot("overview")
	b.open("/ui/policy")
	shots["policy"] = b.shot("policy")
	b.open("/ui/changes?state=all")
	shots["changes"] = b.shot("changes")
	b.open("/ui/lookup?url=http://allowed.test/page&client_ip=127.0.0.1")
	shots["lookup"] = b.shot("lookup")
	b.open("/ui/policy/versions")
	shots["history"] = b.shot("history")

	// Phone width: the pages reflow without a horizontal scroll bar.
	b.do(chromedp.EmulateViewport(390, 844))
	for _, p := range []string{"/ui/", changeURL, "/ui/policy", "/ui/audit"} {
		b.open(p)
		if w := b.eval(`String(document.documentElement.scrollWidth)`); w != "390" {
			t.Errorf("%s at 390 px is %s px wide", p, w)
		}
	}
	b.open("/ui/")
	shots["overview-phone"] = b.shot("overview-phone")
	b.do(chromedp.EmulateViewport(1280, 800))
	b.signOut()

	// The auditor reads everything and is offered no write button; a
	// direct POST is refused by the API.
	b.signIn(tokens[policies.RoleAuditor])
	for _, p := range []string{"/ui/", changeURL, "/ui/policy", "/ui/policy/versions/1", "/ui/lists", "/ui/lists/warn-list", "/ui/locations", "/ui/users", "/ui/groups", "/ui/reviews"} {
		b.open(p)
		if f := b.writeForms(); f != "" {
			t.Errorf("auditor on %s is offered %s", p, f)
		}
	}
	b.open("/ui/")
	code, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`(async () => { const csrf = document.querySelector("input[name=csrf]").value;
	  const r = await fetch("/ui/locations", {method: "POST", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "csrf=" + encodeURIComponent(csrf) + "&name=aud&cidrs=10.77.0.0/16"});
	  return String(r.status); })()`, chromedp.EvalAwaitPromise))
	if err != nil || code != "403" {
		t.Errorf("auditor's direct POST = %s (%v), want 403", code, err)
	}

	for name, p := range shots {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if bd := img.Bounds(); bd.Dx() < 390 || bd.Dy() < 600 {
			t.Errorf("%s screenshot is %v", name, bd)
		}
	}
	t.Logf("screenshots in %s", b.dir)
	if *updateScreenshots {
		for name, p := range shots {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join("..", "..", "docs", "screenshots", "console-"+name+".png")
			if err := os.WriteFile(dst, data, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s (%d bytes)", dst, len(data))
		}
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// demoTraffic records a working day of access events into the reports
// pipeline, so the pages have history to show next to the live traffic.
func demoTraffic(tg *testGateway) {
	r := rand.New(rand.NewPCG(7, 7))
	now := time.Now()
	type site struct {
		host, cat, threat, rule, action string
		monitor                         bool
		weight                          int
	}
	sites := []site{
		{"docs.example.com", "business", "", "", "allow", false, 30},
		{"code.example.org", "technology", "", "", "allow", false, 24},
		{"chat.example.net", "business", "", "", "allow", false, 18},
		{"news.example", "news", "", "", "allow", false, 10},
		{"warn.test", "", "", "warn-some", "warn", false, 6},
		{"monitor.test", "", "", "trial", "allow", true, 6},
		{tg.mining, "cryptomining", "", "block-mining", "block", false, 3},
		{tg.threat, "malware", "urlhaus", "block-threats", "block", false, 2},
	}
	total := 0
	for _, s := range sites {
		total += s.weight
	}
	users := []string{"alice", "bob", "carol", "dave", ""}
	for i := 0; i < 3000; i++ {
		ago := time.Duration(r.IntN(24)) * time.Hour
		h := now.Add(-ago).UTC().Hour()
		if (h < 7 || h > 19) && r.IntN(5) != 0 {
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
		ev := &policies.AccessEvent{
			Time: now.Add(-ago - time.Duration(r.IntN(3600))*time.Second), User: users[r.IntN(len(users))],
			Location: "lab", ClientIP: netip.MustParseAddr("127.0.0.1"), Protocol: policies.ProtoHTTPS, Method: "CONNECT",
			Host: s.host, Action: s.action, RuleAction: s.action, RuleID: s.rule, Monitor: s.monitor, PolicyVersion: 1,
			BytesUp: int64(400 + r.IntN(3000)), BytesDown: int64(2000 + r.IntN(200000)), Status: 200,
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
			ev.Status = 403
		}
		tg.pipeline.Record(ev)
	}
	_ = tg.pipeline.Flush(context.Background())
}
