//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/pkg/admin"
	"github.com/sessiongate/sessiongate/pkg/authz"
	"github.com/sessiongate/sessiongate/pkg/redistest"
	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
)

const (
	// storeTimeout is redis.timeout for every scenario: the default.
	storeTimeout = 100 * time.Millisecond
	// latencyMargin is what a Check may take beyond storeTimeout: the
	// token signature, scheduling on a 2-core machine under -race, and
	// the go-redis hand-off when a deadline fires.
	latencyMargin = 150 * time.Millisecond
	// goroutineSlack allows for go-redis background work that comes and
	// goes (a cluster slot-map reload, a re-dial probe) after a fault.
	goroutineSlack = 5
	cookieName     = "__Host-sid"
)

// rig is one sessiongate, minus the network: the real Check server and
// admin API over a real RedisStore.
type rig struct {
	t      *testing.T
	store  session.Store
	server *authz.Server
	admin  http.Handler
	pool   *Pool
}

func newRig(t *testing.T, o session.RedisOptions) *rig {
	t.Helper()
	o.Timeout = storeTimeout
	rdb, err := o.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	store := session.NewRedisStore(rdb)
	t.Cleanup(func() { store.Close() })
	key, err := token.GenerateKey(token.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := token.NewKeySet(key, "")
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cookie := session.Cookie{Name: cookieName, SameSite: "Lax"}
	return &rig{
		t:     t,
		store: store,
		server: authz.New(authz.Options{
			Sessions: store, Signer: token.NewSigner(ks, "sessiongate"), Cookie: cookie,
			TokenHeader: "x-internal-jwt", Audience: "internal", TokenTTL: time.Minute,
			StoreTimeout: storeTimeout, CacheEntries: 1000, Log: quiet,
		}),
		admin: admin.NewHandler(admin.Options{
			Store: store, Cookie: cookie, IdleTimeout: 30 * time.Minute, AbsoluteTimeout: 12 * time.Hour,
			Open: true, StoreTimeout: 2 * time.Second, Log: quiet,
		}),
		pool: &Pool{},
	}
}

// load returns a Check load over the rig's pool.
func (r *rig) load(rate float64) *Load {
	return &Load{Server: r.server, Pool: r.pool, Workers: 8, Rate: rate, Cookie: cookieName}
}

// adminCall sends one admin API request in-process and decodes the answer.
func (r *rig) adminCall(method, path string, body any, out any) int {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req := httptest.NewRequest(method, path, rd)
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	r.admin.ServeHTTP(w, req)
	if out != nil && w.Code < 300 {
		if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
			r.t.Errorf("%s %s: decode %q: %v", method, path, w.Body.String(), err)
		}
	}
	return w.Code
}

// create makes a session through the admin API and returns its status and
// the created session.
func (r *rig) create(subject string, extra map[string]any) (int, admin.CreateResponse) {
	body := map[string]any{"subject": subject}
	for k, v := range extra {
		body[k] = v
	}
	var out admin.CreateResponse
	code := r.adminCall("POST", "/v1/sessions", body, &out)
	return code, out
}

// seed creates live sessions, revokes some of them and adds IDs that never
// existed, all before any fault.
func (r *rig) seed(live, revoked, unknown int) {
	r.t.Helper()
	for i := range live + revoked {
		code, s := r.create(fmt.Sprintf("user-%d", i%50), nil)
		if code != http.StatusCreated {
			r.t.Fatalf("seed create: %d", code)
		}
		e := r.pool.AddLive(s.SessionID)
		if i >= live {
			r.revoke(e)
		}
	}
	for range unknown {
		id, err := session.NewID()
		if err != nil {
			r.t.Fatal(err)
		}
		r.pool.AddUnknown(id)
	}
}

