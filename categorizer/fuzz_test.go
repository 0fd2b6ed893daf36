package categorizer

import (
	"bufio"
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/cordon-gw/cordon/internal/testutil"
)

// addSeedLines adds up to n lines of a committed feed sample
// (testutil.Data) as fuzz seeds, a few lines per seed.
func addSeedLines(f *testing.F, rel string, n int) {
	sc := bufio.NewScanner(bytes.NewReader(testutil.ReadData(f, rel)))
	var chunk []string
	for i := 0; i < n && sc.Scan(); i++ {
		chunk = append(chunk, sc.Text())
		if len(chunk) == 5 {
			f.Add(strings.Join(chunk, "\n"))
			chunk = chunk[:0]
		}
	}
	if len(chunk) > 0 {
		f.Add(strings.Join(chunk, "\n"))
	}
}

// checkParse parses in with format f and checks the properties every
// parser must have: stats agree with what was emitted, every host is in
// normal form, and an Index built from the entries finds every entry.
func checkParse(t *testing.T, f Format, in string) {
	var got []Entry
	st, err := Parse(f, "fuzz", strings.NewReader(in), func(e Entry) { got = append(got, e) })
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if st.Entries != len(got) {
		t.Fatalf("stats.Entries = %d, emitted %d", st.Entries, len(got))
	}
	if st.Invalid < len(st.Errors) || len(st.Errors) > MaxLineErrors {
		t.Fatalf("invalid = %d with %d errors kept", st.Invalid, len(st.Errors))
	}
	for _, le := range st.Errors {
		if le.Line < 1 || le.Line > st.Lines {
			t.Fatalf("line error at line %d of %d", le.Line, st.Lines)
		}
	}
	b := NewBuilder()
	id, err := b.AddFeed("fuzz", []string{"c"}, true)
	if err != nil {
		t.Fatal(err)
	}
	exceptions := false
	for _, e := range got {
		if e.Line < 1 || e.Line > st.Lines {
			t.Fatalf("entry %+v: line out of range 1..%d", e, st.Lines)
		}
		switch e.Kind {
		case KindDomain:
			if n, err := NormalizeHost(e.Host); err != nil || n != e.Host {
				t.Fatalf("entry host %q is not normalized (%q, %v)", e.Host, n, err)
			}
		case KindURL:
			if !strings.HasPrefix(e.Path, "/") {
				t.Fatalf("url entry path %q does not start with /", e.Path)
			}
		case KindCIDR:
			if !e.Prefix.IsValid() || e.Prefix != e.Prefix.Masked() {
				t.Fatalf("cidr entry %v is not a masked prefix", e.Prefix)
			}
		default:
			t.Fatalf("entry kind %v", e.Kind)
		}
		exceptions = exceptions || e.Exception
		if err := b.Add(id, e); err != nil {
			t.Fatalf("Add(%+v): %v", e, err)
		}
	}
	ix, err := b.Build(1)
	if err != nil {
		t.Fatal(err)
	}
	if exceptions {
		return // an exception may legitimately hide an entry
	}
	for _, e := range got {
		var v Verdict
		switch e.Kind {
		case KindDomain:
			host := e.Host
			if e.Wildcard {
				host = "sub." + host
			}
			v = ix.Lookup(strings.ToUpper(host)+".", "", netip.Addr{})
		case KindURL:
			v = ix.Lookup(e.Host, e.Path+"x", netip.Addr{})
		case KindCIDR:
			v = ix.Lookup("", "", e.Prefix.Addr())
		}
		if !v.Threats.Has(0) {
			t.Fatalf("entry %+v (line %d) not found by Lookup", e, e.Line)
		}
	}
}

func FuzzParseHosts(f *testing.F) {
	addSeedLines(f, "stevenblack/hosts", 60)
	addSeedLines(f, "urlhaus/hosts", 20)
	addSeedLines(f, "stevenblack/extensions/porn/brijrajparmar27/hosts", 10)
	f.Fuzz(func(t *testing.T, in string) { checkParse(t, FormatHosts, in) })
}

func FuzzParseDomains(f *testing.F) {
	addSeedLines(f, "blocklistproject/alt-version/ransomware-nl.txt", 30)
	addSeedLines(f, "ut1/blacklists/dynamic-dns/domains", 10)
	f.Add("*.example.com\nbücher.de\n.lead.dot\n")
	f.Fuzz(func(t *testing.T, in string) { checkParse(t, FormatDomains, in) })
}

func FuzzParseAdblock(f *testing.F) {
	addSeedLines(f, "nocoin/nocoin.txt", 400)
	addSeedLines(f, "nocoin/nocoin-ublock.txt", 10)
	addSeedLines(f, "blocklistproject/adguard/ransomware-ags.txt", 30)
	f.Fuzz(func(t *testing.T, in string) { checkParse(t, FormatAdblock, in) })
}

func FuzzParseDnsmasq(f *testing.F) {
	addSeedLines(f, "blocklistproject/dnsmasq-version/scam-dnsmasq.txt", 30)
	f.Fuzz(func(t *testing.T, in string) { checkParse(t, FormatDnsmasq, in) })
}

func FuzzParseURLs(f *testing.F) {
	addSeedLines(f, "ut1/blacklists/phishing/urls", 30)
	addSeedLines(f, "ut1/blacklists/adult/urls", 20)
	f.Fuzz(func(t *testing.T, in string) { checkParse(t, FormatURLs, in) })
}

func FuzzParseIPs(f *testing.F) {
	addSeedLines(f, "spamhaus/drop.txt", 10)
	addSeedLines(f, "feodo/ipblocklist.csv", 15)
	addSeedLines(f, "blocklistproject/malware.ip", 25)
	addSeedLines(f, "ipsum/ipsum.txt", 15)
	addSeedLines(f, "x4bnet/output/vpn/ipv6.txt", 10)
	f.Fuzz(func(t *testing.T, in string) { checkParse(t, FormatIPs, in) })
}

// FuzzNormalizeHost checks that normal form is a fixpoint and that Lookup
// treats any case and a trailing dot like the normal form.
func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"Example.COM.", "bücher.de", "xn--bcher-kva.de", "_dmarc.x", "a..b", "", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		n, err := NormalizeHost(in)
		if err != nil {
			return
		}
		n2, err := NormalizeHost(n)
		if err != nil || n2 != n {
			t.Fatalf("NormalizeHost(%q) = %q, then %q, %v", in, n, n2, err)
		}
		if hashName(n) != hashName(strings.ToUpper(n)) {
			t.Fatalf("hash of %q depends on case", n)
		}
	})
}
