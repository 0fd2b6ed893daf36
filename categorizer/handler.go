package categorizer

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// FeedStatusJSON is one element of the feed status API answer.
type FeedStatusJSON struct {
	FeedStatus
	// AgeSeconds is how old the content in use is (0 when never fetched).
	AgeSeconds float64 `json:"age_seconds"`
}

// StatusHandler serves the feed status API (mounted at /api/v1/feeds):
// GET returns a JSON array of FeedStatusJSON, one per configured feed, in
// configuration order. status is called per request (Syncer.Status, or
// Index.Status of the snapshot an edge serves); now nil means time.Now.
func StatusHandler(status func() []FeedStatus, now func() time.Time) http.Handler {
	if now == nil {
		now = time.Now
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSONError(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		t := now()
		st := status()
		out := make([]FeedStatusJSON, 0, len(st))
		for _, s := range st {
			out = append(out, FeedStatusJSON{FeedStatus: s, AgeSeconds: s.Age(t).Seconds()})
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// LearningUntilHeader is the header of the feed status answer that says
// when the newly-seen learning period ends: an RFC 3339 time, "unknown"
// while the first-seen store has not answered, or "off".
const LearningUntilHeader = "Cordon-Newly-Seen-Learning-Until"

// LearningHeader sets LearningUntilHeader from n (nil: "off") on every
// answer of h.
func LearningHeader(n *NewlySeen, now func() time.Time, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := "off"
		if _, end, ok, off := n.Learning(); ok {
			v = end.Format(time.RFC3339)
		} else if !off {
			v = "unknown"
		}
		w.Header().Set(LearningUntilHeader, v)
		h.ServeHTTP(w, r)
	})
}

// NewlySeenHandler serves the newly-seen state (mounted at
// /api/v1/feeds/newly_seen): GET answers n.Info: the window, the learning
// period and the size of each baseline source. n nil answers the
// category as disabled; now nil means time.Now.
func NewlySeenHandler(n *NewlySeen, now func() time.Time) http.Handler {
	if now == nil {
		now = time.Now
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSONError(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		writeJSON(w, http.StatusOK, n.Info(now()))
	})
}

// LookupResult is the answer of the lookup API.
type LookupResult struct {
	Explanation
	Country string `json:"country,omitempty"`
}

// LookupHandler serves the lookup explanation API (mounted at
// /api/v1/lookup): GET ?url=https://host/path (or ?host=..&path=..), with
// an optional &ip= for the destination address, answers a LookupResult:
// categories, threats, GeoIP country and every entry (with its feeds) that
// matched. index and geo are called per request (the current ones; geo
// may return nil).
func LookupHandler(index func() *Index, geo func() *Geo) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			writeJSONError(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		q := r.URL.Query()
		host, path := q.Get("host"), q.Get("path")
		if raw := q.Get("url"); raw != "" {
			if !strings.Contains(raw, "://") {
				raw = "http://" + raw
			}
			u, err := url.Parse(raw)
			if err != nil || u.Hostname() == "" {
				writeJSONError(w, http.StatusBadRequest, "url: not a valid URL")
				return
			}
			host, path = u.Hostname(), u.EscapedPath()
			if u.RawQuery != "" {
				path += "?" + u.RawQuery
			}
		}
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "" {
			writeJSONError(w, http.StatusBadRequest, "url or host is required")
			return
		}
		var ip netip.Addr
		if s := q.Get("ip"); s != "" {
			a, err := netip.ParseAddr(s)
			if err != nil {
				writeJSONError(w, http.StatusBadRequest, "ip: not an IP address")
				return
			}
			ip = a
		}
		norm, err := NormalizeHost(host)
		if err == nil {
			host = norm
		}
		ix := index()
		if ix == nil {
			ix = EmptyIndex()
		}
		res := LookupResult{Explanation: ix.Explain(host, path, ip)}
		if !ip.IsValid() {
			ip, _ = parseIPLiteral(host)
		}
		if geo != nil {
			res.Country = geo().Country(ip).String()
		}
		writeJSON(w, http.StatusOK, res)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeJSONError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
