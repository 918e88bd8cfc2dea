package verify_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sessiongate/sessiongate/pkg/token"
	"github.com/sessiongate/sessiongate/pkg/verify"
)

func service(c *token.Claims) {
	c.Subject, c.Kind, c.SessionRef, c.Tenant, c.Custom = "billing", token.KindService, "", "", nil
}

// forgeTyped signs claims with the env's key and kid under a chosen typ,
// for tokens whose kind and typ disagree.
func (e *env) forgeTyped(t *testing.T, typ string, claims jwt.MapClaims) string {
	t.Helper()
	tk := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tk.Header["kid"] = e.signer.ActiveKID()
	if typ == "" {
		delete(tk.Header, "typ")
	} else {
		tk.Header["typ"] = typ
	}
	s, err := tk.SignedString(e.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestKinds: by default only user tokens pass, so a verifier written before
// service tokens existed never takes one for a user's; Kinds opens it to
// service tokens; kind and typ must agree.
func TestKinds(t *testing.T) {
	users := newEnv(t, token.AlgES256, verify.Options{})
	both := newEnv(t, token.AlgES256, verify.Options{Kinds: []string{token.KindUser, token.KindService}})
	both.priv, both.signer = users.priv, users.signer // one key, two verifiers
	services := newEnv(t, token.AlgES256, verify.Options{Kinds: []string{token.KindService}})
	services.priv, services.signer = users.priv, users.signer

	with := func(kind any) jwt.MapClaims {
		m := validMap()
		if kind != nil {
			m["kind"] = kind
		}
		return m
	}
	userTok, svcTok := users.sign(t, nil), users.sign(t, service)
	for _, tc := range []struct {
		name     string
		tok      string
		user     bool // accepted by the default verifier
		svc      bool // accepted by the services-only verifier
		wantKind string
	}{
		{"a user token", userTok, true, false, token.KindUser},
		{"a service token", svcTok, false, true, token.KindService},
		{"no kind claim, typ JWT (a token from before kinds)", users.forgeTyped(t, "JWT", with(nil)), true, false, token.KindUser},
		{"kind service under typ JWT", users.forgeTyped(t, "JWT", with("service")), false, false, ""},
		{"kind user under typ service+jwt", users.forgeTyped(t, "service+jwt", with("user")), false, false, ""},
		{"no kind under typ service+jwt", users.forgeTyped(t, "service+jwt", with(nil)), false, false, ""},
		{"no typ", users.forgeTyped(t, "", with("user")), false, false, ""},
		{"an unknown kind", users.forgeTyped(t, "JWT", with("admin")), false, false, ""},
		{"kind not a string", users.forgeTyped(t, "JWT", with(1)), false, false, ""},
		{"typ in another case", users.forgeTyped(t, "Service+JWT", with("service")), false, false, ""},
	} {
		c, err := users.v.Verify(tc.tok)
		if (err == nil) != tc.user {
			t.Errorf("%s: default verifier: %v", tc.name, err)
		}
		if err == nil && (c.Kind != tc.wantKind || c.Service() != "") {
			t.Errorf("%s: Kind %q, Service %q", tc.name, c.Kind, c.Service())
		}
		if _, err := services.v.Verify(tc.tok); (err == nil) != tc.svc {
			t.Errorf("%s: services-only verifier: %v", tc.name, err)
		}
		c, err = both.v.Verify(tc.tok)
		if (err == nil) != (tc.user || tc.svc) {
			t.Errorf("%s: verifier of both: %v", tc.name, err)
		}
		if err != nil && !errors.Is(err, verify.ErrInvalidToken) {
			t.Errorf("%s: %v is not ErrInvalidToken", tc.name, err)
		}
	}
	c, err := both.v.Verify(svcTok)
	if err != nil || c.Service() != "billing" || c.Kind != token.KindService {
		t.Fatalf("service token: %+v, %v", c, err)
	}
	if _, err := verify.NewWithKeyfunc(func(*jwt.Token) (any, error) { return nil, nil },
		verify.Options{Issuer: issuer, Audience: audience, Kinds: []string{"robot"}}); err == nil {
		t.Fatal("an unknown kind in Options.Kinds was accepted")
	}
	var nilClaims *verify.Claims
	if nilClaims.Service() != "" {
		t.Fatal("Service on nil claims")
	}
}

// TestKindsInMiddlewareAndInterceptors: the HTTP middleware and both gRPC
// interceptors apply the same kinds.
func TestKindsInMiddlewareAndInterceptors(t *testing.T) {
	e := newEnv(t, token.AlgES256, verify.Options{})
	svcTok, userTok := e.sign(t, service), e.sign(t, nil)
	h := e.v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for tok, want := range map[string]int{userTok: 200, svcTok: 401} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("x-internal-jwt", tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("middleware: %d, want %d", rec.Code, want)
		}
	}
	md := func(tok string) context.Context {
		return metadata.NewIncomingContext(t.Context(), metadata.Pairs("x-internal-jwt", tok))
	}
	unary := e.v.UnaryServerInterceptor()
	ok := func(ctx context.Context, req any) (any, error) { return nil, nil }
	if _, err := unary(md(svcTok), nil, &grpc.UnaryServerInfo{}, ok); status.Code(err) != codes.Unauthenticated {
		t.Errorf("unary interceptor, service token: %v", err)
	}
	if _, err := unary(md(userTok), nil, &grpc.UnaryServerInfo{}, ok); err != nil {
		t.Errorf("unary interceptor, user token: %v", err)
	}
	stream := e.v.StreamServerInterceptor()
	err := stream(nil, &fakeStream{ctx: md(svcTok)}, &grpc.StreamServerInfo{}, func(any, grpc.ServerStream) error { return nil })
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("stream interceptor, service token: %v", err)
	}
}
