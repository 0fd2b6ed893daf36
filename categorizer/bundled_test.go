package categorizer

import (
	"io/fs"
	"strings"
	"testing"
)

func TestBundled(t *testing.T) {
	var size int64
	err := fs.WalkDir(bundledFS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		size += info.Size()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if size > 8<<20 {
		t.Errorf("bundled feeds are %d bytes compressed, budget 8 MiB", size)
	}
	feeds := DefaultFeeds()
	if err := (Config{Feeds: feeds}).Validate(); err != nil {
		t.Fatalf("DefaultFeeds invalid: %v", err)
	}
	ix, err := BuildBundled(1)
	if err != nil {
		t.Fatal(err)
	}
	if ix.Len() < 500000 {
		t.Errorf("bundled index has %d entries", ix.Len())
	}
	for _, st := range ix.Status() {
		if st.Entries == 0 || st.Invalid > st.Entries/100 {
			t.Errorf("bundled feed %s: %d entries, %d invalid (%v)", st.Name, st.Entries, st.Invalid, st.Errors)
		}
	}
	gambling := strings.Fields(string(readData(t, "ut1/blacklists/gambling/domains")))[0]
	for _, c := range []struct{ host, path, wantCat, wantThreat string }{
		{"1008691.com", "", "malware", "urlhaus"},
		{"www." + gambling, "", "gambling", ""},
		{"facebook.com", "", "social_networks", ""},
		{"coinhive.com", "", "cryptomining", ""},
	} {
		v := ix.Lookup(c.host, c.path, noIP)
		cats, threats := ix.Names(v)
		if !strings.Contains(strings.Join(cats, ","), c.wantCat) || !strings.Contains(strings.Join(threats, ","), c.wantThreat) {
			t.Errorf("bundled Lookup(%q) = %v %v, want %s %s", c.host, cats, threats, c.wantCat, c.wantThreat)
		}
	}
	if a := BundledAttribution(); !strings.Contains(a, "CC BY-SA 4.0") || !strings.Contains(a, "Université Toulouse Capitole") {
		t.Error("attribution text lacks the UT1 licence")
	}
}

func BenchmarkBuildBundled(b *testing.B) {
	cpu := cpuTime()
	var ix *Index
	for b.Loop() {
		var err error
		if ix, err = BuildBundled(1); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric((cpuTime()-cpu).Seconds()/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(ix.Len()), "entries")
}
