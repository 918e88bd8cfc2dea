package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Stats are one measured load window.
type Stats struct {
	Requests int           // answered inside the window
	Errors   int           // gRPC errors and unexpected answers
	Elapsed  time.Duration // length of the window
	P50, P99 time.Duration
	CPU      map[string]float64 // cores used per process over the window (1.0 = one core busy)
	lat      []time.Duration    // gRPC runs: every latency, for merging rounds
}

// merge adds the window of o to s: two rounds of the same load, run
// alternately with another target's, count as one longer window.
func (s Stats) merge(o Stats) Stats {
	if s.Elapsed == 0 {
		return o
	}
	cpu := make(map[string]float64, len(s.CPU))
	for k, v := range s.CPU {
		cpu[k] = (v*s.Elapsed.Seconds() + o.CPU[k]*o.Elapsed.Seconds()) / (s.Elapsed + o.Elapsed).Seconds()
	}
	m := Stats{Requests: s.Requests + o.Requests, Errors: s.Errors + o.Errors, Elapsed: s.Elapsed + o.Elapsed, CPU: cpu,
		lat: append(append([]time.Duration(nil), s.lat...), o.lat...)}
	m.P50, m.P99 = percentiles(m.lat)
	return m
}

// RPS is requests per second over the window.
func (s Stats) RPS() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Requests) / s.Elapsed.Seconds()
}

// GRPCLoad is a closed-loop load: Concurrency callers, each sending its next
// Check as soon as the previous one is answered, spread over Conns gRPC
// connections (HTTP/2, one TCP connection each). Latencies are those of the
// whole call as the caller sees it.
type GRPCLoad struct {
	Target      string // host:port on loopback
	Conns       int
	Concurrency int
	Warmup      time.Duration
	Duration    time.Duration
	MaxRequests int // bound on the measured window, whatever the duration
	Requests    []*authv3.CheckRequest
	// OK tells whether an answer is the expected one (an allow, for every
	// target of this harness).
	OK func(*authv3.CheckResponse) bool
	// Watch are processes whose CPU use is reported.
	Watch map[string]int
}

// Run runs the load and returns the stats of the measured window.
func (l GRPCLoad) Run(ctx context.Context) (Stats, error) {
	if err := loopbackOnly(l.Target); err != nil {
		return Stats{}, err
	}
	conns := max(min(l.Conns, l.Concurrency), 1)
	clients := make([]authv3.AuthorizationClient, conns)
	for i := range clients {
		cc, err := grpc.NewClient(l.Target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return Stats{}, err
		}
		defer cc.Close()
		clients[i] = authv3.NewAuthorizationClient(cc)
	}
	// One call per connection first, so the window measures steady state.
	for _, c := range clients {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := c.Check(cctx, l.Requests[0])
		cancel()
		if err != nil {
			return Stats{}, fmt.Errorf("first Check to %s: %w", l.Target, err)
		}
		if !l.OK(resp) {
			return Stats{}, fmt.Errorf("first Check to %s: unexpected answer %v", l.Target, resp)
		}
	}

	var (
		phase   atomic.Int32 // 0 warm-up, 1 measured, 2 stop
		counted atomic.Int64
		errs    atomic.Int64
		wg      sync.WaitGroup
	)
	lat := make([][]time.Duration, l.Concurrency)
	for w := range l.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[w%conns]
			buf := make([]time.Duration, 0, 1<<14)
			i := w * 7919 // callers start at different sessions
			for {
				p := phase.Load()
				if p == 2 {
					break
				}
				i++
				req := l.Requests[i%len(l.Requests)]
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				start := time.Now()
				resp, err := c.Check(cctx, req)
				d := time.Since(start)
				cancel()
				if p != 1 || phase.Load() != 1 {
					continue // warm-up, or ended during the call
				}
				if err != nil || !l.OK(resp) {
					errs.Add(1)
					continue
				}
				buf = append(buf, d)
				if counted.Add(1) >= int64(l.MaxRequests) {
					phase.CompareAndSwap(1, 2)
				}
			}
			lat[w] = buf
		}()
	}

	timer := time.NewTimer(l.Warmup)
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
	cpu0 := cpuTimes(l.Watch)
	start := time.Now()
	phase.Store(1)
	deadline := time.NewTimer(l.Duration)
	tick := time.NewTicker(10 * time.Millisecond)
wait:
	for {
		select {
		case <-deadline.C:
			break wait
		case <-ctx.Done():
			break wait
		case <-tick.C:
			if phase.Load() == 2 {
				break wait
			}
		}
	}
	tick.Stop()
	elapsed := time.Since(start)
	cpu1 := cpuTimes(l.Watch)
	phase.Store(2)
	wg.Wait()

	all := slices.Concat(lat...)
	st := Stats{Requests: len(all), Errors: int(errs.Load()), Elapsed: elapsed, CPU: cpuUse(cpu0, cpu1, elapsed), lat: all}
	st.P50, st.P99 = percentiles(all)
	return st, ctx.Err()
}

// percentiles returns p50 and p99 (nearest rank).
func percentiles(d []time.Duration) (p50, p99 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	slices.Sort(d)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(d))+0.5) - 1
		return d[min(max(i, 0), len(d)-1)]
	}
	return rank(0.50), rank(0.99)
}
