package authz

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sessiongate/sessiongate/internal/logtest"
	"github.com/sessiongate/sessiongate/internal/testenv"
	"github.com/sessiongate/sessiongate/pkg/admin"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// The bad-input catalog: every kind of hostile or broken input the threat model
// names, sent to the Check API and to the admin API of one sessiongate
// wired the way serve wires it (both over the same real Redis), with the
// answer each must get written in the table. Besides its own status, every
// Check answer is held to what no input may ever cause: a gRPC error (an
// allow under failure_mode_allow), an answer gRPC cannot marshal, a CR, LF
// or NUL in any header sessiongate emits or any claim it signs, a token on a
// denial, or the session cookie passed upstream. After all cases, the logs
// of both APIs must not contain any session ID or the admin token.

const catalogAdminToken = "catalog-admin-token-0123456789"

// catalogHost is the host every Check request names; same-origin CSRF
// checks compare Origin against it.
const catalogHost = "https://app.example.com"

type checkInput struct {
	method  string
	path    string
	headers map[string]string     // map form; values may hold {placeholders}
	raw     []*corev3.HeaderValue // list form (encode_raw_headers) instead of headers
	ext     map[string]string     // context_extensions
	html    bool                  // Accept: text/html (a browser navigation)
	source  string                // Envoy's source.address
	bound   bool                  // ask the server with the session binding on
	body    string                // the request body as Envoy packs it (raw_body); may hold {placeholders}
}

type adminInput struct {
	method string
	path   string
	body   string // may hold {placeholders}
	ctype  string // Content-Type; "" = application/json
	token  string // bearer; "" = the valid admin token, "-" = none
}

// Outcomes other than a plain status.
const (
	wantToken        = "token"         // 200 with a freshly signed token
	wantServiceToken = "service_token" // 200 with a freshly signed service token
	wantPublic       = "public"        // 200, no token, client-sent token header removed
	wantLocal        = "local"         // 200 answered by sessiongate itself (self-service): nothing goes upstream
	wantRefreshed    = "refreshed"     // 200 local reply with a new token pair (the token endpoint)
)

type badInput struct {
	name  string
	check *checkInput
	admin *adminInput
	want  int    // HTTP status the client gets (Envoy's, for Check)
	kind  string // for 200 Checks: wantToken or wantPublic
}

