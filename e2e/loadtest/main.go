// Command loadtest measures sessiongate's Check path against its physical
// limits on this machine, in one bounded run aimed only at 127.0.0.1, and
// prints markdown tables (also written to e2e/.run/loadtest/results.md):
//
//   - gRPC level: the same closed-loop Go load generator against a no-op
//     ext_authz server (same grpc-go, same server options, answers OK with
//     one header) and against sessiongate with a real Redis, at several
//     concurrencies; requests/s, p50, p99 and the ratio sessiongate/no-op.
//   - through a real Envoy (the e2e harness's Envoy 1.40): wrk (closed
//     loop) and h2load (a fixed, moderate rate) against Envoy -> upstream
//     with ext_authz disabled, to the no-op server and to sessiongate; the
//     latency sessiongate adds over both.
//   - scale: the same Check load with 1 000 and with 1 000 000 sessions in
//     Redis, and Redis memory per session (index included).
//   - answer: Envoy's CPU per request for each shape of the ext_authz
//     answer (the no-op server answering one part more at a time: dynamic
//     metadata, headers_to_remove, the cookie rewrite, the token's size, the
//     header count and append action) and for sessiongate with and without
//     dynamic metadata, with Envoy's own counters per request. Only with
//     -only answer: it would double the whole run's length.
//   - cache: the session cache on and off in the same run, with Redis on
//     loopback and behind a delay proxy (-redis-delay each way), Redis
//     commands per Check from INFO commandstats, and a revocation phase
//     under load across two replicas.
//
// Everything is started through e2e/harness (its build of sessiongate, its
// Envoy and redis-server lookup, its process control and readiness probes)
// and stopped at the end. From e2e/:
//
//	go run ./loadtest                 # everything, about 4 minutes
//	go run ./loadtest -only grpc      # one part: grpc, envoy, scale or cache
//	go run ./loadtest -only answer    # Envoy's CPU per answer shape (not in the whole run)
//
// The same binary is the no-op server ("loadtest noop") and the upstream
// ("loadtest upstream") it starts as separate processes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	args := os.Args[1:]
	var err error
	switch {
	case len(args) > 0 && args[0] == "noop":
		err = serveNoop(args[1:])
	case len(args) > 0 && args[0] == "upstream":
		err = serveUpstream(args[1:])
	default:
		err = drive(args)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

type options struct {
	duration       time.Duration
	warmup         time.Duration
	maxRequests    int
	conc           []int
	envoyConc      []int
	envoyRate      int
	active         int
	scale          int
	only           string
	wrkThreads     int
	rounds         int
	redisDelay     time.Duration
	steadyRate     int
	steadyFor      time.Duration
	answerLoads    string
	answerVariants string
}

func drive(args []string) error {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	var o options
	var conc, envoyConc string
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measured window of each run")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up before each gRPC run")
	fs.IntVar(&o.maxRequests, "max-requests", 2_000_000, "bound on the requests of one measured window")
	fs.StringVar(&conc, "conc", "1,16,64", "gRPC-level concurrencies")
	fs.StringVar(&envoyConc, "envoy-conc", "16,64", "wrk connections through Envoy")
	fs.IntVar(&o.envoyRate, "envoy-rate", 800, "moderate load through Envoy: total req/s over 16 connections (h2load, open loop); 0 skips it")
	fs.IntVar(&o.active, "active", 1000, "sessions the load uses (every request names one of them)")
	fs.IntVar(&o.scale, "scale", 1_000_000, "sessions in Redis for the large scale point")
	fs.StringVar(&o.only, "only", "", "run one part only: grpc, envoy, answer, scale or cache")
	fs.DurationVar(&o.redisDelay, "redis-delay", 500*time.Microsecond, "cache part: delay the Redis proxy adds in each direction")
	fs.IntVar(&o.steadyRate, "steady-rate", 2000, "cache part: Checks/s of the steady-state phase (0 skips it)")
	fs.DurationVar(&o.steadyFor, "steady-for", 25*time.Second, "cache part: length of the steady-state phase (longer than a slide interval, 18 s)")
	fs.StringVar(&o.answerVariants, "answer-variants", "", "answer part: the targets besides the reference, comma-separated (small, big, add, two, meta, remove, cookie, full, full-nomd, full-slow, sg, sg-nomd); empty = all")
	fs.StringVar(&o.answerLoads, "answer-loads", "closed,fixed", "answer part: wrk's closed loop (closed), h2load at -envoy-rate (fixed), or both")
	fs.IntVar(&o.wrkThreads, "wrk-threads", 1, "wrk threads")
	fs.IntVar(&o.rounds, "rounds", 4, "rounds per target, the targets of a comparison alternating (no-op and sessiongate; the three Envoy listeners; 1 000 and 1 000 000 sessions); each is duration/rounds long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if o.conc, err = ints(conc); err != nil {
		return err
	}
	if o.envoyConc, err = ints(envoyConc); err != nil {
		return err
	}
	switch o.only {
	case "", "grpc", "envoy", "answer", "scale", "cache":
	default:
		return fmt.Errorf("-only %q: want grpc, envoy, answer, scale or cache", o.only)
	}
	if o.redisDelay < 0 || o.redisDelay > 10*time.Millisecond {
		return errors.New("-redis-delay must be in [0, 10ms]")
	}
	if o.steadyRate < 0 || o.steadyRate > 20000 || o.steadyFor < 0 || o.steadyFor > time.Minute {
		return errors.New("-steady-rate must be in [0, 20000] and -steady-for in [0, 1m]: the load test is bounded")
	}
	if o.rounds < 1 || o.rounds > 10 {
		return errors.New("-rounds must be in [1, 10]")
	}
	if o.duration > time.Minute || o.duration <= 0 {
		return errors.New("-duration must be in (0, 1m]: the load test is bounded")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Hard bound on the whole run, whatever happens.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()

	began := time.Now()
	st, err := startStack(ctx)
	if st != nil {
		defer st.stop()
	}
	if err != nil {
		return err
	}
	rep := &report{began: began, o: o}
	if err := runAll(ctx, st, o, rep); err != nil {
		rep.print(os.Stdout)
		return err
	}
	rep.took = time.Since(began)
	rep.print(os.Stdout)
	path := filepath.Join(st.dir, "results.md")
	f, err := os.Create(path)
	if err == nil {
		rep.print(f)
		f.Close()
		fmt.Fprintf(os.Stderr, "loadtest: tables written to %s\n", path)
	}
	return nil
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1024 {
			return nil, fmt.Errorf("bad concurrency %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadtest: "+format+"\n", args...)
}
