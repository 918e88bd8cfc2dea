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
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/pkg/admin"
	"github.com/sessiongate/sessiongate/pkg/authz"
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
// admin API over a real RedisStore, with the session cache on as serve has
// it by default.
type rig struct {
	t      *testing.T
	store  session.Store
	server *authz.Server
	admin  http.Handler
	pool   *Pool
	errs   *errorKinds
	probe  *stallProbe
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
	if err := store.EnableCache(session.CacheOptions{MaxEntries: 100_000, Timeout: storeTimeout}); err != nil {
		t.Fatal(err)
	}
	// As serve does before its first Check. Retried: on a loaded host one
	// PING can miss the 100 ms read timeout, and serve would only log it.
	var werr error
	if !redistest.Eventually(context.Background(), 10*time.Second, func() bool {
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		werr = store.Warm(wctx)
		return werr == nil
	}) {
		t.Fatalf("warm up: %v", werr)
	}
	// Scheduler lag only: Redis is what the scenarios break.
	probe := startStallProbe(nil)
	t.Cleanup(probe.stop)
	key, err := token.GenerateKey(token.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := token.NewKeySet(key, "")
	if err != nil {
		t.Fatal(err)
	}
	errs := &errorKinds{m: map[string]int{}}
	quiet := slog.New(errs)
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
		pool:  &Pool{},
		errs:  errs,
		probe: probe,
	}
}

// errorKinds is the rig's log: it drops every line and counts the store
// errors the Check server and admin API log, by kind, for the figures.
type errorKinds struct {
	mu sync.Mutex
	m  map[string]int
}

func (k *errorKinds) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (k *errorKinds) WithAttrs([]slog.Attr) slog.Handler           { return k }
func (k *errorKinds) WithGroup(string) slog.Handler                { return k }

func (k *errorKinds) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			k.mu.Lock()
			k.m[errorKind(a.Value.String())]++
			k.mu.Unlock()
			return false
		}
		return true
	})
	return nil
}

// kinds returns the error kinds seen and their counts.
func (k *errorKinds) kinds() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]int, len(k.m))
	for kind, n := range k.m {
		out[kind] = n
	}
	return out
}

// String lists the kinds seen, most frequent first.
func (k *errorKinds) String() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.m) == 0 {
		return "none"
	}
	kinds := make([]string, 0, len(k.m))
	for kind := range k.m {
		kinds = append(kinds, kind)
	}
	sort.Slice(kinds, func(i, j int) bool { return k.m[kinds[i]] > k.m[kinds[j]] })
	parts := make([]string, len(kinds))
	for i, kind := range kinds {
		parts[i] = fmt.Sprintf("%d %s", k.m[kind], kind)
	}
	return strings.Join(parts, ", ")
}

// errorKind names an error by what happened, not by its text, which
// carries addresses and refs.
func errorKind(msg string) string {
	for _, c := range []struct{ needle, kind string }{
		{"context deadline exceeded", "timeout"},
		{"i/o timeout", "timeout"},
		{"connection refused", "refused"},
		{"connection reset", "reset"},
		{"broken pipe", "reset"},
		{"EOF", "closed"},
		{"use of closed network connection", "closed"},
		{"NOSCRIPT", "NOSCRIPT"},
		{"OOM", "OOM"},
		{"READONLY", "READONLY"},
		{"CLUSTERDOWN", "CLUSTERDOWN"},
		{"MASTERDOWN", "MASTERDOWN"},
		{"LOADING", "LOADING"},
		{"TRYAGAIN", "TRYAGAIN"},
		{"MOVED", "MOVED"},
		{"context canceled", "canceled"},
		{"pool timeout", "pool timeout"},
	} {
		if strings.Contains(msg, c.needle) {
			return c.kind
		}
	}
	if len(msg) > 60 {
		msg = msg[:60]
	}
	return "other (" + msg + ")"
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
	Errors     string // store errors logged, by kind
	Stray      int    // 503s after the outage; see recoveredAfter
	Stalled    int    // 503s after t0 during a host stall; see recoveredAfter
	CacheHits  uint64 // Checks of the final verification answered from the session cache
	Note       string
}

