package proxy

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestNormalizeHost(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Example.COM", "example.com"},
		{"example.com.", "example.com"},
		{"[::1]", "::1"},
		{"::ffff:127.0.0.1", "127.0.0.1"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"a..b", ""},
		{"", ""},
		{".", ""},
		{"exa mple.com", ""},
		{"fe80::1%eth0", ""},
		{"under_score.example", "under_score.example"},
		{strings.Repeat("x", 63) + ".example", strings.Repeat("x", 63) + ".example"},
		{strings.Repeat("x", 64) + ".example", ""},
		{strings.Repeat("x", 300) + ".example", ""},
		{strings.Repeat("abcdefgh.", 28) + "example", ""},
		{"BÜCHER.Example.", "xn--bcher-kva.example"},
	} {
		if got := normalizeHost(tc.in); got != tc.want {
			t.Errorf("normalizeHost(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSplitTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		def  uint16
		host string
		port uint16
		ok   bool
	}{
		{"example.com:443", 0, "example.com", 443, true},
		{"EXAMPLE.com.:8443", 0, "example.com", 8443, true},
		{"[2001:db8::1]:443", 0, "2001:db8::1", 443, true},
		{"example.com", 443, "example.com", 443, true},
		{"example.com", 0, "", 0, false},
		{"example.com:0", 0, "", 0, false},
		{"example.com:99999", 0, "", 0, false},
		{"example.com:http", 0, "", 0, false},
		{":443", 0, "", 0, false},
		{"a b:443", 0, "", 0, false},
	} {
		h, p, ok := splitTarget(tc.in, tc.def)
		if h != tc.host || p != tc.port || ok != tc.ok {
			t.Errorf("splitTarget(%q, %d) = %q, %d, %v; want %q, %d, %v", tc.in, tc.def, h, p, ok, tc.host, tc.port, tc.ok)
		}
	}
}

func TestHostInDomains(t *testing.T) {
	d := []string{"bank.example", "health.test"}
	for host, want := range map[string]bool{
		"bank.example": true, "www.bank.example": true, "evilbank.example": false,
		"health.test": true, "example": false, "bank.example.evil": false,
	} {
		if got := hostInDomains(host, d); got != want {
			t.Errorf("hostInDomains(%q) = %v, want %v", host, got, want)
		}
	}
}

// FuzzSplitTarget: an accepted CONNECT target is normalized (a fixpoint of
// normalizeHost), has a usable port and survives a round trip through
// net.JoinHostPort.
func FuzzSplitTarget(f *testing.F) {
	for _, s := range []string{"example.com:443", "[::1]:80", "bücher.example:8443", "EXAMPLE.COM.:1", "1.2.3.4:5", "a:b:c", "[fe80::1%25eth0]:443"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, p, ok := splitTarget(s, 0)
		if !ok {
			return
		}
		if h == "" || p == 0 || normalizeHost(h) != h {
			t.Fatalf("splitTarget(%q) = %q, %d: not normalized", s, h, p)
		}
		h2, p2, ok2 := splitTarget(net.JoinHostPort(h, strconv.Itoa(int(p))), 0)
		if !ok2 || h2 != h || p2 != p {
			t.Fatalf("round trip of %q: %q, %d, %v", s, h2, p2, ok2)
		}
	})
}
