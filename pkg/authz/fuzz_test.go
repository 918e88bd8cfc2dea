package authz

import (
	"context"
	"net/http"
	pathpkg "path"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
)

// The fuzz targets here check invariants, not exact answers: whatever a
// client sends, sessiongate must never accept a credential that is not a
// session ID, never pass the session cookie or a CR/LF upstream, and never
// let a path that falls under a protected rule be answered as public or as
// merely authenticated. Seed corpora live in testdata/fuzz/<FuzzName>/ and
// run with every plain `go test`; `make fuzz` explores further.

const fuzzCookie = "__Host-sid"

// fuzzID is a syntactically valid session ID used to build inputs around.
var fuzzID = strings.Repeat("A", session.IDLen-1) + "E"

// FuzzSessionCookie drives the credential extraction (cookieHeaderOK,
// splitCookie, sessionID) with arbitrary Cookie and Authorization headers,
// in both of the forms Envoy sends headers in.
func FuzzSessionCookie(f *testing.F) {
	f.Add(fuzzCookie+"="+fuzzID, "", uint8(0))
	f.Add("a=b; "+fuzzCookie+"="+fuzzID+"; c=d", "", uint8(3))
	f.Add(fuzzCookie+"="+fuzzID+"; "+fuzzCookie+"="+fuzzID, "", uint8(0))
	f.Add("", "Bearer "+fuzzID, uint8(0))
	f.Add(fuzzCookie+"="+fuzzID, "bearer  "+fuzzID, uint8(0))
	f.Add("a=b\r\nx-internal-jwt: forged", "", uint8(0))
	f.Add(" "+fuzzCookie+" = "+fuzzID+" ;;", "", uint8(0))
	f.Add(fuzzCookie+"=eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "", uint8(0))
	f.Add("a=\xff; "+fuzzCookie+"="+fuzzID, "", uint8(1))
	f.Fuzz(func(t *testing.T, cookie, authorization string, split uint8) {
		for _, h := range fuzzHeaderForms(cookie, authorization, int(split)) {
			p, ok := sessionID(h, fuzzCookie)
			checkCredential(t, h, cookie, authorization, p, ok)
			checkScrubbed(t, h, scrubbed(h, fuzzCookie), "")
			if ok && p.from != noCredential {
				checkScrubbed(t, h, p, p.id)
			}
		}

		// Adding a second session cookie to anything makes it ambiguous,
		// and ambiguity is a refusal whatever else the header holds.
		dup := fuzzHeaders(map[string]string{"cookie": cookie + "; " + fuzzCookie + "=" + fuzzID + "; " + fuzzCookie + "=" + fuzzID})
		if p, ok := sessionID(dup, fuzzCookie); ok && p.from != noCredential {
			t.Fatalf("two session cookies accepted: cookie %q", cookie)
		}
	})
}

// fuzzHeaderForms returns the request headers in the map form and, split at
// a fuzzer-chosen byte into two cookie entries, in the list form
// (encode_raw_headers).
func fuzzHeaderForms(cookie, authorization string, split int) []headers {
	m := map[string]string{}
	if cookie != "" {
		m["cookie"] = cookie
	}
	if authorization != "" {
		m["authorization"] = authorization
	}
	forms := []headers{fuzzHeaders(m)}
	var list []*corev3.HeaderValue
	if cookie != "" {
		at := split % (len(cookie) + 1)
		list = append(list, &corev3.HeaderValue{Key: "cookie", RawValue: []byte(cookie[:at])})
		if at < len(cookie) {
			list = append(list, &corev3.HeaderValue{Key: "cookie", Value: cookie[at:]})
		}
	}
	if authorization != "" {
		list = append(list, &corev3.HeaderValue{Key: "authorization", Value: authorization})
	}
	if len(list) > 0 {
		forms = append(forms, headers{list: list})
	}
	return forms
}

func fuzzHeaders(m map[string]string) headers { return headers{m: m} }

// checkCredential holds one sessionID answer to the invariants.
func checkCredential(t *testing.T, h headers, cookie, authorization string, p presented, ok bool) {
	t.Helper()
	raw := h.cookies()
	if !ok {
		if p != (presented{}) {
			t.Fatalf("refusal leaks data: %+v", p)
		}
		return
	}
	if strings.ContainsAny(raw, "\r\n\x00") {
		t.Fatalf("cookie header with CR/LF/NUL accepted: %q", raw)
	}
	if len(raw) > maxCookieHeader {
		t.Fatalf("cookie header of %d bytes accepted", len(raw))
	}
	if p.from != noCredential && !session.ValidID(p.id) {
		t.Fatalf("returned %q, which is not a valid session ID (cookie %q, authorization %q)", p.id, cookie, authorization)
	}
	if p.from == noCredential && p.id != "" {
		t.Fatalf("no credential but id %q", p.id)
	}
	// Only an exact name, with ASCII space or tab around it, is the
	// session cookie: what a browser stores under the __Host- prefix.
	sessionCookies := 0
	for part := range strings.SplitSeq(raw, ";") {
		name, _, _ := strings.Cut(part, "=")
		if strings.Trim(name, " \t") == fuzzCookie {
			sessionCookies++
		}
	}
	if sessionCookies > 1 {
		t.Fatalf("%d session cookies accepted: %q", sessionCookies, raw)
	}
	if sessionCookies == 0 && p.from == fromCookie {
		t.Fatalf("credential from a cookie that is not there: %q", raw)
	}
	if p.from == fromBearer && !strings.Contains(authorization, p.id) {
		t.Fatalf("bearer credential %q not in authorization %q", p.id, authorization)
	}
}

// checkScrubbed fails when what an upstream would receive after the answer
// built from p still carries the session cookie or, when id is known, the
// session ID, in the cookie or the Authorization header.
func checkScrubbed(t *testing.T, h headers, p presented, id string) {
	t.Helper()
	cookie := h.cookies()
	if p.cookieChanged {
		cookie = p.cookie
	}
	if !utf8.ValidString(cookie) && p.cookieChanged {
		t.Fatalf("rebuilt cookie header is not UTF-8: %q", cookie)
	}
	if p.cookieChanged {
		// The rebuilt header goes upstream as a header value: no control
		// byte but tab.
		for i := 0; i < len(cookie); i++ {
			if c := cookie[i]; (c < 0x20 && c != '\t') || c == 0x7f {
				t.Fatalf("rebuilt cookie header holds byte %#x: %q", c, cookie)
			}
		}
	}
	if containsFoldASCII(cookie, fuzzCookie) {
		t.Fatalf("upstream cookie header still names the session cookie: %q", cookie)
	}
	if id != "" && strings.Contains(cookie, id) {
		t.Fatalf("upstream cookie header still carries the session ID: %q", cookie)
	}
	// Go's net/http, as an upstream in Go reads the header.
	for _, c := range (&http.Request{Header: http.Header{"Cookie": {cookie}}}).Cookies() {
		if c.Name == fuzzCookie || (id != "" && strings.Contains(c.Value, id)) {
			t.Fatalf("Go reads %s=%q in the upstream cookie header %q", c.Name, c.Value, cookie)
		}
	}
	if authz, n := h.get("authorization"); n > 0 && !p.dropAuthorization {
		if id != "" && strings.Contains(authz, id) {
			t.Fatalf("upstream Authorization still carries the session ID: %q", authz)
		}
		// Every way an upstream may split it: at spaces (Unicode ones too,
		// as Python's str.split does), commas, or anything not token68.
		for f := range strings.FieldsFuncSeq(authz, func(r rune) bool { return unicode.IsSpace(r) || r == ',' || r > 0x7f }) {
			if session.ValidID(f) {
				t.Fatalf("upstream Authorization still carries a session-shaped credential: %q", authz)
			}
		}
	}
}

// fuzzRoutes has every kind of rule, none overlapping another, so the rule
// a path belongs to is unambiguous whatever order they are tried in.
var fuzzRoutes = []Route{
	{PathPrefix: "/public/", Access: Public},
	{PathPrefix: "/static/", Methods: []string{"GET", "HEAD"}, Access: Public},
	{PathPrefix: "/blocked/", Access: Deny},
	{PathPrefix: "/admin/", Access: Authenticated, Roles: []string{"admin"}},
	{PathPrefix: "/api/internal", Access: Deny},
	{PathPrefix: "/readonly/", Methods: []string{"POST", "PUT", "PATCH", "DELETE"}, Access: Deny},
}

// pathFixture is a Server over a memory store with one role-less session:
// a Check for a protected path answers 403, an authenticated one 200 with a
// token, a public one the shared public answer, a refused path 400.
type pathFixture struct {
	srv *Server
	id  string
}

func newPathFixture(f testing.TB) *pathFixture { return newPathFixtureWith(f, fuzzRoutes) }

func newPathFixtureWith(f testing.TB, routes []Route) *pathFixture {
	f.Helper()
	key, err := token.GenerateKey(token.AlgES256)
	if err != nil {
		f.Fatal(err)
	}
	ks, err := token.NewKeySet(key, "")
	if err != nil {
		f.Fatal(err)
	}
	store := session.NewMemoryStore(nil)
	now := time.Now().Truncate(time.Millisecond)
	s := &session.Session{Ref: session.RefOf(fuzzID), Subject: "fuzz", CreatedAt: now,
		ExpiresAt: now.Add(24 * time.Hour), IdleTimeout: 24 * time.Hour}
	if _, err := store.Create(context.Background(), s, session.Limit{}); err != nil {
		f.Fatal(err)
	}
	srv := New(Options{
		Sessions:     store,
		Signer:       token.NewSigner(ks, "sessiongate"),
		Routes:       routes,
		Cookie:       session.Cookie{Name: fuzzCookie, SameSite: "Lax"},
		TokenHeader:  tokenHeader,
		Audience:     "internal",
		TokenTTL:     time.Hour,
		StoreTimeout: time.Second,
	})
	return &pathFixture{srv: srv, id: fuzzID}
}

// decision is what Check made of a path, as far as the route rules go.
type decision int

const (
	decRefused decision = iota // 400: not a canonical path
	decPublic
	decAllowed   // authenticated, token issued
	decForbidden // a Deny rule or a role rule the session lacks
	decOther
)

func (d decision) String() string {
	return [...]string{"refused", "public", "allowed", "forbidden", "other"}[d]
}

func (p *pathFixture) check(t testing.TB, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	resp, err := p.srv.Check(context.Background(), req)
	if err != nil {
		t.Fatalf("Check returned a gRPC error: %v", err)
	}
	return resp
}

func (p *pathFixture) decide(t testing.TB, method, path string) decision {
	t.Helper()
	req := request(method, path, withCookie(fuzzCookie+"="+p.id), withHeader("origin", "https://app.example.com"))
	resp, err := p.srv.Check(context.Background(), req)
	if err != nil {
		t.Fatalf("Check(%s %q) returned a gRPC error: %v", method, path, err)
	}
	switch {
	case resp == p.srv.resp.badRequest:
		return decRefused
	case resp == p.srv.resp.forbidden:
		return decForbidden
	case status(resp) == 200 && okHas(resp, tokenHeader):
		return decAllowed
	case status(resp) == 200:
		return decPublic
	}
	return decOther
}

// FuzzRoutePath drives path normalisation (cleanPath, foldPath) and route
// matching (match, matchFolded) through Check.
func FuzzRoutePath(f *testing.F) {
	for _, s := range []struct{ method, path string }{
		{"GET", "/public/x"}, {"GET", "/admin/x"}, {"GET", "/ADMIN/x"}, {"GET", "/public/../admin/x"},
		{"GET", "/public/%2e%2e/admin/"}, {"GET", "/public/%2fadmin"}, {"GET", "//admin/"},
		{"GET", "/public/;/admin/"}, {"GET", "/adm%C4%B1n/"}, {"GET", "/public/%E2%80%A5/admin"},
		{"GET", "/%E2%84%AAdmin/"}, {"POST", "/readonly/x"}, {"post", "/readonly/x"}, {"GET", "/static/a?b#c"},
		{"GET", "/api/internal%E2%80%8B/x"}, {"GET", "/blocked%C2%AD/"},
	} {
		f.Add(s.method, s.path)
	}
	p := newPathFixture(f)
	f.Fuzz(func(t *testing.T, method, path string) {
		got := p.decide(t, method, path)
		if got == decOther {
			t.Fatalf("%s %q: unexpected answer", method, path)
		}
		if got == decRefused {
			return
		}
		clean, ok, _ := cleanPath(path)
		if !ok {
			t.Fatalf("%s %q: answered %v for a path cleanPath refuses", method, path, got)
		}
		checkCanonical(t, path, clean)

		// Every way an upstream may read the path: as sent, percent-decoded,
		// ASCII-folded and Unicode-folded. If any of them falls under a
		// restrictive rule, the answer must be a refusal or that rule's.
		dec, _ := percentDecode(clean)
		views := []string{strings.ToLower(clean), strings.ToLower(dec)}
		if folded, ok := foldPath(clean); ok {
			views = append(views, folded)
		}
		// And each with its dot segments resolved, as a normalising
		// upstream does after decoding.
		for _, v := range views {
			c := pathpkg.Clean(v)
			if strings.HasSuffix(v, "/") && !strings.HasSuffix(c, "/") {
				c += "/"
			}
			views = append(views, c)
		}
		for i := range fuzzRoutes {
			r := &fuzzRoutes[i]
			if !r.restrictive() || !r.forMethod(method) {
				continue
			}
			for _, v := range views {
				if strings.HasPrefix(v, strings.ToLower(r.PathPrefix)) && got != decForbidden {
					t.Fatalf("%s %q reads as %q under %q but was answered %v", method, path, v, r.PathPrefix, got)
				}
			}
		}
		// A public answer only for a path that is literally under a public
		// rule: no folding ever widens what is public.
		if got == decPublic {
			public := false
			for i := range fuzzRoutes {
				r := &fuzzRoutes[i]
				if r.Access == Public && r.forMethod(method) && strings.HasPrefix(clean, r.PathPrefix) {
					public = true
				}
			}
			if !public {
				t.Fatalf("%s %q answered public outside every public rule", method, path)
			}
		}
	})
}

// checkCanonical fails unless an accepted path, as sent and decoded, has no
// dot segment, empty segment, ';', '\\' or control byte.
func checkCanonical(t *testing.T, path, clean string) {
	t.Helper()
	if !strings.HasPrefix(path, clean) {
		t.Fatalf("%q: clean form %q is not its prefix", path, clean)
	}
	dec, ok := percentDecode(clean)
	if !ok {
		t.Fatalf("%q: accepted with a broken escape", path)
	}
	for _, v := range []string{clean, dec} {
		if strings.Contains(v, "//") || strings.ContainsAny(v, ";\\") {
			t.Fatalf("%q accepted: %q holds //, ';' or '\\\\'", path, v)
		}
		for seg := range strings.SplitSeq(v, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q accepted: %q holds a dot segment", path, v)
			}
		}
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < 0x20 || c == 0x7f {
				t.Fatalf("%q accepted: %q holds control byte %#x", path, v, c)
			}
		}
	}
	for i := 0; i < len(clean); i++ {
		if c := clean[i]; c <= 0x20 || c >= 0x7f {
			t.Fatalf("%q accepted: raw byte %#x", path, c)
		}
	}
}

