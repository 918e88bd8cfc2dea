package authz

import (
	"fmt"
	"slices"
	"strings"
)

// Access is what a route rule lets through.
type Access uint8

// Access levels. The zero value is Authenticated: a rule or extension that
// says nothing never makes a path public.
const (
	Authenticated Access = iota
	Public
	Deny
)

// ParseAccess reads an access level as written in config and in Envoy's
// context_extensions.
func ParseAccess(s string) (Access, error) {
	switch s {
	case "authenticated":
		return Authenticated, nil
	case "public":
		return Public, nil
	case "deny":
		return Deny, nil
	}
	return 0, fmt.Errorf("unknown access %q (want public, authenticated or deny)", s)
}

func (a Access) String() string {
	switch a {
	case Public:
		return "public"
	case Deny:
		return "deny"
	}
	return "authenticated"
}

// Route is one rule: requests whose path starts with PathPrefix (and whose
// method is in Methods, when given) get Access; Roles, if any, must include
// one of the session's roles.
type Route struct {
	PathPrefix string
	Methods    []string
	Access     Access
	Roles      []string

	folded string // PathPrefix as foldPath sees it; set by SetRoutes
}

// restrictive reports whether a rule takes something away from a merely
// authenticated request. Such rules also match case-insensitively, so
// "/ADMIN/" cannot dodge a rule for "/admin/" on an upstream that folds case;
// public rules match exactly, so case tricks only ever make a path stricter.
func (r *Route) restrictive() bool { return r.Access == Deny || len(r.Roles) > 0 }

// forMethod reports whether the rule applies to method.
func (r *Route) forMethod(method string) bool {
	return len(r.Methods) == 0 || slices.Contains(r.Methods, method)
}

func (r *Route) matches(method, path string) bool {
	if !r.forMethod(method) {
		return false
	}
	if strings.HasPrefix(path, r.PathPrefix) {
		return true
	}
	return r.restrictive() && len(path) >= len(r.PathPrefix) && strings.EqualFold(path[:len(r.PathPrefix)], r.PathPrefix)
}

// match returns the index of the first matching rule, or -1 (no rule:
// authenticated, no roles).
func match(routes []Route, method, path string) int {
	for i := range routes {
		if routes[i].matches(method, path) {
			return i
		}
	}
	return -1
}

// cleanPath returns the path without query or fragment, and false when the
// path is not in the one canonical form sessiongate accepts. Envoy
// normalises paths before ext_authz when configured to; anything that still
// looks like a traversal or an encoding trick is refused, because the
// upstream might decode it differently from how the rules matched it, and
// that difference is how a protected path turns public. nonASCII reports a
// percent-escaped byte >= 0x80, which the caller must still check in its
// folded form (see foldPath).
func cleanPath(p string) (clean string, ok, nonASCII bool) {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if len(p) == 0 || p[0] != '/' {
		return "", false, false
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c <= 0x20 || c >= 0x7f || c == '\\' || c == ';':
			return "", false, false
		case c == '%':
			if !allowedEscape(p, i) {
				return "", false, false
			}
			if p[i+1] >= '8' {
				nonASCII = true // hex digit 8-9 or a-f: byte >= 0x80
			}
			i += 2
		case c == '/':
			// Reject "//", "/./" and "/../" (and the same at the end).
			rest := p[i+1:]
			if strings.HasPrefix(rest, "/") || rest == "." || rest == ".." ||
				strings.HasPrefix(rest, "./") || strings.HasPrefix(rest, "../") {
				return "", false, false
			}
		}
	}
	return p, true, nonASCII
}

// allowedEscape accepts a percent-escape only for characters that must be
// escaped. An escaped letter, digit, dot, slash, backslash, percent or
// control byte has no business in a path except to slip past a prefix rule.
func allowedEscape(p string, i int) bool {
	if i+2 >= len(p) {
		return false
	}
	hi, ok1 := unhex(p[i+1])
	lo, ok2 := unhex(p[i+2])
	if !ok1 || !ok2 {
		return false
	}
	c := hi<<4 | lo
	switch {
	case c < 0x20 || c == 0x7f:
		return false
	case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		return false
	case c == '-' || c == '.' || c == '_' || c == '~' || c == '/' || c == '\\' || c == '%' || c == ';':
		return false
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
