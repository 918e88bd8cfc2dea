package session

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestValidID(t *testing.T) {
	good := mustID(t)
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	tests := []struct {
		name string
		id   string
		want bool
	}{
		{"fresh", good, true},
		{"empty", "", false},
		{"one short", good[:IDLen-1], false},
		{"one long", good + "A", false},
		{"padded", base64.URLEncoding.EncodeToString(raw), false},
		{"std alphabet", strings.Repeat("+", IDLen-1) + "A", false},
		{"space", " " + good[1:], false},
		{"non canonical last char", good[:IDLen-1] + "B", false},
		{"jwt shaped", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.sig-sig", false},
		{"non-ascii", strings.Repeat("é", 21) + "A", false},
		{"nul", good[:IDLen-1] + "\x00", false},
	}
	for _, tt := range tests {
		if got := ValidID(tt.id); got != tt.want {
			t.Errorf("%s: ValidID(%q) = %v, want %v", tt.name, tt.id, got, tt.want)
		}
	}
}

func TestRefOf(t *testing.T) {
	id := mustID(t)
	ref := RefOf(id)
	if !ValidRef(ref) || ref != RefOf(id) || ref == RefOf(mustID(t)) {
		t.Fatalf("ref %q is not a stable, distinct, valid ref", ref)
	}
	for _, bad := range []string{"", ref[:RefLen-1], strings.ToUpper(ref), ref + "0", id} {
		if ValidRef(bad) {
			t.Errorf("ValidRef(%q) = true", bad)
		}
	}
}

func FuzzValidID(f *testing.F) {
	f.Add("")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.sig-sig")
	f.Fuzz(func(t *testing.T, s string) {
		if !ValidID(s) {
			return
		}
		// Anything accepted must be a canonical encoding of 32 bytes.
		b, err := base64.RawURLEncoding.Strict().DecodeString(s)
		if err != nil || len(b) != 32 || base64.RawURLEncoding.EncodeToString(b) != s {
			t.Fatalf("accepted non-canonical id %q", s)
		}
	})
}

func FuzzParseEntry(f *testing.F) {
	f.Add(`1:1:1893456000000:60000:{"sub":"x","cat":1}`)
	f.Add(`1:1:1:1:{`)
	f.Add(`garbage`)
	f.Fuzz(func(t *testing.T, raw string) {
		e, err := parseEntry(strings.Repeat("a", RefLen), raw)
		if err != nil {
			return
		}
		s, err := e.Session()
		if err != nil {
			return
		}
		if s.Subject == "" {
			t.Fatalf("decoded a session with no subject from %q", raw)
		}
		// Nothing decoded may carry a control character into claims,
		// metadata or logs.
		vals := append([]string{s.Subject, s.Tenant, s.Device.UserAgent, s.Device.IP, s.Device.Name}, s.Roles...)
		for k, v := range s.Claims {
			vals = append(vals, k, v)
		}
		for _, v := range vals {
			if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("decoded a control character from %q", raw)
			}
		}
	})
}
