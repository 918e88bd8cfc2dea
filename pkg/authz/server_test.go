package authz

import (
	"context"
	"encoding/json"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"

	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/internal/testenv"
	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
)

const tokenHeader = "x-internal-jwt"

// fixture is a Server over a real store with helpers to log users in and
// read its answers.
type fixture struct {
	srv     *Server
	store   session.Store
	signer  *token.Signer
	touches atomic.Int64 // store lookups, to prove malformed input never reaches the store
}

type countingStore struct {
	session.Store
	n *atomic.Int64
}

func (c countingStore) Touch(ctx context.Context, ref string) (session.Entry, error) {
	c.n.Add(1)
	return c.Store.Touch(ctx, ref)
}

var testRoutes = []Route{
	{PathPrefix: "/public/", Access: Public},
	{PathPrefix: "/blocked/", Access: Deny},
	{PathPrefix: "/admin/", Access: Authenticated, Roles: []string{"admin"}},
	{PathPrefix: "/readonly/", Methods: []string{"POST", "PUT", "DELETE"}, Access: Deny},
}

func newFixture(t testing.TB, store session.Store, mutate ...func(*Options)) *fixture {
	t.Helper()
	key, err := token.GenerateKey(token.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := token.NewKeySet(key, "")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: store, signer: token.NewSigner(ks, "sessiongate")}
	o := Options{
		Sessions:     countingStore{store, &f.touches},
		Signer:       f.signer,
		Routes:       testRoutes,
		Cookie:       session.Cookie{Name: "__Host-sid", SameSite: "Lax"},
		TokenHeader:  tokenHeader,
		Audience:     "internal",
		TokenTTL:     5 * time.Minute,
		StoreTimeout: 100 * time.Millisecond,
		LoginURL:     "https://login.example.com/login",
		LogoutPath:   "/auth/logout",
	}
	for _, m := range mutate {
		m(&o)
	}
	f.srv = New(o)
	return f
}

func stores(t *testing.T) map[string]func(*testing.T) session.Store {
	t.Helper()
	return map[string]func(*testing.T) session.Store{
		"memory": func(*testing.T) session.Store { return session.NewMemoryStore(nil) },
		"redis": func(t *testing.T) session.Store {
			st, _, _ := testenv.RedisStore(t, time.Second)
			return st
		},
	}
}

// login creates a session the way the admin API does and returns its ID.
func (f *fixture) login(t testing.TB, subject string, roles []string, claims map[string]string) string {
	t.Helper()
	id, err := session.NewID()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Millisecond)
	s := &session.Session{Ref: session.RefOf(id), Subject: subject, Tenant: "acme", Roles: roles, Claims: claims,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), IdleTimeout: 30 * time.Minute}
	if _, err := f.store.Create(context.Background(), s, session.Limit{}); err != nil {
		t.Fatal(err)
	}
	return id
}

type reqOpt func(*authv3.CheckRequest)

func withHeader(k, v string) reqOpt {
	return func(r *authv3.CheckRequest) { r.Attributes.Request.Http.Headers[k] = v }
}

func withExt(k, v string) reqOpt {
	return func(r *authv3.CheckRequest) {
		if r.Attributes.ContextExtensions == nil {
			r.Attributes.ContextExtensions = map[string]string{}
		}
		r.Attributes.ContextExtensions[k] = v
	}
}

func withCookie(v string) reqOpt { return withHeader("cookie", v) }

func request(method, path string, opts ...reqOpt) *authv3.CheckRequest {
	r := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: "app.example.com", Scheme: "https",
			Headers: map[string]string{":path": path, ":method": method},
		}}}}
	for _, o := range opts {
		o(r)
	}
	return r
}

func (f *fixture) check(t testing.TB, r *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	resp, err := f.srv.Check(context.Background(), r)
	if err != nil {
		// A gRPC error is "authz failed", which failure_mode_allow turns into
		// an allow: decisions must always be responses.
		t.Fatalf("Check returned a gRPC error: %v", err)
	}
	return resp
}

