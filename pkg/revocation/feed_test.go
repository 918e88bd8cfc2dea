package revocation

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// endSession creates a session in st and deletes it, as a revocation does,
// and returns its ref.
func endSession(t *testing.T, st session.Store) string {
	t.Helper()
	id, err := session.NewID()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s := &session.Session{Ref: session.RefOf(id), Subject: "alice", CreatedAt: now, ExpiresAt: now.Add(time.Hour), IdleTimeout: time.Hour}
	if _, err := st.Create(context.Background(), s, session.Limit{}); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(context.Background(), s.Ref); err != nil {
		t.Fatal(err)
	}
	return s.Ref
}

// startFeed runs a Feed over src behind a test server until the test ends,
// and waits for it to synchronise.
func startFeed(t *testing.T, o Options) (*Feed, *httptest.Server) {
	t.Helper()
	f := New(o)
	return f, serveFeed(t, f)
}

func serveFeed(t *testing.T, f *Feed) *httptest.Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	srv := httptest.NewServer(f)
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	if !redistest.Eventually(ctx, 10*time.Second, func() bool { return f.Stats().Synced }) {
		t.Fatal("feed never synchronised")
	}
	return srv
}

// stream is one client of the feed, read line by line.
type stream struct {
	resp  *http.Response
	lines chan string
}

func open(t *testing.T, url, token string) (*stream, int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, resp.StatusCode
	}
	s := &stream{resp: resp, lines: make(chan string, 1<<16)}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { resp.Body.Close() })
	return s, resp.StatusCode
}

// until reads lines until one equals want, returning those before it.
func (s *stream) until(t *testing.T, want string) []string {
	t.Helper()
	var got []string
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				t.Fatalf("stream ended before %q; read %q", want, got)
			}
			if l == want {
				return got
			}
			got = append(got, l)
		case <-timeout:
			t.Fatalf("no %q within 10s; read %q", want, got)
		}
	}
}

// ended waits for the stream to end.
func (s *stream) ended(t *testing.T) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-s.lines:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("stream still open after 10s")
		}
	}
}

func revokedLine(ref string) string { return `data: {"sid":"` + ref + `","exp":` }

func TestFeedSnapshotSyncedLiveAndHeartbeat(t *testing.T) {
	st := session.NewMemoryStore(nil)
	before := endSession(t, st)
	f, srv := startFeed(t, Options{Source: st, Heartbeat: 50 * time.Millisecond})
	s, code := open(t, srv.URL, "")
	if code != 200 {
		t.Fatalf("GET: %d", code)
	}
	if ct := s.resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("content type %q", ct)
	}
	if cc := s.resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("cache control %q", cc)
	}
	snap := s.until(t, `data: {"count":1}`)
	if len(snap) != 4 || snap[0] != "event: revoked" || !strings.HasPrefix(snap[1], revokedLine(before)) ||
		snap[2] != "" || snap[3] != "event: synced" {
		t.Fatalf("snapshot = %q", snap)
	}
	exp := time.Now().Add(session.DefaultRevocationWindow).Unix()
	if !strings.HasSuffix(snap[1], fmt.Sprintf("%d}", exp)) && !strings.HasSuffix(snap[1], fmt.Sprintf("%d}", exp+1)) {
		t.Errorf("exp of %q: want about %d (revocation + token ttl, rounded up)", snap[1], exp)
	}
	after := endSession(t, st)
	s.until(t, "event: revoked")
	if l := s.until(t, ""); len(l) != 1 || !strings.HasPrefix(l[0], revokedLine(after)) {
		t.Fatalf("live entry = %q", l)
	}
	s.until(t, ": ping")
	if n := f.Stats().Subscribers; n != 1 {
		t.Errorf("subscribers = %d", n)
	}
	// HEAD and POST are not the feed.
	for _, m := range []string{http.MethodHead, http.MethodPost} {
		req, _ := http.NewRequest(m, srv.URL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d", m, resp.StatusCode)
		}
	}
}

