package categorizer

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/cordon-gw/cordon/internal/testutil"
)

func TestGeoCountry(t *testing.T) {
	known := []struct {
		ip, want string
	}{
		{"81.2.69.142", "GB"}, {"81.2.69.150", "GB"}, {"81.2.69.170", "GB"}, {"2.125.160.216", "GB"},
		{"216.160.83.57", "US"}, {"50.114.0.1", "US"}, {"89.160.20.113", "SE"}, {"89.160.20.200", "SE"},
		{"67.43.156.1", "BT"}, {"202.196.224.1", "PH"}, {"111.235.160.1", "CN"}, {"175.16.199.1", "CN"},
		{"217.65.48.1", "GI"}, {"::ffff:81.2.69.142", "GB"},
		{"127.0.0.1", ""}, {"10.0.0.1", ""},
	}
	// The compiled test databases differ slightly from the source JSON:
	// these networks are only in GeoIP2-Country-Test.
	onlyGeoIP2Country := map[string]bool{"50.114.0.1": true, "111.235.160.1": true, "217.65.48.1": true, "175.16.199.1": true}
	for _, db := range []string{"GeoIP2-Country-Test.mmdb", "GeoLite2-Country-Test.mmdb", "GeoIP2-City-Test.mmdb", "GeoLite2-City-Test.mmdb"} {
		t.Run(db, func(t *testing.T) {
			g, err := OpenGeo(geoTestDB(t, db))
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			for _, k := range known {
				if onlyGeoIP2Country[k.ip] && db != "GeoIP2-Country-Test.mmdb" {
					continue
				}
				if got := g.Country(netip.MustParseAddr(k.ip)).String(); got != k.want {
					t.Errorf("Country(%s) = %q, want %q", k.ip, got, k.want)
				}
			}
			if got := g.Country(netip.Addr{}); got.Known() {
				t.Errorf("Country(zero) = %v", got)
			}
			ip := netip.MustParseAddr("81.2.69.142")
			if n := testing.AllocsPerRun(100, func() { g.Country(ip) }); n != 0 {
				t.Errorf("Country allocs = %v, want 0 once warm", n)
			}
		})
	}
	// The anycast network carries no country.
	g, err := OpenGeo(geoTestDB(t, "GeoIP2-Country-Test.mmdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if got := g.Country(netip.MustParseAddr("214.1.1.1")); got.Known() {
		t.Errorf("Country(214.1.1.1) = %v, want unknown", got)
	}
}

func TestGeoNil(t *testing.T) {
	var g *Geo
	if got := g.Country(netip.MustParseAddr("81.2.69.142")); got.Known() {
		t.Errorf("nil Geo Country = %v", got)
	}
	if err := g.Close(); err != nil {
		t.Errorf("nil Geo Close = %v", err)
	}
}

func TestGeoBadData(t *testing.T) {
	var files []string
	for _, pattern := range []string{"maxmind/bad-data/*/*.mmdb", "maxmind/test-data/*Broken*.mmdb", "maxmind/test-data/*broken*.mmdb", "maxmind/test-data/*Invalid*.mmdb"} {
		m, err := filepath.Glob(filepath.Join(testutil.Data(t, "."), pattern))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 20 {
		t.Fatalf("found %d bad databases, want at least 20", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			g, err := OpenGeo(f)
			if err != nil {
				t.Logf("OpenGeo: %v", err)
				return
			}
			// Opened (the damage is outside what Verify reads): lookups
			// must still not panic.
			defer g.Close()
			for _, ip := range []string{"1.1.1.1", "81.2.69.142", "::1", "2001:db8::1"} {
				g.Country(netip.MustParseAddr(ip))
			}
		})
	}
	// Not a MaxMind DB at all, missing, and no country data.
	junk := filepath.Join(t.TempDir(), "junk.mmdb")
	if err := os.WriteFile(junk, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{junk, filepath.Join(t.TempDir(), "missing.mmdb"), geoTestDB(t, "GeoLite2-ASN-Test.mmdb")} {
		if _, err := OpenGeo(p); err == nil {
			t.Errorf("OpenGeo(%s): no error", p)
		}
	}
}

// geoTestDB returns the path of one of MaxMind's test databases
// (committed under internal/testutil/testdata/maxmind/test-data).
func geoTestDB(t testing.TB, name string) string {
	return testutil.Data(t, "maxmind/test-data/"+name)
}
