package authz

import (
	"strings"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// headers reads request headers from a CheckRequest, whichever of the two
// forms Envoy used: the `headers` map (default) or `header_map` (with
// encode_raw_headers), where a name may repeat.
type headers struct {
	m    map[string]string
	list []*corev3.HeaderValue
}

// RequestHeader returns the first value of a request header as Check reads
// it, from whichever form Envoy sent. name must be lower case.
func RequestHeader(r *authv3.AttributeContext_HttpRequest, name string) string {
	v, _ := headersOf(r).get(name)
	return v
}

func headersOf(h *authv3.AttributeContext_HttpRequest) headers {
	if hm := h.GetHeaderMap(); hm != nil && len(hm.GetHeaders()) > 0 {
		return headers{list: hm.GetHeaders()}
	}
	return headers{m: h.GetHeaders()}
}

// get returns the value of a header and how many times it was sent. Envoy's
// map form already joins repeats with ","; the list form keeps them apart.
// name must be lower case.
func (h headers) get(name string) (string, int) {
	if h.list == nil {
		v, ok := h.m[name]
		if !ok {
			return "", 0
		}
		return v, 1
	}
	var first string
	n := 0
	for _, hv := range h.list {
		if hv.GetKey() == name {
			if n == 0 {
				first = value(hv)
			}
			n++
		}
	}
	return first, n
}

// cookies returns the cookie header as one string. Browsers send one cookie
// header over HTTP/1.1; HTTP/2 may split it into several, which RFC 9113
// §8.2.3 says to join with "; ".
func (h headers) cookies() string {
	if h.list == nil {
		return h.m["cookie"]
	}
	var parts []string
	for _, hv := range h.list {
		if hv.GetKey() == "cookie" {
			parts = append(parts, value(hv))
		}
	}
	return strings.Join(parts, "; ")
}

func value(hv *corev3.HeaderValue) string {
	if raw := hv.GetRawValue(); len(raw) > 0 {
		return string(raw)
	}
	return hv.GetValue()
}

// credential is where a session ID came from.
type credential uint8

const (
	noCredential credential = iota
	fromCookie
	fromBearer
	// fromService: an Authorization bearer marked as a service credential
	// (session.CredentialPrefix). Its form is not checked yet.
	fromService
)

// presented is what a request carries that concerns the session: the
// session ID and where it came from, and what must change in the request
// before an upstream sees it. No copy of the session credential ever
// reaches an upstream, whichever header carried it and however often.
type presented struct {
	id   string
	from credential
	// cookie is the cookie header for the upstream when cookieChanged: the
	// request's cookies without the session cookie or anything an upstream
	// parser might read as it. "" with cookieChanged means remove the header.
	cookie        string
	cookieChanged bool
	// dropAuthorization: the Authorization header carries a session ID.
	dropAuthorization bool
}

// sessionID extracts the session ID from the cookie or the Authorization
// header. ok is false for anything ambiguous or malformed: two session
// cookies, a cookie and a different bearer token, a value that is not a
// session ID.
func sessionID(h headers, cookieName string) (p presented, ok bool) {
	raw := h.cookies()
	if !cookieHeaderOK(raw) {
		return presented{}, false
	}
	var bearer string
	authz, n := h.get("authorization")
	if n > 1 {
		return presented{}, false
	}
	if n == 1 {
		if len(authz) > 7 && strings.EqualFold(authz[:7], "bearer ") {
			bearer = strings.TrimLeft(authz[7:], " ")
		}
		p.dropAuthorization = carriesSessionID(authz, "")
	}
	// A bearer that is a session ID is known before the cookies are split,
	// so a copy of it in any cookie is dropped in the same pass.
	known := ""
	if session.ValidID(bearer) || session.HasCredentialPrefix(bearer) {
		known = bearer
	}
	cookieID, count, rest, changed := splitCookie(raw, cookieName, known)
	if count > 1 {
		return presented{}, false
	}
	switch {
	case count == 1:
		if !session.ValidID(cookieID) || (bearer != "" && bearer != cookieID) {
			return presented{}, false
		}
		p.id, p.from = cookieID, fromCookie
		p.dropAuthorization = p.dropAuthorization || (n == 1 && strings.Contains(authz, cookieID))
	case bearer != "":
		if known == "" {
			return presented{}, false
		}
		p.id, p.from, p.dropAuthorization = bearer, fromBearer, true
		if !session.ValidID(bearer) {
			p.from = fromService
		}
	}
	p.cookie, p.cookieChanged = rest, changed
	return p, true
}

// scrubbed is what a public answer must take out of the request: any
// session cookie and any Authorization header that carries something shaped
// like a session ID. A cookie header that cannot be read safely goes
// nowhere.
func scrubbed(h headers, cookieName string) (p presented) {
	raw := h.cookies()
	if authz, n := h.get("authorization"); n > 0 {
		// The map form joins repeats with ","; carriesSessionID splits at
		// commas too, so every copy is looked at.
		p.dropAuthorization = n > 1 || carriesSessionID(authz, "")
	}
	switch {
	case raw == "":
	case !cookieHeaderOK(raw):
		p.cookie, p.cookieChanged = "", true
	default:
		_, _, p.cookie, p.cookieChanged = splitCookie(raw, cookieName, "")
	}
	return p
}

// carriesSessionID reports whether an Authorization value holds a session
// ID: id anywhere in it, or any run of token68 characters (RFC 9110 §11.2,
// which includes '.', so a JWT is one run) shaped like a session ID,
// whatever scheme, separators or spaces surround it. Upstream parsers
// differ in how they split "Bearer  x", "Token x", "Bearer x,Bearer y" or
// "Bearer\u2000x" (Python's str.split takes U+2000 for a space); taking
// every run as a possible credential is the reading none of them exceeds.
func carriesSessionID(v, id string) bool {
	if id != "" && strings.Contains(v, id) {
		return true
	}
	// A service credential or a refresh token, valid or not, goes no
	// further than a session ID.
	return idRun(v) != "" || containsFoldASCII(v, session.CredentialPrefix) || containsFoldASCII(v, session.RefreshTokenPrefix)
}

// idRun returns the first run of token68 characters in v that is shaped
// like a session ID, or "".
func idRun(v string) string {
	start := -1
	for i := 0; i <= len(v); i++ {
		if i < len(v) && token68(v[i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 && i-start == session.IDLen && session.ValidID(v[start:i]) {
			return v[start:i]
		}
		start = -1
	}
	return ""
}

func token68(c byte) bool {
	return isAlnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '='
}

// maxCookieHeader bounds the cookie header sessiongate parses. Browsers keep
// about 4 KiB per cookie and Envoy 60 KiB for all headers by default; a
// larger value is not a browser's and is refused before it costs a split.
const maxCookieHeader = 64 << 10

// cookieHeaderOK refuses a cookie header that is too large, holds control
// characters or is not UTF-8. What remains of it is sent upstream as a
// header value, so a CR or LF in it must never get that far, whatever parsed
// it before us; and that value is a protobuf string, which gRPC refuses to
// marshal unless it is UTF-8. With encode_raw_headers Envoy sends the cookie
// as raw bytes, so invalid UTF-8 does arrive, and an answer that fails to
// marshal is a gRPC error, which failure_mode_allow turns into an allow.
func cookieHeaderOK(v string) bool {
	if len(v) > maxCookieHeader {
		return false
	}
	ascii := true
	for i := 0; i < len(v); i++ {
		c := v[i]
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
		if c >= 0x80 {
			ascii = false
		}
	}
	return ascii || utf8.ValidString(v)
}

// splitCookie finds cookies named name in a cookie header. It returns the
// value of the first, how many there were, and the header without them;
// changed tells whether anything was taken out.
//
// Only ASCII space and horizontal tab are optional whitespace around a
// cookie pair, its name and its value (RFC 6265 §5.4, and what browsers
// do): "\u2000__Host-sid" is another cookie, one a sibling subdomain may set
// without the __Host- prefix's guarantees, so it never authenticates.
//
// Besides the session cookie, the header for the upstream loses every pair
// that an upstream parser might still read as the session cookie, that
// holds the session ID, or that holds anything marked as a service
// credential or a refresh token (session.CredentialPrefix,
// session.RefreshTokenPrefix, in any case): a name that holds the
// session cookie's name in any ASCII case or with other bytes around it
// ("\u2000__Host-sid", "__host-sid"),
// or a pair that contains it further in ("a=b, __Host-sid=…", which
// Python's http.cookies splits at the space), and any pair that contains
// id or the session ID that the session cookie's value holds. Dropping a harmless look-alike is the price of
// never passing a credential on.
//
// The rebuilt header is only allocated when two or more cookies remain.
func splitCookie(header, name, id string) (val string, count int, rest string, changed bool) {
	if header == "" {
		return "", 0, "", false
	}
	// A single remaining cookie, the common case, is returned as a
	// substring of the header: no copy. The builder only starts at the
	// second one.
	var b strings.Builder
	kept := 0
	for part := range strings.SplitSeq(header, ";") {
		part = trimOWS(part)
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if trimOWS(k) == name {
			if count == 0 {
				// The value is not trimmed: "name= x" is no cookie a
				// browser sends, and Go's net/http reads " x".
				val = v
			}
			count++
			changed = true
			continue
		}
		if containsFoldASCII(part, name) || (id != "" && strings.Contains(part, id)) ||
			containsFoldASCII(part, session.CredentialPrefix) || containsFoldASCII(part, session.RefreshTokenPrefix) {
			changed = true
			continue
		}
		switch kept {
		case 0:
			rest = part
		case 1:
			// One allocation, whatever follows: the rebuilt header is never
			// longer than the original.
			b.Grow(len(header))
			b.WriteString(rest)
			fallthrough
		default:
			b.WriteString("; ")
			b.WriteString(part)
		}
		kept++
	}
	if b.Len() > 0 {
		rest = b.String()
	}
	if id == "" && kept > 0 && count > 0 {
		// The session ID again, under another cookie's name: rare enough
		// to pay for a second pass. Parsers that unquote or trim the value
		// read `"id"` or " id" as the ID, so that is what is looked for.
		if v := idRun(val); v != "" && strings.Contains(rest, v) {
			return splitCookie(header, name, v)
		}
	}
	return val, count, rest, changed
}

// trimOWS trims the optional whitespace of HTTP grammars: ASCII space and
// horizontal tab, nothing else. strings.TrimSpace would also trim U+2000 and
// its kin, which no browser does.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// containsFoldASCII reports whether s contains sub under ASCII case
// folding, without allocating. sub must be ASCII.
func containsFoldASCII(s, sub string) bool {
	if len(sub) == 0 {
		return true
	}
	first := lowerASCII(sub[0])
outer:
	for i := 0; i+len(sub) <= len(s); i++ {
		if lowerASCII(s[i]) != first {
			continue
		}
		for j := 1; j < len(sub); j++ {
			if lowerASCII(s[i+j]) != lowerASCII(sub[j]) {
				continue outer
			}
		}
		return true
	}
	return false
}
