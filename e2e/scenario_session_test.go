package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/e2e/harness"
	"github.com/sessiongate/sessiongate/pkg/admin"
)

// Login → cookie → protected GET reaches the upstream, which sees a valid
// JWT whose claims match the session; Envoy's jwt_authn accepted the same
// token; the upstream never sees the session cookie but does see the
// request's other cookies; the access log names subject and session_ref.
func TestLoginReachesUpstreamWithVerifiedJWT(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	sess := s.Login("alice", alicePW, "laptop")

	c, err := http.ParseSetCookie(sess.SetCookie)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Secure || !c.HttpOnly || c.Path != "/" || c.SameSite != http.SameSiteLaxMode || c.Domain != "" {
		t.Errorf("session cookie attributes: %q", sess.SetCookie)
	}

	r := s.Get("/api/profile?view=full", harness.WithCookieHeader("theme=dark; "+sess.Cookie()+"; lang=en"))
	e := s.Echo(r)
	if !e.Verified || e.Token == nil {
		t.Fatalf("upstream did not verify a token: %v", r)
	}
	cl, hdr := e.Token.Claims, e.Token.Header
	if got := claimString(t, cl, "sub"); got != "alice" {
		t.Errorf("sub = %q", got)
	}
	if got := claimString(t, cl, "sid"); got != sess.SessionRef || got == "" {
		t.Errorf("sid = %q, want the session_ref %q", got, sess.SessionRef)
	}
	if got := claimString(t, cl, "iss"); got != harness.Issuer {
		t.Errorf("iss = %q", got)
	}
	if got := claimString(t, cl, "tenant"); got != "acme" {
		t.Errorf("tenant = %q", got)
	}
	if got := claimString(t, cl, "email"); got != "alice@example.com" {
		t.Errorf("custom claim email = %q", got)
	}
	if got := stringList(cl["roles"]); !slices.Equal(got, []string{"user"}) {
		t.Errorf("roles = %v", got)
	}
	if got := stringList(cl["aud"]); !slices.Equal(got, []string{harness.Audience}) {
		t.Errorf("aud = %v", got)
	}
	if claimString(t, cl, "jti") == "" {
		t.Error("empty jti")
	}
	exp, _ := cl["exp"].(float64)
	iat, _ := cl["iat"].(float64)
	if life := exp - iat; life <= 0 || life > 300 {
		t.Errorf("token lifetime %vs, want (0, 300] (token.ttl 5m)", life)
	}
	if hdr["alg"] != "ES256" || hdr["typ"] != "JWT" {
		t.Errorf("JOSE header %v", hdr)
	}
	if kid, _ := hdr["kid"].(string); !slices.Contains(jwksKIDs(t, s), kid) {
		t.Errorf("kid %q is not in sessiongate's JWKS %v", kid, jwksKIDs(t, s))
	}

	// Envoy's jwt_authn verified the same token: it forwards the payload
	// only on success.
	payload, err := e.JWTPayload()
	if err != nil || payload == nil {
		t.Fatalf("no x-jwt-payload from jwt_authn (%v); headers %v", err, e.Headers)
	}
	if payload["jti"] != cl["jti"] || payload["sub"] != "alice" {
		t.Errorf("jwt_authn payload %v does not match the upstream's claims %v", payload, cl)
	}

	// Other cookies pass untouched and in order; the session never leaves
	// the edge.
	want := []harness.EchoCookie{{Name: "theme", Value: "dark"}, {Name: "lang", Value: "en"}}
	if !slices.Equal(e.Cookies, want) {
		t.Errorf("upstream cookies %v, want %v", e.Cookies, want)
	}
	assertNoSessionID(t, e, sess)

	s.Eventually(5*time.Second, "access log line with subject and session_ref", func() error {
		var seen []map[string]any
		for _, l := range s.AccessLog() {
			if l["path"] == "/api/profile?view=full" {
				if l["subject"] == "alice" && l["session_ref"] == sess.SessionRef {
					return nil
				}
				seen = append(seen, l)
			}
		}
		return fmt.Errorf("want subject alice and session_ref %s in %v", sess.SessionRef, seen)
	})

	// A route with its own audience (context_extensions) gets a token for
	// that audience only, and jwt_authn's "orders" provider accepts it.
	e = s.Echo(s.Get("/orders/42", harness.WithSession(sess)))
	if got := stringList(e.Token.Claims["aud"]); !slices.Equal(got, []string{harness.OrdersAudience}) {
		t.Errorf("/orders/ aud = %v, want [orders]", got)
	}
	if p, _ := e.JWTPayload(); p == nil {
		t.Error("/orders/: jwt_authn did not accept the token")
	}

	// API clients send the same opaque ID as a bearer token; it must not
	// travel upstream either.
	e = s.Echo(s.Get("/api/profile", harness.WithHeader("Authorization", "Bearer "+sess.ID), acceptJSON()))
	if got := claimString(t, e.Token.Claims, "sub"); got != "alice" {
		t.Errorf("bearer: sub = %q", got)
	}
	assertNoSessionID(t, e, sess)
}