// FuzzParseClaims holds the context_extensions claims reader to its
// contract: what it accepts is a list of custom claim names the signer
// would accept too (never an owned claim, never a name a verifier could
// fold onto one), each exactly as written between the commas bar SP and
// HTAB around it; everything else is an error, never a partial list.
func FuzzParseClaims(f *testing.F) {
	for _, seed := range []string{"", "email", "email,plan", " email ,\tplan", "sub", "email,,plan", "email,", "\u017Fub",
		"https://example.com/claims/team", "a\u00a0", "email;plan", "EMAIL,Email"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		names, err := ParseClaims(v)
		if err != nil {
			if names != nil {
				t.Fatalf("ParseClaims(%q) = %q with error %v", v, names, err)
			}
			return
		}
		if v == "" {
			if names == nil || len(names) != 0 {
				t.Fatalf(`ParseClaims("") = %#v, want an empty list`, names)
			}
			return
		}
		parts := strings.Split(v, ",")
		if len(parts) != len(names) {
			t.Fatalf("ParseClaims(%q) = %q: %d names from %d elements", v, names, len(names), len(parts))
		}
		for i, name := range names {
			if err := token.CheckCustomClaim(name); err != nil {
				t.Fatalf("ParseClaims(%q) accepted %q: %v", v, name, err)
			}
			if strings.Trim(parts[i], " \t") != name {
				t.Fatalf("ParseClaims(%q)[%d] = %q, from %q", v, i, name, parts[i])
			}
		}
	})
}
