package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/e2e/harness"
	"github.com/sessiongate/sessiongate/pkg/admin"
)

// tokenPair is the token endpoint's RFC 6749 §5.1 answer.
type tokenPair struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

// refreshThroughEnvoy posts a refresh request to the edge as a mobile app
// does (curl -d), and returns the answer.
func refreshThroughEnvoy(s *harness.Stack, token string) *harness.Result {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}.Encode()
	return s.Do(http.MethodPost, s.EdgeURL("/auth/token"), strings.NewReader(form),
		harness.WithHeader("Content-Type", "application/x-www-form-urlencoded"))
}

// mustRefresh refreshes and checks the answer as it arrives at the client
// through Envoy: 200, no-store, no-cache, JSON with a Bearer pair. A 503
// (the store did not answer within redis.timeout, which a loaded machine
// under -race does see) is retried after its Retry-After, as an app does:
// whether or not the timed-out call rotated, the retry gets the pair, the
// same one within the reuse grace.
func mustRefresh(t *testing.T, s *harness.Stack, token string) tokenPair {
	t.Helper()
	r := refreshThroughEnvoy(s, token)
	for try := 0; r.Status == http.StatusServiceUnavailable && r.Header.Get("Retry-After") == "1" && try < 3; try++ {
		t.Logf("refresh answered 503 (store timeout); retrying after Retry-After as an app does")
		time.Sleep(time.Second)
		r = refreshThroughEnvoy(s, token)
	}
	if r.Status != http.StatusOK {
		t.Fatalf("refresh: %v", r)
	}
	for k, v := range map[string]string{"Cache-Control": "no-store", "Pragma": "no-cache", "Content-Type": "application/json"} {
		if got := r.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Fatalf("refresh answer %s = %q, want %q: %v", k, got, v, r)
		}
	}
	var p tokenPair
	if err := json.Unmarshal(r.Body, &p); err != nil || p.AccessToken == "" || p.RefreshToken == "" || p.TokenType != "Bearer" || p.ExpiresIn <= 0 {
		t.Fatalf("refresh answer %+v (%v): %v", p, err, r)
	}
	return p
}

// oauthError checks an RFC 6749 §5.2 answer through Envoy.
func oauthError(t *testing.T, r *harness.Result, status int, code string) {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if r.Status != status || json.Unmarshal(r.Body, &e) != nil || e.Error != code || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("want %d %s with no-store, got %v", status, code, r)
	}
}

