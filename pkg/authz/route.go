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
	// Internal admits only services (a service credential); a user session
	// is refused with 403.
	Internal
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
	case "internal":
		return Internal, nil
	}
	return 0, fmt.Errorf("unknown access %q (want public, authenticated, internal or deny)", s)
}

func (a Access) String() string {
	switch a {
	case Public:
		return "public"
	case Deny:
		return "deny"
	case Internal:
		return "internal"
	}
	return "authenticated"
}

// Route is one rule: requests whose path starts with PathPrefix (and whose
// method is in Methods, when given) get Access; Roles, if any, must include
// one of the caller's roles. Services, on an Internal rule, restricts which
// services pass (empty: every registered service); on an Authenticated
// rule it admits those services besides users (empty: no service).
type Route struct {
	PathPrefix string
	Methods    []string
	Access     Access
	Roles      []string
	// Shadow rules are evaluated and counted, never enforced: a request is
	// decided as if they were absent. See shadow.go.
	Shadow   bool
	Services []string
	// Claims, when not nil, are the only custom claims the rule's session
	// tokens carry (empty: none); nil carries them all. RolesInToken
	// RolesMatched narrows the token's roles to Roles. Context_extensions
	// claims and roles_in_token override both. See shape.go.
	Claims       []string
	RolesInToken RolesInToken

	folded string      // PathPrefix as foldPath sees it; set by SetRoutes
	shape  *tokenShape // Claims and RolesInToken as a token shape; set by SetRoutes
}

// restrictive reports whether a rule takes something away from a merely
// authenticated request. Such rules also match case-insensitively, so
// "/ADMIN/" cannot dodge a rule for "/admin/" on an upstream that folds case;
// public rules match exactly, so case tricks only ever make a path stricter.
func (r *Route) restrictive() bool {
	return r.Access == Deny || r.Access == Internal || len(r.Roles) > 0
}

// forMethod reports whether the rule applies to method. Methods are case-
// sensitive on the wire, and Envoy forwards an HTTP/2 "delete" as it is,
// but many upstreams upper-case the method before routing on it; so, as for
// paths, restrictive rules match in any case and public ones exactly.
func (r *Route) forMethod(method string) bool {
	if len(r.Methods) == 0 {
		return true
	}
	if r.restrictive() {
		return slices.ContainsFunc(r.Methods, func(m string) bool { return strings.EqualFold(m, method) })
	}
	return slices.Contains(r.Methods, method)
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
// authenticated, no roles). Shadow rules are not enforced: skipped.
func match(routes []Route, method, path string) int {
	for i := range routes {
		if !routes[i].Shadow && routes[i].matches(method, path) {
			return i
		}
	}
	return -1
}

// ruleFor returns the index of the rule that applies to the request, or -1
// for none, and false when the request is ambiguous: when the method as an
// upstream may upper-case it, or the path as an upstream may fold it (see
// foldPath), falls under another rule than the request as sent. Whichever
// reading an upstream takes, it then gets the decision made for it.
func ruleFor(routes []Route, method, path string, nonASCII bool) (int, bool) {
	if !validMethod(method) {
		return -1, false
	}
	rule := match(routes, method, path)
	upper := method
	if hasLowerASCII(method) {
		// Only a non-canonical method pays for the copy.
		upper = strings.ToUpper(method)
		if match(routes, upper, path) != rule {
			return -1, false
		}
	}
	// Only paths with percent-escaped non-ASCII pay for this; see foldPath.
	if nonASCII {
		f, ok := foldPath(path)
		if !ok || !canonicalFolded(f) || matchFolded(routes, method, f) != rule || matchFolded(routes, upper, f) != rule {
			return -1, false
		}
	}
	return rule, true
}

// validMethod accepts an HTTP method token (RFC 9110 §9.1: tchar only, so
// ASCII); Envoy's codecs allow nothing else, and a method outside ASCII
// would let a Unicode upper-casing ("poſt" is "POST" to Python) choose the
// rule.
func validMethod(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !isAlnum(c) && !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

func hasLowerASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'a' && s[i] <= 'z' {
			return true
		}
	}
	return false
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
			// Reject "//" and dot segments ("/./", "/../", at the end too).
			rest := p[i+1:]
			if strings.HasPrefix(rest, "/") {
				return "", false, false
			}
			if len(rest) > 0 && (rest[0] == '.' || rest[0] == '%') {
				seg := rest
				if j := strings.IndexByte(rest, '/'); j >= 0 {
					seg = rest[:j]
				}
				if d, ok := percentDecode(seg); !ok || dotSegment(d) {
					return "", false, false
				}
			}
		}
	}
	return p, true, nonASCII
}

// dotSegment reports a decoded path segment that some upstream resolves as
// "." or "..": dots, optionally followed by spaces (Windows and IIS trim
// them) or by a '?' or '#' that a decoding upstream takes for the end of
// the path. Anything else after the dots ("..foo") is a name.
func dotSegment(seg string) bool {
	if i := strings.IndexAny(seg, "?#"); i >= 0 {
		seg = seg[:i]
	}
	return strings.HasPrefix(seg, ".") && strings.TrimRight(seg, ". ") == ""
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