// startLoad starts the steady Check load every scenario runs under and
// lets it settle for a second before the fault. It returns the goroutine
// count from before the load, which conclude expects back.
func (r *rig) startLoad() (*Load, int) {
	before := runtime.NumGoroutine()
	l := r.load(checkRate)
	l.Start()
	time.Sleep(time.Second)
	return l, before
}

// conclude completes a scenario after its load stopped: recovery counted
// from the moment the fault struck or was lifted (unless from is zero and
// the scenario measured its own), sessions lost, store errors by kind and
// goroutines back to the count before the load; then reports it, failing
// the test on any wrong answer, unbounded latency or leak.
func (r *rig) conclude(t *testing.T, l *Load, s scenario, from time.Time, before int) scenario {
	t.Helper()
	if !from.IsZero() {
		s.Recovery, s.Stray, s.Stalled = recoveredAfter(s.Figures, from, r.probe)
	}
	s.Lost = r.verify(l)
	// The session cache must be back in service once the fault is over:
	// its invalidation link reconnected (or moved to the new master) and
	// confirmed, and it answers Checks again.
	if rs, ok := r.store.(*session.RedisStore); ok {
		if !redistest.Eventually(context.Background(), 10*time.Second, func() bool { return rs.CacheStats().TrackingUp }) {
			t.Error("the session cache's invalidation link did not come back after the scenario")
		}
		hits := rs.CacheStats().Hits
		r.verify(l)
		s.CacheHits = rs.CacheStats().Hits - hits
		if s.CacheHits == 0 {
			t.Error("no Check answered from the session cache after the scenario")
		}
	}
	s.Errors = r.errs.String()
	s.Goroutines = [2]int{before, goroutines(before + goroutineSlack)}
	s.report(t, r)
	return s
}

// afterFailover lets the client settle on the new topology, requires that
// a revocation and a login work there, and stops the load.
func (r *rig) afterFailover(t *testing.T, l *Load) Figures {
	t.Helper()
	time.Sleep(3 * time.Second)
	if !r.revoke(nil) {
		t.Error("revocation after the failover failed")
	}
	if code, _ := r.create("after-failover", nil); code != http.StatusCreated {
		t.Errorf("create after the failover: %d", code)
	}
	time.Sleep(time.Second)
	return l.Stop()
}

// report prints the scenario's figures line (to the test log and to stdout,
// so it shows with go test -v and in make's output) and fails the test on
// any wrong answer, an unbounded latency or a goroutine leak.
func (s scenario) report(t *testing.T, r *rig) {
	t.Helper()
	f := s.Figures
	stalls, worst := r.probe.summary()
	line := fmt.Sprintf("FIGURES | %s | %d Checks in %.0fs (%.0f/s, 8 workers, 70%% live/15%% revoked/15%% unknown) | %v | %d×503 (fail-closed), %d wrong; store errors: %s | %d | %v (p99 %v) | goroutines %d→%d | %d stray 503, %d during host stalls | host stalls ≥%v: %d, worst %v | cache: %d of the final re-checks from it | %s",
		s.Name, f.Checks, f.Duration.Seconds(), f.Rate(), s.Recovery.Round(time.Millisecond), f.Unavailable, f.Wrong(), s.Errors,
		s.Lost, f.MaxLatency.Round(time.Millisecond), f.P99.Round(100*time.Microsecond), s.Goroutines[0], s.Goroutines[1], s.Stray, s.Stalled, stallThreshold, stalls, worst.Round(time.Millisecond), s.CacheHits, s.Note)
	t.Log(line)
	fmt.Println(line)
	if f.Wrong() != 0 {
		t.Errorf("%d wrong answers (%d OK for revoked/unknown, %d lost, %d unexpected): %q", f.Wrong(), f.WrongOK, f.Lost, f.Unexpected, f.Problems)
	}
	if s.Lost != 0 {
		t.Errorf("%d sessions lost", s.Lost)
	}
	// A Check past the bound is excused only when this process itself was
	// not scheduled meanwhile (see stallProbe): that is the host, not Redis.
	if f.MaxLatency > storeTimeout+latencyMargin && !r.probe.during(f.MaxAt, f.MaxLatency) {
		t.Errorf("slowest Check took %v, want at most redis.timeout %v + %v", f.MaxLatency, storeTimeout, latencyMargin)
	}
	if s.Goroutines[1] > s.Goroutines[0]+goroutineSlack {
		t.Errorf("goroutines %d before, %d after settling: leak", s.Goroutines[0], s.Goroutines[1])
	}
}

