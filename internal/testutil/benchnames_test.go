package testutil

import (
	"bufio"
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestBenchNames(t *testing.T) {
	var base []string
	sc := bufio.NewScanner(bytes.NewReader(ReadData(t, "opendns/opendns-random-domains.txt")))
	for sc.Scan() {
		if n := strings.TrimSpace(sc.Text()); n != "" {
			base = append(base, strings.TrimSuffix(strings.ToLower(n), "."))
		}
	}
	const n = 50000
	got := BenchNames(base, n, 7)
	if len(got) != n {
		t.Fatalf("BenchNames: %d names, want %d", len(got), n)
	}
	seen := map[string]bool{}
	siblings, subdomains := 0, 0
	for i, name := range got {
		if seen[name] {
			t.Fatalf("name %d %q is a duplicate", i, name)
		}
		seen[name] = true
		if !validHost(name) {
			t.Fatalf("name %d %q is not a valid host name", i, name)
		}
	}
	realNames := map[string]bool{}
	for _, b := range base {
		realNames[b] = true
	}
	for _, name := range got {
		_, rest, _ := strings.Cut(name, ".")
		switch {
		case realNames[name]:
		case seen[rest] && slices.Contains(benchPrefixes, strings.TrimRight(strings.SplitN(name, ".", 2)[0], "0123456789")):
			subdomains++
		default:
			siblings++
		}
	}
	if want := int(n*RealShare) - len(realNames); siblings < want*9/10 {
		t.Errorf("%d siblings, want about %d", siblings, want)
	}
	if subdomains < n/3 {
		t.Errorf("%d subdomains, want about %d", subdomains, n-int(n*RealShare))
	}
	if again := BenchNames(base, n, 7); !slices.Equal(again, got) {
		t.Error("two calls with the same seed differ")
	}
	if other := BenchNames(base, n, 8); slices.Equal(other, got) {
		t.Error("another seed gave the same names")
	}
	if short := BenchNames(base, 10, 7); len(short) != 10 || !slices.IsSorted(short) {
		t.Errorf("BenchNames(n=10) = %q, want the first 10 sorted base names", short)
	}
}

func validHost(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' || strings.Trim(l, labelAlphabet+"_") != "" {
			return false
		}
	}
	return true
}