func assertNoSessionID(t *testing.T, e *harness.Echo, sess *harness.Session) {
	t.Helper()
	for k, vs := range e.Headers {
		for _, v := range vs {
			if strings.Contains(v, sess.ID) {
				t.Errorf("upstream received the session ID in header %s: %q", k, v)
			}
		}
	}
}

// No session: an API request gets 401 JSON; a browser navigation gets a 302
// to the login page with return_to, and the whole browser round trip (login
// form, redirect back) lands on the page first asked for.
func TestNoSessionAPIGets401BrowserGetsLoginRedirect(t *testing.T) {
	s := harness.Start(t, harness.Options{})

	p := probe(t, "nosession")
	r := s.Get("/api/orders?"+p, acceptJSON())
	expectStatus(t, r, http.StatusUnauthorized)
	if got := jsonError(t, r); got != "unauthenticated" {
		t.Errorf("error = %q", got)
	}
	for _, bad := range []string{
		harness.CookieName + "=" + strings.Repeat("A", 43),      // well-formed, unknown
		harness.CookieName + "=not-a-session-id",                // malformed
		harness.CookieName + "=x; " + harness.CookieName + "=y", // two session cookies
	} {
		r := s.Get("/api/orders?"+p, acceptJSON(), harness.WithCookieHeader(bad))
		expectStatus(t, r, http.StatusUnauthorized)
	}
	// A POST is never a navigation: no redirect even with Accept: text/html.
	r = s.Do(http.MethodPost, s.EdgeURL("/api/orders?"+p), strings.NewReader("{}"), harness.WithBrowserAccept())
	expectStatus(t, r, http.StatusUnauthorized)
	assertNotReachedUpstream(t, s, p)

	const page = "/api/orders?page=2"
	r = s.Get(page, harness.WithBrowserAccept())
	expectStatus(t, r, http.StatusFound)
	loc, err := url.Parse(r.Header.Get("Location"))
	if err != nil || loc.Path != harness.LoginPath {
		t.Fatalf("Location %q, want %s?return_to=...", r.Header.Get("Location"), harness.LoginPath)
	}
	rt, err := url.Parse(loc.Query().Get("return_to"))
	if err != nil || rt.RequestURI() != page {
		t.Fatalf("return_to %q, want the original URL %s", loc.Query().Get("return_to"), page)
	}

	// The login page is reachable without a session and carries return_to
	// into its form.
	r = s.Get(loc.RequestURI(), harness.WithBrowserAccept())
	expectStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), `name="return_to" value="`+page+`"`) {
		t.Fatalf("login form does not carry return_to %q:\n%s", page, r.Body)
	}
	form := url.Values{"username": {"alice"}, "password": {alicePW}, "return_to": {page}}
	r = s.Do(http.MethodPost, s.EdgeURL(harness.LoginPath), strings.NewReader(form.Encode()),
		harness.WithHeader("Content-Type", "application/x-www-form-urlencoded"), harness.WithBrowserAccept())
	expectStatus(t, r, http.StatusSeeOther)
	if got := r.Header.Get("Location"); got != page {
		t.Fatalf("after login, Location %q, want %q", got, page)
	}
	c, err := http.ParseSetCookie(r.Header.Get("Set-Cookie"))
	if err != nil || c.Name != harness.CookieName {
		t.Fatalf("after login, Set-Cookie %q: %v", r.Header.Get("Set-Cookie"), err)
	}
	e := s.Echo(s.Get(page, harness.WithCookieHeader(c.Name+"="+c.Value), harness.WithBrowserAccept()))
	if e.Path != "/api/orders" || e.RawQuery != "page=2" || claimString(t, e.Token.Claims, "sub") != "alice" {
		t.Fatalf("landed on %s?%s as %v", e.Path, e.RawQuery, e.Token.Claims["sub"])
	}
}

