package authz

import (
	"strings"
	"unicode/utf8"
)

// A strict reader of application/x-www-form-urlencoded bodies, for the
// token endpoint (RFC 6749 §4.1.3, Appendix B). Where common parsers read
// a body differently (Go's net/url.ParseQuery refuses a ';' and a bad
// escape, Python's urllib.parse.parse_qs keeps both as data and drops a
// pair without '=' or with an empty value), it refuses: a token request a
// client built with any encoder has none of these.

// maxFormBody bounds a token request's body. A refresh request is under
// 100 bytes; Envoy is configured to buffer no more than this either.
const maxFormBody = 1024

// maxFormParams bounds the parameters of one body.
const maxFormParams = 16

// formParam is one decoded parameter.
type formParam struct {
	name, value string
}

// parseForm decodes body into its parameters, in order. It refuses, with
// a description fit for error_description, a body that is empty or larger
// than maxFormBody; that holds a byte outside visible ASCII, or a ';'; a
// pair that is empty or has no '='; an empty name; a '%' not followed by
// two hex digits; a name or value that decodes to invalid UTF-8 or a
// control character; more than maxFormParams parameters; and a name given
// more than once (RFC 6749 §3.2: parameters MUST NOT be included more than
// once), whatever its value.
func parseForm(body string) ([]formParam, string) {
	switch {
	case body == "":
		return nil, "empty request body"
	case len(body) > maxFormBody:
		return nil, "request body too large"
	}
	for i := 0; i < len(body); i++ {
		if c := body[i]; c < 0x21 || c > 0x7e || c == ';' {
			return nil, "request body is not application/x-www-form-urlencoded"
		}
	}
	params := make([]formParam, 0, 4)
	for part := range strings.SplitSeq(body, "&") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, "a form parameter without '='"
		}
		name, ok := formUnescape(k)
		if !ok || name == "" {
			return nil, "malformed form parameter name"
		}
		value, ok := formUnescape(v)
		if !ok {
			return nil, "malformed form parameter value"
		}
		if len(params) == maxFormParams {
			return nil, "too many form parameters"
		}
		for _, p := range params {
			if p.name == name {
				return nil, "a form parameter given more than once"
			}
		}
		params = append(params, formParam{name, value})
	}
	return params, ""
}

// formUnescape decodes one name or value: '+' is a space, %XX a byte. The
// result must be UTF-8 without control characters.
func formUnescape(s string) (string, bool) {
	if strings.IndexAny(s, "%+") < 0 {
		return s, true // visible ASCII, checked by the caller
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			b = append(b, ' ')
		case '%':
			if i+2 >= len(s) {
				return "", false
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			b = append(b, hi<<4|lo)
			i += 2
		default:
			b = append(b, c)
		}
	}
	if !utf8.Valid(b) {
		return "", false
	}
	out := string(b)
	for _, r := range out {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == '\u2028' || r == '\u2029' {
			return "", false
		}
	}
	return out, true
}

// formContentType reports whether a Content-Type value names
// application/x-www-form-urlencoded: the media type in any case, with
// only SP or HTAB around it, and parameters (charset and the like) that
// are well-formed; a charset other than UTF-8 or US-ASCII is refused, as
// the body is read as UTF-8.
func formContentType(v string) bool {
	if controlByte(v) {
		return false
	}
	mt, params, _ := strings.Cut(v, ";")
	if !strings.EqualFold(trimOWS(mt), "application/x-www-form-urlencoded") {
		return false
	}
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		p = trimOWS(p)
		k, val, ok := strings.Cut(p, "=")
		if !ok || !httpToken(k) {
			return false
		}
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
			if strings.ContainsAny(val, "\"\\") {
				return false
			}
		} else if !httpToken(val) {
			return false
		}
		if strings.EqualFold(k, "charset") && !strings.EqualFold(val, "utf-8") && !strings.EqualFold(val, "us-ascii") {
			return false
		}
	}
	return true
}

// httpToken reports whether s is an RFC 9110 token.
func httpToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}