func TestBadInputCatalog(t *testing.T) {
	c := newCatalog(t)
	id := func(n int) string { return strings.Repeat("x", n) }
	jwtShaped := "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.c2lnbmF0dXJlc2lnbmF0dXJl"

	cases := []badInput{
		// Positive controls: the fixture works, so the refusals below mean something.
		{name: "control: valid cookie", want: 200, kind: wantToken,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "theme=dark; __Host-sid={alice}"}}},
		{name: "control: valid bearer", want: 200, kind: wantToken,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "control: admin role on /admin/", want: 200, kind: wantToken,
			check: &checkInput{method: "GET", path: "/admin/users", headers: map[string]string{"cookie": "__Host-sid={bob}"}}},
		{name: "control: admin create", want: 201,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"dave","device":{"name":"phone"}}`}},

		// Self-service routes: answered by sessiongate, matched exactly.
		{name: "self-service: list my sessions", want: 200, kind: wantLocal,
			check: &checkInput{method: "GET", path: "/auth/sessions", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "self-service: devices page", want: 200, kind: wantLocal,
			check: &checkInput{method: "GET", path: "/auth/devices", headers: map[string]string{"cookie": "__Host-sid={alice}"}, html: true}},
		{name: "self-service: prefix in upper case", want: 400,
			check: &checkInput{method: "GET", path: "/AUTH/sessions", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "self-service: prefix in mixed case", want: 400,
			check: &checkInput{method: "GET", path: "/auth/Sessions", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "self-service: page in upper case", want: 400,
			check: &checkInput{method: "GET", path: "/auth/DEVICES", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "self-service: query string refused", want: 400,
			check: &checkInput{method: "GET", path: "/auth/sessions?subject=bob", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "self-service: page with a query string", want: 400,
			check: &checkInput{method: "GET", path: "/auth/devices?x=1", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "self-service: prefix folding from a long s", want: 400,
			check: &checkInput{method: "GET", path: "/auth/%C5%BFessions", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "self-service: dot segment to another ref", want: 400,
			check: &checkInput{method: "DELETE", path: "/auth/sessions/0123456789abcdef0123456789abcdef/..", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: escaped slash", want: 400,
			check: &checkInput{method: "DELETE", path: "/auth/sessions%2f0123456789abcdef0123456789abcdef", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: double slash", want: 400,
			check: &checkInput{method: "GET", path: "/auth//sessions", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: lower-case delete", want: 405,
			check: &checkInput{method: "delete", path: "/auth/sessions/0123456789abcdef0123456789abcdef", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: GET a ref", want: 405,
			check: &checkInput{method: "GET", path: "/auth/sessions/0123456789abcdef0123456789abcdef", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: POST the list", want: 405,
			check: &checkInput{method: "POST", path: "/auth/sessions", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: PUT the page", want: 405,
			check: &checkInput{method: "PUT", path: "/auth/devices", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: GET revoke-others", want: 405,
			check: &checkInput{method: "GET", path: "/auth/sessions/revoke-others", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: trailing slash", want: 404,
			check: &checkInput{method: "GET", path: "/auth/sessions/", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: unknown sub-route", want: 404,
			check: &checkInput{method: "POST", path: "/auth/sessions/0123456789abcdef0123456789abcdef/delete", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: unknown ref", want: 404,
			check: &checkInput{method: "DELETE", path: "/auth/sessions/0123456789abcdef0123456789abcdef", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: a session ID in place of a ref", want: 404,
			check: &checkInput{method: "DELETE", path: "/auth/sessions/{bob}", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: cross-site revoke-others", want: 403,
			check: &checkInput{method: "POST", path: "/auth/sessions/revoke-others", headers: map[string]string{"cookie": "__Host-sid={alice}", "origin": "https://evil.example"}}},
		{name: "self-service: revoke-others without CSRF evidence", want: 403,
			check: &checkInput{method: "POST", path: "/auth/sessions/revoke-others", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "self-service: service credential", want: 403,
			check: &checkInput{method: "GET", path: "/auth/sessions", headers: map[string]string{"authorization": "Bearer {svc}"}}},
		{name: "self-service: revoked session", want: 401,
			check: &checkInput{method: "GET", path: "/auth/sessions", headers: map[string]string{"cookie": "__Host-sid={revoked}"}}},
		{name: "self-service: corrupt record", want: 401,
			check: &checkInput{method: "GET", path: "/auth/sessions", headers: map[string]string{"authorization": "Bearer {crlf}"}}},
		{name: "self-service: page without a session goes to login", want: 302,
			check: &checkInput{method: "GET", path: "/auth/devices", html: true}},
		{name: "self-service: page path with a trailing slash is an ordinary path", want: 200, kind: wantToken,
			check: &checkInput{method: "GET", path: "/auth/devices/", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "self-service: a ; parameter after the ref", want: 400,
			check: &checkInput{method: "DELETE", path: "/auth/sessions/0123456789abcdef0123456789abcdef;x", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: an escaped slash after the ref", want: 400,
			check: &checkInput{method: "DELETE", path: "/auth/sessions/0123456789abcdef0123456789abcdef%2F", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: an escaped letter in the ref", want: 400,
			check: &checkInput{method: "DELETE", path: "/auth/sessions/%30123456789abcdef0123456789abcdef", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: a dot segment before the form's revoke", want: 400,
			check: &checkInput{method: "POST", path: "/auth/sessions/0123456789abcdef0123456789abcdef/./revoke", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: a trailing slash after the ref", want: 404,
			check: &checkInput{method: "DELETE", path: "/auth/sessions/0123456789abcdef0123456789abcdef/", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: revoke-others with a trailing slash", want: 404,
			check: &checkInput{method: "POST", path: "/auth/sessions/revoke-others/", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: revoke-others with an escaped letter", want: 400,
			check: &checkInput{method: "POST", path: "/auth/sessions/%72evoke-others", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: revoke-others after a double slash", want: 400,
			check: &checkInput{method: "POST", path: "/auth/sessions//revoke-others", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: revoke-others in upper case is a ref", want: 405,
			check: &checkInput{method: "POST", path: "/auth/sessions/REVOKE-OTHERS", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "self-service: lower-case post of revoke-others", want: 405,
			check: &checkInput{method: "post", path: "/auth/sessions/revoke-others", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "self-service: HEAD of revoke-others", want: 405,
			check: &checkInput{method: "HEAD", path: "/auth/sessions/revoke-others", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "self-service: method override header on a GET", want: 405,
			check: &checkInput{method: "GET", path: "/auth/sessions/revoke-others", headers: map[string]string{"cookie": "__Host-sid={alice}", "x-http-method-override": "POST"}}},
		{name: "self-service: cookie DELETE without CSRF evidence", want: 403,
			check: &checkInput{method: "DELETE", path: "/auth/sessions/0123456789abcdef0123456789abcdef", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "self-service: same-site (not same-origin) form post", want: 403,
			check: &checkInput{method: "POST", path: "/auth/sessions/0123456789abcdef0123456789abcdef/revoke", headers: map[string]string{"cookie": "__Host-sid={alice}", "sec-fetch-site": "same-site"}}},
		{name: "self-service: a refresh token as the bearer", want: 401,
			check: &checkInput{method: "GET", path: "/auth/sessions", headers: map[string]string{"authorization": "Bearer {rt}"}}},
		{name: "self-service: a refresh token as the cookie", want: 401,
			check: &checkInput{method: "GET", path: "/auth/sessions", headers: map[string]string{"cookie": "__Host-sid={rt}"}}},
		{name: "self-service: a session ID as a family_ref", want: 404,
			check: &checkInput{method: "DELETE", path: "/auth/sessions/fam_{bob}", headers: map[string]string{"authorization": "Bearer {alice}"}}},

		// Malformed and duplicated cookies.
		{name: "no credential", want: 401, check: &checkInput{method: "GET", path: "/app/x"}},
		{name: "no credential, browser navigation goes to login", want: 302, check: &checkInput{method: "GET", path: "/app/x?a=%0d%0aSet-Cookie:x", html: true}},
		{name: "two session cookies, same value", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={alice}; __Host-sid={alice}"}}},
		{name: "two session cookies, different values", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={alice}; __Host-sid={bob}"}}},
		{name: "two session cookies in two cookie headers (HTTP/2)", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", raw: []*corev3.HeaderValue{
				{Key: "cookie", Value: "__Host-sid={alice}"}, {Key: "cookie", Value: "__Host-sid={bob}"}}}},
		{name: "cookie and a different bearer", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={alice}", "authorization": "Bearer {bob}"}}},
		{name: "two authorization headers", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", raw: []*corev3.HeaderValue{
				{Key: "authorization", Value: "Bearer {alice}"}, {Key: "authorization", Value: "Bearer {alice}"}}}},
		{name: "session cookie without a value", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid="}}},
		{name: "session cookie quoted", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": `__Host-sid="{alice}"`}}},
		{name: "session ID with base64 padding", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={alice}="}}},
		{name: "well-formed but unknown session ID", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={unknown}"}}},
		{name: "revoked session", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={revoked}"}}},

		// Oversized headers and values.
		{name: "cookie header over 64 KiB", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "pad=" + id(65<<10) + "; __Host-sid={alice}"}}},
		{name: "large other cookie (8 KiB) passes upstream without the session cookie", want: 200, kind: wantToken,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "pad=" + id(8<<10) + "; __Host-sid={alice}"}}},
		{name: "bearer of 16 KiB", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"authorization": "Bearer " + id(16<<10)}}},
		{name: "path of 64 KiB under a public prefix", want: 200, kind: wantPublic,
			check: &checkInput{method: "GET", path: "/public/" + id(64<<10)}},

		// Non-UTF-8 and control characters.
		{name: "CRLF header injection in the cookie header", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "a=b\r\nx-internal-jwt: forged; __Host-sid={alice}"}}},
		{name: "NUL in the cookie header", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "a=\x00; __Host-sid={alice}"}}},
		{name: "invalid UTF-8 in a raw cookie header (regression: answer failed to marshal)", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", raw: []*corev3.HeaderValue{
				{Key: "cookie", RawValue: []byte("a=\xff\xfe; __Host-sid={alice}")}}}},
		{name: "valid UTF-8 in another cookie passes", want: 200, kind: wantToken,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "name=zoë; __Host-sid={alice}"}}},
		{name: "tab in the path", want: 400, check: &checkInput{method: "GET", path: "/public/a\tb"}},
		{name: "escaped NUL in the path", want: 400, check: &checkInput{method: "GET", path: "/public/%00/x"}},
		{name: "escaped CRLF in the path", want: 400, check: &checkInput{method: "GET", path: "/public/%0d%0ax-internal-jwt:%20x"}},
		{name: "escaped invalid UTF-8 in the path", want: 400, check: &checkInput{method: "GET", path: "/app/%ff%fe"}},
		{name: "overlong UTF-8 dots in the path", want: 400, check: &checkInput{method: "GET", path: "/public/%c0%ae%c0%ae/admin/"}},

		// CRLF in claim values and device names.
		{name: "admin: CRLF in a device name", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve","device":{"name":"x\r\nSet-Cookie: a=b"}}`}},
		{name: "admin: CRLF in a claim value", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve","claims":{"org":"acme\r\nx-internal-jwt: forged"}}`}},
		{name: "admin: LF in a claim update", want: 400,
			admin: &adminInput{method: "PATCH", path: "/v1/users/alice/sessions", body: `{"claims":{"org":"a\nb"}}`}},
		{name: "admin: U+2028 in the subject", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve\u2028x"}`}},
		{name: "admin: escaped NUL in a role", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve","roles":["ad\u0000min"]}`}},
		{name: "admin: invalid UTF-8 in the body", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: "{\"subject\":\"eve\xff\"}"}},
		{name: "admin: encoded CRLF in a subject in the URL", want: 400,
			admin: &adminInput{method: "GET", path: "/v1/users/alice%0d%0aX:%20y/sessions"}},
		{name: "record in Redis with CRLF in the subject (written around the admin API)", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={crlf}"}}},
		{name: "record in Redis with LF in a claim", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={crlfclaim}"}}},

		// Path tricks against public prefixes: never turn a protected path public.
		{name: "dot-dot out of a public prefix", want: 400, check: &checkInput{method: "GET", path: "/public/../admin/"}},
		{name: "escaped dot-dot", want: 400, check: &checkInput{method: "GET", path: "/public/%2e%2e/admin/"}},
		{name: "half-escaped dot-dot", want: 400, check: &checkInput{method: "GET", path: "/public/.%2E/admin/"}},
		{name: "escaped slash", want: 400, check: &checkInput{method: "GET", path: "/public%2f..%2fadmin/"}},
		{name: "double slash", want: 400, check: &checkInput{method: "GET", path: "//admin/"}},
		{name: "double slash inside a public prefix", want: 400, check: &checkInput{method: "GET", path: "/public//../admin/"}},
		{name: "semicolon path parameter", want: 400, check: &checkInput{method: "GET", path: "/public;/../admin/"}},
		{name: "escaped semicolon", want: 400, check: &checkInput{method: "GET", path: "/public/%3b/admin/"}},
		{name: "backslash", want: 400, check: &checkInput{method: "GET", path: "/public\\..\\admin/"}},
		{name: "double-escaped dot-dot", want: 400, check: &checkInput{method: "GET", path: "/public/%252e%252e/admin/"}},
		{name: "escaped letter", want: 400, check: &checkInput{method: "GET", path: "/%61dmin/"}},
		{name: "dot-dot behind a query string is not a path", want: 200, kind: wantPublic,
			check: &checkInput{method: "GET", path: "/public/x?next=/../admin/"}},
		{name: "public prefix in the query does not make a path public", want: 401,
			check: &checkInput{method: "GET", path: "/admin/x?/public/"}},

		// Unicode case tricks.
		{name: "upper case dodges no protected rule", want: 403,
			check: &checkInput{method: "GET", path: "/ADMIN/users", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "mixed case deny rule", want: 403,
			check: &checkInput{method: "GET", path: "/BlOcKeD/x", headers: map[string]string{"cookie": "__Host-sid={bob}"}}},
		{name: "upper case public prefix is not public", want: 401, check: &checkInput{method: "GET", path: "/PUBLIC/x"}},
		{name: "dotless i folds to admin", want: 400, check: &checkInput{method: "GET", path: "/adm%C4%B1n/users", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "Kelvin sign folds to k", want: 400, check: &checkInput{method: "GET", path: "/bloc%E2%84%AAed/x", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "fullwidth letter folds to ASCII", want: 400, check: &checkInput{method: "GET", path: "/%EF%BD%81dmin/", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "soft hyphen inside a protected name", want: 400, check: &checkInput{method: "GET", path: "/adm%C2%ADin/", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "two-dot leader becomes dot-dot under NFKC", want: 400, check: &checkInput{method: "GET", path: "/public/%E2%80%A5/admin/"}},
		{name: "fraction slash becomes a slash", want: 400, check: &checkInput{method: "GET", path: "/public%E2%81%84..%E2%81%84admin/"}},
		{name: "ordinary non-ASCII under a public prefix stays public", want: 200, kind: wantPublic,
			check: &checkInput{method: "GET", path: "/public/caf%C3%A9"}},

		// Session records in Redis that are garbage, too large or of another version.
		{name: "record is binary garbage", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={garbage}"}}},
		{name: "record larger than MaxRecordSize", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={huge}"}}},
		{name: "record of format version 2", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={v2}"}}},
		{name: "record with an unknown field", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={unknownfield}"}}},
		{name: "record with data after its JSON", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={trailing}"}}},
		{name: "record without a subject", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={nosubject}"}}},
		{name: "record of the wrong Redis type (a list)", want: 503,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={wrongtype}"}}},

		// A JWT-shaped string where a session ID belongs; a session ID where it does not.
		{name: "JWT in the session cookie", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid=" + jwtShaped}}},
		{name: "JWT as the bearer token", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"authorization": "Bearer " + jwtShaped}}},
		{name: "forged internal token header with a valid session is overwritten", want: 200, kind: wantToken,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={alice}", tokenHeader: jwtShaped}}},
		{name: "forged internal token header on a public path is removed", want: 200, kind: wantPublic,
			check: &checkInput{method: "GET", path: "/public/x", headers: map[string]string{tokenHeader: jwtShaped}}},
		{name: "session ID in the query string is ignored", want: 401,
			check: &checkInput{method: "GET", path: "/app/x?__Host-sid={alice}&sid={alice}"}},
		{name: "session ID in another header is ignored", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"x-session-id": "{alice}", "x-forwarded-cookie": "__Host-sid={alice}"}}},
		{name: "admin: session ID where a session_ref belongs", want: 400,
			admin: &adminInput{method: "DELETE", path: "/v1/sessions/{alice}"}},
		{name: "admin: JWT where a session_ref belongs", want: 400,
			admin: &adminInput{method: "DELETE", path: "/v1/sessions/" + jwtShaped}},

		// CSRF on cookie sessions; bearer exempt.
		{name: "POST with the cookie and no Origin", want: 403,
			check: &checkInput{method: "POST", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "POST with the cookie from another origin", want: 403,
			check: &checkInput{method: "POST", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={alice}", "origin": "https://evil.example"}}},
		{name: "POST with the cookie and Origin null", want: 403,
			check: &checkInput{method: "POST", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={alice}", "origin": "null"}}},
		{name: "lower-case method is unsafe too", want: 403,
			check: &checkInput{method: "delete", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={alice}", "sec-fetch-site": "cross-site"}}},
		{name: "POST with the cookie from the same origin", want: 200, kind: wantToken,
			check: &checkInput{method: "POST", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={alice}", "origin": catalogHost}}},
		{name: "POST with a bearer and no Origin is exempt", want: 200, kind: wantToken,
			check: &checkInput{method: "POST", path: "/app/x", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "bad context_extensions access", want: 403,
			check: &checkInput{method: "GET", path: "/public/x", ext: map[string]string{"access": "PUBLIC"}}},

		// Parser differentials: the session credential twice, method case,
		// ignorable code points next to dot segments, Unicode whitespace
		// around cookie names. Each got through before it was closed.
		{name: "same ID in cookie and bearer: neither reaches the upstream", want: 200, kind: wantToken,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "theme=dark; __Host-sid={alice}", "authorization": "Bearer {alice}"}}},
		{name: "same ID in a lone cookie and bearer", want: 200, kind: wantToken,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={alice}", "authorization": "Bearer {alice}"}}},
		{name: "bearer's ID copied into another cookie is not passed on", want: 200, kind: wantToken,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "copy={alice}; theme=dark", "authorization": "Bearer {alice}"}}},
		{name: "cookie's ID copied into another cookie is not passed on", want: 200, kind: wantToken,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "copy={alice}; __Host-sid={alice}; theme=dark"}}},
		{name: "cookie's ID under another Authorization scheme is not passed on", want: 200, kind: wantToken,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={alice}", "authorization": "Token {alice}"}}},
		{name: "public path: session cookie and bearer are not passed on", want: 200, kind: wantPublic,
			check: &checkInput{method: "GET", path: "/public/x", headers: map[string]string{"cookie": "theme=dark; __Host-sid={alice}", "authorization": "Bearer {alice}"}}},
		{name: "public path: lone session cookie is not passed on", want: 200, kind: wantPublic,
			check: &checkInput{method: "GET", path: "/public/x", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "public path: two session cookies are not passed on", want: 200, kind: wantPublic,
			check: &checkInput{method: "GET", path: "/public/x", headers: map[string]string{"cookie": "__Host-sid={alice}; a=b; __Host-sid={bob}"}}},
		{name: "public path: session cookie after a comma (Python splits there) is not passed on", want: 200, kind: wantPublic,
			check: &checkInput{method: "GET", path: "/public/x", headers: map[string]string{"cookie": "a=b, __Host-sid={alice}"}}},
		{name: "public path: two bearers joined by Envoy are not passed on", want: 200, kind: wantPublic,
			check: &checkInput{method: "GET", path: "/public/x", raw: []*corev3.HeaderValue{
				{Key: "authorization", Value: "Bearer {alice}"}, {Key: "authorization", Value: "Bearer {bob}"}}}},
		{name: "public path: unreadable cookie header is not passed on", want: 200, kind: wantPublic,
			check: &checkInput{method: "GET", path: "/public/x", raw: []*corev3.HeaderValue{
				{Key: "cookie", RawValue: []byte("a=\xff; __Host-sid={alice}")}}}},
		{name: "lower-case method dodges no deny rule", want: 403,
			check: &checkInput{method: "delete", path: "/readonly/1", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "mixed-case method dodges no deny rule", want: 403,
			check: &checkInput{method: "Put", path: "/readonly/1", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "non-ASCII method", want: 400,
			check: &checkInput{method: "po\u017ft", path: "/readonly/1", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "method with a space", want: 400,
			check: &checkInput{method: "GET /public/", path: "/app/x", headers: map[string]string{"authorization": "Bearer {alice}"}}},
		{name: "soft hyphen before dot-dot out of a public prefix", want: 400,
			check: &checkInput{method: "GET", path: "/public/%C2%AD../admin/x"}},
		{name: "zero-width space before dot-dot past a role rule", want: 400,
			check: &checkInput{method: "GET", path: "/app/%E2%80%8B../admin/x", headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "BOM after dot-dot", want: 400, check: &checkInput{method: "GET", path: "/public/..%EF%BB%BF/admin/x"}},
		{name: "soft hyphen makes an empty segment", want: 400, check: &checkInput{method: "GET", path: "/public/%C2%AD/x"}},
		{name: "dot-dot with a trailing space", want: 400, check: &checkInput{method: "GET", path: "/public/..%20/admin/x"}},
		{name: "dot-dot before an escaped question mark", want: 400, check: &checkInput{method: "GET", path: "/public/..%3F/admin/x"}},
		{name: "three dots", want: 400, check: &checkInput{method: "GET", path: "/public/.../admin/x"}},
		{name: "dots inside a name are a name", want: 200, kind: wantPublic, check: &checkInput{method: "GET", path: "/public/..well-known"}},
		{name: "en quad before the session cookie name", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "\u2000__Host-sid={alice}"}}},
		{name: "no-break space after the session cookie name", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid\u00a0={alice}"}}},
		{name: "en quad cookie beside the real one is ignored and not passed on", want: 200, kind: wantToken,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "\u2000__Host-sid={bob}; __Host-sid={alice}"}}},
		{name: "tab around the session cookie pair and name is optional whitespace", want: 200, kind: wantToken,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "a=b;\t__Host-sid\t={alice}\t"}}},
		{name: "space before the session cookie value", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid= {alice}"}}},

		// Admin JSON: unknown fields, huge bodies, negative or absurd timeouts.
		{name: "admin: unknown field", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve","is_admin":true}`}},
		{name: "admin: unknown device field", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve","device":{"os":"x"}}`}},
		{name: "admin: case-folded duplicate field (regression)", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve","Subject":"mallory"}`}},
		{name: "admin: duplicate key", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve","subject":"mallory"}`}},
		{name: "admin: trailing bracket (regression)", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve"}]`}},
		{name: "admin: body of 1 MiB", want: 413,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve","tenant":"` + id(1<<20) + `"}`}},
		{name: "admin: body just over 64 KiB", want: 413,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve","tenant":"` + id(admin.MaxBodyBytes) + `"}`}},
		{name: "admin: negative idle timeout", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve","idle_timeout":"-5m"}`}},
		{name: "admin: zero absolute timeout", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve","absolute_timeout":"0s"}`}},
		{name: "admin: absurd absolute timeout", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve","absolute_timeout":"876000h"}`}},
		{name: "admin: overflowing timeout", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve","idle_timeout":"99999999999999999999h"}`}},
		{name: "admin: numeric timeout", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve","idle_timeout":300}`}},
		{name: "admin: reserved claim", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve","claims":{"exp":"99999999999"}}`}},
		{name: "admin: subject of 257 bytes", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"` + id(257) + `"}`}},
		{name: "admin: 65 roles", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve","roles":[` + strings.TrimSuffix(strings.Repeat(`"r",`, 65), ",") + `]}`}},
		{name: "admin: not JSON content type", want: 415,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve"}`, ctype: "text/plain"}},
		{name: "admin: no token", want: 401,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve"}`, token: "-"}},
		{name: "admin: wrong token", want: 401,
			admin: &adminInput{method: "POST", path: "/v1/sessions", body: `{"subject":"eve"}`, token: "catalog-admin-token-0123456780"}},
		// Session binding (user agent, IPv4 /24, IPv6 /48, deny; client
		// address from the rightmost X-Forwarded-For entry): the {bound}
		// session was created from 198.51.100.23 with Firefox 115.
		{name: "control: bound session from its network and browser", want: 200, kind: wantToken,
			check: &checkInput{method: "GET", path: "/app/x", bound: true, source: "10.0.0.1", headers: map[string]string{
				"cookie": "__Host-sid={bound}", "user-agent": firefox128, "x-forwarded-for": "198.51.100.77"}}},
		{name: "binding: a client-written X-Forwarded-For entry left of the trusted hop", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", bound: true, source: "198.51.100.23", headers: map[string]string{
				"cookie": "__Host-sid={bound}", "user-agent": firefox115, "x-forwarded-for": "198.51.100.23, 203.0.113.9"}}},
		{name: "binding: source.address ignored when hops are trusted", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", bound: true, source: "198.51.100.23", headers: map[string]string{
				"cookie": "__Host-sid={bound}", "user-agent": firefox115}}},
		{name: "binding: X-Forwarded-For entry with a zone", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", bound: true, headers: map[string]string{
				"cookie": "__Host-sid={bound}", "user-agent": firefox115, "x-forwarded-for": "fe80::1%eth0"}}},
		{name: "binding: empty X-Forwarded-For entry", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", bound: true, headers: map[string]string{
				"cookie": "__Host-sid={bound}", "user-agent": firefox115, "x-forwarded-for": "198.51.100.23, "}}},
		{name: "binding: X-Forwarded-For hostname", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", bound: true, headers: map[string]string{
				"cookie": "__Host-sid={bound}", "user-agent": firefox115, "x-forwarded-for": "localhost"}}},
		{name: "binding: X-Forwarded-For IPv4 with leading zeros", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", bound: true, headers: map[string]string{
				"cookie": "__Host-sid={bound}", "user-agent": firefox115, "x-forwarded-for": "198.51.100.023"}}},
		{name: "binding: X-Forwarded-For entry with a port", want: 200, kind: wantToken,
			check: &checkInput{method: "GET", path: "/app/x", bound: true, headers: map[string]string{
				"cookie": "__Host-sid={bound}", "user-agent": firefox115, "x-forwarded-for": "198.51.100.23:50123"}}},
		{name: "binding: two X-Forwarded-For headers, the last one's entry counts", want: 200, kind: wantToken,
			check: &checkInput{method: "GET", path: "/app/x", bound: true, raw: []*corev3.HeaderValue{
				{Key: "cookie", Value: "__Host-sid={bound}"}, {Key: "user-agent", Value: firefox115},
				{Key: "x-forwarded-for", Value: "203.0.113.9"}, {Key: "x-forwarded-for", Value: "198.51.100.23"}}}},
		{name: "binding: two X-Forwarded-For headers, a foreign last one", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", bound: true, raw: []*corev3.HeaderValue{
				{Key: "cookie", Value: "__Host-sid={bound}"}, {Key: "user-agent", Value: firefox115},
				{Key: "x-forwarded-for", Value: "198.51.100.23"}, {Key: "x-forwarded-for", Value: "203.0.113.9"}}}},
		{name: "binding: another browser", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", bound: true, headers: map[string]string{
				"cookie": "__Host-sid={bound}", "user-agent": safari, "x-forwarded-for": "198.51.100.23"}}},
		{name: "binding: no user agent", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", bound: true, headers: map[string]string{
				"cookie": "__Host-sid={bound}", "x-forwarded-for": "198.51.100.23"}}},
		{name: "binding: CRLF in the user agent", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", bound: true, headers: map[string]string{
				"cookie": "__Host-sid={bound}", "user-agent": firefox115 + "\r\nx-internal-jwt: forged", "x-forwarded-for": "198.51.100.23"}}},
		{name: "binding: two user-agent headers", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", bound: true, raw: []*corev3.HeaderValue{
				{Key: "cookie", Value: "__Host-sid={bound}"}, {Key: "user-agent", Value: firefox115}, {Key: "user-agent", Value: firefox115},
				{Key: "x-forwarded-for", Value: "198.51.100.23"}}}},
		{name: "binding: mismatch on a browser navigation goes to login", want: 302,
			check: &checkInput{method: "GET", path: "/app/x", bound: true, html: true, headers: map[string]string{
				"cookie": "__Host-sid={bound}", "user-agent": firefox115, "x-forwarded-for": "203.0.113.9"}}},

		{name: "admin: update with an unknown field", want: 400,
			admin: &adminInput{method: "PATCH", path: "/v1/users/alice/sessions", body: `{"roles":["admin"],"subject":"bob"}`}},

		// Service credentials. Internal routes come from context_extensions.
		{name: "control: service credential on an internal route", want: 200, kind: wantServiceToken,
			check: &checkInput{method: "GET", path: "/app/x", ext: internal, headers: map[string]string{"authorization": "Bearer {svc}"}}},
		{name: "control: lower-case bearer scheme", want: 200, kind: wantServiceToken,
			check: &checkInput{method: "GET", path: "/app/x", ext: internal, headers: map[string]string{"authorization": "bearer {svc}"}}},
		{name: "service credential with a bad checksum", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", ext: internal, headers: map[string]string{"authorization": "Bearer {svc_badsum}"}}},
		{name: "service credential with a wrong prefix", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", ext: internal, headers: map[string]string{"authorization": "Bearer {svc_wrongprefix}"}}},
		{name: "service credential truncated", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", ext: internal, headers: map[string]string{"authorization": "Bearer {svc_short}"}}},
		{name: "a session ID presented as a service credential", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", ext: internal, headers: map[string]string{"authorization": "Bearer sgsvc_{alice}"}}},
		{name: "a service credential presented as a session cookie", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={svc}"}}},
		{name: "a service credential presented as a session on an internal route", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", ext: internal, headers: map[string]string{"cookie": "__Host-sid={svc}"}}},
		{name: "service credential beside a session cookie", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", ext: internal, headers: map[string]string{"authorization": "Bearer {svc}", "cookie": "__Host-sid={alice}"}}},
		{name: "two service credentials joined by a comma", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", ext: internal, headers: map[string]string{"authorization": "Bearer {svc}, Bearer {svc}"}}},
		{name: "service credential under Basic", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", ext: internal, headers: map[string]string{"authorization": "Basic {svc}"}}},
		{name: "revoked service credential", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", ext: internal, headers: map[string]string{"authorization": "Bearer {svc_revoked}"}}},
		{name: "credential of a deleted service", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", ext: internal, headers: map[string]string{"authorization": "Bearer {svc_deleted}"}}},
		{name: "user session on an internal route", want: 403,
			check: &checkInput{method: "GET", path: "/app/x", ext: internal, headers: map[string]string{"cookie": "__Host-sid={alice}"}}},
		{name: "service credential on a route for users only", want: 403,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"authorization": "Bearer {svc}"}}},
		{name: "service not in the route's services", want: 403,
			check: &checkInput{method: "GET", path: "/app/x", ext: map[string]string{"access": "internal", "services": "inventory"}, headers: map[string]string{"authorization": "Bearer {svc}"}}},
		{name: "context_extensions services not a list of names", want: 403,
			check: &checkInput{method: "GET", path: "/app/x", ext: map[string]string{"access": "internal", "services": "billing;x"}, headers: map[string]string{"authorization": "Bearer {svc}"}}},
		{name: "service credential copied into a cookie goes nowhere", want: 200, kind: wantServiceToken,
			check: &checkInput{method: "GET", path: "/app/x", ext: internal, headers: map[string]string{"authorization": "Bearer {svc}", "cookie": "theme=dark; k={svc}"}}},
		{name: "service credential on a public route is taken out", want: 200, kind: wantPublic,
			check: &checkInput{method: "GET", path: "/public/x", headers: map[string]string{"authorization": "Bearer {svc}", "cookie": "k={svc_revoked}"}}},
		{name: "admin: service name with a capital", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/services", body: `{"name":"Billing"}`}},
		{name: "admin: malformed credential_ref", want: 400,
			admin: &adminInput{method: "DELETE", path: "/v1/services/billing/credentials/{svc}", body: ``}},
		{name: "admin: service with an unknown field", want: 400,
			admin: &adminInput{method: "POST", path: "/v1/services", body: `{"name":"x","credential":"sgsvc_x"}`}},
		{name: "admin: oversized service body", want: 413,
			admin: &adminInput{method: "POST", path: "/v1/services", body: `{"name":"x","roles":["` + id(admin.MaxBodyBytes+1) + `"]}`}},

		// The token endpoint (refresh tokens). Answered by Check itself: a
		// local reply, never an allow.
		{name: "control: refresh", want: 200, kind: wantRefreshed,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=refresh_token&refresh_token={rt}"}},
		{name: "refresh: GET", want: 405, check: &checkInput{method: "GET", path: "/auth/token"}},
		{name: "refresh: lower-case post", want: 405,
			check: &checkInput{method: "post", path: "/auth/token", headers: formCT, body: "grant_type=refresh_token&refresh_token={rt}"}},
		{name: "refresh: body absent (with_request_body not configured)", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT}},
		{name: "refresh: JSON body", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: map[string]string{"content-type": "application/json"},
				body: `{"grant_type":"refresh_token","refresh_token":"{rt}"}`}},
		{name: "refresh: JSON body labelled a form", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: `{"grant_type":"refresh_token","refresh_token":"{rt}"}`}},
		{name: "refresh: no content type", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", body: "grant_type=refresh_token&refresh_token={rt}"}},
		{name: "refresh: multipart content type", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: map[string]string{"content-type": "multipart/form-data; boundary=x"},
				body: "grant_type=refresh_token&refresh_token={rt}"}},
		{name: "refresh: content type behind a no-break space", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: map[string]string{"content-type": "\u00a0application/x-www-form-urlencoded"},
				body: "grant_type=refresh_token&refresh_token={rt}"}},
		{name: "refresh: two content types", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", raw: []*corev3.HeaderValue{
				{Key: "content-type", Value: "application/x-www-form-urlencoded"}, {Key: "content-type", Value: "application/json"}},
				body: "grant_type=refresh_token&refresh_token={rt}"}},
		{name: "refresh: duplicate refresh_token", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=refresh_token&refresh_token={rt}&refresh_token={rt}"}},
		{name: "refresh: duplicate grant_type, one empty (Python drops it)", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=&grant_type=refresh_token&refresh_token={rt}"}},
		{name: "refresh: the same parameter once escaped", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=refresh_token&refresh_token={rt}&refresh%5Ftoken={rt}"}},
		{name: "refresh: semicolon separator", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=refresh_token;refresh_token={rt}"}},
		{name: "refresh: bad escape", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=refresh_token&refresh_token={rt}%zz"}},
		{name: "refresh: NUL escaped in the token", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=refresh_token&refresh_token={rt}%00"}},
		{name: "refresh: CRLF in the body", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=refresh_token\r\nrefresh_token={rt}"}},
		{name: "refresh: body over 1 KiB", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=refresh_token&refresh_token={rt}&client_id=" + id(1<<10)}},
		{name: "refresh: body of 1 MiB", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=refresh_token&refresh_token=" + id(1<<20)}},
		{name: "refresh: refresh token in the query string", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token?grant_type=refresh_token&refresh_token={rt}", headers: formCT, body: "grant_type=refresh_token"}},
		{name: "refresh: password grant", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=password&username=alice&password=x"}},
		{name: "refresh: grant type in another case", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=REFRESH_TOKEN&refresh_token={rt}"}},
		{name: "refresh: parameter name in another case", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=refresh_token&Refresh_Token={rt}"}},
		{name: "refresh: malformed refresh token (one character short)", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=refresh_token&refresh_token={rt_short}"}},
		{name: "refresh: oversized refresh token", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=refresh_token&refresh_token={rt}" + id(512)}},
		{name: "refresh: prefix in another case", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=refresh_token&refresh_token={rt_upper}"}},
		{name: "refresh: session ID as refresh token", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=refresh_token&refresh_token={alice}"}},
		{name: "refresh: session ID behind the refresh prefix", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=refresh_token&refresh_token=sgr_{alice}"}},
		{name: "refresh: service credential as refresh token", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=refresh_token&refresh_token={svc}"}},
		{name: "refresh: unknown refresh token", want: 400,
			check: &checkInput{method: "POST", path: "/auth/token", headers: formCT, body: "grant_type=refresh_token&refresh_token={rt_unknown}"}},
		{name: "refresh token as a bearer to an API route", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"authorization": "Bearer {rt}"}}},
		{name: "refresh token as a bearer beside a session cookie", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"authorization": "Bearer {rt}", "cookie": "__Host-sid={alice}"}}},
		{name: "refresh token as the session cookie", want: 401,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"cookie": "__Host-sid={rt}"}}},
		{name: "refresh token under another scheme beside a session cookie is not passed on", want: 200, kind: wantToken,
			check: &checkInput{method: "GET", path: "/app/x", headers: map[string]string{"authorization": "Token {rt}", "cookie": "__Host-sid={alice}; rt={rt}"}}},
		{name: "refresh token on a public route is taken out", want: 200, kind: wantPublic,
			check: &checkInput{method: "GET", path: "/public/x", headers: map[string]string{"authorization": "Bearer {rt}", "cookie": "theme=dark; rt={rt}"}}},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			switch {
			case tc.check != nil:
				c.runCheck(t, tc)
			case tc.admin != nil:
				c.runAdmin(t, tc)
			default:
				t.Fatal("case has neither a Check nor an admin request")
			}
		})
	}
	t.Logf("bad-input catalog: %d cases", len(cases))

	// Nothing above may have put a credential into a log line.
	logs := c.logs.String()
	if logs == "" {
		t.Fatal("no log output captured; the log check would prove nothing")
	}
	for name, secret := range c.secrets() {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %s", name)
		}
	}
}

// catalog is one sessiongate's Check server and admin API over one real
// Redis, with sessions created through the admin API and hostile records
// written straight into Redis.
type catalog struct {
	f     *fixture
	bound *Server // the same, with the session binding on
	admin *httptest.Server
	ids   map[string]string // placeholder name → session ID, service credential or refresh token
	// issued are the tokens the token endpoint handed out during the run:
	// secrets as much as ids.
	issued []string
	repl   *strings.Replacer
	logs   *logtest.Buffer
}

// internal makes a catalog route internal through context_extensions.
var internal = map[string]string{"access": "internal"}

// formCT is a token request's content type.
var formCT = map[string]string{"content-type": "application/x-www-form-urlencoded"}

func newCatalog(t *testing.T) *catalog {
	t.Helper()
	store, _, rdb := testenv.RedisStore(t, time.Second)

	logs := &logtest.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := &catalog{logs: logs, ids: map[string]string{}}
	c.f = newFixture(t, store, func(o *Options) {
		o.Log = log
		o.StoreTimeout = time.Second
		o.LogoutPath = ""
		o.Services = store
		o.SelfService = SelfService{PathPrefix: "/auth/sessions", PagePath: "/auth/devices", Sessions: store}
		o.Refresh, o.RefreshPath = store, "/auth/token"
	})
	bound := c.f.srv.o
	bound.Binding = Binding{UserAgent: true, IPv4Bits: 24, IPv6Bits: 48, Action: PolicyDeny}
	bound.XFFTrustedHops = 1
	c.bound = New(bound)
	h := admin.NewHandler(admin.Options{
		Store:           store,
		Services:        store,
		Cookie:          session.Cookie{Name: "__Host-sid", SameSite: "Lax"},
		IdleTimeout:     30 * time.Minute,
		AbsoluteTimeout: 12 * time.Hour,
		StoreTimeout:    time.Second,
		Log:             log,
	})
	h.SetTokens([]string{catalogAdminToken})
	c.admin = httptest.NewServer(h)
	t.Cleanup(c.admin.Close)

	// Real logins through the admin API.
	cl := admin.NewClient(c.admin.URL, catalogAdminToken, c.admin.Client())
	ctx := context.Background()
	for name, req := range map[string]admin.CreateRequest{
		"alice":   {Subject: "alice", Roles: []string{"user"}, Claims: map[string]string{"org": "acme"}, Device: &admin.Device{Name: "laptop", IP: "192.0.2.1"}},
		"bob":     {Subject: "bob", Roles: []string{"admin"}},
		"revoked": {Subject: "carol"},
		"bound":   {Subject: "erin", Device: &admin.Device{UserAgent: firefox115, IP: "198.51.100.23"}},
	} {
		resp, err := cl.CreateSession(ctx, req)
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		c.ids[name] = resp.SessionID
	}
	if err := cl.RevokeSession(ctx, session.RefOf(c.ids["revoked"])); err != nil {
		t.Fatal(err)
	}
	// Services, through the admin API too: one live credential, one revoked
	// beside it, one of a service deleted since.
	svc, err := cl.CreateService(ctx, admin.ServiceRequest{Name: "billing", Roles: []string{"payments"}})
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := cl.AddCredential(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.RevokeCredential(ctx, "billing", revoked.CredentialRef); err != nil {
		t.Fatal(err)
	}
	gone, err := cl.CreateService(ctx, admin.ServiceRequest{Name: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.DeleteService(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	cred := svc.Credential
	last := cred[len(cred)-1:]
	if last == "A" {
		last = "B"
	} else {
		last = "A"
	}
	c.ids["svc"], c.ids["svc_revoked"], c.ids["svc_deleted"] = cred, revoked.Credential, gone.Credential
	c.ids["svc_badsum"] = cred[:len(cred)-1] + last
	c.ids["svc_wrongprefix"] = "sgsvx_" + cred[len(session.CredentialPrefix):]
	c.ids["svc_short"] = cred[:len(cred)-6]

	// Records no sessiongate writes, put where a session ID leads.
	abs := strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)
	head := "1:1:" + abs + ":1800000:"
	for name, raw := range map[string]string{
		"garbage":      "\x00\xff\xfe not a record at all",
		"huge":         head + `{"sub":"alice","ten":"` + strings.Repeat("x", session.MaxRecordSize) + `","cat":1}`,
		"v2":           "2:1:" + abs + `:1800000:{"sub":"alice","cat":1}`,
		"unknownfield": head + `{"sub":"alice","adm":true,"cat":1}`,
		"trailing":     head + `{"sub":"alice","cat":1}{"sub":"root"}`,
		"nosubject":    head + `{"ten":"acme","cat":1}`,
		"crlf":         head + `{"sub":"alice\r\nx-internal-jwt: forged","cat":1}`,
		"crlfclaim":    head + `{"sub":"alice","clm":{"org":"acme\nx: y"},"cat":1}`,
	} {
		sid := newID(t)
		if err := rdb.Set(ctx, session.RecordKey(session.RefOf(sid)), raw, time.Hour).Err(); err != nil {
			t.Fatalf("write %s record: %v", name, err)
		}
		c.ids[name] = sid
	}
	wrong := newID(t)
	if err := rdb.RPush(ctx, session.RecordKey(session.RefOf(wrong)), "x").Err(); err != nil {
		t.Fatal(err)
	}
	c.ids["wrongtype"] = wrong
	c.ids["unknown"] = newID(t)

	// A refresh family, started as a login asking for refresh does.
	fam, _, err := store.CreateFamily(ctx, &session.Session{Subject: "frank", CreatedAt: time.Now().Truncate(time.Millisecond)}, session.Limit{},
		session.RefreshPolicy{AccessIdle: 10 * time.Minute, AccessAbsolute: 15 * time.Minute, TTL: 24 * time.Hour, Idle: time.Hour, Grace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	rt := fam.RefreshToken
	c.ids["rt"], c.ids["rt_access"] = rt, fam.ID
	c.ids["rt_short"], c.ids["rt_upper"] = rt[:len(rt)-1], "SGR_"+rt[len(session.RefreshTokenPrefix):]
	unknown, err := session.NewRefreshToken()
	if err != nil {
		t.Fatal(err)
	}
	c.ids["rt_unknown"] = unknown

	var pairs []string
	for name, v := range c.ids {
		pairs = append(pairs, "{"+name+"}", v)
	}
	c.repl = strings.NewReplacer(pairs...)
	return c
}

func newID(t *testing.T) string {
	t.Helper()
	id, err := session.NewID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// secrets are the strings that must never appear in a log.
func (c *catalog) secrets() map[string]string {
	out := map[string]string{"the admin token": catalogAdminToken}
	for name, id := range c.ids {
		out["session ID "+name] = id
	}
	for i, tok := range c.issued {
		out[fmt.Sprintf("issued token %d", i)] = tok
	}
	return out
}

func (c *catalog) runCheck(t *testing.T, tc badInput) {
	t.Helper()
	in := tc.check
	path := c.repl.Replace(in.path)
	req := request(in.method, path)
	h := req.Attributes.Request.Http
	for k, v := range in.headers {
		h.Headers[k] = c.repl.Replace(v)
	}
	if in.html {
		h.Headers["accept"] = "text/html,application/xhtml+xml"
	}
	if in.raw != nil {
		list := []*corev3.HeaderValue{{Key: ":path", Value: path}, {Key: ":method", Value: in.method}}
		for _, hv := range in.raw {
			list = append(list, &corev3.HeaderValue{Key: hv.Key, Value: c.repl.Replace(hv.Value),
				RawValue: []byte(c.repl.Replace(string(hv.RawValue)))})
		}
		h.HeaderMap = &corev3.HeaderMap{Headers: list}
	}
	if in.ext != nil {
		req.Attributes.ContextExtensions = in.ext
	}
	if in.source != "" {
		withSource(in.source)(req)
	}
	if in.body != "" {
		h.RawBody = []byte(c.repl.Replace(in.body))
	}
	srv := c.f.srv
	if in.bound {
		srv = c.bound
	}

	resp, v := srv.Decide(context.Background(), req)
	// explain runs the same decision code: the same verdict and status.
	if e := srv.Explain(context.Background(), req); e.Decision != v.Decision.String() || e.Status != status(resp) || e.Rule != v.Rule {
		t.Fatalf("explain says %s/%d (rule %d), Check %v/%d (rule %d)", e.Decision, e.Status, e.Rule, v.Decision, status(resp), v.Rule)
	}
	// gRPC marshals the answer before Envoy sees it; one that cannot be
	// marshalled is an error, and an error may be an allow.
	if _, err := proto.Marshal(resp); err != nil {
		t.Fatalf("answer does not marshal: %v", err)
	}
	got := status(resp)
	if got != tc.want {
		t.Fatalf("status %d, want %d", got, tc.want)
	}
	c.checkEmitted(t, resp)

	tok, hasToken := okHeader(t, resp, tokenHeader)
	switch {
	case tc.kind == wantRefreshed:
		if got != 200 {
			t.Fatalf("token endpoint answered %d", got)
		}
		tr := granted(t, resp)
		c.issued = append(c.issued, tr.AccessToken, tr.RefreshToken)
		return // a local reply: nothing goes upstream
	case got != 200:
		if hasToken || resp.GetOkResponse() != nil {
			t.Fatal("a denial carries an allow or a token")
		}
	case tc.kind == wantLocal:
		if hasToken || resp.GetOkResponse() != nil || resp.GetDeniedResponse().GetBody() == "" {
			t.Fatal("a self-service answer goes upstream, carries a token or is empty")
		}
	case tc.kind == wantPublic:
		if hasToken || !removes(resp, tokenHeader) {
			t.Fatalf("public answer: token set %v, removes %v", hasToken, resp.GetOkResponse().GetHeadersToRemove())
		}
	case tc.kind == wantToken:
		if !hasToken {
			t.Fatal("allow without a token")
		}
		claims := c.f.claims(t, tok, "internal")
		checkClaimsClean(t, claims)
		if sub, _ := claims["sub"].(string); sub == "" {
			t.Fatal("token without a subject")
		}
	case tc.kind == wantServiceToken:
		if !hasToken {
			t.Fatal("allow without a token")
		}
		claims := c.f.serviceClaims(t, tok, "internal")
		checkClaimsClean(t, claims)
		if claims["sub"] != "billing" {
			t.Fatalf("service token for %v", claims["sub"])
		}
	default:
		t.Fatalf("case %q wants 200 but says neither token nor public", tc.name)
	}
	if got == 200 && tc.kind != wantLocal {
		c.checkUpstream(t, req, resp)
	}
}

// checkUpstream fails when what the upstream receives, the client's
// headers as the allow answer changes them, still holds a session ID of
// the catalog, the session cookie's name, or a client-sent token header.
func (c *catalog) checkUpstream(t *testing.T, req *authv3.CheckRequest, resp *authv3.CheckResponse) {
	t.Helper()
	h := req.GetAttributes().GetRequest().GetHttp()
	sent := maps.Clone(h.GetHeaders())
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		v := value(hv)
		if old, ok := sent[hv.GetKey()]; ok && hv.GetKey() != ":path" && hv.GetKey() != ":method" {
			v = old + "," + v // how Envoy's map form joins repeats
		}
		sent[hv.GetKey()] = v
	}
	got := upstream(sent, resp)
	for k, v := range got {
		if k == ":path" {
			continue // a session ID in the query string is the client's to leak
		}
		for name, id := range c.ids {
			if strings.Contains(v, id) {
				t.Fatalf("upstream header %s carries session ID %s", k, name)
			}
		}
		if k == tokenHeader && !okHas(resp, tokenHeader) {
			t.Fatalf("upstream receives a client-sent %s", tokenHeader)
		}
	}
	if strings.Contains(strings.ToLower(got["cookie"]), "__host-sid") {
		t.Fatalf("upstream cookie header names the session cookie: %.80q", got["cookie"])
	}
}

// checkEmitted fails when any header sessiongate sets or names, or any
// metadata it attaches, holds a character that could split a header or a
// log line, or a session ID.
func (c *catalog) checkEmitted(t *testing.T, resp *authv3.CheckResponse) {
	t.Helper()
	var hs []*corev3.HeaderValueOption
	hs = append(hs, resp.GetOkResponse().GetHeaders()...)
	hs = append(hs, resp.GetDeniedResponse().GetHeaders()...)
	for _, h := range hs {
		k, v := h.GetHeader().GetKey(), h.GetHeader().GetValue()
		if hasControl(k) || hasControl(v) || len(h.GetHeader().GetRawValue()) > 0 {
			t.Fatalf("emitted header %q: %q holds a control character or raw bytes", k, v)
		}
		if k != "cookie" {
			for name, id := range c.ids {
				if strings.Contains(v, id) {
					t.Fatalf("emitted header %s carries session ID %s", k, name)
				}
			}
		}
	}
	for _, k := range resp.GetOkResponse().GetHeadersToRemove() {
		if hasControl(k) {
			t.Fatalf("header to remove %q holds a control character", k)
		}
	}
	// Every body is JSON but the devices page's, which is declared HTML;
	// none holds a session ID.
	b := resp.GetDeniedResponse().GetBody()
	html := false
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		html = html || h.GetHeader().GetKey() == "content-type" && h.GetHeader().GetValue() == "text/html; charset=utf-8"
	}
	if !json.Valid([]byte(b)) && b != "" && !html {
		t.Fatalf("denial body is not JSON: %q", b)
	}
	for name, id := range c.ids {
		if strings.Contains(b, id) {
			t.Fatalf("answer body carries session ID %s", name)
		}
	}
	for k, v := range resp.GetDynamicMetadata().GetFields() {
		if s, ok := v.GetKind().(*structpb.Value_StringValue); ok && hasControl(s.StringValue) {
			t.Fatalf("dynamic metadata %s holds a control character: %q", k, s.StringValue)
		}
	}
}

func checkClaimsClean(t *testing.T, claims map[string]any) {
	t.Helper()
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case string:
			if hasControl(x) {
				t.Fatalf("claim %s holds a control character: %q", path, x)
			}
		case []any:
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", path, i), e)
			}
		case map[string]any:
			for k, e := range x {
				if hasControl(k) {
					t.Fatalf("claim key %q holds a control character", k)
				}
				walk(path+"."+k, e)
			}
		}
	}
	walk("", map[string]any(claims))
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' })
}

func (c *catalog) runAdmin(t *testing.T, tc badInput) {
	t.Helper()
	in := tc.admin
	var body io.Reader
	if in.body != "" {
		body = strings.NewReader(c.repl.Replace(in.body))
	}
	req, err := http.NewRequest(in.method, c.admin.URL+c.repl.Replace(in.path), body)
	if err != nil {
		t.Fatal(err)
	}
	if in.body != "" {
		ct := in.ctype
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	switch in.token {
	case "":
		req.Header.Set("Authorization", "Bearer "+catalogAdminToken)
	case "-":
	default:
		req.Header.Set("Authorization", "Bearer "+in.token)
	}
	resp, err := c.admin.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != tc.want {
		t.Fatalf("status %d (%s), want %d", resp.StatusCode, bytes.TrimSpace(data), tc.want)
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			if hasControl(k) || hasControl(v) {
				t.Fatalf("admin response header %q: %q holds a control character", k, v)
			}
		}
	}
	if !json.Valid(data) {
		t.Fatalf("admin answer is not JSON: %q", data)
	}
	if resp.StatusCode >= 300 {
		for name, id := range c.ids {
			if bytes.Contains(data, []byte(id)) {
				t.Fatalf("error answer echoes session ID %s", name)
			}
		}
	}
}
