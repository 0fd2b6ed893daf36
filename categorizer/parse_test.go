package categorizer

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/cordon-gw/cordon/internal/testutil"
)

func parseString(t *testing.T, f Format, in string) ([]Entry, ParseStats) {
	t.Helper()
	var got []Entry
	st, err := Parse(f, "test", strings.NewReader(in), func(e Entry) { got = append(got, e) })
	if err != nil {
		t.Fatalf("Parse(%s): %v", f, err)
	}
	return got, st
}

func TestParseLines(t *testing.T) {
	tests := []struct {
		name    string
		format  Format
		in      string
		want    []string // kind:host[path|prefix] with * for wildcard, ! for exception
		skipped int
		invalid int
	}{
		{"hosts mixed separators", FormatHosts, "# c\n0.0.0.0 a.example\n127.0.0.1\tB.Example.\n0.0.0.0 c.example d.example # two\n", []string{"domain:a.example", "domain:b.example", "domain:c.example", "domain:d.example"}, 0, 0},
		{"hosts localhost ignored", FormatHosts, "127.0.0.1 localhost\n::1 ip6-localhost\nfe80::1%lo0 localhost\n255.255.255.255 broadcasthost\n0.0.0.0 0.0.0.0\n", nil, 0, 0},
		{"hosts bad address", FormatHosts, "example.com\n0.0.0.0 bad..name\n", nil, 0, 2},
		{"hosts crlf and no final newline", FormatHosts, "0.0.0.0 a.example\r\n0.0.0.0 b.example", []string{"domain:a.example", "domain:b.example"}, 0, 0},
		{"domains wildcard and idn", FormatDomains, "*.Example.com\nbücher.de\n.afshin.ir\n; c\n! c\n", []string{"domain:*example.com", "domain:xn--bcher-kva.de", "domain:afshin.ir"}, 0, 0},
		{"domains bad wildcard", FormatDomains, "a*.example.com\nfoo bar\n", nil, 0, 2},
		{"domains ip literal", FormatDomains, "192.0.2.1\n", []string{"cidr:192.0.2.1/32"}, 0, 0},
		{"adblock basic", FormatAdblock, "[Adblock Plus 2.0]\n! c\n||ads.example^\n@@||good.ads.example^|\n||x.example^$important\n||*.w.example^\n", []string{"domain:ads.example", "domain:!good.ads.example", "domain:x.example", "domain:*w.example"}, 0, 0},
		{"adblock skipped", FormatAdblock, "/^ads\\./\n.doublepimp.com^\n||a.example^$third-party\n||b.example^$badfilter\n||c.example\n||ad*.example^\n||d.example^/path\n##.banner\n@@|e.example^|\n188.72.219.36^\n", nil, 10, 0},
		{"adblock ip", FormatAdblock, "||45.15.156.210^\n", []string{"cidr:45.15.156.210/32"}, 0, 0},
		{"dnsmasq", FormatDnsmasq, "server=/a.example/\naddress=/b.example/0.0.0.0\nserver=/c.example/d.example/\nfoo\n", []string{"domain:a.example", "domain:b.example", "domain:c.example", "domain:d.example"}, 0, 1},
		{"urls", FormatURLs, "http://Evil.example/x/y?q=1#frag\nhttps://u@h.example:8443/p\n1001reves.com/games\nhttp://192.0.2.7/bins/a\nhttp://host.example/\nftp2://x/y\n", []string{"url:evil.example/x/y?q=1", "url:h.example/p", "url:1001reves.com/games", "url:192.0.2.7/bins/a", "domain:host.example"}, 0, 1},
		{"urls csv", FormatURLs, "# Dateadded (UTC),URL\n2019-02-13 00:34:42,http://m.ch/verif/,offline,malware_download,m.ch\n\"1\",\"2019\",\"http://q.example/a\"\n", []string{"url:m.ch/verif/", "url:q.example/a"}, 0, 0},
		{"ips", FormatIPs, "; Spamhaus\n1.4.0.0/17 ; SBL256893\n1.10.16.0/20 \n2a06:e480::/29 ; SBL1\n77.90.185.20\t10\nAS260 ; AE\n10.0.0.1/8\nnope\n", []string{"cidr:1.4.0.0/17", "cidr:1.10.16.0/20", "cidr:2a06:e480::/29", "cidr:77.90.185.20/32", "cidr:10.0.0.0/8"}, 1, 1},
		{"ips feodo csv", FormatIPs, "#\n\"first_seen_utc\",\"dst_ip\",\"dst_port\"\n\"2023-05-23 17:51:44\",\"192.9.135.73\",\"1194\"\n\"x\",\"y\"\n", []string{"cidr:192.9.135.73/32"}, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, st := parseString(t, tt.format, tt.in)
			var names []string
			for _, e := range got {
				names = append(names, entryString(e))
			}
			if !slices.Equal(names, tt.want) {
				t.Errorf("Parse(%s) entries = %q, want %q", tt.format, names, tt.want)
			}
			if st.Skipped != tt.skipped || st.Invalid != tt.invalid {
				t.Errorf("Parse(%s) skipped=%d invalid=%d, want %d %d (errors %v)", tt.format, st.Skipped, st.Invalid, tt.skipped, tt.invalid, st.Err())
			}
			if st.Entries != len(got) {
				t.Errorf("Parse(%s) stats.Entries = %d, emitted %d", tt.format, st.Entries, len(got))
			}
		})
	}
}

