package verify_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/pkg/revocation"
	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
	"github.com/sessiongate/sessiongate/pkg/verify"
)

// feedEnv is sessiongate's side of the revocation feed: a session store
// and the real Feed over it, served over HTTP.
type feedEnv struct {
	store *session.MemoryStore
	feed  *revocation.Feed
	srv   *httptest.Server
	down  atomic.Bool // answer 503 instead of streaming
}

func newFeedEnv(t *testing.T) *feedEnv {
	t.Helper()
	fe := &feedEnv{store: session.NewMemoryStore(nil)}
	fe.feed = revocation.New(revocation.Options{Source: fe.store, Heartbeat: 100 * time.Millisecond,
		Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { fe.feed.Run(ctx); close(done) }()
	fe.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fe.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fe.feed.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		cancel()
		<-done
		fe.srv.Close()
	})
	return fe
}

// login creates a session and returns its ref: the sid of its tokens.
func (fe *feedEnv) login(t *testing.T) string {
	t.Helper()
	id, err := session.NewID()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s := &session.Session{Ref: session.RefOf(id), Subject: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour), IdleTimeout: time.Hour}
	if _, err := fe.store.Create(context.Background(), s, session.Limit{}); err != nil {
		t.Fatal(err)
	}
	return s.Ref
}

func (fe *feedEnv) revoke(t *testing.T, ref string) {
	t.Helper()
	if err := fe.store.Delete(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
}

func withSID(sid string) func(*token.Claims) { return func(c *token.Claims) { c.SessionRef = sid } }

func quiet() verify.RevocationOption { return verify.RevocationLogger(slog.New(slog.DiscardHandler)) }

func waitSynced(t *testing.T, r *verify.Revocations) {
	t.Helper()
	if !redistest.Eventually(context.Background(), 10*time.Second, func() bool { return r.Status().Synced }) {
		t.Fatalf("never synced: %+v", r.Status())
	}
}

func TestRevocationsRefuseRevokedSessions(t *testing.T) {
	fe := newFeedEnv(t)
	early := fe.login(t)
	fe.revoke(t, early) // before the verifier connects: in its snapshot
	rev := verify.FollowRevocations(fe.srv.URL, quiet())
	e := newEnv(t, token.AlgES256, verify.Options{Revocations: rev})
	waitSynced(t, rev)

	if _, err := e.v.Verify(e.sign(t, withSID(early))); !errors.Is(err, verify.ErrRevoked) {
		t.Errorf("token of a session revoked before connecting: %v, want ErrRevoked", err)
	}
	live, other := fe.login(t), fe.login(t)
	tok := e.sign(t, withSID(live))
	if _, err := e.v.Verify(tok); err != nil {
		t.Fatalf("token of a live session: %v", err)
	}
	start := time.Now()
	fe.revoke(t, live)
	var err error
	for time.Since(start) < time.Second {
		if _, err = e.v.Verify(tok); err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if !errors.Is(err, verify.ErrRevoked) || !errors.Is(err, verify.ErrInvalidToken) {
		t.Fatalf("the same token a second after the revoke: %v, want ErrRevoked", err)
	}
	t.Logf("refused %v after the revoke", time.Since(start))
	if _, err := e.v.Verify(e.sign(t, withSID(other))); err != nil {
		t.Errorf("another session's token: %v", err)
	}
	if st := rev.Status(); !st.Synced || st.Stale || st.Entries != 2 {
		t.Errorf("status = %+v", st)
	}
	// The middleware answers 401 for it like for any invalid token.
	h := e.v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("x-internal-jwt", tok)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("middleware: %d", rec.Code)
	}
}

// Until the first synced event, and once the feed has been silent past
// its bound, every token with a sid is refused (fail closed), or accepted
// with RevocationFailOpen; tokens without a sid never depend on the feed.
func TestRevocationsFailClosed(t *testing.T) {
	fe := newFeedEnv(t)
	// Nothing listens here: the feed is never reached.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()

	var mu sync.Mutex
	var reports []verify.RevocationStatus
	closed := verify.FollowRevocations(dead.URL, quiet(), verify.RevocationStatusFunc(func(s verify.RevocationStatus) {
		mu.Lock()
		reports = append(reports, s)
		mu.Unlock()
	}))
	e := newEnv(t, token.AlgES256, verify.Options{Revocations: closed, Kinds: []string{token.KindUser, token.KindService}})
	if _, err := e.v.Verify(e.sign(t, withSID(fe.login(t)))); !errors.Is(err, verify.ErrRevocationsStale) {
		t.Errorf("never synced: %v, want ErrRevocationsStale", err)
	}
	if _, err := e.v.Verify(e.sign(t, service)); err != nil {
		t.Errorf("a token without a sid: %v", err)
	}
	if !redistest.Eventually(context.Background(), 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(reports) > 0
	}) {
		t.Fatal("no status reported")
	}
	mu.Lock()
	if st := reports[0]; st.Synced || !st.Stale || st.Err == nil {
		t.Errorf("status = %+v, want not synced, stale, with the error", st)
	}
	mu.Unlock()

	// Synced, then the feed goes away: stale after the bound.
	for _, open := range []bool{false, true} {
		fe := newFeedEnv(t)
		opts := []verify.RevocationOption{quiet(), verify.RevocationMaxStale(500 * time.Millisecond)}
		if open {
			opts = append(opts, verify.RevocationFailOpen())
		}
		rev := verify.FollowRevocations(fe.srv.URL, opts...)
		e := newEnv(t, token.AlgES256, verify.Options{Revocations: rev})
		waitSynced(t, rev)
		revoked, live := fe.login(t), fe.login(t)
		fe.revoke(t, revoked)
		tok := e.sign(t, withSID(live))
		if !redistest.Eventually(context.Background(), 5*time.Second, func() bool {
			_, err := e.v.Verify(e.sign(t, withSID(revoked)))
			return errors.Is(err, verify.ErrRevoked)
		}) {
			t.Fatal("revocation never applied")
		}
		fe.srv.CloseClientConnections()
		fe.srv.Close()
		time.Sleep(time.Second)
		st := rev.Status()
		if st.Synced || !st.Stale || st.FailOpen != open {
			t.Errorf("open=%v: status = %+v", open, st)
		}
		_, err := e.v.Verify(tok)
		switch {
		case open && err != nil:
			t.Errorf("fail open, stale: %v", err)
		case !open && !errors.Is(err, verify.ErrRevocationsStale):
			t.Errorf("fail closed, stale: %v, want ErrRevocationsStale", err)
		}
		if _, err := e.v.Verify(e.sign(t, withSID(revoked))); !errors.Is(err, verify.ErrRevoked) {
			t.Errorf("open=%v: a known revocation while stale: %v", open, err)
		}
	}
}

