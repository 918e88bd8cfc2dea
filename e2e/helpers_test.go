package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiongate/sessiongate/e2e/harness"
)

// Demo users of e2e/fixtures/users.json (their passwords are in the README
// walk-through too).
const (
	alicePW = "alice-password"
	bobPW   = "bob-password"
	carolPW = "carol-password"
)

func tctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func acceptJSON() harness.ReqOpt { return harness.WithHeader("Accept", "application/json") }

// probe returns a unique query value: the upstream logs every request's
// query, so a test can prove that a request never reached it.
func probe(t *testing.T, what string) string {
	t.Helper()
	if strings.ContainsAny(what, " ?&#=%") {
		t.Fatalf("probe name %q must be URL-safe", what)
	}
	return fmt.Sprintf("probe=%s-%d", what, time.Now().UnixNano())
}

func assertNotReachedUpstream(t *testing.T, s *harness.Stack, probe string) {
	t.Helper()
	if s.Upstream.LogContains(probe) {
		t.Errorf("request %q reached the upstream; it must have been stopped at Envoy", probe)
	}
}

func claimString(t *testing.T, cl map[string]any, k string) string {
	t.Helper()
	v, ok := cl[k].(string)
	if !ok {
		t.Errorf("claim %q = %#v, want a string", k, cl[k])
	}
	return v
}

// stringList reads a claim that is a string or a list of strings (aud may
// be either by RFC 7519).
func stringList(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func jsonError(t *testing.T, r *harness.Result) string {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json: %v", ct, r)
	}
	var body struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Errorf("body is not JSON {\"error\":...}: %v", r)
	}
	return body.Error
}

func expectStatus(t *testing.T, r *harness.Result, want int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("want %d, got %v", want, r)
	}
}

// jwksKIDs fetches sessiongate's JWKS and returns its key IDs.
func jwksKIDs(t *testing.T, s *harness.Stack) []string {
	t.Helper()
	resp, err := http.Get(s.JWKSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatalf("JWKS %s: %v", b, err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	slices.Sort(kids)
	return kids
}

// forgeToken signs a token that looks like sessiongate's (right issuer,
// audience and a kid that sessiongate publishes) with a key sessiongate never
// had.
func forgeToken(t *testing.T, kid, sub string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": harness.Issuer, "aud": harness.Audience, "sub": sub, "roles": []string{"admin"},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix(), "sid": "forged",
	})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
