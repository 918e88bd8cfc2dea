package verify_test

import (
	"crypto"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiongate/sessiongate/internal/logtest"
	"github.com/sessiongate/sessiongate/pkg/token"
	"github.com/sessiongate/sessiongate/pkg/verify"
)

// jwk renders k as a JWK; private includes its secret material, the way a
// misconfigured JWKS endpoint would publish it.
func jwk(t *testing.T, k any, kid string, alg jwkset.ALG, private bool) map[string]any {
	t.Helper()
	j, err := jwkset.NewJWKFromKey(k, jwkset.JWKOptions{
		Marshal:  jwkset.JWKMarshalOptions{Private: private},
		Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: alg, USE: jwkset.UseSig},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(j.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestJWKSPrivateKeyRefused: a published key carrying private material (EC
// d, the same spelled "D", RSA d/p/q/..., a symmetric k) is not usable for
// verification, and is logged once per fetch, not once per request.
func TestJWKSPrivateKeyRefused(t *testing.T) {
	good := key(t, token.AlgES256)
	leaked, err := token.GenerateKey(token.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	leakedUpper, err := token.GenerateKey(token.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	leakedRSA := key(t, token.AlgRS256)
	upper := jwk(t, leakedUpper, "leaked-upper", jwkset.AlgES256, true)
	upper["D"] = upper["d"]
	delete(upper, "d")
	set, err := json.Marshal(map[string]any{"keys": []any{
		jwk(t, good.Public(), "good", jwkset.AlgES256, false),
		jwk(t, leaked, "leaked", jwkset.AlgES256, true),
		upper,
		jwk(t, leakedRSA, "leaked-rsa", jwkset.AlgRS256, true),
		map[string]any{"kty": "oct", "kid": "hmac", "alg": "HS256", "use": "sig", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(set)
	}))
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("JWKS served on %s, want 127.0.0.1", srv.URL)
	}
	var logs logtest.Buffer
	v, err := verify.New(t.Context(), verify.Options{JWKSURL: srv.URL, Issuer: issuer, Audience: audience,
		RequireInitialFetch: true, UnknownKIDRefreshInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	refusals := func(kid string) int { return countKID(logs.String(), kid) }
	for _, kid := range []string{"leaked", "leaked-upper", "leaked-rsa", "hmac"} {
		if n := refusals(kid); n != 1 {
			t.Errorf("after the first fetch, %d log lines for kid %s, want 1:\n%s", n, kid, logs.String())
		}
	}
	if _, err := v.Verify(forge(t, jwt.SigningMethodES256, good, "good", validMap())); err != nil {
		t.Fatalf("token from the public key refused: %v", err)
	}
	for _, tc := range []struct {
		kid    string
		method jwt.SigningMethod
		key    crypto.Signer
	}{
		{"leaked", jwt.SigningMethodES256, leaked},
		{"leaked-upper", jwt.SigningMethodES256, leakedUpper},
		{"leaked-rsa", jwt.SigningMethodRS256, leakedRSA},
	} {
		for range 3 {
			if c, err := v.Verify(forge(t, tc.method, tc.key, tc.kid, validMap())); err == nil {
				t.Errorf("token signed with the leaked key %s accepted: %+v", tc.kid, c)
			}
		}
	}
	// 9 requests with refused kids made at most the burst of unknown-kid
	// refreshes, and each fetch logged each leaked key once.
	n := int(fetches.Load())
	if n < 2 || n > 4 {
		t.Errorf("fetches = %d, want 2 to 4 (initial + at most a burst of 3)", n)
	}
	for _, kid := range []string{"leaked", "leaked-upper", "leaked-rsa", "hmac"} {
		if got := refusals(kid); got != n {
			t.Errorf("kid %s logged %d times over %d fetches, want once per fetch", kid, got, n)
		}
	}
	if strings.Contains(logs.String(), `"d"`) || strings.Contains(logs.String(), "c2VjcmV0") {
		t.Errorf("log holds key material:\n%s", logs.String())
	}
}

// countKID counts the refusal lines naming exactly kid.
func countKID(logs, kid string) int {
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "private key material") && strings.HasSuffix(line, " kid="+kid) {
			n++
		}
	}
	return n
}

// TestUnknownKIDBurst: forged kids spent just before a genuine rotation do
// not hold the new key back for the whole UnknownKIDRefreshInterval.
func TestUnknownKIDBurst(t *testing.T) {
	e := newEnv(t, token.AlgES256, verify.Options{UnknownKIDRefreshInterval: time.Hour})
	for i := range 2 {
		tok := forge(t, jwt.SigningMethodES256, key(t, token.AlgES256), "forged-"+string(rune('a'+i)), validMap())
		if _, err := e.v.Verify(tok); err == nil {
			t.Fatal("forged kid accepted")
		}
	}
	if n := e.fetches.Load(); n != 3 {
		t.Errorf("fetches after two forged kids = %d, want 3", n)
	}
	newKS, err := token.NewKeySet(key(t, token.AlgEdDSA), "", e.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	e.signer.SetKeys(newKS)
	start := time.Now()
	c, err := e.v.Verify(e.sign(t, nil))
	if err != nil {
		t.Fatalf("token from the rotated key refused after forged kids: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second || c.Subject != "alice" {
		t.Errorf("rotated key verified after %v (subject %q)", d, c.Subject)
	}
	// The burst is spent now: another forged kid costs no fetch.
	if _, err := e.v.Verify(forge(t, jwt.SigningMethodES256, key(t, token.AlgES256), "forged-z", validMap())); err == nil {
		t.Fatal("forged kid accepted")
	}
	if n := e.fetches.Load(); n != 4 {
		t.Errorf("fetches = %d, want 4 (initial + a burst of 3)", n)
	}
}
