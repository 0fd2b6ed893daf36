package categorizer

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

func TestStatusHandler(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := StatusHandler(func() []FeedStatus {
		return []FeedStatus{{Name: "urlhaus", Entries: 1089, UpdatedAt: now.Add(-time.Hour)}, {Name: "never"}}
	}, func() time.Time { return now })
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got []FeedStatusJSON
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Content-Type") != "application/json" || len(got) != 2 || got[0].AgeSeconds != 3600 || got[0].Entries != 1089 || got[1].AgeSeconds != 0 {
		t.Errorf("GET status = %+v", got)
	}
	resp, err = http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST status = %d", resp.StatusCode)
	}
}

func TestLookupHandler(t *testing.T) {
	ix := buildInline(t,
		feedText{"urlhaus", FormatURLs, []string{"malware"}, true, "http://files.example/bins/\n"},
		feedText{"ads", FormatDomains, []string{"ads"}, false, "ads.example\n"},
	)
	geo, err := OpenGeo(geoTestDB(t, "GeoIP2-Country-Test.mmdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer geo.Close()
	srv := httptest.NewServer(LookupHandler(func() *Index { return ix }, func() *Geo { return geo }))
	defer srv.Close()
	get := func(q string) (int, LookupResult) {
		resp, err := http.Get(srv.URL + "?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r LookupResult
		_ = json.NewDecoder(resp.Body).Decode(&r)
		return resp.StatusCode, r
	}
	code, r := get("url=" + url.QueryEscape("https://Files.Example:443/bins/x.sh") + "&ip=81.2.69.142")
	if code != 200 || r.Host != "files.example" || len(r.Threats) != 1 || r.Country != "GB" || len(r.Matches) != 1 || r.Matches[0].Feeds[0] != "urlhaus" {
		t.Errorf("lookup = %d %+v", code, r)
	}
	if code, r = get("host=a.ads.example"); code != 200 || len(r.Categories) != 1 || r.Matches[0].Entry != "ads.example" {
		t.Errorf("lookup host = %d %+v", code, r)
	}
	for _, q := range []string{"", "ip=nope&host=x", "url=" + url.QueryEscape("http://")} {
		if code, _ := get(q); code != http.StatusBadRequest {
			t.Errorf("lookup %q = %d, want 400", q, code)
		}
	}
}
