package main

import (
	"strings"
	"testing"

	"github.com/cordon-gw/cordon/categorizer"
)

// TestBenchConfigStandsAlone loads the side-by-side benchmark's config
// (loadtest/compare.sh) the way `cordon serve --config` does and compiles
// its feeds: every source is in the repository, nothing is fetched.
func TestBenchConfigStandsAlone(t *testing.T) {
	t.Chdir("../..") // compare.sh runs from the repository root
	cfg := defaultConfig()
	if err := loadConfig("loadtest/cordon-bench.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.applyDataDir()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, f := range cfg.Categorizer.Feeds {
		if !strings.HasPrefix(f.Source, "bundled:") {
			t.Errorf("feed %s reads %s, want a bundled list", f.Name, f.Source)
		}
	}
	ix, err := categorizer.BuildFeeds(cfg.Categorizer.Feeds, 1)
	if err != nil {
		t.Fatal(err)
	}
	entries := 0
	for _, st := range ix.Status() {
		entries += st.Entries
		if st.Entries == 0 || st.Invalid > st.Entries/100 {
			t.Errorf("feed %s: %d entries, %d invalid (%v)", st.Name, st.Entries, st.Invalid, st.Errors)
		}
	}
	t.Logf("%d feeds, %d feed entries, %d index entries", len(ix.Status()), entries, ix.Len())
}
