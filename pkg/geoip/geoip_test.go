package geoip

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/sessiongate/sessiongate/pkg/geoip/geoiptest"
)

func TestCountry(t *testing.T) {
	db, err := Open(geoiptest.WriteTestDB(t, map[string]string{
		"198.51.100.0/24": "DE", "203.0.113.0/24": "FR", "2001:db8:aa::/48": "DE", "192.0.2.0/24": "de",
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for addr, want := range map[string]string{
		"198.51.100.7":       "DE",
		"203.0.113.200":      "FR",
		"2001:db8:aa:1::1":   "DE",
		"::ffff:203.0.113.1": "FR",
		"10.0.0.1":           "",
		"2001:db8:ff::1":     "",
		"192.0.2.1":          "", // not an ISO code as written
	} {
		if got := db.Country(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Country(%s) = %q, want %q", addr, got, want)
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.mmdb")
	if err := os.WriteFile(bad, []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{bad, filepath.Join(t.TempDir(), "missing.mmdb")} {
		if _, err := Open(p); err == nil {
			t.Errorf("Open(%s) succeeded", p)
		}
	}
}