// A dropped connection is followed again, and what was revoked while it
// was down arrives in the new snapshot.
func TestRevocationsReconnect(t *testing.T) {
	fe := newFeedEnv(t)
	rev := verify.FollowRevocations(fe.srv.URL, quiet())
	e := newEnv(t, token.AlgES256, verify.Options{Revocations: rev})
	waitSynced(t, rev)
	// Refuse new streams for a while and cut the current one.
	fe.down.Store(true)
	fe.srv.CloseClientConnections()
	if !redistest.Eventually(context.Background(), 5*time.Second, func() bool { return !rev.Status().Synced }) {
		t.Fatal("still synced after the connection was cut")
	}
	ref := fe.login(t)
	fe.revoke(t, ref)
	fe.down.Store(false)
	waitSynced(t, rev)
	if _, err := e.v.Verify(e.sign(t, withSID(ref))); !errors.Is(err, verify.ErrRevoked) {
		t.Errorf("revoked while disconnected: %v, want ErrRevoked", err)
	}
}

func TestRevocationsToken(t *testing.T) {
	fe := newFeedEnv(t)
	const secret = "a-long-enough-feed-token"
	fe.feed.SetTokens([]string{secret})
	without := verify.FollowRevocations(fe.srv.URL, quiet())
	with := verify.FollowRevocations(fe.srv.URL, quiet(), verify.RevocationToken(secret))
	newEnv(t, token.AlgES256, verify.Options{Revocations: without})
	newEnv(t, token.AlgES256, verify.Options{Revocations: with})
	waitSynced(t, with)
	if !redistest.Eventually(context.Background(), 5*time.Second, func() bool { return without.Status().Err != nil }) {
		t.Fatal("no error without the token")
	}
	if st := without.Status(); st.Synced || !st.Stale {
		t.Errorf("without the token: %+v", st)
	}
}

// An entry is kept until the tokens it covers have expired (plus leeway),
// then forgotten.
func TestRevocationsExpire(t *testing.T) {
	fe := newFeedEnv(t)
	fe.store.SetRevocationWindow(time.Second) // sessiongate's tokens would live 1 s
	rev := verify.FollowRevocations(fe.srv.URL, quiet())
	e := newEnv(t, token.AlgES256, verify.Options{Revocations: rev, Leeway: -1})
	waitSynced(t, rev)
	ref := fe.login(t)
	fe.revoke(t, ref)
	tok := e.sign(t, withSID(ref))
	if !redistest.Eventually(context.Background(), 5*time.Second, func() bool {
		_, err := e.v.Verify(tok)
		return errors.Is(err, verify.ErrRevoked)
	}) {
		t.Fatal("revocation never applied")
	}
	// exp is the revocation + 1 s, rounded up; one more second of grace.
	if !redistest.Eventually(context.Background(), 6*time.Second, func() bool {
		_, err := e.v.Verify(tok)
		return err == nil
	}) {
		t.Fatal("entry never expired")
	}
}

// A feed that accepts the connection and never answers (a hung replica, a
// black-holing proxy) is left after the staleness bound and tried again.
func TestRevocationsLeaveAHungFeed(t *testing.T) {
	var requests atomic.Int64
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		<-r.Context().Done()
	}))
	t.Cleanup(hung.Close)
	rev := verify.FollowRevocations(hung.URL, quiet(), verify.RevocationMaxStale(200*time.Millisecond))
	newEnv(t, token.AlgES256, verify.Options{Revocations: rev})
	if !redistest.Eventually(context.Background(), 10*time.Second, func() bool { return requests.Load() >= 2 }) {
		t.Fatalf("%d requests: the hung connection was never left", requests.Load())
	}
	if st := rev.Status(); st.Synced || !st.Stale || st.Err == nil {
		t.Errorf("status = %+v", st)
	}
	hung.CloseClientConnections()
}