// recoveredAfter is how long after t0 the outage's last 503 was asked: the
// outage is the run of 503s that starts by t0 (or within a second after it)
// and ends at the first gap of a second or more without one. 0 if no 503
// was asked after t0. stray counts the 503s after that gap: on a shared
// 2-core machine a Check can miss redis.timeout on its own now and then,
// which is a fail-closed answer, not the fault lasting longer. stalled
// counts the 503s after t0 that overlapped a stall of this process (see
// stallProbe): they neither extend the outage nor count as stray.
func recoveredAfter(f Figures, t0 time.Time, probe *stallProbe) (recovery time.Duration, stray, stalled int) {
	const gap = time.Second
	at := append([]time.Time(nil), f.UnavailableAt...)
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	end := t0
	for _, a := range at {
		switch {
		case !a.After(end):
		case probe.during(a, storeTimeout+latencyMargin):
			stalled++
		case a.Sub(end) < gap:
			end = a
		default:
			stray++
		}
	}
	return end.Sub(t0), stray, stalled
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

// outageShape summarises when 503s started relative to t0, in 250 ms
// buckets, so a scenario's log shows an outage's shape.
func outageShape(f Figures, t0 time.Time) string {
	buckets := map[int]int{}
	lo, hi := 0, 0
	for i, at := range f.UnavailableAt {
		b := int(at.Sub(t0).Milliseconds()) / 250
		if at.Before(t0) {
			b--
		}
		if i == 0 || b < lo {
			lo = b
		}
		if i == 0 || b > hi {
			hi = b
		}
		buckets[b]++
	}
	var sb strings.Builder
	for b := lo; b <= hi && len(f.UnavailableAt) > 0; b++ {
		if buckets[b] > 0 {
			fmt.Fprintf(&sb, "[%+.2fs]%d ", float64(b)/4, buckets[b])
		}
	}
	return sb.String()
}

// stallProbe watches the host, not sessiongate: every 20 ms it wakes up
// and, given a client, sends a PING to Redis on that client of its own, and
// notes when the wake-up and PING took longer than stallThreshold. On a shared 2-core
// machine (load average above 5 while others fuzz and run Envoy) Redis or
// this process can go unscheduled for most of a second; a Check that
// times out then is the host's doing. The soak reports such 503s apart and
// fails on any other.
type stallProbe struct {
	mu     sync.Mutex
	stalls [][2]time.Time // [start, end] of each slow probe
	worst  time.Duration
	cancel context.CancelFunc
	done   chan struct{}
}

const (
	stallEvery     = 20 * time.Millisecond
	stallThreshold = 50 * time.Millisecond
)

func startStallProbe(c *redis.Client) *stallProbe {
	ctx, cancel := context.WithCancel(context.Background())
	p := &stallProbe{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for ctx.Err() == nil {
			start := time.Now()
			time.Sleep(stallEvery)
			if c != nil {
				_ = c.Ping(ctx).Err()
			}
			took := time.Since(start) - stallEvery
			if took > stallThreshold {
				p.mu.Lock()
				p.stalls = append(p.stalls, [2]time.Time{start, time.Now()})
				p.worst = max(p.worst, took)
				p.mu.Unlock()
			}
		}
	}()
	return p
}

func (p *stallProbe) stop() {
	p.cancel()
	<-p.done
}

// during reports whether a Check that started at t and took d overlapped
// a stall.
func (p *stallProbe) during(t time.Time, d time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	end := t.Add(d)
	for _, s := range p.stalls {
		if t.Before(s[1]) && end.After(s[0]) {
			return true
		}
	}
	return false
}

func (p *stallProbe) summary() (n int, worst time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.stalls), p.worst
}