func entryString(e Entry) string {
	s := e.Kind.String() + ":"
	if e.Exception {
		s += "!"
	}
	if e.Wildcard {
		s += "*"
	}
	switch e.Kind {
	case KindCIDR:
		return s + e.Prefix.String()
	case KindURL:
		return s + e.Host + e.Path
	}
	return s + e.Host
}

func TestParseLineErrors(t *testing.T) {
	in := "0.0.0.0 ok.example\n0.0.0.0 bad_name!\n\n0.0.0.0 a..b\n"
	_, st := parseString(t, FormatHosts, in)
	if st.Invalid != 2 || len(st.Errors) != 2 {
		t.Fatalf("invalid = %d (%d kept), want 2", st.Invalid, len(st.Errors))
	}
	if st.Errors[0].Line != 2 || st.Errors[1].Line != 4 {
		t.Errorf("error lines = %d, %d, want 2, 4", st.Errors[0].Line, st.Errors[1].Line)
	}
	if !errors.Is(st.Err(), ErrInvalidHost) {
		t.Errorf("Err() = %v, want ErrInvalidHost", st.Err())
	}
	if msg := st.Errors[0].Error(); !strings.HasPrefix(msg, "test:2: ") {
		t.Errorf("error text = %q, want file:line prefix", msg)
	}
	long := strings.Repeat("a", maxLine+10) + "\n0.0.0.0 after.example\n"
	got, st := parseString(t, FormatHosts, long)
	if st.Invalid != 1 || len(got) != 1 || got[0].Line != 2 {
		t.Errorf("long line: invalid=%d entries=%v, want 1 invalid then after.example on line 2", st.Invalid, got)
	}
}

