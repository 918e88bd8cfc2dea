//go:build faults

package faults

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/pkg/session"
)

const (
	// soakCheckRate and soakMutateRate are the steady load: Checks, and
	// as many creates as revokes per second, so the live set, Redis's
	// memory and the token cache stay the same size and any growth is a
	// leak, not more data.
	soakCheckRate  = 300
	soakMutateRate = 15
	// soakWarmup runs before the first heap sample: pools, caches and the
	// score's latency reservoir fill during it.
	soakWarmup = 5 * time.Second
	// heapSlack is the growth allowed between the first and the last heap
	// sample (both after a GC): the latency reservoir and the revoked ring
	// are bounded but may still be filling, and the runtime keeps some
	// spans around.
	heapSlack = 4 << 20
	// soakMaxTimeoutsPerMille bounds the Checks that may time out (a 503,
	// fail-closed) with no fault injected; see the assertion.
	soakMaxTimeoutsPerMille = 2
)

// mutationFailure is a create or revoke that did not succeed, and when.
type mutationFailure struct {
	what string
	at   time.Time
}

// soakDuration is SOAK_DURATION (a Go duration), default 30 s: `make soak`
// sets 3m, `make test-faults` leaves the default.
func soakDuration(t *testing.T) time.Duration {
	t.Helper()
	v := os.Getenv("SOAK_DURATION")
	if v == "" {
		return 30 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 2*soakWarmup {
		t.Fatalf("SOAK_DURATION=%q: want a duration of at least %v", v, 2*soakWarmup)
	}
	return d
}

// heapAfterGC is the live heap, in bytes, right after a full collection.
func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestSoak holds a steady mix of Checks, creates and revokes against a real
// redis-server for SOAK_DURATION, with no fault: every answer must be right
// (no OK for a revoked or unknown session, no live session lost); the only
// store error allowed is a timeout (a fail-closed 503), and those outside
// the host stalls an independent probe saw (see stallProbe) at most
// soakMaxTimeoutsPerMille of the Checks; no create or revoke may fail
// unless the probe saw the host stall then; and the heap, the goroutine
// count and Redis's memory must stay flat.
func TestSoak(t *testing.T) {
	d := soakDuration(t)
	srv := redistest.Start(t)
	r := newRig(t, session.RedisOptions{URL: srv.URL()})
	r.seed(500, 100, 100)
	ctx := context.Background()

	gBefore := runtime.NumGoroutine()
	probe := startStallProbe(srv.Client())
	l := r.load(soakCheckRate)
	l.Start()

	// Creates and revokes alternate at soakMutateRate each.
	mctx, stopMutate := context.WithCancel(ctx)
	var (
		mu               sync.Mutex
		creates, revokes int
		mutationFailures []mutationFailure
		wg               sync.WaitGroup
		lim              = rate.NewLimiter(2*soakMutateRate, 1)
		subject          = 0
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; lim.Wait(mctx) == nil; i++ {
			if i%2 == 0 {
				subject++
				at := time.Now()
				code, s := r.create(fmt.Sprintf("soak-%d", subject%200), nil)
				mu.Lock()
				if code == http.StatusCreated {
					creates++
					r.pool.AddLive(s.SessionID)
				} else {
					mutationFailures = append(mutationFailures, mutationFailure{fmt.Sprintf("create: %d", code), at})
				}
				mu.Unlock()
				continue
			}
			e := r.pool.BeginRevoke()
			if e == nil {
				continue
			}
			at := time.Now()
			code := r.adminCall("DELETE", "/v1/sessions/"+session.RefOf(e.ID), nil, nil)
			mu.Lock()
			if code == http.StatusNoContent {
				r.pool.Revoked(e)
				revokes++
			} else {
				mutationFailures = append(mutationFailures, mutationFailure{fmt.Sprintf("revoke: %d", code), at})
			}
			mu.Unlock()
		}
	}()

	time.Sleep(soakWarmup)
	type sample struct {
		at          time.Duration
		heap        uint64
		goroutines  int
		redisMemory int64
	}
	take := func(at time.Duration) sample {
		mem, err := usedMemory(ctx, srv.Client())
		if err != nil {
			t.Fatal(err)
		}
		return sample{at: at, heap: heapAfterGC(), goroutines: runtime.NumGoroutine(), redisMemory: mem}
	}
	samples := []sample{take(soakWarmup)}
	every := max((d-soakWarmup)/6, time.Second)
	for at := soakWarmup + every; at <= d; at += every {
		time.Sleep(every)
		samples = append(samples, take(at))
	}
	stopMutate()
	wg.Wait()
	f := l.Stop()
	probe.stop()
	stalls, worstStall := probe.summary()
	// 503s and failed mutations are fail-closed answers; with no fault
	// injected each must coincide with a host stall the probe saw.
	var stalled503, unexplained503 int
	for _, at := range f.UnavailableAt {
		if probe.during(at, storeTimeout+latencyMargin) {
			stalled503++
		} else {
			unexplained503++
		}
	}
	var stalledMutations int
	var unexplainedMutations []string
	for _, m := range mutationFailures {
		if probe.during(m.at, 2*time.Second) { // the admin API's store timeout
			stalledMutations++
		} else {
			unexplainedMutations = append(unexplainedMutations, m.what)
		}
	}
	gAfter := goroutines(gBefore + goroutineSlack)
	lost := r.verify(l)

	first, last := samples[0], samples[len(samples)-1]
	var series []string
	for _, s := range samples {
		series = append(series, fmt.Sprintf("%.0fs: heap %.1f MiB, %d goroutines, redis %.1f MiB",
			s.at.Seconds(), float64(s.heap)/(1<<20), s.goroutines, float64(s.redisMemory)/(1<<20)))
	}
	t.Log("soak samples:\n  " + strings.Join(series, "\n  "))
	line := fmt.Sprintf("FIGURES | soak %v | %d Checks (%.0f/s, 8 workers, 70%% live/15%% revoked/15%% unknown) + %d creates + %d revokes (%.1f/s each) | "+
		"%d×503 timeouts (%d during host stalls), %d wrong, %d failed creates/revokes (%d during host stalls); store errors: %s; host stalls ≥%v seen by the probe: %d, worst %v | lost %d | max %v (p99 %v) | "+
		"heap %.1f→%.1f MiB after GC | goroutines %d→%d (during: %d→%d) | redis used_memory %.1f→%.1f MiB",
		d, f.Checks, f.Rate(), creates, revokes, float64(creates)/d.Seconds(),
		f.Unavailable, stalled503, f.Wrong(), len(mutationFailures), stalledMutations, r.errs.String(),
		stallThreshold, stalls, worstStall.Round(time.Millisecond), lost, f.MaxLatency.Round(time.Millisecond), f.P99.Round(100*time.Microsecond),
		float64(first.heap)/(1<<20), float64(last.heap)/(1<<20), gBefore, gAfter, first.goroutines, last.goroutines,
		float64(first.redisMemory)/(1<<20), float64(last.redisMemory)/(1<<20))
	t.Log(line)
	fmt.Println(line)

	if f.Wrong() != 0 {
		t.Errorf("%d wrong answers: %q", f.Wrong(), f.Problems)
	}
	// A 503 is a timeout on this shared host (load average above 5 on 2
	// cores while others fuzz and run Envoy): the probe sees most of them
	// coincide with a stall, and a 20 ms probe cannot see every shorter
	// one. Those it cannot explain are bounded by a rate, which a
	// systematic latency problem would exceed; any store error other than
	// a timeout fails outright.
	if int64(unexplained503)*1000 > f.Checks*soakMaxTimeoutsPerMille {
		t.Errorf("%d of %d Checks answered 503 outside host stalls (%d in all) with no fault injected: more than %d‰",
			unexplained503, f.Checks, f.Unavailable, soakMaxTimeoutsPerMille)
	}
	for kind := range r.errs.kinds() {
		if kind != "timeout" {
			t.Errorf("store error of kind %q with no fault injected", kind)
		}
	}
	if len(unexplainedMutations) != 0 {
		t.Errorf("creates or revokes failed with no host stall: %q", unexplainedMutations)
	}
	if lost != 0 {
		t.Errorf("%d sessions lost", lost)
	}
	if f.MaxLatency > storeTimeout+latencyMargin && !probe.during(f.MaxAt, f.MaxLatency) {
		t.Errorf("slowest Check took %v, want at most %v", f.MaxLatency, storeTimeout+latencyMargin)
	}
	if last.heap > first.heap+max(first.heap/4, heapSlack) {
		t.Errorf("heap grew from %d to %d bytes", first.heap, last.heap)
	}
	if last.goroutines > first.goroutines+goroutineSlack || gAfter > gBefore+goroutineSlack {
		t.Errorf("goroutines grew: %d→%d under load, %d→%d at rest", first.goroutines, last.goroutines, gBefore, gAfter)
	}
	// Creates and revokes balance, so Redis holds as many sessions at the
	// end as at the start; its memory may move with allocator pages only.
	if last.redisMemory > first.redisMemory+max(first.redisMemory/4, 1<<20) {
		t.Errorf("redis used_memory grew from %d to %d bytes", first.redisMemory, last.redisMemory)
	}
}