// revoke revokes one live session through the admin API; e nil = a random
// one. It reports whether the store confirmed.
func (r *rig) revoke(e *Entry) bool {
	if e == nil {
		if e = r.pool.BeginRevoke(); e == nil {
			return false
		}
	} else {
		r.pool.mu.Lock()
		for i, x := range r.pool.live {
			if x == e {
				r.pool.live = append(r.pool.live[:i], r.pool.live[i+1:]...)
				break
			}
		}
		r.pool.mu.Unlock()
		e.revoke.Store(time.Now().UnixNano())
	}
	code := r.adminCall("DELETE", "/v1/sessions/"+session.RefOf(e.ID), nil, nil)
	if code == http.StatusNoContent {
		r.pool.Revoked(e)
		return true
	}
	// Unknown outcome (503): the entry stays out of the live set and is
	// never judged again.
	return false
}

// verify presents every session once more after a scenario, retrying a 503
// for a few seconds: every live one must be OK, every revoked or unknown
// one 401. It returns how many live sessions were lost.
func (r *rig) verify(l *Load) (lost int) {
	r.t.Helper()
	ctx := context.Background()
	answer := func(e *Entry) int {
		var code int
		redistest.Eventually(ctx, 5*time.Second, func() bool {
			code = l.CheckOne(ctx, e)
			return code != 503
		})
		return code
	}
	for _, e := range r.pool.Live() {
		if code := answer(e); code != 200 {
			lost++
			r.t.Errorf("live session answered %d after the scenario", code)
		}
	}
	for _, e := range append(r.pool.RevokedEntries(), r.pool.Unknown()...) {
		if code := answer(e); code != 401 {
			r.t.Errorf("revoked or unknown session answered %d after the scenario", code)
		}
	}
	return lost
}

// goroutines returns the goroutine count once it has settled back to at
// most want (a new count is taken every 100 ms for up to 10 s).
func goroutines(want int) int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(10 * time.Second); n > want && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(100 * time.Millisecond)
	}
	return n
}

// scenario is one row of the figures table.
type scenario struct {
	Name       string
	Recovery   time.Duration
	Figures    Figures
	Lost       int
	Goroutines [2]int
	Note       string
}

// report prints the scenario's figures line (to the test log and to stdout,
// so it shows with go test -v and in make's output) and fails the test on
// any wrong answer, an unbounded latency or a goroutine leak.
func (s scenario) report(t *testing.T) {
	t.Helper()
	f := s.Figures
	line := fmt.Sprintf("FIGURES | %s | %d Checks in %.0fs (%.0f/s, 8 workers, 70%% live/15%% revoked/15%% unknown) | %v | %d×503 (fail-closed), %d wrong | %d | %v (p99 %v) | goroutines %d→%d | %s",
		s.Name, f.Checks, f.Duration.Seconds(), f.Rate(), s.Recovery.Round(time.Millisecond), f.Unavailable, f.Wrong(),
		s.Lost, f.MaxLatency.Round(time.Millisecond), f.P99.Round(100*time.Microsecond), s.Goroutines[0], s.Goroutines[1], s.Note)
	t.Log(line)
	fmt.Println(line)
	if f.Wrong() != 0 {
		t.Errorf("%d wrong answers (%d OK for revoked/unknown, %d lost, %d unexpected): %q", f.Wrong(), f.WrongOK, f.Lost, f.Unexpected, f.Problems)
	}
	if s.Lost != 0 {
		t.Errorf("%d sessions lost", s.Lost)
	}
	if f.MaxLatency > storeTimeout+latencyMargin {
		t.Errorf("slowest Check took %v, want at most redis.timeout %v + %v", f.MaxLatency, storeTimeout, latencyMargin)
	}
	if s.Goroutines[1] > s.Goroutines[0]+goroutineSlack {
		t.Errorf("goroutines %d before, %d after settling: leak", s.Goroutines[0], s.Goroutines[1])
	}
}

// recoveredAfter is how long after t0 the last 503 was answered; 0 if none
// came after t0.
func recoveredAfter(f Figures, t0 time.Time) time.Duration {
	if f.LastUnavailable.IsZero() || f.LastUnavailable.Before(t0) {
		return 0
	}
	return f.LastUnavailable.Sub(t0)
}

func usedMemory(ctx context.Context, c *redis.Client) (int64, error) {
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no used_memory in INFO")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
