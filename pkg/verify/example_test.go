package verify_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/sessiongate/sessiongate/pkg/token"
	"github.com/sessiongate/sessiongate/pkg/verify"
)

// A service behind sessiongate wraps its handlers with the Verifier's
// middleware and reads the caller's identity from the request context.
func Example() {
	// Stand-in for sessiongate: a signer and its JWKS endpoint.
	key, err := token.GenerateKey(token.AlgES256)
	if err != nil {
		log.Fatal(err)
	}
	ks, err := token.NewKeySet(key, "")
	if err != nil {
		log.Fatal(err)
	}
	signer := token.NewSigner(ks, "https://sessiongate.internal")
	jwks := httptest.NewServer(signer.JWKSHandler(5 * time.Minute))
	defer jwks.Close()

	// In the downstream service.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // stops the background JWKS refresh
	v, err := verify.New(ctx, verify.Options{
		JWKSURL:  jwks.URL,
		Issuer:   "https://sessiongate.internal",
		Audience: "orders",
	})
	if err != nil {
		log.Fatal(err)
	}
	orders := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := verify.FromContext(r.Context())
		fmt.Fprintf(w, "orders of %s in %s, admin=%t", c.Subject, c.Tenant, c.HasRole("admin"))
	}))

	// What Envoy forwards after sessiongate answered the ext_authz check.
	tok, err := signer.Sign(token.Claims{
		Subject:   "alice",
		Tenant:    "acme",
		Audience:  "orders",
		Roles:     []string{"admin"},
		ExpiresAt: time.Now().Add(time.Minute),
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, header := range []string{tok, ""} {
		req := httptest.NewRequest(http.MethodGet, "/orders", nil)
		if header != "" {
			req.Header.Set("x-internal-jwt", header)
		}
		rec := httptest.NewRecorder()
		orders.ServeHTTP(rec, req)
		fmt.Print(rec.Code, " ", rec.Body.String())
		fmt.Println()
	}
	// Output:
	// 200 orders of alice in acme, admin=true
	// 401 {"error":"unauthenticated"}
}
