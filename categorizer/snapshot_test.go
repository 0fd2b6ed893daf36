package categorizer

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// lookupTable is a set of lookups whose verdicts must survive a snapshot.
var noIP netip.Addr

var snapshotProbes = []struct{ host, path, ip string }{
	{"1008691.com", "", ""}, {"a.b.1008691.com", "", ""}, {"doubleclick.net", "", ""},
	{"x.ashgrrwt.click", "", ""}, {"0001-5cf.pages.dev", "/awards/", ""}, {"www.google.com", "", ""},
	{"x.example", "", "1.10.16.5"}, {"x.example", "", "192.9.135.73"}, {"192.9.135.73", "", ""},
}

func TestSnapshotRoundTrip(t *testing.T) {
	b := NewBuilder()
	b.SetStatus([]FeedStatus{{Name: "urlhaus", Entries: 1089}})
	for _, f := range []struct {
		name   string
		format Format
		rel    string
		cats   []string
		threat bool
	}{
		{"urlhaus", FormatHosts, "urlhaus/hosts", []string{"malware"}, true},
		{"ut1-publicite", FormatDomains, "ut1/blacklists/publicite/domains", []string{"ads"}, false},
		{"nocoin", FormatAdblock, "nocoin/nocoin.txt", []string{"cryptomining"}, false},
		{"ut1-phishing", FormatURLs, "ut1/blacklists/phishing/urls", []string{"phishing"}, true},
		{"drop", FormatIPs, "spamhaus/drop.txt", []string{"badnet"}, true},
		{"drop6", FormatIPs, "spamhaus/drop_ipv6.txt", []string{"badnet"}, true},
		{"feodo", FormatIPs, "feodo/ipblocklist.csv", []string{"botnet"}, true},
	} {
		id, err := b.AddFeed(f.name, f.cats, f.threat)
		if err != nil {
			t.Fatal(err)
		}
		parseFile(t, f.format, f.rel, b.Emit(id))
	}
	ix, err := b.Build(42)
	if err != nil {
		t.Fatal(err)
	}
	data, err := EncodeSnapshot(ix)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := SnapshotVersion(data); err != nil || v != 42 {
		t.Fatalf("SnapshotVersion = %d, %v", v, err)
	}
	got, err := DecodeSnapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version() != 42 || got.Len() != ix.Len() || strings.Join(got.CategoryNames(), ",") != strings.Join(ix.CategoryNames(), ",") ||
		strings.Join(got.ThreatNames(), ",") != strings.Join(ix.ThreatNames(), ",") || len(got.Feeds()) != 7 || len(got.Status()) != 1 || got.Status()[0].Entries != 1089 {
		t.Fatalf("decoded index differs: version %d len %d/%d categories %v threats %v feeds %d status %+v",
			got.Version(), got.Len(), ix.Len(), got.CategoryNames(), got.ThreatNames(), len(got.Feeds()), got.Status())
	}
	for _, p := range snapshotProbes {
		var ip netip.Addr
		if p.ip != "" {
			ip = netip.MustParseAddr(p.ip)
		}
		if a, b := ix.Lookup(p.host, p.path, ip), got.Lookup(p.host, p.path, ip); a != b {
			t.Errorf("Lookup(%q, %q, %q): built %+v, decoded %+v", p.host, p.path, p.ip, a, b)
		}
	}
	if a, b := ix.Explain("stats.g.doubleclick.net", "", netip.Addr{}), got.Explain("stats.g.doubleclick.net", "", netip.Addr{}); len(a.Matches) != len(b.Matches) || len(a.Matches) == 0 {
		t.Errorf("Explain differs: %+v vs %+v", a, b)
	}
	// Encoding is deterministic enough to round-trip again unchanged.
	again, err := EncodeSnapshot(got)
	if err != nil || len(again) != len(data) {
		t.Errorf("re-encoded length %d, want %d (%v)", len(again), len(data), err)
	}
	// An empty index round-trips too.
	e, err := EncodeSnapshot(EmptyIndex())
	if err != nil {
		t.Fatal(err)
	}
	if ex, err := DecodeSnapshot(e); err != nil || ex.Len() != 0 {
		t.Errorf("empty snapshot: %v", err)
	}
}

func TestSnapshotCorrupt(t *testing.T) {
	ix := buildInline(t, feedText{"f", FormatDomains, []string{"c"}, true, "a.example\nb.example\n"},
		feedText{"u", FormatURLs, []string{"c"}, true, "http://x.example/p\n"}, feedText{"i", FormatIPs, nil, true, "192.0.2.0/24\n"})
	data, err := EncodeSnapshot(ix)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		c := append([]byte(nil), data...)
		c[i] ^= 0x40
		return c
	}
	cases := map[string][]byte{
		"empty":           nil,
		"truncated":       data[:len(data)-1],
		"header only":     data[:headerLen],
		"bad magic":       flip(0),
		"format":          flip(8),
		"payload bit":     flip(headerLen + 5),
		"checksum bit":    flip(len(data) - 1),
		"appended":        append(append([]byte(nil), data...), 0),
		"version changed": flip(12),
	}
	for name, c := range cases {
		if _, err := DecodeSnapshot(c); !errors.Is(err, ErrCorruptSnapshot) {
			t.Errorf("DecodeSnapshot(%s) = %v, want ErrCorruptSnapshot", name, err)
		}
	}
}

// FuzzDecodeSnapshot feeds arbitrary bytes to the decoder; it must reject
// them cleanly. The checksum makes random input fail early, so the
// target also re-seals mutated payloads with a valid checksum to reach
// the section decoders.
func FuzzDecodeSnapshot(f *testing.F) {
	b := NewBuilder()
	id, _ := b.AddFeed("f", []string{"c"}, true)
	for _, e := range []Entry{{Kind: KindDomain, Host: "a.example"}, {Kind: KindURL, Host: "u.example", Path: "/p"}, {Kind: KindCIDR, Prefix: netip.MustParsePrefix("192.0.2.0/24")}} {
		_ = b.Add(id, e)
	}
	ix, _ := b.Build(1)
	seed, _ := EncodeSnapshot(ix)
	f.Add(seed, false)
	f.Add(seed[:headerLen], true)
	f.Fuzz(func(t *testing.T, data []byte, reseal bool) {
		if reseal && len(data) >= headerLen {
			data = resealForFuzz(data)
		}
		got, err := DecodeSnapshot(data)
		if err != nil {
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("error %v does not wrap ErrCorruptSnapshot", err)
			}
			return
		}
		got.Lookup("a.example", "/p", netip.MustParseAddr("192.0.2.1"))
		got.Explain("u.example", "/p", netip.Addr{})
	})
}
