package authz

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sessiongate/sessiongate/pkg/session"
)

func TestCSRF(t *testing.T) {
	type tc struct {
		name   string
		method string
		path   string
		opts   []reqOpt
		bearer bool // authenticate with Authorization instead of the cookie
		csrf   CSRF
		want   int
	}
	const own = "https://app.example.com"
	tests := []tc{
		{name: "GET needs no origin", method: "GET", path: "/api/x", want: 200},
		{name: "HEAD, OPTIONS, TRACE are safe", method: "OPTIONS", path: "/api/x", want: 200},
		{name: "POST with own origin", method: "POST", path: "/api/x", opts: []reqOpt{withHeader("origin", own)}, want: 200},
		{name: "origin compared case-insensitively", method: "POST", path: "/api/x", opts: []reqOpt{withHeader("origin", "HTTPS://App.Example.com")}, want: 200},
		{name: "default port in Host is the same origin", method: "PUT", path: "/api/x",
			opts: []reqOpt{withHeader("origin", own), func(r *authv3.CheckRequest) { r.Attributes.Request.Http.Host = "app.example.com:443" }}, want: 200},
		{name: "other port is another origin", method: "PUT", path: "/api/x", opts: []reqOpt{withHeader("origin", own+":8443")}, want: 403},
		{name: "http origin for an https request", method: "POST", path: "/api/x", opts: []reqOpt{withHeader("origin", "http://app.example.com")}, want: 403},
		{name: "cross-site POST", method: "POST", path: "/api/x", opts: []reqOpt{withHeader("origin", "https://evil.example")}, want: 403},
		{name: "sibling subdomain is same-site, not same-origin", method: "DELETE", path: "/api/x", opts: []reqOpt{withHeader("origin", "https://blog.example.com")}, want: 403},
		{name: "suffix attack on the origin", method: "PATCH", path: "/api/x", opts: []reqOpt{withHeader("origin", own+".evil.example")}, want: 403},
		{name: "opaque origin null", method: "POST", path: "/api/x", opts: []reqOpt{withHeader("origin", "null")}, want: 403},
		{name: "origin null from a no-referrer page, sec-fetch-site same-origin", method: "POST", path: "/api/x",
			opts: []reqOpt{withHeader("origin", "null"), withHeader("sec-fetch-site", "same-origin")}, want: 200},
		{name: "origin null, sec-fetch-site cross-site (sandboxed frame)", method: "POST", path: "/api/x",
			opts: []reqOpt{withHeader("origin", "null"), withHeader("sec-fetch-site", "cross-site")}, want: 403},
		{name: "origin null, sec-fetch-site same-site", method: "POST", path: "/api/x",
			opts: []reqOpt{withHeader("origin", "null"), withHeader("sec-fetch-site", "same-site")}, want: 403},
		{name: "origin null, sec-fetch-site none", method: "POST", path: "/api/x",
			opts: []reqOpt{withHeader("origin", "null"), withHeader("sec-fetch-site", "none")}, want: 403},
		{name: "origin null, two sec-fetch-site", method: "POST", path: "/api/x",
			opts: []reqOpt{withHeader("origin", "null"), withRaw("sec-fetch-site", "same-origin", "sec-fetch-site", "same-origin")}, want: 403},
		{name: "two origins null, sec-fetch-site same-origin", method: "POST", path: "/api/x",
			opts: []reqOpt{withHeader("sec-fetch-site", "same-origin"), withRaw("origin", "null", "origin", "null")}, want: 403},
		{name: "no origin, sec-fetch-site same-origin", method: "POST", path: "/api/x", opts: []reqOpt{withHeader("sec-fetch-site", "same-origin")}, want: 200},
		{name: "no origin, sec-fetch-site none (typed by the user)", method: "POST", path: "/api/x", opts: []reqOpt{withHeader("sec-fetch-site", "none")}, want: 200},
		{name: "no origin, sec-fetch-site same-site", method: "POST", path: "/api/x", opts: []reqOpt{withHeader("sec-fetch-site", "same-site")}, want: 403},
		{name: "no origin, sec-fetch-site cross-site", method: "POST", path: "/api/x", opts: []reqOpt{withHeader("sec-fetch-site", "cross-site")}, want: 403},
		{name: "a cross-site origin is not saved by sec-fetch-site", method: "POST", path: "/api/x",
			opts: []reqOpt{withHeader("origin", "https://evil.example"), withHeader("sec-fetch-site", "same-origin")}, want: 403},
		{name: "no evidence at all on POST", method: "POST", path: "/api/x", want: 403},
		{name: "unknown method is unsafe", method: "PROPFIND", path: "/api/x", want: 403},
		{name: "lower-case get is not GET", method: "get", path: "/api/x", want: 403},
		{name: "bearer requests are exempt", method: "POST", path: "/api/x", bearer: true, opts: []reqOpt{withHeader("origin", "https://evil.example")}, want: 200},
		{name: "public paths are not authenticated, so not checked", method: "POST", path: "/public/form", opts: []reqOpt{withHeader("origin", "https://evil.example")}, want: 200},
		{name: "disabled", method: "POST", path: "/api/x", csrf: CSRF{Disabled: true}, opts: []reqOpt{withHeader("origin", "https://evil.example")}, want: 200},
		{name: "allowed origins replace the request's own", method: "POST", path: "/api/x",
			csrf: CSRF{AllowedOrigins: []string{"https://www.example.com"}}, opts: []reqOpt{withHeader("origin", "https://www.example.com")}, want: 200},
		{name: "allowed origins normalised", method: "POST", path: "/api/x",
			csrf: CSRF{AllowedOrigins: []string{"HTTPS://WWW.example.com:443/"}}, opts: []reqOpt{withHeader("origin", "https://www.example.com")}, want: 200},
		{name: "own origin not implied when origins are listed", method: "POST", path: "/api/x",
			csrf: CSRF{AllowedOrigins: []string{"https://www.example.com"}}, opts: []reqOpt{withHeader("origin", own)}, want: 403},
		{name: "cookie logout, cross-site origin", method: "POST", path: "/auth/logout", opts: []reqOpt{withHeader("origin", "https://evil.example")}, want: 403},
		{name: "cookie logout via GET from a cross-site link", method: "GET", path: "/auth/logout", opts: []reqOpt{withHeader("sec-fetch-site", "cross-site")}, want: 403},
		{name: "cookie logout via GET without evidence either way", method: "GET", path: "/auth/logout", want: 204},
		{name: "cookie logout via POST without evidence", method: "POST", path: "/auth/logout", want: 403},
		{name: "cookie logout from own page", method: "POST", path: "/auth/logout", opts: []reqOpt{withHeader("origin", own)}, want: 204},
		{name: "bearer logout is exempt", method: "POST", path: "/auth/logout", bearer: true, opts: []reqOpt{withHeader("origin", "https://evil.example")}, want: 204},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) { o.CSRF = tt.csrf })
			id := f.login(t, "alice", nil, nil)
			cred := withCookie("__Host-sid=" + id)
			if tt.bearer {
				cred = withHeader("authorization", "Bearer "+id)
			}
			resp := f.check(t, request(tt.method, tt.path, append([]reqOpt{cred}, tt.opts...)...))
			if got := status(resp); got != tt.want {
				t.Fatalf("status %d, want %d (%v)", got, tt.want, resp.GetDeniedResponse().GetBody())
			}
			if tt.want == 403 && resp.GetDeniedResponse().GetBody() != `{"error":"csrf"}` {
				t.Fatalf("body %q", resp.GetDeniedResponse().GetBody())
			}
			if tt.want == 403 && tt.path == "/auth/logout" {
				if got := status(f.check(t, request("GET", "/api/x", cred))); got != 200 {
					t.Fatalf("refused logout still ended the session: %d", got)
				}
			}
		})
	}
}

