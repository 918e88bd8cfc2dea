package authz

import (
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// CSRF configures the cross-site request forgery check for cookie sessions.
//
// A browser attaches the session cookie to requests that another site
// triggers (a form post, an image, a fetch), so a cookie alone does not show
// that the user meant the request. SameSite=Lax stops most of it, but not a
// sibling subdomain ("same site", different origin), not SameSite=None
// deployments and not older browsers. So a state-changing request
// authenticated by the cookie must also show where it came from: an Origin
// header naming an allowed origin or, when a browser sent no Origin,
// Sec-Fetch-Site "same-origin" or "none" (typed by the user). A bearer token
// is never attached by the browser on its own, so bearer requests are exempt.
type CSRF struct {
	// Disabled turns the check off. The zero value checks, so a caller that
	// sets nothing gets the safe behaviour.
	Disabled bool
	// AllowedOrigins are the origins ("https://app.example.com", scheme and
	// host, a port only when not the default) whose pages may send unsafe
	// requests with the cookie. Empty means only the request's own origin,
	// scheme://host as Envoy saw it.
	AllowedOrigins []string
	// Shadow evaluates the check on every request it applies to and counts
	// the outcome (sessiongate_shadow_decisions_total{rule="csrf"}), but
	// refuses nothing.
	Shadow bool
}

// safeMethod reports the methods RFC 9110 defines as safe. Everything else,
// including methods sessiongate has never heard of and lower-case spellings,
// is treated as state-changing.
func safeMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// csrfRefused reports whether a cookie-authenticated request must be refused
// as possibly cross-site. strict requires positive evidence of a same-origin
// request (unsafe methods); otherwise only evidence of a cross-site request
// refuses (a GET logout from a client that sends neither header). It reads
// two headers and compares strings: no allocation.
func (s *Server) csrfRefused(r *authv3.AttributeContext_HttpRequest, h headers, strict bool) bool {
	if origin, n := h.get("origin"); n > 0 {
		if n == 1 && origin == "null" {
			// A page served with Referrer-Policy: no-referrer makes the
			// browser send "Origin: null" on its own same-origin form posts
			// (Fetch, "serializing a request origin"); Sec-Fetch-Site, which
			// no page can set, still says same-origin then. A truly opaque
			// origin (a sandboxed frame, a cross-origin redirect) gets
			// "cross-site" there, so it stays refused.
			site, m := h.get("sec-fetch-site")
			return m != 1 || site != "same-origin"
		}
		// Envoy's map form joins repeated headers with ",", which then
		// matches nothing: two Origins are refused either way.
		return n > 1 || !s.originAllowed(origin, r.GetScheme(), r.GetHost())
	}
	if site, n := h.get("sec-fetch-site"); n > 0 {
		return n > 1 || (site != "same-origin" && site != "none")
	}
	return strict
}

func (s *Server) originAllowed(origin, scheme, host string) bool {
	if len(s.csrfOrigins) == 0 {
		return sameOrigin(origin, scheme, host)
	}
	for _, o := range s.csrfOrigins {
		if strings.EqualFold(origin, o) {
			return true
		}
	}
	return false
}

// sameOrigin reports whether an Origin header names scheme://host. Browsers
// omit the default port from Origin; some clients put it in Host, so it is
// dropped on both sides. "null" (an opaque origin) never matches.
func sameOrigin(origin, scheme, host string) bool {
	if scheme == "" || host == "" || len(origin) <= len(scheme)+3 {
		return false
	}
	if !strings.EqualFold(origin[:len(scheme)], scheme) || origin[len(scheme):len(scheme)+3] != "://" {
		return false
	}
	return strings.EqualFold(trimDefaultPort(origin[len(scheme)+3:], scheme), trimDefaultPort(host, scheme))
}

func trimDefaultPort(hostport, scheme string) string {
	switch {
	case strings.EqualFold(scheme, "https") && strings.HasSuffix(hostport, ":443"):
		return hostport[:len(hostport)-4]
	case strings.EqualFold(scheme, "http") && strings.HasSuffix(hostport, ":80"):
		return hostport[:len(hostport)-3]
	}
	return hostport
}

// NormalizeOrigin puts an origin into the form browsers send: lower case,
// no trailing slash, no default port. New applies it to the configured
// origins, so an operator's "https://App.example.com:443/" still matches.
func NormalizeOrigin(o string) string {
	o = strings.TrimRight(strings.ToLower(strings.TrimSpace(o)), "/")
	scheme, host, ok := strings.Cut(o, "://")
	if !ok {
		return o
	}
	return scheme + "://" + trimDefaultPort(host, scheme)
}
