package policies

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/categorizer"
)

// benchPolicy builds a policy of nRules rules over nUsers users in 100
// groups, 20 locations and 64 categories (categories and threat feeds
// named by the table), with every criterion kind in use.
func benchPolicy(tb *table, nRules, nUsers int) *Policy {
	p := &Policy{Settings: Settings{DefaultAction: "allow", SafeSearch: SafeSearch{Enabled: true, Groups: []string{"g7"}}}}
	for g := 0; g < 100; g++ {
		p.Groups = append(p.Groups, Group{Name: fmt.Sprintf("g%d", g)})
	}
	for u := 0; u < nUsers; u++ {
		p.Users = append(p.Users, User{Name: fmt.Sprintf("user%d", u), Groups: []string{fmt.Sprintf("g%d", u%100), fmt.Sprintf("g%d", (u/100)%100)}})
	}
	for l := 0; l < 20; l++ {
		p.Locations = append(p.Locations, Location{Name: fmt.Sprintf("site%d", l), CIDRs: []string{fmt.Sprintf("10.%d.0.0/16", l)}})
	}
	for l := 0; l < 10; l++ {
		lst := List{Name: fmt.Sprintf("deny%d", l), Kind: ListDeny}
		for e := 0; e < 100; e++ {
			lst.Entries = append(lst.Entries, fmt.Sprintf("d%d-%d.example", l, e))
		}
		p.Lists = append(p.Lists, lst)
	}
	for i := 0; i < nRules; i++ {
		r := Rule{ID: fmt.Sprintf("r%d", i), Action: "block"}
		// Each rule targets one group and one category of 1..63; most
		// never match the benchmark request, so Decide walks them all.
		r.Groups = []string{fmt.Sprintf("g%d", i%100)}
		r.Categories = []string{tb.cats[1+i%63]}
		switch i % 5 {
		case 1:
			r.Users = []string{fmt.Sprintf("user%d", (i*37)%nUsers)}
		case 2:
			r.Locations = []string{fmt.Sprintf("site%d", i%20)}
		case 3:
			r.Lists = []string{fmt.Sprintf("deny%d", i%10)}
		case 4:
			r.Schedule = &Schedule{Days: []string{"mon", "tue"}, From: "09:00", To: "17:00"}
		}
		if i%7 == 0 {
			r.Protocols = []string{"http", "https"}
		}
		if i%11 == 0 {
			r.Paths = []string{"/admin/*"}
		}
		p.Rules = append(p.Rules, r)
	}
	return p
}

func benchTable() *table {
	tb := &table{hosts: map[string]categorizer.Verdict{}}
	tb.cats = append(tb.cats, "newly_seen")
	for i := 1; i < 64; i++ {
		tb.cats = append(tb.cats, fmt.Sprintf("cat%02d", i))
	}
	tb.threats = []string{"urlhaus", "phishtank"}
	// The benchmark host is in the last category, which only the last
	// rules name.
	tb.set("www.shop.example", []string{"cat63", "cat62"}, nil)
	return tb
}

