package dnsfilter

import "strings"

// Safe search: when the decision asks for it, the names of the major
// search engines are answered with a CNAME to the engine's safe endpoint
// (the method Google, Bing, DuckDuckGo and YouTube document for networks
// that enforce safe search), followed by the endpoint's own addresses.

// safeSearchTarget returns the safe endpoint (FQDN) for host (normalized),
// or "" when host is not a search engine name.
func safeSearchTarget(host, youtube string) string {
	switch host {
	case "www.bing.com", "bing.com":
		return "strict.bing.com."
	case "duckduckgo.com", "www.duckduckgo.com", "start.duckduckgo.com", "html.duckduckgo.com":
		return "safe.duckduckgo.com."
	case "www.youtube.com", "m.youtube.com", "youtube.com", "youtubei.googleapis.com",
		"youtube.googleapis.com", "www.youtube-nocookie.com":
		if youtube == "moderate" {
			return "restrictmoderate.youtube.com."
		}
		return "restrict.youtube.com."
	}
	if isGoogleSearch(host) {
		return "forcesafesearch.google.com."
	}
	return ""
}

// isGoogleSearch matches google.<tld> and www.google.<tld>, where <tld> is
// one or two labels of letters (google.com, www.google.co.uk).
func isGoogleSearch(host string) bool {
	rest, ok := strings.CutPrefix(host, "www.")
	if !ok {
		rest = host
	}
	tld, ok := strings.CutPrefix(rest, "google.")
	if !ok || tld == "" || len(tld) > 10 {
		return false
	}
	labels := 1
	for i := 0; i < len(tld); i++ {
		c := tld[i]
		switch {
		case c == '.':
			if i == 0 || i == len(tld)-1 || tld[i-1] == '.' {
				return false
			}
			labels++
		case c < 'a' || c > 'z':
			return false
		}
	}
	return labels <= 2
}
