package authz

import "testing"

// TestSplitCookieRest covers how splitCookie reads the session cookie and
// rebuilds the header without it: only ASCII space and tab are trimmed, a
// lone remaining cookie is returned as a substring of the header, two or
// more are joined with "; ", and neither the session cookie nor anything an
// upstream parser might read as it, nor the session ID under another name,
// is part of what the upstream receives.
func TestSplitCookieRest(t *testing.T) {
	const name = "__Host-sid"
	tests := []struct {
		name, header, id string
		val, rest        string
		count            int
		changed          bool
	}{
		{"empty", "", "", "", "", 0, false},
		{"only session", "__Host-sid=abc", "", "abc", "", 1, true},
		{"one other before", "theme=dark; __Host-sid=abc", "", "abc", "theme=dark", 1, true},
		{"one other after", "__Host-sid=abc;  lang=en ", "", "abc", "lang=en", 1, true},
		{"two others", "theme=dark; __Host-sid=abc; lang=en", "", "abc", "theme=dark; lang=en", 1, true},
		{"three others", "a=1;b=2; __Host-sid=abc ;c=3", "", "abc", "a=1; b=2; c=3", 1, true},
		{"others only", "a=1; b=2", "", "", "a=1; b=2", 0, false},
		{"one other only", "a=1", "", "", "a=1", 0, false},
		{"duplicate session", "__Host-sid=abc; x=1; __Host-sid=def", "", "abc", "x=1", 2, true},
		{"empty parts", ";; a=1 ;;", "", "", "a=1", 0, false},
		{"valueless other", "flag; __Host-sid=abc; b", "", "abc", "flag; b", 1, true},
		{"tab is optional whitespace around pair and name", "\t__Host-sid\t=abc\t", "", "abc", "", 1, true},
		{"but not before the value", "__Host-sid= abc", "", " abc", "", 1, true},
		{"quoted session ID copied", `__Host-sid="abc012345678901234567890123456789012345678A"; copy=abc012345678901234567890123456789012345678A`,
			"", `"abc012345678901234567890123456789012345678A"`, "", 1, true},

		// Unicode spaces are bytes of the name: another cookie, never the
		// session one, and not passed on either.
		{"en quad before the name", "\u2000__Host-sid=abc; a=1", "", "", "a=1", 0, true},
		{"no-break space after the name", "__Host-sid\u00a0=abc", "", "", "", 0, true},
		{"ideographic space around the value", "__Host-sid=\u3000abc", "", "\u3000abc", "", 1, true},
		{"vertical tab before the name", "\v__Host-sid=abc", "", "", "", 0, true},

		// Look-alikes an upstream parser may take for the session cookie.
		{"other case", "__host-sid=abc; a=1", "", "", "a=1", 0, true},
		{"after a comma (split at spaces by Python)", "a=b, __Host-sid=abc; c=d", "", "", "c=d", 0, true},
		{"inside another value", "a=__Host-sid; c=d", "", "", "c=d", 0, true},
		{"session ID under another name", "__Host-sid=abc; copy=abc; c=d", "abc", "abc", "c=d", 1, true},
		{"bearer's ID in a cookie", "copy=xyz; c=d", "xyz", "", "c=d", 0, true},
	}
	for _, tt := range tests {
		val, count, rest, changed := splitCookie(tt.header, name, tt.id)
		if val != tt.val || count != tt.count || rest != tt.rest || changed != tt.changed {
			t.Errorf("%s: splitCookie(%q, %q) = %q, %d, %q, %v; want %q, %d, %q, %v",
				tt.name, tt.header, tt.id, val, count, rest, changed, tt.val, tt.count, tt.rest, tt.changed)
		}
	}
}

// TestCarriesSessionID covers which Authorization values are taken out of
// upstream requests: any field shaped like a session ID, whatever scheme
// and separators surround it.
func TestCarriesSessionID(t *testing.T) {
	const id = "ZCGeV77fE9EYNGb7Ybw-htAF4sx3gGbmcuX5CSyFJkk"
	tests := []struct {
		v, id string
		want  bool
	}{
		{"Bearer " + id, "", true},
		{"bearer\t" + id, "", true},
		{"Bearer  " + id, "", true},
		{"Token " + id, "", true},
		{id, "", true},
		{"Bearer x," + "Bearer " + id, "", true},
		{"Bearer\u2000" + id, "", true},
		{"Bearer\u00a0" + id + "\u3000", "", true},
		{"Bearer " + id + ",Bearer " + id, "", true},
		{"Basic dXNlcjpwYXNz", "", false},
		{"Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "", false},
		{"Bearer " + id + "x", "", false},
		{"Bearer " + id + ".x", "", false},
		// An HS256 signature is 43 base64url characters too: a JWT is one
		// run, dots included, and passes.
		{"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0." + id, "", false},
		{"Custom prefix" + id, id, true},
		{"", "", false},
	}
	for _, tt := range tests {
		if got := carriesSessionID(tt.v, tt.id); got != tt.want {
			t.Errorf("carriesSessionID(%q, %q) = %v, want %v", tt.v, tt.id, got, tt.want)
		}
	}
}