func BenchmarkDecide(b *testing.B) {
	for _, n := range []struct{ rules, users int }{{20, 1000}, {200, 10000}} {
		b.Run(fmt.Sprintf("rules=%d/users=%d/categories=64", n.rules, n.users), func(b *testing.B) {
			tb := benchTable()
			p := benchPolicy(tb, n.rules, n.users)
			c, err := Compile(p, 1, tb)
			if err != nil {
				b.Fatal(err)
			}
			if len(c.warnings) > 0 {
				b.Fatalf("warnings: %v", c.warnings)
			}
			pr := c.id.userRecs[c.id.users["user4242"]].principal
			r := Request{Host: "www.shop.example", Path: "/cart", Principal: pr, ClientIP: netip.MustParseAddr("10.3.1.1"),
				Protocol: ProtoHTTPS, Time: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
			v := tb.Lookup(r.Host, r.Path, netip.Addr{})
			b.ReportAllocs()
			for b.Loop() {
				c.Decide(&r, &v)
			}
		})
	}
	// A request that a rule in the middle matches (group, location,
	// category and protocol all checked).
	b.Run("rules=200/users=10000/categories=64/match", func(b *testing.B) {
		tb := benchTable()
		c, err := Compile(benchPolicy(tb, 200, 10000), 1, tb)
		if err != nil {
			b.Fatal(err)
		}
		pr := c.id.userRecs[c.id.users["user4242"]].principal
		r := Request{Host: "www.shop.example", Principal: pr, ClientIP: netip.MustParseAddr("10.2.1.1"), Protocol: ProtoHTTPS}
		cat, _ := tb.CategoryID("cat43")
		v := categorizer.Verdict{Categories: categorizer.Set(0).With(cat)}
		if d := c.Decide(&r, &v); d.RuleID != "r42" {
			b.Fatalf("Decide = %+v, want rule r42", d)
		}
		b.ReportAllocs()
		for b.Loop() {
			c.Decide(&r, &v)
		}
	})
}

// BenchmarkEngineCheck is the full decision of an adapter: categorizer
// lookup on a real Index (100 000 domains), newly-seen, GeoIP and Decide
// with 200 rules and 10 000 users.
func BenchmarkEngineCheck(b *testing.B) {
	bld := categorizer.NewBuilder()
	feeds := make([]categorizer.FeedID, 0, 63)
	for i := 1; i < 64; i++ {
		f, err := bld.AddFeed(fmt.Sprintf("feed%02d", i), []string{fmt.Sprintf("cat%02d", i)}, i == 63)
		if err != nil {
			b.Fatal(err)
		}
		feeds = append(feeds, f)
	}
	for i := 0; i < 100000; i++ {
		if err := bld.Add(feeds[i%len(feeds)], categorizer.Entry{Kind: categorizer.KindDomain, Host: fmt.Sprintf("host%d.example%d.com", i, i%97)}); err != nil {
			b.Fatal(err)
		}
	}
	if err := bld.Add(feeds[61], categorizer.Entry{Kind: categorizer.KindDomain, Host: "shop.example"}); err != nil {
		b.Fatal(err)
	}
	ix, err := bld.Build(1)
	if err != nil {
		b.Fatal(err)
	}
	tb := benchTable()
	p := benchPolicy(tb, 200, 10000)
	e, _ := testEngine(b)
	if err := e.SetIndex(ix); err != nil {
		b.Fatal(err)
	}
	if err := e.SetPolicy(p, 1); err != nil {
		b.Fatal(err)
	}
	if w := e.Current().Warnings(); len(w) > 0 {
		b.Fatalf("warnings: %v", w)
	}
	pr, _ := e.Principal("user4242")
	r := Request{Host: "www.shop.example", Path: "/cart", Principal: pr, ClientIP: netip.MustParseAddr("10.3.1.1"),
		Protocol: ProtoHTTPS, Time: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	b.ReportAllocs()
	for b.Loop() {
		e.Check(&r)
	}
}

// BenchmarkAuthenticateCached is the per-request cost of proxy Basic
// authentication once the credential is verified (the slow hash runs
// once per AuthCacheTTL).
func BenchmarkAuthenticateCached(b *testing.B) {
	hash, err := HashPassword("s3cret-password")
	if err != nil {
		b.Fatal(err)
	}
	p := &Policy{Users: []User{{Name: "alice@example.com", PasswordHash: hash}}}
	e, _ := testEngine(b)
	if err := e.SetPolicy(p, 1); err != nil {
		b.Fatal(err)
	}
	if _, ok := e.Authenticate("alice@example.com", "s3cret-password"); !ok {
		b.Fatal("authenticate failed")
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Authenticate("alice@example.com", "s3cret-password")
	}
}
