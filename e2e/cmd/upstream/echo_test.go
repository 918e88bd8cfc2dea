package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// jwksServer serves a JWK Set that a test can replace, to exercise keyfunc's
// refetch on an unknown kid the way a key rotation does.
type jwksServer struct {
	mu   sync.Mutex
	keys map[string]*ecdsa.PrivateKey
	*httptest.Server
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{keys: map[string]*ecdsa.PrivateKey{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		st := jwkset.NewMemoryStorage()
		for kid, k := range s.keys {
			j, err := jwkset.NewJWKFromKey(&k.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: jwkset.AlgES256, USE: jwkset.UseSig}})
			if err != nil {
				t.Error(err)
				return
			}
			_ = st.KeyWrite(r.Context(), j)
		}
		b, _ := st.JSONPublic(r.Context())
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) addKey(t *testing.T, kid string) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.keys[kid] = k
	s.mu.Unlock()
	return k
}

func sign(t *testing.T, k *ecdsa.PrivateKey, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(aud string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"iss": "sessiongate", "sub": "alice", "aud": aud, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix(), "sid": "ref1"}
}

func newEcho(t *testing.T, jwksURL string) http.Handler {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	kf, err := newKeyfunc(ctx, jwksURL, time.Hour, time.Millisecond, log)
	if err != nil {
		t.Fatal(err)
	}
	return (&Echo{
		Keyfunc: kf.Keyfunc, Issuer: "sessiongate", DefaultAudience: "internal",
		AudiencePrefix: []AudiencePrefix{{"/orders/", "orders"}},
		TokenHeader:    "x-internal-jwt", PublicPrefixes: []string{"/public/"}, Log: log,
	}).Routes()
}

func do(t *testing.T, h http.Handler, path, token string, cookies ...*http.Cookie) (int, Response) {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	if token != "" {
		req.Header.Set("x-internal-jwt", token)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var resp Response
	if rec.Code == 200 {
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
	}
	return rec.Code, resp
}

func TestEchoVerifiesAndEchoes(t *testing.T) {
	js := newJWKSServer(t)
	k1 := js.addKey(t, "k1")
	h := newEcho(t, js.URL)

	code, resp := do(t, h, "/api/me", sign(t, k1, "k1", claims("internal")), &http.Cookie{Name: "theme", Value: "dark"})
	if code != 200 || !resp.Verified || resp.Token.Claims["sub"] != "alice" || resp.Token.Header["kid"] != "k1" {
		t.Fatalf("code %d resp %+v", code, resp)
	}
	if len(resp.Cookies) != 1 || resp.Cookies[0] != (Cookie{"theme", "dark"}) {
		t.Fatalf("cookies %+v", resp.Cookies)
	}
	if len(resp.Headers["x-internal-jwt"]) != 1 {
		t.Fatalf("headers %+v", resp.Headers)
	}

	// The audience follows the path: an "internal" token is no good for
	// /orders/, an "orders" token is.
	if code, _ := do(t, h, "/orders/1", sign(t, k1, "k1", claims("internal"))); code != 401 {
		t.Fatalf("wrong audience: code %d, want 401", code)
	}
	if code, _ := do(t, h, "/orders/1", sign(t, k1, "k1", claims("orders"))); code != 200 {
		t.Fatalf("orders audience: code %d, want 200", code)
	}
}

func TestEchoRejects(t *testing.T) {
	js := newJWKSServer(t)
	k1 := js.addKey(t, "k1")
	h := newEcho(t, js.URL)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	expired := claims("internal")
	expired["exp"] = time.Now().Add(-time.Minute).Unix()
	wrongIss := claims("internal")
	wrongIss["iss"] = "someone-else"
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims("internal")).SignedString(jwt.UnsafeAllowNoneSignatureType)

	for name, tok := range map[string]string{
		"forged with another key": sign(t, other, "k1", claims("internal")),
		"unknown kid":             sign(t, other, "nope", claims("internal")),
		"expired":                 sign(t, k1, "k1", expired),
		"wrong issuer":            sign(t, k1, "k1", wrongIss),
		"alg none":                none,
		"garbage":                 "not.a.jwt",
	} {
		if code, _ := do(t, h, "/api/me", tok); code != 401 {
			t.Errorf("%s: code %d, want 401", name, code)
		}
		// A token on a public path is still verified: presence means "trust me".
		if code, _ := do(t, h, "/public/x", tok); code != 401 {
			t.Errorf("%s on public path: code %d, want 401", name, code)
		}
	}
	if code, _ := do(t, h, "/api/me", ""); code != 401 {
		t.Errorf("no token on protected path: code %d, want 401", code)
	}
	if code, resp := do(t, h, "/public/x", ""); code != 200 || resp.Verified {
		t.Errorf("no token on public path: code %d verified %v, want 200 unverified", code, resp.Verified)
	}
}

func TestEchoPicksUpRotatedKey(t *testing.T) {
	js := newJWKSServer(t)
	k1 := js.addKey(t, "k1")
	h := newEcho(t, js.URL)
	if code, _ := do(t, h, "/api/me", sign(t, k1, "k1", claims("internal"))); code != 200 {
		t.Fatalf("k1: code %d", code)
	}
	// Published after the first fetch: only a refetch on the unknown kid can
	// find it.
	k2 := js.addKey(t, "k2")
	if code, _ := do(t, h, "/api/me", sign(t, k2, "k2", claims("internal"))); code != 200 {
		t.Fatalf("k2 after rotation: code %d", code)
	}
	if code, _ := do(t, h, "/api/me", sign(t, k1, "k1", claims("internal"))); code != 200 {
		t.Fatalf("k1 after rotation: code %d", code)
	}
}

// With the unknown-kid refetch off (-jwks-unknown-kid-every 0), a key
// published after the last fetch is refused until the periodic refresh has
// fetched it: only then does the e2e runbook test prove that publishing
// ahead of use is enough.
func TestEchoUnknownKIDRefetchOff(t *testing.T) {
	js := newJWKSServer(t)
	js.addKey(t, "k1")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	const refresh = 200 * time.Millisecond
	created := time.Now() // the first periodic refresh comes refresh after this, at the earliest
	kf, err := newKeyfunc(ctx, js.URL, refresh, 0, log)
	if err != nil {
		t.Fatal(err)
	}
	e := &Echo{Keyfunc: kf.Keyfunc, Issuer: "sessiongate", DefaultAudience: "internal", TokenHeader: "x-internal-jwt", Log: log}
	k2 := js.addKey(t, "k2")
	if _, err := e.Verify(sign(t, k2, "k2", claims("internal")), "/api/me"); err == nil && time.Since(created) < refresh {
		t.Fatal("k2 accepted before any periodic refresh: the unknown kid was refetched")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := e.Verify(sign(t, k2, "k2", claims("internal")), "/api/me")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("k2 never accepted through the periodic refresh: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