// TestCSRFRepeatedOrigin covers the header_map form, where a header can
// repeat: two Origins are ambiguous and refused even if one is right.
func TestCSRFRepeatedOrigin(t *testing.T) {
	f := newFixture(t, session.NewMemoryStore(nil))
	id := f.login(t, "alice", nil, nil)
	r := request("POST", "/api/x")
	r.Attributes.Request.Http.Headers = nil
	r.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "cookie", RawValue: []byte("__Host-sid=" + id)},
		{Key: "origin", RawValue: []byte("https://app.example.com")},
		{Key: "origin", RawValue: []byte("https://evil.example")},
	}}
	if got := status(f.check(t, r)); got != 403 {
		t.Fatalf("two origins: %d, want 403", got)
	}
}

func TestNormalizeOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"https://App.Example.com":      "https://app.example.com",
		"https://app.example.com:443/": "https://app.example.com",
		"http://app.example.com:80":    "http://app.example.com",
		"http://app.example.com:443":   "http://app.example.com:443",
		"https://app.example.com:8443": "https://app.example.com:8443",
	} {
		if got := NormalizeOrigin(in); got != want {
			t.Errorf("NormalizeOrigin(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkCSRFCheck is the cost the check adds to an unsafe cookie request.
func BenchmarkCSRFCheck(b *testing.B) {
	f := newFixture(b, session.NewMemoryStore(nil))
	r := request("POST", "/api/x", withHeader("origin", "https://app.example.com"))
	h := headersOf(r.Attributes.Request.Http)
	b.ReportAllocs()
	for b.Loop() {
		if f.srv.csrfRefused(r.Attributes.Request.Http, h, true) {
			b.Fatal("refused")
		}
	}
}
