package categorizer

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Geo maps IP addresses to countries with a MaxMind DB file (GeoIP2 or
// GeoLite2 Country, City or Enterprise). Safe for concurrent use. A nil
// *Geo is valid and knows no country.
type Geo struct {
	db   *maxminddb.Reader
	path string
	// cache maps a record's data offset to its country, so a warm lookup
	// decodes nothing and allocates nothing. Each slot packs
	// (offset+1)<<16 | country; collisions just overwrite.
	cache [geoCacheSize]atomic.Uint64
}

const geoCacheSize = 1 << 14

// geoRecord is the part of a GeoIP2 record Geo reads.
type geoRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
}

// OpenGeo opens and verifies a MaxMind DB file. A database that is
// corrupt, or whose records carry no country (an ASN or ISP database), is
// refused with an error naming the file.
func OpenGeo(path string) (*Geo, error) {
	db, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("categorizer: open geoip %s: %w", path, err)
	}
	if err := verifyGeo(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("categorizer: open geoip %s: %w", path, err)
	}
	return &Geo{db: db, path: path}, nil
}

var errNoCountries = errors.New("database has no country data")

func verifyGeo(db *maxminddb.Reader) (err error) {
	defer func() {
		// The reader validates what it reads; this guards the process
		// against a decoder bug on hostile input.
		if r := recover(); r != nil {
			err = fmt.Errorf("corrupt database: %v", r)
		}
	}()
	if err := db.Verify(); err != nil {
		return fmt.Errorf("corrupt database: %w", err)
	}
	t := db.Metadata.DatabaseType
	if !strings.Contains(t, "Country") && !strings.Contains(t, "City") && !strings.Contains(t, "Enterprise") {
		return fmt.Errorf("%w (type %q; want a Country, City or Enterprise database)", errNoCountries, t)
	}
	return nil
}

// Country returns the country of ip (the registered country when the
// location country is absent), or the zero Country when unknown.
func (g *Geo) Country(ip netip.Addr) Country {
	if g == nil || g.db == nil || !ip.IsValid() {
		return Country{}
	}
	res := g.db.Lookup(ip.Unmap())
	if res.Err() != nil || !res.Found() {
		return Country{}
	}
	off := uint64(res.Offset())
	slot := &g.cache[(off*0x9e3779b97f4a7c15)>>50]
	if v := slot.Load(); v>>16 == off+1 {
		return Country{byte(v >> 8), byte(v)}
	}
	c := decodeCountry(res)
	slot.Store((off+1)<<16 | uint64(c[0])<<8 | uint64(c[1]))
	return c
}

func decodeCountry(res maxminddb.Result) Country {
	var rec geoRecord
	if err := res.Decode(&rec); err != nil {
		return Country{}
	}
	code := rec.Country.ISOCode
	if code == "" {
		code = rec.RegisteredCountry.ISOCode
	}
	c, _ := ParseCountry(code)
	return c
}

// Path is the file the database was opened from ("" for nil).
func (g *Geo) Path() string {
	if g == nil {
		return ""
	}
	return g.path
}

// Close releases the database. Safe on nil.
func (g *Geo) Close() error {
	if g == nil || g.db == nil {
		return nil
	}
	return g.db.Close()
}