// status is the HTTP status Envoy would answer the client with (200 = OK).
func status(resp *authv3.CheckResponse) int {
	if d := resp.GetDeniedResponse(); d != nil {
		return int(d.GetStatus().GetCode())
	}
	if resp.GetOkResponse() != nil && resp.GetStatus().GetCode() == int32(codes.OK) {
		return 200
	}
	return -1
}

func deniedHeader(resp *authv3.CheckResponse, name string) string {
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

// okHeader returns a header the OK answer sets, failing unless it overwrites.
func okHeader(t *testing.T, resp *authv3.CheckResponse, name string) (string, bool) {
	t.Helper()
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Fatalf("header %s set with %v, want OVERWRITE_IF_EXISTS_OR_ADD", name, h.GetAppendAction())
			}
			return h.GetHeader().GetValue(), true
		}
	}
	return "", false
}

// okHas reports whether an allow answer sets header name.
func okHas(resp *authv3.CheckResponse, name string) bool {
	return slices.ContainsFunc(resp.GetOkResponse().GetHeaders(), func(h *corev3.HeaderValueOption) bool {
		return h.GetHeader().GetKey() == name
	})
}

// upstream applies an allow answer to the request headers the way Envoy
// does: headers to remove go, headers to set overwrite. It is what the
// upstream receives from the client's headers and sessiongate's answer.
func upstream(req map[string]string, resp *authv3.CheckResponse) map[string]string {
	out := maps.Clone(req)
	for _, k := range resp.GetOkResponse().GetHeadersToRemove() {
		delete(out, k)
	}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		out[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return out
}

func removes(resp *authv3.CheckResponse, name string) bool {
	return slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), name)
}

// claims verifies a token against the fixture's published keys, checking
// everything a downstream must check.
func (f *fixture) claims(t testing.TB, tok, aud string) jwt.MapClaims {
	t.Helper()
	var c jwt.MapClaims
	parsed, err := jwt.ParseWithClaims(tok, &c, func(tk *jwt.Token) (any, error) {
		kid, _ := tk.Header["kid"].(string)
		k, ok := f.signer.Keys().PublicKey(kid)
		if !ok {
			t.Fatalf("unknown kid %q", kid)
		}
		return k, nil
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer("sessiongate"), jwt.WithAudience(aud),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	if err != nil {
		t.Fatalf("token does not verify: %v", err)
	}
	if parsed.Header["typ"] != "JWT" {
		t.Fatalf("typ = %v", parsed.Header["typ"])
	}
	return c
}

func TestCheck(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, c := range checkCases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					f := newFixture(t, newStore(t))
					c.run(t, f)
				})
			}
		})
	}
}

