package loadtest

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/cordon-gw/cordon/internal/testutil"
)

func TestParseURLs(t *testing.T) {
	tests := []struct {
		line  string
		https bool
		want  Target
	}{
		{"www.Example.com/1k", false, Target{Host: "www.example.com", Port: "18080", HostPort: "www.example.com:18080",
			HostHdr: "www.example.com:18080", Path: "/1k", Abs: "http://www.example.com:18080/1k"}},
		{"www.example.com/64k", true, Target{HTTPS: true, Host: "www.example.com", Port: "18443", HostPort: "www.example.com:18443",
			HostHdr: "www.example.com:18443", Path: "/64k", Abs: "https://www.example.com:18443/64k"}},
		{"example.org", false, Target{Host: "example.org", Port: "18080", HostPort: "example.org:18080",
			HostHdr: "example.org:18080", Path: "/", Abs: "http://example.org:18080/"}},
		{"example.org:8000/a?b=c", false, Target{Host: "example.org", Port: "8000", HostPort: "example.org:8000",
			HostHdr: "example.org:8000", Path: "/a?b=c", Abs: "http://example.org:8000/a?b=c"}},
		{"http://example.org/x%20y", true, Target{Host: "example.org", Port: "80", HostPort: "example.org:80",
			HostHdr: "example.org", Path: "/x%20y", Abs: "http://example.org/x%20y"}},
		{"https://[::1]/1k", false, Target{HTTPS: true, Host: "::1", Port: "443", HostPort: "[::1]:443",
			HostHdr: "[::1]", Path: "/1k", Abs: "https://[::1]/1k"}},
	}
	for _, tt := range tests {
		ts, err := ParseURLs(strings.NewReader("# comment\n\n  "+tt.line+"  \n"), URLOptions{HTTPS: tt.https})
		if err != nil {
			t.Errorf("ParseURLs(%q): %v", tt.line, err)
			continue
		}
		if len(ts) != 1 || ts[0] != tt.want {
			t.Errorf("ParseURLs(%q) = %+v, want %+v", tt.line, ts, tt.want)
		}
	}
	for _, bad := range []string{"ftp://a.test/", "http:///path", "http://user:pw@a.test/", "a b.test/1k", "a.test:99999/", "http://a.test:0/"} {
		if _, err := ParseURLs(strings.NewReader(bad), URLOptions{}); err == nil {
			t.Errorf("ParseURLs(%q) = nil error, want one", bad)
		}
	}
}

func TestParseNames(t *testing.T) {
	qs, err := ParseNames(strings.NewReader("; dnsperf style\nWWW.Example.com A\nexample.org. AAAA\n# c\nmail.example.org mx\nplain.test\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Query{{"www.example.com.", dns.TypeA}, {"example.org.", dns.TypeAAAA}, {"mail.example.org.", dns.TypeMX}, {"plain.test.", dns.TypeA}}
	if len(qs) != len(want) {
		t.Fatalf("ParseNames = %v, want %v", qs, want)
	}
	for i := range want {
		if qs[i] != want[i] {
			t.Errorf("ParseNames[%d] = %v, want %v", i, qs[i], want[i])
		}
	}
	for _, bad := range []string{"a.test A extra", "a.test NOPE", ".", "a..b", strings.Repeat("x", 64) + ".test", `a\.b.test`} {
		if _, err := ParseNames(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseNames(%q) = nil error, want one", bad)
		}
	}
}

// TestCommittedTrafficFiles checks that the committed traffic files parse
// and stay small.
func TestCommittedTrafficFiles(t *testing.T) {
	var total int64
	for _, f := range []string{"traffic/urls.txt", "traffic/names.txt", "traffic/hosts"} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() >= 1<<20 {
			t.Errorf("%s is %d bytes, keep committed traffic files under 1 MiB", f, st.Size())
		}
		total += st.Size()
	}
	if total >= 1<<20 {
		t.Errorf("traffic files total %d bytes, keep them under 1 MiB", total)
	}
	us, err := ReadURLFile("traffic/urls.txt", URLOptions{})
	if err != nil {
		t.Fatal(err)
	}
	qs, err := ReadNameFile("traffic/names.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(us) < 1000 || len(qs) < 1000 {
		t.Errorf("traffic files hold %d URLs and %d names, want at least 1000 each", len(us), len(qs))
	}
}

func FuzzParseURLs(f *testing.F) {
	for _, s := range []string{"www.example.com/1k", "http://a.test:8080/x?y=z", "https://[::1]/", "a.test:1", "#c\n\nb.test/64k", "http://%zz/"} {
		f.Add(s, false)
	}
	addSeedLines(f, testutil.Data(f, "ut1/blacklists/phishing/urls"), 30, func(l string) { f.Add(l, true) })
	addSeedLines(f, "traffic/urls.txt", 30, func(l string) { f.Add(l, false) })
	f.Fuzz(func(t *testing.T, text string, https bool) {
		ts, err := ParseURLs(strings.NewReader(text), URLOptions{HTTPS: https})
		if err != nil {
			return
		}
		for _, tg := range ts {
			// Abs is a fixpoint: parsing it again gives the same target.
			again, err := ParseURLs(strings.NewReader(tg.Abs), URLOptions{})
			if err != nil || len(again) != 1 || again[0] != tg {
				t.Fatalf("ParseURLs(%q) = %+v, %v; want %+v", tg.Abs, again, err, tg)
			}
			if strings.ContainsAny(tg.Abs+tg.HostPort+tg.HostHdr, " \r\n\t") {
				t.Fatalf("target %+v has white space on the wire", tg)
			}
		}
	})
}

func FuzzParseNames(f *testing.F) {
	for _, s := range []string{"www.example.com A", "a.test.\nb.test AAAA", "; c\n# d", "xn--bcher-kva.example HTTPS"} {
		f.Add(s)
	}
	addSeedLines(f, testutil.Data(f, "opendns/opendns-random-domains.txt"), 30, func(l string) { f.Add(l) })
	addSeedLines(f, "traffic/names.txt", 30, func(l string) { f.Add(l) })
	f.Fuzz(func(t *testing.T, text string) {
		qs, err := ParseNames(strings.NewReader(text))
		if err != nil {
			return
		}
		for _, q := range qs {
			// What we put on the wire, miekg/dns reads back unchanged.
			m := new(dns.Msg)
			if err := m.Unpack(appendQuery(nil, 1, q.Name, q.Type)); err != nil {
				t.Fatalf("Unpack(appendQuery(%q)): %v", q.Name, err)
			}
			if len(m.Question) != 1 || m.Question[0].Name != q.Name || m.Question[0].Qtype != q.Type {
				t.Fatalf("appendQuery(%q, %d) unpacked as %v", q.Name, q.Type, m.Question)
			}
		}
	})
}

func addSeedLines(f *testing.F, path string, n int, add func(string)) {
	file, err := os.Open(path)
	if err != nil {
		f.Fatal(err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for i := 0; i < n && sc.Scan(); i++ {
		add(sc.Text())
	}
}
