package proxy

import (
	"net/http"
	"net/url"
	"testing"
)

func TestApplySafeSearch(t *testing.T) {
	for _, tc := range []struct {
		url, wantQuery, wantHeader string
	}{
		{"http://www.google.com/search?q=x", "q=x&safe=active", ""},
		{"http://www.google.co.uk/search?q=x&safe=off", "q=x&safe=active", ""},
		{"http://google.de/search?q=x", "q=x&safe=active", ""},
		{"http://www.google.com/maps?q=x", "q=x", ""},
		{"http://google.evil.example/search?q=x", "q=x", ""},
		{"http://www.bing.com/search?q=x", "adlt=strict&q=x", ""},
		{"http://duckduckgo.com/?q=x", "kp=1&q=x", ""},
		{"http://www.youtube.com/watch?v=1", "v=1", "Strict"},
		{"http://example.com/search?q=x", "q=x", ""},
	} {
		u, _ := url.Parse(tc.url)
		req := &http.Request{URL: u, Header: http.Header{}}
		applySafeSearch(req, u.Hostname())
		if req.URL.RawQuery != tc.wantQuery || req.Header.Get("YouTube-Restrict") != tc.wantHeader {
			t.Errorf("applySafeSearch(%s) = %q, %q; want %q, %q", tc.url, req.URL.RawQuery, req.Header.Get("YouTube-Restrict"), tc.wantQuery, tc.wantHeader)
		}
	}
}

func TestSafeSearchThroughProxy(t *testing.T) {
	h := newHarness(t, harnessOpt{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(r.URL.RawQuery))
	})})
	// alice is in staff, for whom the policy enforces safe search.
	_, body := get(t, h.client(url.UserPassword("alice", "wonderland")), h.httpURL("www.google.com", "/search?q=cats"))
	if body != "q=cats&safe=active" {
		t.Errorf("alice's search reached the origin as %q, want safe=active", body)
	}
	_, body = get(t, h.client(nil), h.httpURL("www.google.com", "/search?q=cats"))
	if body != "q=cats" {
		t.Errorf("anonymous search reached the origin as %q, want it unchanged", body)
	}
}