// A client-sent x-internal-jwt, forged or a real one copied from another
// user, never reaches the upstream: not on a route where Envoy skips
// sessiongate, not on a route sessiongate declares public, not on a
// protected route.
func TestSpoofedInternalJWTNeverReachesUpstream(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	alice := s.Login("alice", alicePW, "laptop")
	bob := s.Login("bob", bobPW, "phone")

	bobToken := s.Echo(s.Get("/api/me", harness.WithSession(bob))).Header(t, harness.TokenHeader)
	if bobToken == "" {
		t.Fatal("no token for bob")
	}
	forged := forgeToken(t, jwksKIDs(t, s)[0], "alice")

	for name, tok := range map[string]string{"forged": forged, "copied from bob": bobToken} {
		for _, hname := range []string{"x-internal-jwt", "X-Internal-JWT"} {
			twice := []harness.ReqOpt{harness.WithHeader(hname, tok), harness.WithHeader(hname, tok)}
			for _, path := range []string{"/public/page", "/docs/page"} {
				e := s.Echo(s.Get(path, twice...))
				if got := e.Header(t, harness.TokenHeader); got != "" || e.Verified {
					t.Errorf("%s token as %s on %s reached the upstream: %q", name, hname, path, got)
				}
			}

			e := s.Echo(s.Get("/api/me", append(twice, harness.WithSession(alice))...))
			if got := e.Header(t, harness.TokenHeader); got == tok {
				t.Errorf("%s token as %s on a protected route reached the upstream", name, hname)
			}
			if got := claimString(t, e.Token.Claims, "sub"); got != "alice" {
				t.Errorf("%s token: upstream saw sub %q, want alice's own token", name, got)
			}

			p := probe(t, "spoof")
			r := s.Get("/api/me?"+p, append(twice, acceptJSON())...)
			expectStatus(t, r, http.StatusUnauthorized)
			assertNotReachedUpstream(t, s, p)
		}
	}

	// Nor can a client fake jwt_authn's verdict.
	e := s.Echo(s.Get("/public/page", harness.WithHeader("x-jwt-payload", "eyJzdWIiOiJhZG1pbiJ9")))
	if len(e.Headers["x-jwt-payload"]) != 0 {
		t.Errorf("client-sent x-jwt-payload reached the upstream")
	}
}

// A public route works without a session; a deny route answers 403; a route
// with required roles answers 403 without the role and 200 on the very next
// request after an admin PATCH adds it (and 403 again once it is removed).
func TestPublicDenyAndRoleChange(t *testing.T) {
	s := harness.Start(t, harness.Options{})

	e := s.Echo(s.Get("/public/hello"))
	if e.Verified || e.Path != "/public/hello" {
		t.Errorf("public: %+v", e)
	}

	alice := s.Login("alice", alicePW, "laptop")
	for _, opts := range [][]harness.ReqOpt{{acceptJSON()}, {acceptJSON(), harness.WithSession(alice)}} {
		p := probe(t, "deny")
		r := s.Get("/deny/thing?"+p, opts...)
		expectStatus(t, r, http.StatusForbidden)
		assertNotReachedUpstream(t, s, p)
	}

	p := probe(t, "norole")
	r := s.Get("/admin/panel?"+p, harness.WithSession(alice), acceptJSON())
	expectStatus(t, r, http.StatusForbidden)
	if got := jsonError(t, r); got != "forbidden" {
		t.Errorf("error = %q", got)
	}
	assertNotReachedUpstream(t, s, p)

	carol := s.Login("carol", carolPW, "desktop")
	if got := stringList(s.Echo(s.Get("/admin/panel", harness.WithSession(carol))).Token.Claims["roles"]); !slices.Contains(got, "admin") {
		t.Errorf("carol's roles %v", got)
	}

	n, err := s.Admin().UpdateUser(tctx(t), "alice", admin.UpdateRequest{Roles: &[]string{"user", "admin"}})
	if err != nil || n != 1 {
		t.Fatalf("PATCH alice roles: n=%d err=%v", n, err)
	}
	e = s.Echo(s.Get("/admin/panel", harness.WithSession(alice)))
	if got := stringList(e.Token.Claims["roles"]); !slices.Equal(got, []string{"user", "admin"}) {
		t.Errorf("after PATCH, roles in token %v", got)
	}

	if n, err := s.Admin().UpdateUser(tctx(t), "alice", admin.UpdateRequest{Roles: &[]string{"user"}}); err != nil || n != 1 {
		t.Fatalf("PATCH alice roles back: n=%d err=%v", n, err)
	}
	expectStatus(t, s.Get("/admin/panel", harness.WithSession(alice), acceptJSON()), http.StatusForbidden)
}

