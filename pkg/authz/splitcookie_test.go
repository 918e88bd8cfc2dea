package authz

import "testing"

// TestSplitCookieRest covers how splitCookie rebuilds the header without
// the session cookie: a lone other cookie is returned as a substring of
// the header, two or more are joined with "; ", and the session cookie is
// never part of what the upstream receives.
func TestSplitCookieRest(t *testing.T) {
	const name = "__Host-sid"
	tests := []struct {
		name, header string
		val, rest    string
		count        int
		others       bool
	}{
		{"empty", "", "", "", 0, false},
		{"only session", "__Host-sid=abc", "abc", "", 1, false},
		{"one other before", "theme=dark; __Host-sid=abc", "abc", "theme=dark", 1, true},
		{"one other after", "__Host-sid=abc;  lang=en ", "abc", "lang=en", 1, true},
		{"two others", "theme=dark; __Host-sid=abc; lang=en", "abc", "theme=dark; lang=en", 1, true},
		{"three others", "a=1;b=2; __Host-sid=abc ;c=3", "abc", "a=1; b=2; c=3", 1, true},
		{"others only", "a=1; b=2", "", "a=1; b=2", 0, true},
		{"one other only", "a=1", "", "a=1", 0, true},
		{"duplicate session", "__Host-sid=abc; x=1; __Host-sid=def", "abc", "x=1", 2, true},
		{"empty parts", ";; a=1 ;;", "", "a=1", 0, true},
		{"valueless other", "flag; __Host-sid=abc; b", "abc", "flag; b", 1, true},
	}
	for _, tt := range tests {
		val, count, rest, others := splitCookie(tt.header, name)
		if val != tt.val || count != tt.count || rest != tt.rest || others != tt.others {
			t.Errorf("%s: splitCookie(%q) = %q, %d, %q, %v; want %q, %d, %q, %v",
				tt.name, tt.header, val, count, rest, others, tt.val, tt.count, tt.rest, tt.others)
		}
	}
}