func TestNormalizeHost(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"Example.COM.", "example.com", true},
		{"bücher.de", "xn--bcher-kva.de", true},
		{"_dmarc.example.com", "_dmarc.example.com", true},
		{"", "", false},
		{"a..b", "", false},
		{"a b", "", false},
		{strings.Repeat("a", 64) + ".com", "", false},
		{strings.Repeat("a.", 127) + "com", "", false},
	}
	for _, tt := range tests {
		got, err := NormalizeHost(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("NormalizeHost(%q) = %q, %v; want %q ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// parseFile parses one committed sample of real feed data (testutil.Data),
// or with the prefix "bundled:" one of the bundled default lists.
func parseFile(t testing.TB, f Format, rel string, emit func(Entry)) ParseStats {
	t.Helper()
	var fh io.ReadCloser
	var err error
	if strings.HasPrefix(rel, bundledPrefix) {
		fh, err = openBundled(rel)
	} else {
		fh, err = os.Open(testutil.Data(t, rel))
	}
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, err := Parse(f, rel, fh, emit)
	if err != nil {
		t.Fatalf("Parse(%s): %v", rel, err)
	}
	return st
}

func TestParseRealFiles(t *testing.T) {
	tests := []struct {
		format           Format
		file             string
		entries          int
		skipped, invalid int
	}{
		// Samples (internal/testutil/testdata/ATTRIBUTION.md says how
		// each was cut): entries = listed lines of the sample.
		{FormatHosts, "urlhaus/hosts", 1089, 0, 0},                                    // TAB separators, no final newline
		{FormatHosts, "stevenblack/hosts", 2139, 0, 0},                                // localhost block, # Start/End sections
		{FormatHosts, "stevenblack/extensions/porn/brijrajparmar27/hosts", 233, 0, 0}, //
		{FormatHosts, "stevenblack/extensions/fakenews/hosts", 150, 0, 0},             // no final newline
		{FormatHosts, "nocoin/hosts.txt", 313, 0, 0},
		{FormatHosts, "blocklistproject/ransomware.txt", 1904, 0, 0},
		{FormatDomains, "blocklistproject/alt-version/phishing-nl.txt", 2000, 0, 0},
		{FormatDomains, "blocklistproject/alt-version/crypto-nl.txt", 1272, 0, 0},
		{FormatDomains, "ut1/blacklists/dynamic-dns/domains", 400, 0, 0},
		{FormatAdblock, "nocoin/nocoin.txt", 48, 269, 0},     // $modifiers, paths, regex, IP rules
		{FormatAdblock, "nocoin/nocoin-ublock.txt", 0, 8, 0}, // cosmetic ##+js rules only
		{FormatAdblock, "blocklistproject/adguard/scam-ags.txt", 1000, 0, 0},
		{FormatDnsmasq, "blocklistproject/dnsmasq-version/scam-dnsmasq.txt", 1000, 0, 0},
		{FormatURLs, "ut1/blacklists/phishing/urls", 600, 0, 0},
		{FormatURLs, "ut1/blacklists/adult/urls", 300, 0, 0},
		{FormatIPs, "spamhaus/drop.txt", 100, 0, 0}, // trailing spaces
		{FormatIPs, "spamhaus/edrop.txt", 50, 0, 0},
		{FormatIPs, "spamhaus/drop_ipv6.txt", 51, 0, 0},
		{FormatIPs, "feodo/ipblocklist.csv", 28, 0, 0}, // quoted CSV, trailer without final newline
		{FormatIPs, "ipsum/ipsum.txt", 500, 0, 0},      // IPv4<TAB>count
		{FormatIPs, "x4bnet/output/datacenter/ipv6.txt", 500, 0, 0},
		{FormatIPs, "blocklistproject/malware.ip", 500, 0, 0},
		// Whole real lists, as bundled (gzip-compressed, unmodified).
		{FormatDomains, "bundled:blp-phishing.gz", 190215, 0, 0},
		{FormatHosts, "bundled:blp-scam.gz", 8527, 0, 0},
		{FormatIPs, "bundled:ipsum-level3.gz", 14217, 0, 0},
		{FormatIPs, "bundled:blp-malware-ip.gz", 20907, 0, 0},
		{FormatIPs, "bundled:x4bnet-vpn.gz", 10862 + 498, 0, 0},
		{FormatDomains, "bundled:ut1-gambling.gz", 32247, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			st := parseFile(t, tt.format, tt.file, nil)
			if st.Entries != tt.entries || st.Skipped != tt.skipped || st.Invalid != tt.invalid {
				t.Errorf("Parse(%s) entries=%d skipped=%d invalid=%d, want %d %d %d (%v)",
					tt.file, st.Entries, st.Skipped, st.Invalid, tt.entries, tt.skipped, tt.invalid, st.Err())
			}
		})
	}
}

// TestParseFormatsAgree reads the same Block List Project category in its
// four syntaxes: every parser must produce the same set of names.
func TestParseFormatsAgree(t *testing.T) {
	for _, cat := range []string{"ransomware", "scam"} {
		sets := map[string][]string{}
		for f, rel := range map[Format]string{
			FormatHosts:   "blocklistproject/" + cat + ".txt",
			FormatDomains: "blocklistproject/alt-version/" + cat + "-nl.txt",
			FormatAdblock: "blocklistproject/adguard/" + cat + "-ags.txt",
			FormatDnsmasq: "blocklistproject/dnsmasq-version/" + cat + "-dnsmasq.txt",
		} {
			var names []string
			st := parseFile(t, f, rel, func(e Entry) { names = append(names, entryString(e)) })
			if st.Invalid != 0 {
				t.Errorf("%s: %d invalid lines: %v", rel, st.Invalid, st.Err())
			}
			slices.Sort(names)
			sets[rel] = slices.Compact(names)
		}
		var first string
		for rel, names := range sets {
			if first == "" {
				first = rel
				continue
			}
			if !slices.Equal(names, sets[first]) {
				t.Errorf("%s: %s has %d names, %s has %d; the sets differ", cat, rel, len(names), first, len(sets[first]))
			}
		}
		if len(sets) != 4 {
			t.Errorf("%s: %d formats parsed, want 4", cat, len(sets))
		}
	}
}

func TestParseUT1(t *testing.T) {
	dir := testutil.Data(t, "ut1/blacklists")
	counts := map[string]int{}
	kinds := map[EntryKind]int{}
	st, err := ParseUT1Dir(dir, map[string]string{"gambling": "gambling", "porn": "adult", "dating": "dating", "dynamic-dns": "dynamic_dns"}, func(e Entry) {
		counts[e.Category]++
		kinds[e.Kind]++
	})
	if err != nil {
		t.Fatal(err)
	}
	// The sample's domains/urls lines; adult (reached through its alias
	// porn) has urls and expressions only, as upstream.
	want := map[string]int{"gambling": 1500 + 5, "adult": 300, "dating": 800 + 15, "dynamic_dns": 400}
	for c, n := range want {
		if counts[c] != n {
			t.Errorf("ParseUT1 category %s: %d entries, want %d", c, counts[c], n)
		}
	}
	if st.Invalid != 0 || st.Skipped != 2 {
		t.Errorf("ParseUT1 invalid=%d skipped=%d, want 0 invalid and the 2 adult expressions skipped (%v)", st.Invalid, st.Skipped, st.Err())
	}
	if kinds[KindURL] < 300 || kinds[KindURL] > 300+5+15 {
		t.Errorf("ParseUT1 url entries = %d, want 300..320 (a URL without a path lists its host)", kinds[KindURL])
	}
	if _, err := ParseUT1Dir(dir, map[string]string{"no-such-category": "x"}, nil); err == nil {
		t.Error("ParseUT1 with a missing category directory: no error")
	}
	all, err := ParseUT1Dir(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Every domains and urls line of the nine sample categories; the
	// three expression lines (adult, malware) are skipped.
	if all.Entries != 4151 || all.Skipped != 3 || all.Invalid != 0 {
		t.Errorf("ParseUT1 all categories: entries=%d skipped=%d invalid=%d, want 4151 3 0 (%v)", all.Entries, all.Skipped, all.Invalid, all.Err())
	}
}

func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.2.3/8":             "10.0.0.0/8",
		"::ffff:1.2.3.4":         "1.2.3.4/32",
		"::ffff:81.2.69.142/127": "81.2.69.142/31",
		"2001:db8::1":            "2001:db8::1/128",
	} {
		p, err := parsePrefix(in)
		if err != nil || p != netip.MustParsePrefix(want) {
			t.Errorf("parsePrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
}