// A mobile app through the real Envoy: the login service creates its
// session with refresh through the admin API; the app calls the API with
// the access token as a bearer and refreshes 100 times (each new access
// token works, the previous one is refused); a concurrent double refresh
// gets the same pair for both and the app carries on; a replayed old
// refresh token revokes the family, after which the current access token
// and refresh token are refused. No upstream ever sees a refresh token or
// the token request, and no sessiongate log line holds a token.
func TestMobileAppRefreshThroughEnvoy(t *testing.T) {
	s := harness.Start(t, harness.Options{Configure: func(c *harness.SGConfig) {
		c.Refresh = &harness.SGRefresh{Enabled: true, ReuseGrace: "10s"}
	}})
	created, err := s.Admin().CreateSession(context.Background(), admin.CreateRequest{
		Subject: "alice", Roles: []string{"user"}, Refresh: true, Device: &admin.Device{Name: "phone"}})
	if err != nil {
		t.Fatal(err)
	}
	if created.RefreshToken == "" || created.SessionID == "" {
		t.Fatalf("login with refresh returned %+v", created)
	}
	secrets := []string{created.SessionID, created.RefreshToken}
	api := func(tok string) *harness.Result {
		return s.Get("/api/profile", harness.WithHeader("Authorization", "Bearer "+tok), acceptJSON())
	}
	apiOK := func(tok string) {
		t.Helper()
		e := s.Echo(api(tok))
		if got := claimString(t, e.Token.Claims, "sub"); got != "alice" {
			t.Fatalf("sub = %q", got)
		}
		for k, vs := range e.Headers {
			for _, v := range vs {
				if strings.Contains(v, tok) || strings.Contains(v, "sgr_") {
					t.Fatalf("upstream received a credential in %s: %q", k, v)
				}
			}
		}
	}
	apiRefused := func(tok, what string) {
		t.Helper()
		if r := api(tok); r.Status != http.StatusUnauthorized {
			t.Fatalf("%s: want 401, got %v", what, r)
		}
	}

	apiOK(created.SessionID)
	apiRefused(created.RefreshToken, "refresh token as a bearer")

	access, refresh := created.SessionID, created.RefreshToken
	var retired []string
	for i := range 100 {
		p := mustRefresh(t, s, refresh)
		secrets = append(secrets, p.AccessToken, p.RefreshToken)
		apiOK(p.AccessToken)
		apiRefused(access, "previous access token")
		retired = append(retired, refresh)
		access, refresh = p.AccessToken, p.RefreshToken
		if i == 0 && p.ExpiresIn > 12*3600 {
			t.Fatalf("expires_in %d beyond the access session's absolute timeout", p.ExpiresIn)
		}
	}

	// Two refreshes racing with the same token: the same pair for both.
	var wg sync.WaitGroup
	pairs := make([]tokenPair, 2)
	for i := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pairs[i] = mustRefresh(t, s, refresh)
		}()
	}
	wg.Wait()
	if pairs[0] != pairs[1] {
		t.Fatalf("concurrent refreshes got different pairs")
	}
	secrets = append(secrets, pairs[0].AccessToken, pairs[0].RefreshToken)
	apiOK(pairs[0].AccessToken)
	apiRefused(access, "access token before the double refresh")
	retired = append(retired, refresh)
	// The app carries on with the pair.
	p := mustRefresh(t, s, pairs[0].RefreshToken)
	secrets = append(secrets, p.AccessToken, p.RefreshToken)
	apiOK(p.AccessToken)
	access, refresh = p.AccessToken, p.RefreshToken

	// An attacker replays a refresh token the app used long ago: reuse.
	oauthError(t, refreshThroughEnvoy(s, retired[10]), http.StatusBadRequest, "invalid_grant")
	apiRefused(access, "current access token after reuse")
	oauthError(t, refreshThroughEnvoy(s, refresh), http.StatusBadRequest, "invalid_grant")

	// Malformed requests get their errors through Envoy too.
	oauthError(t, s.Get("/auth/token"), http.StatusMethodNotAllowed, "invalid_request")
	oauthError(t, s.Do(http.MethodPost, s.EdgeURL("/auth/token"), strings.NewReader(`{"grant_type":"refresh_token"}`),
		harness.WithHeader("Content-Type", "application/json")), http.StatusBadRequest, "invalid_request")
	oauthError(t, refreshThroughEnvoy(s, created.SessionID), http.StatusBadRequest, "invalid_grant")
	// Over Envoy's buffer limit for the route: Envoy's own 413, no Check.
	big := s.Do(http.MethodPost, s.EdgeURL("/auth/token"), strings.NewReader("grant_type=refresh_token&x="+strings.Repeat("a", 2048)),
		harness.WithHeader("Content-Type", "application/x-www-form-urlencoded"))
	if big.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("body over max_request_bytes: %v", big)
	}

	// Every token request was a local reply: no upstream. Envoy writes
	// its access log every 100 ms; the 413, sent last, closes the list.
	var tokenLines []map[string]any
	s.Eventually(5*time.Second, "the token requests in the access log", func() error {
		tokenLines = tokenLines[:0]
		last := false
		for _, l := range s.AccessLog() {
			if p, _ := l["path"].(string); strings.HasPrefix(p, "/auth/token") {
				tokenLines = append(tokenLines, l)
				last = last || l["status"] == float64(http.StatusRequestEntityTooLarge)
			}
		}
		if !last || len(tokenLines) < 100 {
			return fmt.Errorf("%d token requests logged so far, the 413 among them: %v", len(tokenLines), last)
		}
		return nil
	})
	for _, l := range tokenLines {
		if c, _ := l["upstream_cluster"].(string); c != "" && c != "-" {
			t.Errorf("a token request went to upstream cluster %q: %v", c, l)
		}
		if f, _ := l["flags"].(string); l["status"] != float64(http.StatusRequestEntityTooLarge) && f != "UAEX" {
			t.Errorf("a token request answered other than by ext_authz: %v", l)
		}
	}
	for _, tok := range secrets {
		if s.Sessiongate.LogContains(tok) {
			t.Fatal("sessiongate's log holds a token")
		}
	}
}
