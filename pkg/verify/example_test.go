package verify_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/sessiongate/sessiongate/pkg/revocation"
	"github.com/sessiongate/sessiongate/pkg/session"
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

// A service that must not accept a revoked session's tokens until their
// exp follows sessiongate's revocation feed (GET /v1/revocations on
// http_addr). Until the feed has synchronised, and whenever it has been
// silent for longer than RevocationMaxStale (default 30s), tokens that
// carry a session are refused: revocation over availability, unless
// RevocationFailOpen.
func ExampleFollowRevocations() {
	// Stand-in for sessiongate: a signer, a session store and its feed.
	key, err := token.GenerateKey(token.AlgES256)
	if err != nil {
		log.Fatal(err)
	}
	ks, err := token.NewKeySet(key, "")
	if err != nil {
		log.Fatal(err)
	}
	signer := token.NewSigner(ks, "https://sessiongate.internal")
	sessions := session.NewMemoryStore(nil)
	feed := revocation.New(revocation.Options{Source: sessions})
	feedCtx, stopFeed := context.WithCancel(context.Background())
	defer stopFeed()
	go feed.Run(feedCtx)
	mux := http.NewServeMux()
	mux.Handle("/.well-known/jwks.json", signer.JWKSHandler(5*time.Minute))
	mux.Handle("/v1/revocations", feed)
	gate := httptest.NewServer(mux)
	defer gate.Close()

	// In the downstream service.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // stops the JWKS refresh and the feed
	revocations := verify.FollowRevocations(gate.URL+"/v1/revocations",
		verify.RevocationToken(os.Getenv("REVOCATIONS_TOKEN")), // revocations.token_file, if set
		verify.RevocationStatusFunc(func(s verify.RevocationStatus) {
			// Export s.Synced / s.Stale as metrics or readiness.
		}))
	v, err := verify.New(ctx, verify.Options{
		JWKSURL:     gate.URL + "/.well-known/jwks.json",
		Issuer:      "https://sessiongate.internal",
		Audience:    "orders",
		Revocations: revocations,
	})
	if err != nil {
		log.Fatal(err)
	}
	for !revocations.Status().Synced {
		time.Sleep(10 * time.Millisecond)
	}

	// A session and a token sessiongate issued for it.
	id, _ := session.NewID()
	now := time.Now()
	s := &session.Session{Ref: session.RefOf(id), Subject: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour), IdleTimeout: time.Hour}
	if _, err := sessions.Create(ctx, s, session.Limit{}); err != nil {
		log.Fatal(err)
	}
	tok, err := signer.Sign(token.Claims{Subject: "alice", Audience: "orders", SessionRef: s.Ref, ExpiresAt: now.Add(5 * time.Minute)})
	if err != nil {
		log.Fatal(err)
	}
	_, err = v.Verify(tok)
	fmt.Println("before the revocation:", err)

	// An administrator revokes the session (DELETE /v1/sessions/{ref}).
	if err := sessions.Delete(ctx, s.Ref); err != nil {
		log.Fatal(err)
	}
	for err == nil {
		time.Sleep(10 * time.Millisecond)
		_, err = v.Verify(tok)
	}
	fmt.Println("after:", errors.Is(err, verify.ErrRevoked))
	// Output:
	// before the revocation: <nil>
	// after: true
}