// Logout clears the cookie, and the old cookie is dead on the next request.
func TestLogoutClearsCookieAndKillsSession(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	alice := s.Login("alice", alicePW, "laptop")
	s.Echo(s.Get("/api/me", harness.WithSession(alice)))

	r := s.Get(harness.LogoutPath, harness.WithSession(alice), harness.WithBrowserAccept())
	switch r.Status {
	case http.StatusFound, http.StatusSeeOther:
		if got := r.Header.Get("Location"); got != harness.LogoutRedirect {
			t.Errorf("logout Location %q, want %q", got, harness.LogoutRedirect)
		}
	default:
		t.Fatalf("logout: want a redirect to %s, got %v", harness.LogoutRedirect, r)
	}
	c, err := http.ParseSetCookie(r.Header.Get("Set-Cookie"))
	if err != nil || c.Name != harness.CookieName || c.Value != "" || (c.MaxAge >= 0 && (c.Expires.IsZero() || c.Expires.After(time.Now()))) {
		t.Errorf("logout Set-Cookie %q does not clear the session cookie (%v)", r.Header.Get("Set-Cookie"), err)
	}

	p := probe(t, "afterlogout")
	r = s.Get("/api/me?"+p, harness.WithSession(alice), acceptJSON())
	expectStatus(t, r, http.StatusUnauthorized)
	assertNotReachedUpstream(t, s, p)

	list, err := s.Admin().ListSessions(tctx(t), "alice")
	if err != nil || len(list) != 0 {
		t.Errorf("after logout, alice's sessions: %v (%v)", list, err)
	}
}

// Three devices, one admin revoke-user: all three are out on their next
// request; another user is untouched.
func TestRevokeUserLogsOutEveryDevice(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	devices := []string{"phone", "laptop", "tablet"}
	var sessions []*harness.Session
	for _, d := range devices {
		sess := s.Login("alice", alicePW, d)
		s.Echo(s.Get("/api/me", harness.WithSession(sess)))
		sessions = append(sessions, sess)
	}
	bob := s.Login("bob", bobPW, "phone")

	list, err := s.Admin().ListSessions(tctx(t), "alice")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, si := range list {
		names = append(names, si.Device.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"laptop", "phone", "tablet"}) {
		t.Errorf("alice's sessions by device: %v", names)
	}

	n, err := s.Admin().RevokeUser(tctx(t), "alice")
	if err != nil || n != 3 {
		t.Fatalf("revoke-user alice: n=%d err=%v", n, err)
	}
	for i, sess := range sessions {
		p := probe(t, "revoked-"+devices[i])
		r := s.Get("/api/me?"+p, harness.WithSession(sess), acceptJSON())
		expectStatus(t, r, http.StatusUnauthorized)
		assertNotReachedUpstream(t, s, p)
	}
	s.Echo(s.Get("/api/me", harness.WithSession(bob)))
}

// max_per_user: 1 — a second login evicts the first.
func TestMaxPerUserOneEvictsFirstLogin(t *testing.T) {
	s := harness.Start(t, harness.Options{Configure: func(c *harness.SGConfig) {
		c.Session.MaxPerUser = 1
		c.Session.OnLimit = "evict_oldest"
	}})
	first := s.Login("alice", alicePW, "phone")
	s.Echo(s.Get("/api/me", harness.WithSession(first)))

	second := s.Login("alice", alicePW, "laptop")
	expectStatus(t, s.Get("/api/me", harness.WithSession(first), acceptJSON()), http.StatusUnauthorized)
	if got := claimString(t, s.Echo(s.Get("/api/me", harness.WithSession(second))).Token.Claims, "sid"); got != second.SessionRef {
		t.Errorf("second session's sid %q, want %q", got, second.SessionRef)
	}
	if list, err := s.Admin().ListSessions(tctx(t), "alice"); err != nil || len(list) != 1 {
		t.Errorf("alice's sessions: %v (%v), want exactly one", list, err)
	}
}

// Envoy normalises the path before routing and before asking sessiongate,
// so dot-segments, doubled slashes and escaped slashes cannot dress a
// protected path up as a public one.
func TestPathNormalizationCannotReachProtectedPathsAsPublic(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	for _, path := range []string{
		"/public/../api/me",
		"/public/%2e%2e/api/me",
		"/public/./../api/me",
		"//api//me",
	} {
		p := probe(t, "norm")
		r := s.Get(path+"?"+p, acceptJSON())
		expectStatus(t, r, http.StatusUnauthorized)
		assertNotReachedUpstream(t, s, p)
	}
	// An escaped slash is never matched as is: the client is sent to the
	// unescaped path, which is then judged like any other.
	p := probe(t, "escslash")
	r := s.Get("/public%2F..%2Fapi/me?"+p, acceptJSON())
	if r.Status < 300 || r.Status > 399 {
		t.Fatalf("escaped slashes: want a redirect to the unescaped path, got %v", r)
	}
	assertNotReachedUpstream(t, s, p)

	alice := s.Login("alice", alicePW, "laptop")
	expectStatus(t, s.Get("/public/../admin/panel", harness.WithSession(alice), acceptJSON()), http.StatusForbidden)
	expectStatus(t, s.Get("/admin/./panel", harness.WithSession(alice), acceptJSON()), http.StatusForbidden)
}
