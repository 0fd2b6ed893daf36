package categorizer

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// buildFeeds builds an Index from inline feeds: name → (format, text).
type feedText struct {
	name   string
	format Format
	cats   []string
	threat bool
	text   string
}

func buildInline(t *testing.T, feeds ...feedText) *Index {
	t.Helper()
	b := NewBuilder()
	for _, f := range feeds {
		id, err := b.AddFeed(f.name, f.cats, f.threat)
		if err != nil {
			t.Fatal(err)
		}
		st, err := Parse(f.format, f.name, strings.NewReader(f.text), b.Emit(id))
		if err != nil || st.Invalid != 0 {
			t.Fatalf("parse %s: %v %v", f.name, err, st.Err())
		}
	}
	ix, err := b.Build(7)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func names(ix *Index, v Verdict) string {
	c, th := ix.Names(v)
	return strings.Join(c, ",") + "|" + strings.Join(th, ",")
}

func TestLookup(t *testing.T) {
	ix := buildInline(t,
		feedText{"ads", FormatAdblock, []string{"ads"}, false, "||ads.example^\n@@||good.ads.example^\n||tracker.example^\n@@||ok.deep.tracker.example^\n||x.ok.deep.tracker.example^\n||45.15.156.210^\n"},
		feedText{"ads2", FormatDomains, []string{"ads"}, false, "ads.example\n"},
		feedText{"wild", FormatDomains, []string{"wildcat"}, false, "*.wild.example\n"},
		feedText{"urlhaus", FormatURLs, []string{"malware"}, true, "http://files.example/bins/\nhttp://whole.example/\nhttp://192.0.2.9/x.sh\n"},
		feedText{"drop", FormatIPs, []string{"badnet"}, true, "192.0.2.0/24\n192.0.2.128/25\n2001:db8::/32\n"},
		feedText{"ipsum", FormatIPs, nil, true, "192.0.2.200\n"},
		feedText{"gambling", FormatHosts, []string{"gambling"}, false, "0.0.0.0 casino.example\n0.0.0.0 good.ads.example\n"},
	)
	tests := []struct {
		host, path, ip string
		want           string
	}{
		{"ads.example", "", "", "ads|"},
		{"A.B.ADS.EXAMPLE.", "", "", "ads|"},
		{"notads.example", "", "", "|"},
		// ABP exception removes feed "ads" but not feed "ads2" (same category), nor gambling.
		{"good.ads.example", "", "", "ads,gambling|"},
		{"sub.good.ads.example", "", "", "ads,gambling|"},
		{"tracker.example", "", "", "ads|"},
		{"ok.deep.tracker.example", "", "", "|"},
		{"a.ok.deep.tracker.example", "", "", "|"},
		{"x.ok.deep.tracker.example", "", "", "|"}, // deeper block of the excepted feed is excepted too
		{"deep.tracker.example", "", "", "ads|"},
		{"wild.example", "", "", "|"},
		{"a.wild.example", "", "", "wildcat|"},
		{"files.example", "/bins/mozi.a", "", "malware|urlhaus"},
		{"files.example", "", "", "|"},
		{"files.example", "/bins/", "", "malware|urlhaus"},
		{"files.example", "/other", "", "|"},
		{"sub.files.example", "/bins/x", "", "|"}, // URL entries match only their own host
		{"whole.example", "", "", "malware|urlhaus"},
		{"www.whole.example", "/a", "", "malware|urlhaus"},
		{"192.0.2.9", "/x.sh", "", "malware,badnet|urlhaus,drop"},
		{"192.0.2.9", "", "", "badnet|drop"},
		{"x.example", "", "192.0.2.130", "badnet|drop"},
		{"x.example", "", "192.0.2.200", "badnet|drop,ipsum"}, // covering prefixes fold into the longer one
		{"x.example", "", "::ffff:192.0.2.1", "badnet|drop"},
		{"[2001:db8::1]", "", "", "badnet|drop"},
		{"x.example", "", "198.51.100.1", "|"},
		{"45.15.156.210", "", "", "ads|"},
		{"", "", "", "|"},
		{".", "", "", "|"},
		{"..ads.example", "", "", "ads|"},
	}
	for _, tt := range tests {
		var ip netip.Addr
		if tt.ip != "" {
			ip = netip.MustParseAddr(tt.ip)
		}
		if got := names(ix, ix.Lookup(tt.host, tt.path, ip)); got != tt.want {
			t.Errorf("Lookup(%q, %q, %q) = %q, want %q", tt.host, tt.path, tt.ip, got, tt.want)
		}
	}
	if ix.Version() != 7 {
		t.Errorf("Version() = %d, want 7", ix.Version())
	}
	if id, ok := ix.CategoryID(NewlySeenCategory); !ok || id != NewlySeenID {
		t.Errorf("CategoryID(newly_seen) = %d, %v", id, ok)
	}
	if id, ok := ix.ThreatID("drop"); !ok || ix.ThreatName(id) != "drop" {
		t.Errorf("ThreatID(drop) = %d, %v", id, ok)
	}
	if id, ok := ix.CategoryID("gambling"); !ok || ix.CategoryName(id) != "gambling" || ix.CategoryNames()[id] != "gambling" {
		t.Errorf("CategoryID(gambling) = %d, %v", id, ok)
	}
	if _, ok := ix.CategoryID("nope"); ok {
		t.Error("CategoryID(nope) found")
	}
	if ix.CategoryName(-1) != "" || ix.ThreatName(99) != "" {
		t.Error("unknown IDs must have empty names")
	}
}

func TestExplain(t *testing.T) {
	ix := buildInline(t,
		feedText{"ads", FormatAdblock, []string{"ads"}, false, "||ads.example^\n@@||good.ads.example^\n"},
		feedText{"ads2", FormatDomains, []string{"ads"}, false, "ads.example\n"},
		feedText{"urlhaus", FormatURLs, []string{"malware"}, true, "http://files.example/bins/\n"},
		feedText{"drop", FormatIPs, []string{"badnet"}, true, "192.0.2.0/24\n"},
	)
	ex := ix.Explain("X.Good.Ads.Example.", "", netip.Addr{})
	if ex.Host != "x.good.ads.example" || !slices.Equal(ex.Categories, []string{"ads"}) {
		t.Errorf("Explain host=%q categories=%v", ex.Host, ex.Categories)
	}
	if len(ex.Matches) != 2 || ex.Matches[0].Entry != "ads.example" || !slices.Equal(ex.Matches[0].Feeds, []string{"ads", "ads2"}) ||
		ex.Matches[1].Entry != "good.ads.example" || !ex.Matches[1].Exception || !slices.Equal(ex.Matches[1].Feeds, []string{"ads2"}) {
		t.Errorf("Explain matches = %+v", ex.Matches)
	}
	ex = ix.Explain("files.example", "/bins/a", netip.MustParseAddr("192.0.2.1"))
	if len(ex.Matches) != 2 || ex.Matches[0].Kind != "url" || ex.Matches[0].Entry != "files.example/bins/" ||
		ex.Matches[1].Kind != "cidr" || ex.Matches[1].Entry != "192.0.2.0/24" || !slices.Equal(ex.Threats, []string{"urlhaus", "drop"}) {
		t.Errorf("Explain url+cidr = %+v", ex)
	}
	if ex := ix.Explain("bad name", "", netip.Addr{}); ex.Error == "" {
		t.Error("Explain(bad name): no error")
	}
}

func TestEmptyIndex(t *testing.T) {
	ix := EmptyIndex()
	if ix.Len() != 0 || !slices.Equal(ix.CategoryNames(), []string{NewlySeenCategory}) || len(ix.ThreatNames()) != 0 {
		t.Errorf("EmptyIndex: len=%d categories=%v threats=%v", ix.Len(), ix.CategoryNames(), ix.ThreatNames())
	}
	if v := ix.Lookup("example.com", "/", netip.MustParseAddr("192.0.2.1")); v != (Verdict{}) {
		t.Errorf("EmptyIndex Lookup = %+v", v)
	}
}

func TestBuilderLimits(t *testing.T) {
	b := NewBuilder()
	for i := 0; i < MaxCategories-1; i++ {
		if _, err := b.Category(strings.Repeat("c", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Category("one-too-many"); err == nil {
		t.Error("Category beyond MaxCategories: no error")
	}
	if _, err := b.AddFeed("f", nil, false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AddFeed("f", nil, false); err == nil {
		t.Error("duplicate feed name: no error")
	}
	if err := b.Add(9, Entry{Kind: KindDomain, Host: "x"}); err == nil {
		t.Error("Add to unknown feed: no error")
	}
	if _, err := b.Build(1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(2); err == nil {
		t.Error("second Build: no error")
	}
	if err := b.Add(0, Entry{Kind: KindDomain, Host: "x"}); err == nil {
		t.Error("Add after Build: no error")
	}
}

// realIndex builds an Index from several real feeds.
func realIndex(t testing.TB) *Index {
	t.Helper()
	b := NewBuilder()
	add := func(name string, f Format, rel string, cats []string, threat bool) {
		id, err := b.AddFeed(name, cats, threat)
		if err != nil {
			t.Fatal(err)
		}
		st := parseFile(t, f, rel, b.Emit(id))
		if st.Entries == 0 {
			t.Fatalf("%s parsed to nothing", rel)
		}
	}
	add("urlhaus", FormatHosts, "urlhaus/hosts", []string{"malware"}, true)
	add("ut1-publicite", FormatDomains, "ut1/blacklists/publicite/domains", []string{"ads"}, false)
	add("nocoin", FormatAdblock, "nocoin/nocoin.txt", []string{"cryptomining"}, false)
	add("phishing", FormatDomains, "bundled:blp-phishing.gz", []string{"phishing"}, true)
	add("ut1-phishing", FormatURLs, "ut1/blacklists/phishing/urls", []string{"phishing"}, true)
	add("drop", FormatIPs, "spamhaus/drop.txt", []string{"badnet"}, true)
	add("feodo", FormatIPs, "feodo/ipblocklist.csv", []string{"botnet"}, true)
	ix, err := b.Build(1)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestLookupRealFeeds(t *testing.T) {
	ix := realIndex(t)
	tests := []struct{ host, path, ip, want string }{
		{"1008691.com", "", "", "malware|urlhaus"}, // urlhaus/hosts
		{"a.b.1008691.com", "", "", "malware|urlhaus"},
		{"doubleclick.net", "", "", "ads|"},
		{"stats.g.doubleclick.net", "", "", "ads|"},
		{"x.ashgrrwt.click", "", "", "cryptomining|"},                    // ||ashgrrwt.click^
		{"2miners.com", "", "", "|"},                                     // ||2miners.com^$third-party: not applied at DNS level
		{"0001-5cf.pages.dev", "/awards/x", "", "phishing|ut1-phishing"}, // 0001-5cf.pages.dev/awards
		{"0001-5cf.pages.dev", "/other", "", "|"},
		{"www.google.com", "", "", "|"},
		{"x.example", "", "1.10.16.5", "badnet|drop"},
		{"x.example", "", "192.9.135.73", "botnet|feodo"},
	}
	for _, tt := range tests {
		var ip netip.Addr
		if tt.ip != "" {
			ip = netip.MustParseAddr(tt.ip)
		}
		if got := names(ix, ix.Lookup(tt.host, tt.path, ip)); got != tt.want {
			t.Errorf("Lookup(%q, %q, %q) = %q, want %q\n%+v", tt.host, tt.path, tt.ip, got, tt.want, ix.Explain(tt.host, tt.path, ip))
		}
	}
	if ix.Len() < 190215 {
		t.Errorf("Len() = %d, want at least the 190,215 phishing names", ix.Len())
	}
}

func TestLookupAllocs(t *testing.T) {
	ix := realIndex(t)
	ip := netip.MustParseAddr("192.9.135.73")
	for _, host := range []string{"a.b.c.doubleclick.net", "www.Example.COM.", "192.0.2.1", "0001-5cf.pages.dev"} {
		if n := testing.AllocsPerRun(200, func() { ix.Lookup(host, "/some/path", ip) }); n != 0 {
			t.Errorf("Lookup(%q) allocs = %v, want 0", host, n)
		}
	}
}
