package verify_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sessiongate/sessiongate/pkg/token"
	"github.com/sessiongate/sessiongate/pkg/verify"
)

const (
	issuer   = "https://sessiongate.internal"
	audience = "orders"
)

var (
	keysMu sync.Mutex
	keys   = map[string]crypto.Signer{}
)

func key(t testing.TB, alg string) crypto.Signer {
	t.Helper()
	keysMu.Lock()
	defer keysMu.Unlock()
	if k, ok := keys[alg]; ok {
		return k
	}
	k, err := token.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	keys[alg] = k
	return k
}

type env struct {
	signer  *token.Signer
	priv    crypto.Signer
	server  *httptest.Server
	fetches atomic.Int64
	v       *verify.Verifier
}

func newEnv(t *testing.T, alg string, opts verify.Options) *env {
	t.Helper()
	e := &env{priv: key(t, alg)}
	ks, err := token.NewKeySet(e.priv, "")
	if err != nil {
		t.Fatal(err)
	}
	e.signer = token.NewSigner(ks, issuer)
	jwks := e.signer.JWKSHandler(time.Minute)
	e.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.fetches.Add(1)
		jwks.ServeHTTP(w, r)
	}))
	t.Cleanup(e.server.Close)
	opts.JWKSURL = e.server.URL
	if opts.Issuer == "" {
		opts.Issuer = issuer
	}
	if opts.Audience == "" {
		opts.Audience = audience
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	opts.RequireInitialFetch = true
	e.v, err = verify.New(t.Context(), opts)
	if err != nil {
		t.Fatalf("verify.New: %v", err)
	}
	return e
}

func (e *env) sign(t *testing.T, mutate func(*token.Claims)) string {
	t.Helper()
	now := time.Now()
	c := token.Claims{
		Subject: "alice", Tenant: "acme", SessionRef: "sref-1", Audience: audience, ID: "jti-1",
		Roles:    []string{"admin", "viewer"},
		Custom:   map[string]string{"email": "alice@example.com"},
		IssuedAt: now, ExpiresAt: now.Add(5 * time.Minute),
	}
	if mutate != nil {
		mutate(&c)
	}
	tok, err := e.signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// forge signs arbitrary claims/headers with golang-jwt directly, to build
// tokens the real signer refuses to produce.
func forge(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tk := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tk.Header["kid"] = kid
	}
	s, err := tk.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validMap() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss": issuer, "sub": "alice", "aud": audience, "jti": "x", "roles": []string{},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix(),
	}
}