func TestFeedToken(t *testing.T) {
	f, srv := startFeed(t, Options{Source: session.NewMemoryStore(nil)})
	const good, other = "a-long-enough-feed-token", "another-feed-token-0001"
	f.SetTokens([]string{good, other})
	for _, tt := range []struct {
		name   string
		header []string
		want   int
	}{
		{"none", nil, 401},
		{"wrong", []string{"Bearer nope-nope-nope-nope"}, 401},
		{"basic", []string{"Basic " + good}, 401},
		{"no scheme", []string{good}, 401},
		{"two headers", []string{"Bearer " + good, "Bearer " + good}, 401},
		{"good", []string{"Bearer " + good}, 200},
		{"second token", []string{"bearer " + other}, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			for _, h := range tt.header {
				req.Header.Add("Authorization", h)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			resp, err := http.DefaultClient.Do(req.WithContext(ctx))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("%d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	f.SetTokens(nil)
	if _, code := open(t, srv.URL, ""); code != 200 {
		t.Errorf("opened again: %d", code)
	}
}

func TestFeedCapsSubscribers(t *testing.T) {
	f, srv := startFeed(t, Options{Source: session.NewMemoryStore(nil), MaxSubscribers: 2})
	a, _ := open(t, srv.URL, "")
	open(t, srv.URL, "")
	if _, code := open(t, srv.URL, ""); code != http.StatusServiceUnavailable {
		t.Fatalf("third subscriber: %d, want 503", code)
	}
	a.resp.Body.Close()
	if !redistest.Eventually(context.Background(), 5*time.Second, func() bool { return f.Stats().Subscribers == 1 }) {
		t.Fatalf("subscribers = %d after one left", f.Stats().Subscribers)
	}
	if _, code := open(t, srv.URL, ""); code != 200 {
		t.Fatalf("after one left: %d", code)
	}
}

// A client that stops reading is dropped; one that reads keeps every entry.
func TestFeedDropsSlowClients(t *testing.T) {
	st := session.NewMemoryStore(nil)
	f := New(Options{Source: st, WriteTimeout: 200 * time.Millisecond, MaxEntries: 1_000_000})
	srv := serveFeed(t, f)
	// The slow client: a raw connection that sends the request and never
	// reads, with a small receive buffer.
	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	fast, _ := open(t, srv.URL, "")
	fast.until(t, "event: synced")
	if !redistest.Eventually(context.Background(), 5*time.Second, func() bool { return f.Stats().Subscribers == 2 }) {
		t.Fatal("slow client never subscribed")
	}
	const n = 50_000 // 4 MB: more than loopback buffers hold
	var refs []string
	for i := range n {
		refs = append(refs, endSession(t, st))
		if i%256 == 0 {
			time.Sleep(time.Millisecond) // a burst the reading client keeps up with
		}
	}
	if !redistest.Eventually(context.Background(), 10*time.Second, func() bool { return f.Stats().Subscribers == 1 }) {
		t.Fatalf("slow client not dropped: %+v", f.Stats())
	}
	if f.Stats().Dropped != 1 {
		t.Errorf("dropped = %d, want 1", f.Stats().Dropped)
	}
	seen := 0
	for seen < n {
		l := fast.until(t, "")
		if len(l) == 2 && strings.HasPrefix(l[1], revokedLine(refs[seen])) {
			seen++
		}
	}
}

// The feed over Redis: when its subscription breaks, every client is
// dropped and new ones are refused until it has resynchronised, and what
// was revoked meanwhile is in the new snapshot.
func TestFeedResynchronisesAfterLosingRedis(t *testing.T) {
	r := redistest.Start(t)
	rdb, err := session.NewRedisClient(r.URL(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	st := session.NewRedisStore(rdb)
	t.Cleanup(func() { st.Close() })
	f, srv := startFeed(t, Options{Source: st})
	s, _ := open(t, srv.URL, "")
	s.until(t, "event: synced")

	r.Pause()
	// The stopped Redis is noticed within two follow pings.
	if !redistest.Eventually(context.Background(), 20*time.Second, func() bool { return !f.Stats().Synced }) {
		t.Fatal("feed still synced with Redis stopped")
	}
	s.ended(t)
	if _, code := open(t, srv.URL, ""); code != http.StatusServiceUnavailable {
		t.Fatalf("subscribe while out of sync: %d, want 503", code)
	}
	r.Resume()
	// Revoked by another replica while this one resubscribes.
	other := session.NewRedisStore(r.Client())
	meanwhile := endSession(t, other)
	if !redistest.Eventually(context.Background(), 20*time.Second, func() bool { return f.Stats().Synced }) {
		t.Fatal("feed did not resynchronise")
	}
	s2, code := open(t, srv.URL, "")
	if code != 200 {
		t.Fatalf("after resync: %d", code)
	}
	snap := s2.until(t, "event: synced")
	found := false
	for _, l := range snap {
		found = found || strings.HasPrefix(l, revokedLine(meanwhile))
	}
	if !found {
		t.Errorf("snapshot after resync lacks the revocation made meanwhile: %q", snap)
	}
	if f.Stats().Resyncs == 0 {
		t.Error("resync not counted")
	}
}

// More revocations in force than the feed may hold: it says it is out of
// sync rather than serve part of them.
func TestFeedOverflowIsOutOfSync(t *testing.T) {
	st := session.NewMemoryStore(nil)
	f, srv := startFeed(t, Options{Source: st, MaxEntries: 3})
	s, _ := open(t, srv.URL, "")
	s.until(t, "event: synced")
	for range 4 {
		endSession(t, st)
	}
	s.ended(t)
	if !redistest.Eventually(context.Background(), 5*time.Second, func() bool { return !f.Stats().Synced }) {
		t.Fatal("feed synced with more entries than it may hold")
	}
	if _, code := open(t, srv.URL, ""); code != http.StatusServiceUnavailable {
		t.Fatalf("subscribe while overflowing: %d, want 503", code)
	}
}