var checkCases = []struct {
	name string
	run  func(t *testing.T, f *fixture)
}{
	{"public path strips a spoofed token header and needs no session", func(t *testing.T, f *fixture) {
		resp := f.check(t, request("GET", "/public/logo.png", withHeader(tokenHeader, "forged")))
		if status(resp) != 200 || !removes(resp, tokenHeader) {
			t.Fatalf("status %d, removes %v", status(resp), resp.GetOkResponse().GetHeadersToRemove())
		}
		if _, set := okHeader(t, resp, tokenHeader); set {
			t.Fatal("public answer sets a token")
		}
		if f.touches.Load() != 0 {
			t.Fatal("public path touched the store")
		}
	}},
	{"context_extensions can make a route public or denied", func(t *testing.T, f *fixture) {
		if got := status(f.check(t, request("GET", "/api/x", withExt("access", "public")))); got != 200 {
			t.Fatalf("access=public: %d", got)
		}
		id := f.login(t, "alice", nil, nil)
		if got := status(f.check(t, request("GET", "/api/x", withCookie("__Host-sid="+id), withExt("access", "deny")))); got != 403 {
			t.Fatalf("access=deny: %d", got)
		}
		if got := status(f.check(t, request("GET", "/public/x", withExt("access", "bogus")))); got != 403 {
			t.Fatalf("access=bogus: %d, want a denial", got)
		}
	}},
	{"deny route answers 403 even with a session", func(t *testing.T, f *fixture) {
		id := f.login(t, "alice", []string{"admin"}, nil)
		for _, p := range []string{"/blocked/", "/blocked/x", "/BLOCKED/x", "/Blocked/x?y=1"} {
			if got := status(f.check(t, request("GET", p, withCookie("__Host-sid="+id)))); got != 403 {
				t.Errorf("%s: %d, want 403", p, got)
			}
		}
		if got := status(f.check(t, request("POST", "/readonly/x", withCookie("__Host-sid="+id)))); got != 403 {
			t.Errorf("POST /readonly/: %d", got)
		}
		if got := status(f.check(t, request("GET", "/readonly/x", withCookie("__Host-sid="+id)))); got != 200 {
			t.Errorf("GET /readonly/ (method not in rule): %d", got)
		}
	}},
	{"no session is 401 JSON for API clients", func(t *testing.T, f *fixture) {
		resp := f.check(t, request("GET", "/api/items", withHeader("accept", "application/json")))
		if status(resp) != 401 || resp.GetDeniedResponse().GetBody() != `{"error":"unauthenticated"}` ||
			deniedHeader(resp, "content-type") != "application/json" {
			t.Fatalf("got %d %q", status(resp), resp.GetDeniedResponse().GetBody())
		}
	}},
	{"browser navigation without session redirects to login with return_to", func(t *testing.T, f *fixture) {
		resp := f.check(t, request("GET", "/app/page?tab=2", withHeader("accept", "text/html,application/xhtml+xml")))
		if status(resp) != 302 {
			t.Fatalf("status %d", status(resp))
		}
		loc, err := url.Parse(deniedHeader(resp, "location"))
		if err != nil || loc.Host != "login.example.com" || loc.Query().Get("return_to") != "https://app.example.com/app/page?tab=2" {
			t.Fatalf("location %q", deniedHeader(resp, "location"))
		}
		// Not a navigation: a form POST gets the 401.
		if got := status(f.check(t, request("POST", "/app/page", withHeader("accept", "text/html")))); got != 401 {
			t.Fatalf("POST: %d", got)
		}
	}},
	{"valid cookie gets a signed token and loses the session cookie", func(t *testing.T, f *fixture) {
		id := f.login(t, "alice", []string{"dev"}, map[string]string{"email": "alice@example.com"})
		resp := f.check(t, request("GET", "/api/items",
			withCookie("theme=dark; __Host-sid="+id+"; lang=en"), withHeader(tokenHeader, "forged")))
		if status(resp) != 200 {
			t.Fatalf("status %d: %v", status(resp), resp)
		}
		tok, ok := okHeader(t, resp, tokenHeader)
		if !ok || tok == "forged" {
			t.Fatal("no fresh token set")
		}
		c := f.claims(t, tok, "internal")
		if c["sub"] != "alice" || c["iss"] != "sessiongate" || c["tenant"] != "acme" || c["sid"] != session.RefOf(id) ||
			c["email"] != "alice@example.com" || c["jti"] == "" || c["nbf"] == nil {
			t.Fatalf("claims %v", c)
		}
		if roles, _ := c["roles"].([]any); len(roles) != 1 || roles[0] != "dev" {
			t.Fatalf("roles %v", c["roles"])
		}
		if exp, _ := c.GetExpirationTime(); time.Until(exp.Time) > 5*time.Minute+time.Second {
			t.Fatalf("exp %v beyond ttl", exp)
		}
		if cookie, _ := okHeader(t, resp, "cookie"); cookie != "theme=dark; lang=en" {
			t.Fatalf("upstream cookie %q", cookie)
		}
		md := resp.GetDynamicMetadata().GetFields()
		if md["subject"].GetStringValue() != "alice" || md["session_ref"].GetStringValue() != session.RefOf(id) {
			t.Fatalf("metadata %v", md)
		}
		if strings.Contains(resp.String(), id) {
			t.Fatal("the answer carries the session ID")
		}
	}},
	{"only cookie is the session cookie: cookie header removed", func(t *testing.T, f *fixture) {
		id := f.login(t, "alice", nil, nil)
		resp := f.check(t, request("GET", "/api/items", withCookie("__Host-sid="+id)))
		if status(resp) != 200 || !removes(resp, "cookie") {
			t.Fatalf("status %d, removes %v", status(resp), resp.GetOkResponse().GetHeadersToRemove())
		}
	}},
	{"bearer token works and is removed", func(t *testing.T, f *fixture) {
		id := f.login(t, "svc", nil, nil)
		resp := f.check(t, request("GET", "/api/items", withHeader("authorization", "Bearer "+id)))
		if status(resp) != 200 || !removes(resp, "authorization") {
			t.Fatalf("status %d", status(resp))
		}
		other := f.login(t, "bob", nil, nil)
		if got := status(f.check(t, request("GET", "/api/items", withCookie("__Host-sid="+id), withHeader("authorization", "Bearer "+other)))); got != 401 {
			t.Fatalf("cookie and different bearer: %d, want 401", got)
		}
		if got := status(f.check(t, request("GET", "/api/items", withCookie("__Host-sid="+id), withHeader("authorization", "Basic dXNlcjpwYXNz")))); got != 200 {
			t.Fatalf("cookie with unrelated basic auth: %d", got)
		}
	}},
	{"ambiguous or malformed credentials never reach the store", func(t *testing.T, f *fixture) {
		id := f.login(t, "alice", nil, nil)
		other := f.login(t, "bob", nil, nil)
		for name, cookie := range map[string]string{
			"two session cookies":      "__Host-sid=" + id + "; __Host-sid=" + other,
			"same cookie twice":        "__Host-sid=" + id + "; a=b; __Host-sid=" + id,
			"short id":                 "__Host-sid=" + id[:20],
			"quoted id":                `__Host-sid="` + id + `"`,
			"jwt-shaped":               "__Host-sid=eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
			"empty":                    "__Host-sid=",
			"id with trailing garbage": "__Host-sid=" + id + "x",
		} {
			before := f.touches.Load()
			if got := status(f.check(t, request("GET", "/api/x", withCookie(cookie)))); got != 401 {
				t.Errorf("%s: %d, want 401", name, got)
			}
			if f.touches.Load() != before {
				t.Errorf("%s: reached the store", name)
			}
		}
		if got := status(f.check(t, request("GET", "/api/x?sid="+id))); got != 401 {
			t.Errorf("session ID in query string was honoured: %d", got)
		}
	}},
	{"unknown session is 401", func(t *testing.T, f *fixture) {
		id, _ := session.NewID()
		if got := status(f.check(t, request("GET", "/api/x", withCookie("__Host-sid="+id)))); got != 401 {
			t.Fatalf("%d", got)
		}
	}},
	{"revocation takes effect on the next check despite the token cache", func(t *testing.T, f *fixture) {
		id := f.login(t, "alice", nil, nil)
		req := request("GET", "/api/x", withCookie("__Host-sid="+id))
		for range 3 {
			if got := status(f.check(t, req)); got != 200 {
				t.Fatalf("before revoke: %d", got)
			}
		}
		if err := f.store.Delete(context.Background(), session.RefOf(id)); err != nil {
			t.Fatal(err)
		}
		if got := status(f.check(t, req)); got != 401 {
			t.Fatalf("after revoke: %d, want 401", got)
		}
	}},
	{"role change takes effect on the next check", func(t *testing.T, f *fixture) {
		id := f.login(t, "alice", []string{"dev"}, nil)
		req := request("GET", "/admin/panel", withCookie("__Host-sid="+id))
		resp := f.check(t, req)
		if status(resp) != 403 || resp.GetDeniedResponse().GetBody() != `{"error":"forbidden"}` {
			t.Fatalf("without role: %d", status(resp))
		}
		// A cached token for the old version exists for other paths.
		first, _ := okHeader(t, f.check(t, request("GET", "/api/x", withCookie("__Host-sid="+id))), tokenHeader)
		roles := []string{"dev", "admin"}
		if _, err := f.store.UpdateUser(context.Background(), "alice", session.Update{Roles: &roles}); err != nil {
			t.Fatal(err)
		}
		resp = f.check(t, req)
		if status(resp) != 200 {
			t.Fatalf("after role added: %d", status(resp))
		}
		tok, _ := okHeader(t, resp, tokenHeader)
		if tok == first {
			t.Fatal("stale token served after update")
		}
		if r := f.claims(t, tok, "internal")["roles"].([]any); len(r) != 2 {
			t.Fatalf("roles %v", r)
		}
		// Case tricks do not dodge the role rule.
		roles = []string{"dev"}
		f.store.UpdateUser(context.Background(), "alice", session.Update{Roles: &roles})
		if got := status(f.check(t, request("GET", "/ADMIN/panel", withCookie("__Host-sid="+id)))); got != 403 {
			t.Fatalf("/ADMIN/ after role removed: %d", got)
		}
	}},
	{"tokens are cached per version and audience", func(t *testing.T, f *fixture) {
		id := f.login(t, "alice", nil, nil)
		get := func(opts ...reqOpt) string {
			resp := f.check(t, request("GET", "/api/x", append(opts, withCookie("__Host-sid="+id))...))
			tok, _ := okHeader(t, resp, tokenHeader)
			return tok
		}
		a, b := get(), get()
		if a != b {
			t.Fatal("same session, version and audience signed twice")
		}
		c := get(withExt("audience", "billing"))
		if c == a {
			t.Fatal("audience override served the default-audience token")
		}
		if f.claims(t, c, "billing")["aud"] == nil {
			t.Fatal("no aud")
		}
	}},
	{"path tricks are refused", func(t *testing.T, f *fixture) {
		id := f.login(t, "alice", nil, nil)
		for _, p := range []string{
			"/public/../admin/x", "/public/%2e%2e/admin/x", "/public/%2E%2E/admin", "/public%2fadmin",
			"/public/..%2fadmin", "//admin/x", "/public/./x", "/public;/admin", "/pub%6cic/x",
			"/public\\..\\admin", "/public/%00", "relative", "", "/x/..", "/%252e%252e/",
		} {
			resp := f.check(t, request("GET", p, withCookie("__Host-sid="+id)))
			if status(resp) != 400 {
				t.Errorf("%q: %d, want 400", p, status(resp))
			}
		}
		// Legitimate escapes still work.
		if got := status(f.check(t, request("GET", "/api/a%20b", withCookie("__Host-sid="+id)))); got != 200 {
			t.Errorf("escaped space: %d", got)
		}
	}},
	{"header_map form is read like the headers map", func(t *testing.T, f *fixture) {
		id := f.login(t, "alice", nil, nil)
		r := request("GET", "/api/x")
		r.Attributes.Request.Http.Headers = nil
		r.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: "cookie", RawValue: []byte("a=1")},
			{Key: "cookie", RawValue: []byte("__Host-sid=" + id)},
		}}
		resp := f.check(t, r)
		if status(resp) != 200 {
			t.Fatalf("status %d", status(resp))
		}
		if cookie, _ := okHeader(t, resp, "cookie"); cookie != "a=1" {
			t.Fatalf("cookie %q", cookie)
		}
		r.Attributes.Request.Http.HeaderMap.Headers = append(r.Attributes.Request.Http.HeaderMap.Headers,
			&corev3.HeaderValue{Key: "cookie", RawValue: []byte("__Host-sid=" + id)})
		if got := status(f.check(t, r)); got != 401 {
			t.Fatalf("split duplicate cookie: %d", got)
		}
	}},
	{"logout deletes the session and clears the cookie", func(t *testing.T, f *fixture) {
		id := f.login(t, "alice", nil, nil)
		resp := f.check(t, request("POST", "/auth/logout", withCookie("__Host-sid="+id), withHeader("origin", "https://app.example.com")))
		if status(resp) != 204 {
			t.Fatalf("logout: %d", status(resp))
		}
		sc := deniedHeader(resp, "set-cookie")
		if !strings.HasPrefix(sc, "__Host-sid=;") || !strings.Contains(sc, "Max-Age=0") {
			t.Fatalf("set-cookie %q", sc)
		}
		if got := status(f.check(t, request("GET", "/api/x", withCookie("__Host-sid="+id)))); got != 401 {
			t.Fatalf("after logout: %d", got)
		}
		// Logging out without a session still clears the cookie.
		if got := status(f.check(t, request("GET", "/auth/logout"))); got != 204 {
			t.Fatalf("logout without session: %d", got)
		}
	}},
}

