package proxy

import (
	"net/http"
	"strings"
)

// applySafeSearch turns on the search engines' own safe modes for a
// request the policy marks SafeSearch (Decision.SafeSearch). It needs the
// URL, so it applies to plain HTTP and decrypted HTTPS; the DNS filter
// covers uninspected HTTPS with the engines' safe-search host names.
func applySafeSearch(req *http.Request, host string) {
	q := req.URL.Query()
	switch {
	case isSearchHost(host, "google") && (req.URL.Path == "/search" || req.URL.Path == "/images"):
		q.Set("safe", "active")
	case host == "bing.com" || host == "www.bing.com":
		q.Set("adlt", "strict")
	case host == "duckduckgo.com" || host == "html.duckduckgo.com":
		q.Set("kp", "1")
	case host == "search.yahoo.com":
		q.Set("vm", "r")
	case host == "youtube.com" || strings.HasSuffix(host, ".youtube.com") || host == "www.youtube-nocookie.com" ||
		host == "youtubei.googleapis.com":
		req.Header.Set("YouTube-Restrict", "Strict")
		return
	default:
		return
	}
	req.URL.RawQuery = q.Encode()
}

// isSearchHost matches name.<tld> and www.name.<tld>, where the TLD is one
// label (google.de) or a second-level "co."/"com." one (google.co.uk).
func isSearchHost(host, name string) bool {
	rest, ok := strings.CutPrefix(strings.TrimPrefix(host, "www."), name+".")
	if !ok || rest == "" {
		return false
	}
	switch strings.Count(rest, ".") {
	case 0:
		return true
	case 1:
		return strings.HasPrefix(rest, "co.") || strings.HasPrefix(rest, "com.")
	}
	return false
}
