// Package geoip reads the country of an IP address from a MaxMind-format
// database (.mmdb: GeoLite2/GeoIP2 Country or City, or any database with
// country.iso_code) that the operator provides. sessiongate ships none.
package geoip

import (
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// DB is an open database. It is safe for concurrent use.
type DB struct {
	r *maxminddb.Reader
}

// Open opens the database at path and checks that it answers country
// lookups.
func Open(path string) (*DB, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("geoip: %w", err)
	}
	if r.Metadata.IPVersion != 6 {
		// An IPv4-only database cannot answer for IPv6 clients, and a
		// lookup of one would read as "no country".
		r.Close()
		return nil, fmt.Errorf("geoip: %s: an IPv4-only database (ip_version %d); use one that covers IPv6", path, r.Metadata.IPVersion)
	}
	return &DB{r: r}, nil
}

// Country returns the ISO 3166-1 alpha-2 code of a's country, or "" when
// the database has none for it (private and reserved ranges, unknown
// networks) or the record is not readable as one.
func (d *DB) Country(a netip.Addr) string {
	var iso string
	if err := d.r.Lookup(a).DecodePath(&iso, "country", "iso_code"); err != nil || len(iso) != 2 {
		return ""
	}
	for i := 0; i < 2; i++ {
		if iso[i] < 'A' || iso[i] > 'Z' {
			return ""
		}
	}
	return iso
}

// Close releases the database.
func (d *DB) Close() error { return d.r.Close() }
