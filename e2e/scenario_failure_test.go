package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/e2e/harness"
)

// Envoy's ext_authz timeout in envoy/envoy.yaml.tmpl. A 503 that carries
// sessiongate's Retry-After was produced by sessiongate, hence within this
// bound; Envoy's own 503 (status_on_error) has no Retry-After.
const extAuthzTimeout = 250 * time.Millisecond

// maxDenyLatency bounds what the client waits for a fail-closed answer:
// redis.timeout (100ms) plus generous room for a loaded CI machine, and well
// under anything a user would call a hang.
const maxDenyLatency = time.Second

// cacheLeaseBound is how long, at most, the session cache may keep
// answering from memory after Redis stops answering its heartbeats (its
// lease, documented in SECURITY.md), with room for a loaded machine.
const cacheLeaseBound = 2 * time.Second

// expectStoreDown503 sends a few authenticated requests and checks that each
// is refused quickly by sessiongate itself, and that none reached the
// upstream.
func expectStoreDown503(t *testing.T, s *harness.Stack, sess *harness.Session, what string) {
	t.Helper()
	// The session cache may answer a live session for a short lease after
	// the last heartbeat Redis answered (a stopped Redis and a partition
	// look alike until then); past it, every answer must be a refusal.
	lease := time.Now().Add(cacheLeaseBound)
	for {
		r := s.Get("/api/me", harness.WithSession(sess), acceptJSON())
		if r.Status == http.StatusServiceUnavailable {
			break
		}
		if r.Status != http.StatusOK || time.Now().After(lease) {
			t.Fatalf("%s: want 503 within %s, got %v", what, cacheLeaseBound, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 3 {
		p := probe(t, fmt.Sprintf("%s-%d", what, i))
		r := s.Get("/api/me?"+p, harness.WithSession(sess), acceptJSON())
		if r.Status != http.StatusServiceUnavailable {
			t.Fatalf("%s: want 503, got %v", what, r)
		}
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("%s: 503 without Retry-After, so it came from Envoy (ext_authz timeout %s or error), not from sessiongate: %v", what, extAuthzTimeout, r)
		}
		if r.Elapsed > maxDenyLatency {
			t.Errorf("%s: 503 after %s, want about redis.timeout (%s)", what, r.Elapsed, harness.RedisTimeoutStr)
		}
		t.Logf("%s: 503 in %s", what, r.Elapsed.Round(time.Millisecond))
		assertNotReachedUpstream(t, s, p)
	}
}

func expectServiceBack(t *testing.T, s *harness.Stack, sess *harness.Session, what string) {
	t.Helper()
	s.Eventually(15*time.Second, what, func() error {
		r := s.Get("/api/me", harness.WithSession(sess), acceptJSON())
		if r.Status != http.StatusOK {
			return fmt.Errorf("%v", r)
		}
		return nil
	})
	if got := claimString(t, s.Echo(s.Get("/api/me", harness.WithSession(sess))).Token.Claims, "sub"); got != sess.Subject {
		t.Errorf("%s: sub %q, want %q", what, got, sess.Subject)
	}
}

// Redis frozen (SIGSTOP): sessiongate answers 503 within about
// redis.timeout instead of hanging, and the same session works again after
// SIGCONT, with no restart of sessiongate.
func TestRedisPausedFailsClosedThenRecovers(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	alice := s.Login("alice", alicePW, "laptop")
	s.Echo(s.Get("/api/me", harness.WithSession(alice)))
	sgPID := s.Sessiongate.PID()

	if err := s.Redis.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// A replica answers a session it holds in its cache until its
	// invalidation link's last answered heartbeat is 500 ms old; from then
	// on every Check needs Redis (expectStoreDown503 allows for the lease).
	expectStoreDown503(t, s, alice, "redis-stopped")
	// Public routes do not depend on the store.
	s.Echo(s.Get("/public/status"))

	if err := s.Redis.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	expectServiceBack(t, s, alice, "service after SIGCONT")
	if !s.Sessiongate.Running() || s.Sessiongate.PID() != sgPID {
		t.Error("sessiongate was restarted; it must recover by itself")
	}
}

// Redis killed: 503 quickly; restarted (same data, AOF): the same session
// works again, with no restart of sessiongate.
func TestRedisKilledFailsClosedThenRecovers(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	alice := s.Login("alice", alicePW, "laptop")
	s.Echo(s.Get("/api/me", harness.WithSession(alice)))
	sgPID := s.Sessiongate.PID()

	if err := s.Redis.Kill(); err != nil {
		t.Fatal(err)
	}
	expectStoreDown503(t, s, alice, "redis-killed")

	s.StartRedis()
	expectServiceBack(t, s, alice, "service after Redis restart")
	if !s.Sessiongate.Running() || s.Sessiongate.PID() != sgPID {
		t.Error("sessiongate was restarted; it must reconnect by itself")
	}
	// And new logins work too.
	s.Echo(s.Get("/api/me", harness.WithSession(s.Login("bob", bobPW, "phone"))))
}

// sessiongate killed: Envoy fails closed (no request reaches the upstream);
// restarted: service resumes with the sessions kept in Redis.
func TestSessiongateKilledFailsClosedThenResumes(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	alice := s.Login("alice", alicePW, "laptop")
	s.Echo(s.Get("/api/me", harness.WithSession(alice)))

	if err := s.Sessiongate.Kill(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		p := probe(t, fmt.Sprintf("sg-down-%d", i))
		r := s.Get("/api/me?"+p, harness.WithSession(alice), acceptJSON())
		if r.Status != http.StatusServiceUnavailable {
			t.Errorf("sessiongate down: want 503 (ext_authz status_on_error), got %v", r)
		}
		if r.Elapsed > maxDenyLatency {
			t.Errorf("sessiongate down: answer after %s", r.Elapsed)
		}
		// A forged token changes nothing.
		r = s.Get("/api/me?"+p, harness.WithSession(alice), acceptJSON(),
			harness.WithHeader(harness.TokenHeader, forgeToken(t, "any", "alice")))
		if r.Status != http.StatusServiceUnavailable {
			t.Errorf("sessiongate down, forged token: want 503, got %v", r)
		}
		assertNotReachedUpstream(t, s, p)
	}
	// Logging in needs sessiongate too (Envoy asks it on /login): it fails
	// closed as well rather than reaching the login service.
	r := s.Get(harness.LoginPath, harness.WithBrowserAccept())
	if r.Status != http.StatusServiceUnavailable {
		t.Errorf("login page with sessiongate down: want 503, got %v", r)
	}

	s.StartSessiongate()
	expectServiceBack(t, s, alice, "service after sessiongate restart")
}

// Key rotation: sessiongate restarts with a new active key and the old key
// still published. Tokens signed before and after verify at the upstream
// (keyfunc) and at Envoy's jwt_authn.
func TestKeyRotationOldAndNewTokensVerify(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	alice := s.Login("alice", alicePW, "laptop")
	e := s.Echo(s.Get("/api/me", harness.WithSession(alice)))
	oldToken := e.Header(t, harness.TokenHeader)
	oldKID, _ := e.Token.Header["kid"].(string)

	oldKey := s.Config.Token.SigningKeys[0]
	newKey := s.NewKey("signing-key-2")
	s.RestartSessiongate(func(c *harness.SGConfig) {
		c.Token.SigningKeys = []string{newKey}
		c.Token.VerificationKeys = []string{oldKey}
	})
	kids := jwksKIDs(t, s)
	if len(kids) != 2 || !slices.Contains(kids, oldKID) {
		t.Fatalf("JWKS after rotation %v, want the old kid %q and a new one", kids, oldKID)
	}

	// jwt_authn learns the new key on its next JWKS refresh
	// (cache_duration, 1s in the harness); until then it rightly refuses
	// tokens with a kid it has not seen. That is why production publishes a
	// key (verification_keys) for longer than the cache duration before
	// making it active.
	var newToken, newKID string
	s.Eventually(10*time.Second, "a token signed with the new key accepted end to end", func() error {
		r := s.Get("/api/me", harness.WithSession(alice), acceptJSON())
		if r.Status != http.StatusOK {
			return fmt.Errorf("%v", r)
		}
		e := s.Echo(r)
		newToken = e.Header(t, harness.TokenHeader)
		newKID, _ = e.Token.Header["kid"].(string)
		return nil
	})
	if newKID == oldKID || !slices.Contains(kids, newKID) {
		t.Fatalf("new token's kid %q, want the new key's (JWKS %v, old %q)", newKID, kids, oldKID)
	}

	// Both tokens, sent straight to the listener in front of the upstream:
	// jwt_authn and then the upstream verify each.
	for name, tok := range map[string]string{"old": oldToken, "new": newToken} {
		r := s.Do(http.MethodGet, s.HopURL("/api/me"), nil, harness.WithHeader(harness.TokenHeader, tok))
		e := s.Echo(r)
		if p, _ := e.JWTPayload(); p == nil || !e.Verified {
			t.Errorf("%s token: jwt_authn payload %v, upstream verified %v", name, p, e.Verified)
		}
	}
	// The hop really checks: a forged token with a published kid is refused
	// by jwt_authn before the upstream.
	p := probe(t, "hop-forged")
	r := s.Do(http.MethodGet, s.HopURL("/api/me?"+p), nil, harness.WithHeader(harness.TokenHeader, forgeToken(t, newKID, "alice")))
	expectStatus(t, r, http.StatusUnauthorized)
	assertNotReachedUpstream(t, s, p)
}