func TestLogoutRedirect(t *testing.T) {
	f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) { o.LogoutURL = "https://app.example.com/bye" })
	resp := f.check(t, request("GET", "/auth/logout"))
	if status(resp) != 302 || deniedHeader(resp, "location") != "https://app.example.com/bye" || deniedHeader(resp, "set-cookie") == "" {
		t.Fatalf("got %d %v", status(resp), resp.GetDeniedResponse().GetHeaders())
	}
}

// TestCheckStoreDown covers rule 6: with Redis stopped or stalled, Check
// answers 503 with Retry-After, within about redis.timeout, and recovers
// when Redis does.
func TestCheckStoreDown(t *testing.T) {
	st, srv, _ := testenv.RedisStore(t, 100*time.Millisecond)
	f := newFixture(t, st)
	id := f.login(t, "alice", nil, nil)
	req := request("GET", "/api/x", withCookie("__Host-sid="+id))
	if got := status(f.check(t, req)); got != 200 {
		t.Fatalf("healthy: %d", got)
	}

	expect503 := func(what string) {
		t.Helper()
		start := time.Now()
		resp := f.check(t, req)
		took := time.Since(start)
		if status(resp) != 503 || deniedHeader(resp, "retry-after") == "" {
			t.Fatalf("%s: status %d, want 503 with Retry-After", what, status(resp))
		}
		if took > 300*time.Millisecond {
			t.Fatalf("%s: answered after %v, want about the 100ms store timeout", what, took)
		}
	}

	srv.Pause()
	expect503("redis stalled (SIGSTOP)")
	srv.Resume()
	ok := redistest.Eventually(context.Background(), 5*time.Second, func() bool { return status(f.check(t, req)) == 200 })
	if !ok {
		t.Fatal("no recovery after SIGCONT")
	}

	srv.Stop()
	expect503("redis stopped")
	// Logout must not claim success while the store is down.
	if got := status(f.check(t, request("POST", "/auth/logout", withCookie("__Host-sid="+id), withHeader("sec-fetch-site", "same-origin")))); got != 503 {
		t.Fatalf("logout with redis down: %d", got)
	}
	srv.Restart() // empty dataset: the session is gone, as after a real data loss
	ok = redistest.Eventually(context.Background(), 5*time.Second, func() bool { return status(f.check(t, req)) == 401 })
	if !ok {
		t.Fatal("no recovery after restart")
	}
}

