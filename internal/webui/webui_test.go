package webui

import (
	"strings"
	"testing"
)

func TestNav(t *testing.T) {
	for _, it := range Items {
		nav := string(Nav(it.Key))
		want := `<a href="` + it.Href + `" aria-current="page">`
		if !strings.Contains(nav, want) || strings.Count(nav, `aria-current="page"`) != 1 {
			t.Errorf("Nav(%q) does not mark exactly %s as current", it.Key, it.Href)
		}
		if !strings.HasPrefix(it.Href, "/ui/") && !strings.HasPrefix(it.Href, "/reports") {
			t.Errorf("nav item %s points outside the admin listener's pages: %s", it.Key, it.Href)
		}
	}
	if nav := string(Nav("")); strings.Contains(nav, "aria-current") || !strings.Contains(nav, `aria-label="Main"`) {
		t.Errorf("Nav(\"\") = %s", nav)
	}
	if !strings.Contains(string(CSS()), ".mainnav") {
		t.Error("CSS lacks the navigation styles")
	}
}