func TestVerifyRoundTrip(t *testing.T) {
	for _, alg := range []string{token.AlgES256, token.AlgEdDSA, token.AlgRS256} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, alg, verify.Options{})
			c, err := e.v.Verify(e.sign(t, nil))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.Subject != "alice" || c.Tenant != "acme" || c.SessionRef != "sref-1" || c.ID != "jti-1" ||
				c.Issuer != issuer || len(c.Audience) != 1 || c.Audience[0] != audience {
				t.Errorf("claims = %+v", c)
			}
			if !c.HasRole("admin") || !c.HasRole("viewer") || c.HasRole("root") {
				t.Errorf("roles = %v", c.Roles)
			}
			if len(c.Custom) != 1 || c.Custom["email"] != "alice@example.com" {
				t.Errorf("custom = %v", c.Custom)
			}
			if c.ExpiresAt.IsZero() || c.IssuedAt.IsZero() || c.NotBefore.IsZero() {
				t.Errorf("times = %v %v %v", c.IssuedAt, c.NotBefore, c.ExpiresAt)
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	e := newEnv(t, token.AlgES256, verify.Options{})
	kid := e.signer.Keys().ActiveKID()

	pubDER, err := x509.MarshalPKIXPublicKey(e.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	otherKS, _ := token.NewKeySet(key(t, token.AlgEdDSA), "")
	other := token.NewSigner(otherKS, issuer)
	unknownKID, err := other.Sign(token.Claims{Subject: "alice", Audience: audience, ExpiresAt: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}

	wrongIss, err := token.NewSigner(e.signer.Keys(), "https://evil.example").Sign(token.Claims{
		Subject: "alice", Audience: audience, ExpiresAt: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}

	good := e.sign(t, nil)
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"alice"`, `"mallory"`, 1))) + "." + parts[2]

	noExp := validMap()
	delete(noExp, "exp")
	badRoles := validMap()
	badRoles["roles"] = "admin"
	futureIat := validMap()
	futureIat["iat"] = time.Now().Add(10 * time.Minute).Unix()

	type tc struct{ tok, want string }
	cases := map[string]tc{
		"empty":         {"", "missing token"},
		"garbage":       {"not.a.jwt", "malformed"},
		"unknown kid":   {unknownKID, "key not found"},
		"alg none":      {forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid, validMap()), "signing method none is invalid"},
		"HS256 pub pem": {forge(t, jwt.SigningMethodHS256, pubPEM, kid, validMap()), "signing method HS256 is invalid"},
		"HS256 pub der": {forge(t, jwt.SigningMethodHS256, pubDER, kid, validMap()), "signing method HS256 is invalid"},
		"wrong iss":     {wrongIss, "invalid issuer"},
		"wrong aud":     {e.sign(t, func(c *token.Claims) { c.Audience = "billing" }), "invalid audience"},
		"expired": {e.sign(t, func(c *token.Claims) {
			c.IssuedAt = time.Now().Add(-10 * time.Minute)
			c.ExpiresAt = time.Now().Add(-2 * time.Minute)
		}), "expired"},
		"nbf future":  {e.sign(t, func(c *token.Claims) { c.NotBefore = time.Now().Add(2 * time.Minute) }), "not valid yet"},
		"iat future":  {forge(t, jwt.SigningMethodES256, e.priv, kid, futureIat), "used before issued"},
		"tampered":    {tampered, "verification error"},
		"missing exp": {forge(t, jwt.SigningMethodES256, e.priv, kid, noExp), "exp claim is required"},
		"no kid":      {forge(t, jwt.SigningMethodES256, e.priv, "", validMap()), "no kid"},
		"roles type":  {forge(t, jwt.SigningMethodES256, e.priv, kid, badRoles), "malformed"},
		"oversized":   {strings.Repeat("a", 20<<10), "larger than"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			claims, err := e.v.Verify(c.tok)
			if err == nil {
				t.Fatalf("Verify accepted token: %+v", claims)
			}
			if !errors.Is(err, verify.ErrInvalidToken) && !errors.Is(err, verify.ErrMissingToken) {
				t.Errorf("error %v is neither ErrInvalidToken nor ErrMissingToken", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want it to mention %q", err, c.want)
			}
		})
	}
	if _, err := e.v.Verify(cases["expired"].tok); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Errorf("expired: %v does not wrap jwt.ErrTokenExpired", err)
	}
}

func TestLeeway(t *testing.T) {
	e := newEnv(t, token.AlgEdDSA, verify.Options{})
	// Expired 10s ago: inside the default 30s leeway.
	tok := e.sign(t, func(c *token.Claims) {
		c.IssuedAt = time.Now().Add(-time.Minute)
		c.ExpiresAt = time.Now().Add(-10 * time.Second)
	})
	if _, err := e.v.Verify(tok); err != nil {
		t.Errorf("token within leeway rejected: %v", err)
	}
	strict := newEnv(t, token.AlgEdDSA, verify.Options{Leeway: -1})
	tok = strict.sign(t, func(c *token.Claims) {
		c.IssuedAt = time.Now().Add(-time.Minute)
		c.ExpiresAt = time.Now().Add(-10 * time.Second)
	})
	if _, err := strict.v.Verify(tok); err == nil {
		t.Error("expired token accepted with leeway disabled")
	}
}

func TestUnknownKIDRefresh(t *testing.T) {
	e := newEnv(t, token.AlgES256, verify.Options{UnknownKIDRefreshInterval: time.Hour})
	if n := e.fetches.Load(); n != 1 {
		t.Fatalf("initial fetches = %d, want 1", n)
	}
	// Rotate: new active key, old one kept for verification.
	newKS, err := token.NewKeySet(key(t, token.AlgEdDSA), "", e.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	e.signer.SetKeys(newKS)
	c, err := e.v.Verify(e.sign(t, nil))
	if err != nil {
		t.Fatalf("token from rotated key rejected: %v", err)
	}
	if c.Subject != "alice" || e.fetches.Load() != 2 {
		t.Errorf("fetches = %d, want 2 (one refresh on unknown kid)", e.fetches.Load())
	}
	// Forged kids cost at most the rest of the burst of unknown-kid
	// refreshes (3, one used by the rotation above), then no fetch at all
	// inside the rate-limit window.
	for range 5 {
		tok := forge(t, jwt.SigningMethodES256, key(t, token.AlgES256), "forged-kid", validMap())
		if _, err := e.v.Verify(tok); err == nil {
			t.Fatal("forged kid accepted")
		}
	}
	if n := e.fetches.Load(); n != 4 {
		t.Errorf("fetches after forged kids = %d, want 4 (initial + a burst of 3)", n)
	}
}

func TestNewValidation(t *testing.T) {
	ctx := t.Context()
	for name, o := range map[string]verify.Options{
		"no url":      {Issuer: issuer, Audience: audience},
		"no issuer":   {JWKSURL: "http://127.0.0.1:1/jwks", Audience: audience},
		"no audience": {JWKSURL: "http://127.0.0.1:1/jwks", Issuer: issuer},
		"unreachable": {JWKSURL: "http://127.0.0.1:1/jwks", Issuer: issuer, Audience: audience, RequireInitialFetch: true, HTTPTimeout: time.Second},
	} {
		o.Logger = slog.New(slog.DiscardHandler)
		if _, err := verify.New(ctx, o); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	// Lenient startup: New succeeds, the first token triggers the fetch.
	v, err := verify.New(ctx, verify.Options{JWKSURL: "http://127.0.0.1:1/jwks", Issuer: issuer, Audience: audience,
		HTTPTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil || v == nil {
		t.Errorf("lenient New: %v", err)
	}
	if _, err := verify.NewWithKeyfunc(nil, verify.Options{Issuer: issuer, Audience: audience}); err == nil {
		t.Error("NewWithKeyfunc(nil) succeeded")
	}
}

func TestNewWithKeyfunc(t *testing.T) {
	priv := key(t, token.AlgEdDSA)
	ks, _ := token.NewKeySet(priv, "")
	s := token.NewSigner(ks, issuer)
	v, err := verify.NewWithKeyfunc(func(tk *jwt.Token) (any, error) {
		kid, _ := tk.Header["kid"].(string)
		if k, ok := ks.PublicKey(kid); ok {
			return k, nil
		}
		return nil, errors.New("unknown kid")
	}, verify.Options{Issuer: issuer, Audience: audience})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := s.Sign(token.Claims{Subject: "bob", Audience: audience, ExpiresAt: time.Now().Add(time.Minute)})
	if c, err := v.Verify(tok); err != nil || c.Subject != "bob" || c.Roles == nil {
		t.Fatalf("Verify: %v %+v", err, c)
	}
	// A keyfunc handing back a key of the wrong type for the alg is refused.
	bad, _ := verify.NewWithKeyfunc(func(*jwt.Token) (any, error) { return key(t, token.AlgES256).Public(), nil },
		verify.Options{Issuer: issuer, Audience: audience})
	if _, err := bad.Verify(tok); err == nil {
		t.Error("EdDSA token accepted with an ECDSA key")
	}
}

func TestMiddleware(t *testing.T) {
	e := newEnv(t, token.AlgES256, verify.Options{})
	var called atomic.Int64
	h := e.v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called.Add(1)
		c, ok := verify.FromContext(r.Context())
		if !ok {
			t.Error("no claims in context")
			return
		}
		_, _ = io.WriteString(w, c.Subject)
	}))
	do := func(values ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		for _, v := range values {
			req.Header.Add("X-Internal-Jwt", v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}

	good := e.sign(t, nil)
	if rec := do(good); rec.Code != http.StatusOK || rec.Body.String() != "alice" {
		t.Fatalf("valid: %d %q", rec.Code, rec.Body)
	}
	if called.Load() != 1 {
		t.Fatal("handler not called for valid token")
	}
	for name, vals := range map[string][]string{
		"missing":   nil,
		"invalid":   {"garbage"},
		"duplicate": {good, good},
		"wrong aud": {e.sign(t, func(c *token.Claims) { c.Audience = "billing" })},
	} {
		rec := do(vals...)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s: status %d", name, rec.Code)
		}
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["error"] != "unauthenticated" {
			t.Errorf("%s: body %q", name, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", name, ct)
		}
	}
	if called.Load() != 1 {
		t.Errorf("handler called %d times, want 1", called.Load())
	}
}

func TestMiddlewareAuthorizationBearer(t *testing.T) {
	e := newEnv(t, token.AlgES256, verify.Options{Header: "Authorization"})
	h := e.v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for hdr, want := range map[string]int{
		"Bearer " + e.sign(t, nil): http.StatusOK,
		"bearer " + e.sign(t, nil): http.StatusOK,
		e.sign(t, nil):             http.StatusUnauthorized,
	} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Authorization", hdr)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Authorization %.10q...: %d, want %d", hdr, rec.Code, want)
		}
	}
}

func TestUnaryInterceptor(t *testing.T) {
	e := newEnv(t, token.AlgEdDSA, verify.Options{})
	ic := e.v.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/orders.v1.Orders/Get"}
	var called int
	handler := func(ctx context.Context, req any) (any, error) {
		called++
		c, ok := verify.FromContext(ctx)
		if !ok {
			return nil, errors.New("no claims")
		}
		return c.Subject, nil
	}

	ctx := metadata.NewIncomingContext(t.Context(), metadata.Pairs("x-internal-jwt", e.sign(t, nil)))
	resp, err := ic(ctx, nil, info, handler)
	if err != nil || resp != "alice" {
		t.Fatalf("valid: %v %v", resp, err)
	}
	for name, ctx := range map[string]context.Context{
		"no metadata": t.Context(),
		"no header":   metadata.NewIncomingContext(t.Context(), metadata.Pairs("other", "x")),
		"invalid":     metadata.NewIncomingContext(t.Context(), metadata.Pairs("x-internal-jwt", "bad")),
		"two values":  metadata.NewIncomingContext(t.Context(), metadata.Pairs("x-internal-jwt", e.sign(t, nil), "x-internal-jwt", e.sign(t, nil))),
	} {
		_, err := ic(ctx, nil, info, handler)
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if called != 1 {
		t.Errorf("handler called %d times, want 1", called)
	}
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f *fakeStream) Context() context.Context { return f.ctx }

func TestStreamInterceptor(t *testing.T) {
	e := newEnv(t, token.AlgRS256, verify.Options{})
	ic := e.v.StreamServerInterceptor()
	info := &grpc.StreamServerInfo{FullMethod: "/orders.v1.Orders/Watch", IsServerStream: true}
	var sub string
	handler := func(srv any, ss grpc.ServerStream) error {
		c, ok := verify.FromContext(ss.Context())
		if !ok {
			return errors.New("no claims")
		}
		sub = c.Subject
		return nil
	}
	ok := &fakeStream{ctx: metadata.NewIncomingContext(t.Context(), metadata.Pairs("x-internal-jwt", e.sign(t, nil)))}
	if err := ic(nil, ok, info, handler); err != nil || sub != "alice" {
		t.Fatalf("valid: %v sub=%q", err, sub)
	}
	sub = ""
	bad := &fakeStream{ctx: metadata.NewIncomingContext(t.Context(), metadata.Pairs("x-internal-jwt", "bad"))}
	if err := ic(nil, bad, info, handler); status.Code(err) != codes.Unauthenticated || sub != "" {
		t.Errorf("invalid: %v, handler ran: %v", err, sub != "")
	}
}

func TestHasRoleNil(t *testing.T) {
	var c *verify.Claims
	if c.HasRole("x") {
		t.Error("nil claims has role")
	}
	if _, ok := verify.FromContext(context.Background()); ok {
		t.Error("FromContext on empty context reported claims")
	}
}
