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
)

// sessionID extracts the session ID from the cookie or the Authorization
// header. ok is false for anything ambiguous or malformed: two session
// cookies, a cookie and a different bearer token, a value that is not a
// session ID. rest is the cookie header without the session cookie, with
// hadOthers telling whether anything remains.
func sessionID(h headers, cookieName string) (id string, from credential, rest string, hadOthers bool, ok bool) {
	raw := h.cookies()
	if !cookieHeaderOK(raw) {
		return "", noCredential, "", false, false
	}
	cookieID, count, rest, hadOthers := splitCookie(raw, cookieName)
	if count > 1 {
		return "", noCredential, "", false, false
	}
	var bearer string
	if authz, n := h.get("authorization"); n > 0 {
		if n > 1 {
			return "", noCredential, "", false, false
		}
		if len(authz) > 7 && strings.EqualFold(authz[:7], "bearer ") {
			bearer = strings.TrimLeft(authz[7:], " ")
		}
	}
	switch {
	case count == 1:
		if !session.ValidID(cookieID) || (bearer != "" && bearer != cookieID) {
			return "", noCredential, "", false, false
		}
		return cookieID, fromCookie, rest, hadOthers, true
	case bearer != "":
		if !session.ValidID(bearer) {
			return "", noCredential, "", false, false
		}
		return bearer, fromBearer, "", false, true
	}
	return "", noCredential, "", false, true
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
// value of the first, how many there were, and the header without them.
// The rebuilt header is only allocated when other cookies are present.
func splitCookie(header, name string) (val string, count int, rest string, others bool) {
	if header == "" {
		return "", 0, "", false
	}
	// A single other cookie, the common case, is returned as a substring of
	// the header: no copy. The builder only starts at the second one.
	var b strings.Builder
	for part := range strings.SplitSeq(header, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if strings.TrimSpace(k) == name {
			if count == 0 {
				val = strings.TrimSpace(v)
			}
			count++
			continue
		}
		switch {
		case !others:
			rest = part
		case b.Len() == 0:
			b.WriteString(rest)
			fallthrough
		default:
			b.WriteString("; ")
			b.WriteString(part)
		}
		others = true
	}
	if b.Len() > 0 {
		rest = b.String()
	}
	return val, count, rest, others
}
