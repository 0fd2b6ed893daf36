package main

import (
	"strings"
	"testing"
)

// TestBenchConfigStandsAlone loads the side-by-side benchmark's config
// (loadtest/compare.sh) the way `cordon serve --config` does: every feed
// is a bundled list (Validate checks that each exists), nothing is read
// from outside the repository or fetched.
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
	if len(cfg.Categorizer.Feeds) != 20 {
		t.Errorf("%d feeds, want the 20 of the file", len(cfg.Categorizer.Feeds))
	}
	for _, f := range cfg.Categorizer.Feeds {
		if !strings.HasPrefix(f.Source, "bundled:") {
			t.Errorf("feed %s reads %s, want a bundled list", f.Name, f.Source)
		}
	}
}
