package policies

import (
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/categorizer"
)

// lookupEnv is an API over a real index (a shopping feed, a threat feed)
// and a real newly-seen tracker whose learning period ended a month ago,
// with a policy that blocks newly seen domains.
func lookupEnv(t *testing.T) (*apiEnv, *categorizer.NewlySeen, *categorizer.FileFirstSeen) {
	t.Helper()
	env := newAPIEnv(t)
	b := categorizer.NewBuilder()
	shop, _ := b.AddFeed("shops", []string{"shopping"}, false)
	mal, _ := b.AddFeed("malware", []string{"malware"}, true)
	if err := b.Add(shop, categorizer.Entry{Kind: categorizer.KindDomain, Host: "shop.example"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(mal, categorizer.Entry{Kind: categorizer.KindDomain, Host: "evil.example"}); err != nil {
		t.Fatal(err)
	}
	ix, err := b.Build(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.engine.SetIndex(ix); err != nil {
		t.Fatal(err)
	}
	p := mustParse(t, "rules:\n  - {id: block-new, categories: [newly_seen], action: block}\n")
	if _, err := env.svc.Put(t.Context(), admin, p, "block newly seen"); err != nil {
		t.Fatal(err)
	}
	st, err := categorizer.NewFileFirstSeen(filepath.Join(t.TempDir(), "firstseen.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.LearningStart(t.Context(), time.Now().Add(-30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	n := categorizer.NewNewlySeen(categorizer.NewlySeenConfig{}, st, nil, nil)
	if err := n.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	env.engine.SetNewlySeen(n) // hands n the index: its shop feed joins the baseline
	return env, n, st
}

func TestAPILookupNewlySeen(t *testing.T) {
	env, n, st := lookupEnv(t)
	lookup := func(u string) LookupResult {
		t.Helper()
		var lr LookupResult
		if code := env.do(t, RoleAuditor, "GET", "/api/v1/lookup?url="+url.QueryEscape(u), "", "", &lr); code != 200 {
			t.Fatalf("lookup %s: %d", u, code)
		}
		if lr.NewlySeen == nil {
			t.Fatalf("lookup %s: no newly_seen explanation", u)
		}
		return lr
	}
	// A never-seen domain: the lookup says a request would be newly seen
	// (and blocked), and records nothing, however often it is asked.
	for i := 0; i < 3; i++ {
		lr := lookup("http://www.never-seen.example/")
		ns := lr.NewlySeen
		if !ns.NewlySeen || ns.Reason != categorizer.ReasonNotSeen || ns.FirstSeen != nil || ns.Domain != "never-seen.example" ||
			!slices.Contains(lr.Verdict.Categories, "newly_seen") || lr.Decision.Action != "block" || lr.Decision.Rule != "block-new" {
			t.Fatalf("lookup #%d of a never-seen domain = %+v, newly_seen %+v", i, lr, ns)
		}
		if ns.LearningUntil == nil || ns.Learning {
			t.Errorf("lookup: learning %v until %v, want ended", ns.Learning, ns.LearningUntil)
		}
	}
	if in := n.Info(time.Now()); in.Domains != 0 {
		t.Errorf("lookups put %d domains in the tracker", in.Domains)
	}
	if _, ok, _ := st.Sighting(t.Context(), "never-seen.example"); ok {
		t.Error("a lookup recorded a sighting in the store")
	}
	// Traffic records it; the lookup then shows the first sighting.
	d, _ := env.engine.Check(&Request{Host: "never-seen.example", Protocol: ProtoHTTP})
	if d.RuleID != "block-new" {
		t.Fatalf("first request: %+v, want blocked as newly seen", d)
	}
	if lr := lookup("never-seen.example"); lr.NewlySeen.Reason != categorizer.ReasonRecent || lr.NewlySeen.FirstSeen == nil {
		t.Errorf("lookup after a request = %+v", lr.NewlySeen)
	}
	// The baseline: a popular domain, a domain of a non-threat feed; a
	// domain only a threat feed lists is not established.
	for _, c := range []struct {
		url, source string
	}{{"http://www.bet365.com/", "popular"}, {"https://www.shop.example/cart", "feeds"}} {
		lr := lookup(c.url)
		if lr.NewlySeen.NewlySeen || lr.NewlySeen.Reason != categorizer.ReasonEstablished || !slices.Contains(lr.NewlySeen.Baseline, c.source) || lr.Decision.Action != "allow" {
			t.Errorf("lookup %s = %+v, decision %+v; want established (%s), allowed", c.url, lr.NewlySeen, lr.Decision, c.source)
		}
	}
	if lr := lookup("http://evil.example/"); !lr.NewlySeen.NewlySeen || len(lr.NewlySeen.Baseline) != 0 {
		t.Errorf("lookup of a threat-only domain = %+v, want newly seen, in no baseline", lr.NewlySeen)
	}
}

func TestAPILookupHostNames(t *testing.T) {
	env, _, _ := lookupEnv(t)
	long := strings.Repeat("abcdefgh.", 28) + "example" // 259 bytes
	for _, c := range []struct{ url, want string }{
		{"http://a..b/", "empty label"},
		{"http://" + strings.Repeat("x", 300) + ".example/", "longer than 253 bytes"},
		{"http://" + strings.Repeat("x", 64) + ".example/", "label longer than 63 bytes"},
		{"http://" + long + "/", "longer than 253 bytes"},
		{"http://.example/", "empty label"},
		{"http://under_score.example_/", ""}, // valid: underscores occur in real names
		{"http://exa*mple.com/", "not allowed"},
		{"http://[fe80::1%25eth0]/", "not allowed"},
	} {
		var out struct {
			Error string `json:"error"`
		}
		var lr LookupResult
		target := any(&out)
		if c.want == "" {
			target = &lr
		}
		code := env.do(t, RoleAuditor, "GET", "/api/v1/lookup?url="+url.QueryEscape(c.url), "", "", target)
		if c.want == "" {
			if code != 200 {
				t.Errorf("lookup %.60q: %d, want 200", c.url, code)
			}
			continue
		}
		if code != 400 || !strings.Contains(out.Error, c.want) || !strings.Contains(out.Error, "invalid host name") {
			t.Errorf("lookup %.60q: %d %q, want 400 saying %q", c.url, code, out.Error, c.want)
		}
	}
	// IDN hosts are answered in punycode, case and trailing dot dropped.
	for _, u := range []string{"http://Bücher.Example./pfad?q=1", "BÜCHER.example", "http://b%C3%BCcher.example/pfad"} {
		var lr LookupResult
		if code := env.do(t, RoleAuditor, "GET", "/api/v1/lookup?url="+url.QueryEscape(u), "", "", &lr); code != 200 {
			t.Fatalf("lookup %s: %d", u, code)
		}
		if lr.Host != "xn--bcher-kva.example" || !strings.HasPrefix(lr.URL, "http://xn--bcher-kva.example") ||
			lr.Explanation == nil || lr.Explanation.Host != "xn--bcher-kva.example" || lr.NewlySeen.Domain != "xn--bcher-kva.example" {
			t.Errorf("lookup %s: host %q url %q explanation %+v newly_seen %+v, want punycode", u, lr.Host, lr.URL, lr.Explanation, lr.NewlySeen)
		}
	}
	var lr LookupResult
	if code := env.do(t, RoleAuditor, "GET", "/api/v1/lookup?url="+url.QueryEscape("https://[2001:DB8::1]:8443/x"), "", "", &lr); code != 200 || lr.Host != "2001:db8::1" || lr.URL != "https://[2001:db8::1]:8443/x" {
		t.Errorf("lookup of an IPv6 literal: %d host %q url %q", code, lr.Host, lr.URL)
	}
}