func TestDeniedBodiesAreJSON(t *testing.T) {
	f := newFixture(t, session.NewMemoryStore(nil))
	for _, r := range []*authv3.CheckResponse{f.srv.resp.badRequest, f.srv.resp.unauthenticated, f.srv.resp.forbidden, f.srv.resp.unavailable} {
		var v map[string]string
		if err := json.Unmarshal([]byte(r.GetDeniedResponse().GetBody()), &v); err != nil || v["error"] == "" {
			t.Errorf("body %q", r.GetDeniedResponse().GetBody())
		}
		if r.GetStatus().GetCode() == int32(codes.OK) {
			t.Error("denial with OK rpc status")
		}
	}
}

// TestSessionPastItsEndByOurClock covers clock skew between sessiongate and
// the store: the store still returns a session whose absolute end has
// passed by sessiongate's clock. Any token would be born expired, so the
// Check is refused as unauthenticated, and nothing is signed.
func TestSessionPastItsEndByOurClock(t *testing.T) {
	skewed := time.Now().Add(13 * time.Hour) // beyond the 12 h absolute timeout
	for name, store := range stores(t) {
		t.Run(name, func(t *testing.T) {
			var cs *countingSigner
			f := newFixture(t, store(t), func(o *Options) {
				cs = &countingSigner{Signer: o.Signer}
				o.Signer = cs
				o.Now = func() time.Time { return skewed }
			})
			id := f.login(t, "alice", nil, nil)
			resp := f.check(t, request("GET", "/api/items", withCookie("__Host-sid="+id), withHeader("accept", "application/json")))
			if got := status(resp); got != 401 {
				t.Fatalf("status %d, want 401", got)
			}
			if n := cs.n.Load(); n != 0 {
				t.Fatalf("signed %d tokens for a session past its end", n)
			}
		})
	}
}
