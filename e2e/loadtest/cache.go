package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sessiongate/sessiongate/e2e/harness"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// The cache part: the session cache on and off in the same run, with Redis
// on loopback and behind a proxy that adds a delay each way (a remote
// Redis), Redis commands per Check from INFO commandstats, and a revocation
// phase under load across two replicas.

// replica is one sessiongate of the cache part.
type replica struct {
	name, grpc, admin, token string
	proc                     *harness.Process
}

// cacheRun is one target of the cache comparison.
type cacheRun struct {
	name  string
	stats Stats
	cmds  cmdStats // Redis commands during the measured windows
}

// cacheReport is the cache part's figures.
type cacheReport struct {
	conc   int
	delay  time.Duration
	runs   []cacheRun // no-op first
	revoke revokeFigures
	steady steadyFigures
}

// steadyFigures are one replica's Redis cost at a fixed, moderate rate.
type steadyFigures struct {
	rate     int
	sessions int
	duration time.Duration
	checks   int64
	errors   int64
	cmds     cmdStats
}

type revokeFigures struct {
	sessions, revoked    int
	checks, afterRevoke  int64
	wrongOK              int64
	errors               int64
	revokeCall           time.Duration
	duration             time.Duration
	checksA, checksB     int64
	afterA, afterB       int64
	revokeCallMax        time.Duration
	redisCmdsPerCheck    float64
	redisEvalshaPerCheck float64
}

// startReplica starts one more sessiongate on redisURL, with any other
// change mutate makes to its configuration.
func (s *stack) startReplica(name, redisURL string, cache bool, mutate ...func(*harness.SGConfig)) (*replica, error) {
	p, err := harness.FreePorts(3)
	if err != nil {
		return nil, err
	}
	addr := func(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
	cfg, token, err := s.sessiongateConfigFor(name, redisURL, addr(p[0]), addr(p[1]), addr(p[2]), cache, mutate...)
	if err != nil {
		return nil, err
	}
	r := &replica{name: name, grpc: addr(p[0]), admin: addr(p[2]), token: token}
	r.proc = s.process(name, s.bin.Sessiongate, "serve", "--config", cfg)
	return r, s.start(r.proc, harness.HTTPProbe("http://"+addr(p[1])+"/readyz", 200))
}

// runCache runs the cache part: for each target, alternating in rounds,
// a closed-loop gRPC load at concurrency conc; then the revocation phase.
func runCache(ctx context.Context, st *stack, o options, ids []string, reqs []*authv3.CheckRequest, rep *report) error {
	const conc = 64
	delay := o.redisDelay
	proxy, err := startDelayProxy(st.redisAddr, delay)
	if err != nil {
		return err
	}
	defer proxy.close()
	direct := "redis://" + st.redisAddr + "/0"
	remote := "redis://" + proxy.addr + "/0"
	var reps []*replica
	noMeta := func(c *harness.SGConfig) { c.Envoy = &harness.SGEnvoy{DynamicMetadata: false} }
	keep := func(*harness.SGConfig) {}
	for _, r := range []struct {
		name, url string
		cache     bool
		mutate    func(*harness.SGConfig)
	}{
		{"sg-cache-on", direct, true, keep},
		{"sg-cache-off", direct, false, keep},
		{"sg-remote-cache-on", remote, true, keep},
		{"sg-remote-cache-off", remote, false, keep},
		{"sg-cache-on-b", direct, true, keep},
		{"sg-cache-on-nometadata", direct, true, noMeta},
	} {
		rp, err := st.startReplica(r.name, r.url, r.cache, r.mutate)
		if err != nil {
			return err
		}
		reps = append(reps, rp)
	}
	cr := &cacheReport{conc: conc, delay: delay}
	rep.cache = cr
	names := []string{"no-op server", "sessiongate, cache on", "sessiongate, cache off",
		fmt.Sprintf("sessiongate, cache on, Redis +%v each way", delay), fmt.Sprintf("sessiongate, cache off, Redis +%v each way", delay),
		"sessiongate, cache on, envoy.dynamic_metadata: false"}
	targets := []string{st.noopGRPC, reps[0].grpc, reps[1].grpc, reps[2].grpc, reps[3].grpc, reps[5].grpc}
	pids := []int{st.noop.PID(), reps[0].proc.PID(), reps[1].proc.PID(), reps[2].proc.PID(), reps[3].proc.PID(), reps[5].proc.PID()}
	cr.runs = make([]cacheRun, len(targets))
	for i := range cr.runs {
		cr.runs[i].name = names[i]
	}
	// Steady state is the point: every replica reads each session once
	// before anything is counted.
	for i, target := range targets[1:] {
		logf("cache: priming %s", names[i+1])
		if _, err := (GRPCLoad{Target: target, Conns: 4, Concurrency: 16, Duration: time.Second,
			MaxRequests: 4 * len(reqs), Requests: reqs, OK: isAllow}).Run(ctx); err != nil {
			return err
		}
	}
	for round := range o.rounds {
		for i, target := range targets {
			watch := map[string]int{"loadgen": 0, "server": pids[i]}
			if i > 0 {
				watch["redis"] = st.redis.PID()
			}
			logf("cache c=%d round %d: %s", conc, round+1, names[i])
			c0, err := commandStats(ctx, st.rdb)
			if err != nil {
				return err
			}
			s, err := GRPCLoad{
				Target: target, Conns: 4, Concurrency: conc,
				Warmup: o.warmup, Duration: o.duration / time.Duration(o.rounds), MaxRequests: o.maxRequests,
				Requests: reqs, OK: isAllow, Watch: watch,
			}.Run(ctx)
			if err != nil {
				return err
			}
			c1, err := commandStats(ctx, st.rdb)
			if err != nil {
				return err
			}
			// The warm-up's commands are in the delta too: count its
			// requests at the measured rate.
			d := c1.sub(c0)
			d.requests = float64(s.Requests) * float64(o.warmup+s.Elapsed) / float64(s.Elapsed)
			cr.runs[i].stats = cr.runs[i].stats.merge(s)
			cr.runs[i].cmds = cr.runs[i].cmds.add(d)
		}
	}
	if cr.steady, err = steadyCost(ctx, st, reps[0], reqs, o.steadyRate, o.steadyFor); err != nil {
		return err
	}
	rf, err := revokeUnderLoad(ctx, st, reps[0], reps[4], ids, reqs, o.duration)
	if err != nil {
		return err
	}
	cr.revoke = rf
	// The parts that follow use every session: bring the revoked back.
	refs := make([]string, len(ids))
	for i, id := range ids {
		refs[i] = session.RefOf(id)
	}
	return seed(ctx, st.rdb, "user-", 0, len(ids), refs)
}

// cmdStats are INFO commandstats counters and Redis's CPU time (INFO
// cpu: used_cpu_user + used_cpu_sys, µs resolution where /proc has 10 ms).
type cmdStats struct {
	calls, usec map[string]float64
	cpuSec      float64
	requests    float64 // Checks sent while they were counted
}

func commandStats(ctx context.Context, rdb *redis.Client) (cmdStats, error) {
	s, err := rdb.Info(ctx, "commandstats", "cpu").Result()
	if err != nil {
		return cmdStats{}, err
	}
	out := cmdStats{calls: map[string]float64{}, usec: map[string]float64{}}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, _ := strconv.ParseFloat(v, 64)
			out.cpuSec += f
			continue
		}
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			f, _ := strconv.ParseFloat(v, 64)
			switch k {
			case "calls":
				out.calls[name] = f
			case "usec":
				out.usec[name] = f
			}
		}
	}
	return out, nil
}

func (a cmdStats) sub(b cmdStats) cmdStats {
	out := cmdStats{calls: map[string]float64{}, usec: map[string]float64{}, cpuSec: a.cpuSec - b.cpuSec}
	for k, v := range a.calls {
		out.calls[k] = v - b.calls[k]
		out.usec[k] = a.usec[k] - b.usec[k]
	}
	return out
}

func (a cmdStats) add(b cmdStats) cmdStats {
	out := cmdStats{calls: map[string]float64{}, usec: map[string]float64{}, requests: a.requests + b.requests, cpuSec: a.cpuSec + b.cpuSec}
	for _, m := range []cmdStats{a, b} {
		for k, v := range m.calls {
			out.calls[k] += v
			out.usec[k] += m.usec[k]
		}
	}
	return out
}

// cpuUsecPerCheck is Redis's CPU time per Check.
func (a cmdStats) cpuUsecPerCheck() float64 {
	if a.requests == 0 {
		return 0
	}
	return a.cpuSec * 1e6 / a.requests
}

// scriptCPU is Redis's CPU per script call (EVALSHA or EVAL), from a
// run where nearly all Redis did was run the script (the cache off): its
// CPU per Check / scripts per Check, socket I/O of the call included.
// commandstats' usec is no substitute: it is wall time, and on a loaded
// machine a descheduled Redis counts its wait in it.
func (a cmdStats) scriptCPU() float64 {
	sc := a.calls["evalsha"] + a.calls["eval"]
	if sc == 0 {
		return 0
	}
	return a.cpuSec * 1e6 / sc
}

// scriptShare is the script's estimated part of Redis's CPU per Check,
// given the CPU of one script call.
func (a cmdStats) scriptShare(perScript float64) string {
	_, sc, _ := a.perCheck()
	est, all := sc*perScript, a.cpuUsecPerCheck()
	if all <= 0 || perScript <= 0 {
		return ""
	}
	return fmt.Sprintf("%.2f (%.0f %%)", est, 100*est/all)
}

// perCheck is commands per Check: every command Redis ran (scripts' inner
// calls included, as commandstats counts them), less the INFO calls that
// read the counters; and EVALSHA/EVAL alone.
func (a cmdStats) perCheck() (all, scripts, scriptUsec float64) {
	if a.requests == 0 {
		return 0, 0, 0
	}
	var n float64
	for k, v := range a.calls {
		if k != "info" {
			n += v
		}
	}
	sc := a.calls["evalsha"] + a.calls["eval"]
	if sc > 0 {
		scriptUsec = (a.usec["evalsha"] + a.usec["eval"]) / sc
	}
	return n / a.requests, sc / a.requests, scriptUsec
}

// steadyCost sends Checks to one cache-on replica at a fixed total rate
// (every session about rate/len(reqs) times a second) for d, longer than a
// slide interval, and counts what Redis ran meanwhile.
func steadyCost(ctx context.Context, st *stack, r *replica, reqs []*authv3.CheckRequest, rate int, d time.Duration) (steadyFigures, error) {
	f := steadyFigures{rate: rate, sessions: len(reqs), duration: d}
	if rate <= 0 || d <= 0 {
		return f, nil
	}
	cc, err := grpc.NewClient(r.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return f, err
	}
	defer cc.Close()
	client := authv3.NewAuthorizationClient(cc)
	const callers = 8
	every := time.Duration(callers) * time.Second / time.Duration(rate)
	logf("cache: steady state, %d Checks/s on %s for %v", rate, r.name, d)
	c0, err := commandStats(ctx, st.rdb)
	if err != nil {
		return f, err
	}
	var checks, errs atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for w := range callers {
		wg.Go(func() {
			next := time.Now()
			for i := w; time.Now().Before(end) && ctx.Err() == nil; i += callers {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				resp, err := client.Check(cctx, reqs[i%len(reqs)])
				cancel()
				checks.Add(1)
				if err != nil || !isAllow(resp) {
					errs.Add(1)
				}
				next = next.Add(every)
				time.Sleep(time.Until(next))
			}
		})
	}
	wg.Wait()
	c1, err := commandStats(ctx, st.rdb)
	if err != nil {
		return f, err
	}
	f.cmds = c1.sub(c0)
	f.checks, f.errors = checks.Load(), errs.Load()
	f.cmds.requests = float64(f.checks)
	return f, nil
}

// revokeUnderLoad runs Checks against replicas a and b (alternating, 16
// callers) for d; half-way it revokes 10 % of the sessions through b's admin
// API, one after another. A Check sent after the revoke of its session
// returned must be refused, on either replica.
func revokeUnderLoad(ctx context.Context, st *stack, a, b *replica, ids []string, reqs []*authv3.CheckRequest, d time.Duration) (revokeFigures, error) {
	const callers = 16
	f := revokeFigures{sessions: len(ids), duration: d}
	var clients [2]authv3.AuthorizationClient
	for i, r := range []*replica{a, b} {
		cc, err := grpc.NewClient(r.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return f, err
		}
		defer cc.Close()
		clients[i] = authv3.NewAuthorizationClient(cc)
	}
	// revokedAt[i]: unix nanos when the revoke of session i returned; 0 = live.
	revokedAt := make([]atomic.Int64, len(ids))
	var stop atomic.Bool
	var checks, after, wrong, errs atomic.Int64
	var per [2]atomic.Int64
	var perAfter [2]atomic.Int64
	c0, err := commandStats(ctx, st.rdb)
	if err != nil {
		return f, err
	}
	var wg sync.WaitGroup
	for w := range callers {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 7))
			for n := 0; !stop.Load(); n++ {
				i := rnd.IntN(len(ids))
				side := n % 2
				sent := time.Now().UnixNano()
				revoked := revokedAt[i].Load()
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				resp, err := clients[side].Check(cctx, reqs[i])
				cancel()
				checks.Add(1)
				per[side].Add(1)
				if err != nil {
					errs.Add(1)
					continue
				}
				code := resp.GetStatus().GetCode()
				if revoked != 0 && revoked < sent {
					after.Add(1)
					perAfter[side].Add(1)
					if code == 0 {
						wrong.Add(1)
					}
				} else if code != 0 && revokedAt[i].Load() == 0 {
					errs.Add(1) // a live session refused
				}
			}
		})
	}
	time.Sleep(d / 2)
	n := len(ids) / 10
	hc := &http.Client{Timeout: 5 * time.Second}
	var total time.Duration
	for k := range n {
		i := k * 10 // every tenth session
		t0 := time.Now()
		req, _ := http.NewRequestWithContext(ctx, "DELETE", "http://"+b.admin+"/v1/sessions/"+session.RefOf(ids[i]), nil)
		req.Header.Set("Authorization", "Bearer "+b.token)
		resp, err := hc.Do(req)
		if err != nil {
			stop.Store(true)
			wg.Wait()
			return f, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			stop.Store(true)
			wg.Wait()
			return f, fmt.Errorf("revoke through %s: %d", b.name, resp.StatusCode)
		}
		took := time.Since(t0)
		total += took
		f.revokeCallMax = max(f.revokeCallMax, took)
		revokedAt[i].Store(time.Now().UnixNano())
	}
	time.Sleep(d / 2)
	stop.Store(true)
	wg.Wait()
	c1, err := commandStats(ctx, st.rdb)
	if err != nil {
		return f, err
	}
	cs := c1.sub(c0)
	cs.requests = float64(checks.Load())
	f.redisCmdsPerCheck, f.redisEvalshaPerCheck, _ = cs.perCheck()
	f.revoked = n
	f.revokeCall = total / time.Duration(max(n, 1))
	f.checks, f.afterRevoke, f.wrongOK, f.errors = checks.Load(), after.Load(), wrong.Load(), errs.Load()
	f.checksA, f.checksB = per[0].Load(), per[1].Load()
	f.afterA, f.afterB = perAfter[0].Load(), perAfter[1].Load()
	if f.wrongOK > 0 {
		return f, fmt.Errorf("revocation under load: %d Checks sent after their session's revoke returned were allowed", f.wrongOK)
	}
	return f, nil
}

// delayProxy forwards TCP connections on loopback to target, holding every
// chunk for delay in each direction: a remote Redis without tc.
type delayProxy struct {
	addr  string
	ln    net.Listener
	delay time.Duration
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func startDelayProxy(target string, delay time.Duration) (*delayProxy, error) {
	if err := loopbackOnly(target); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &delayProxy{addr: ln.Addr().String(), ln: ln, delay: delay}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			p.wg.Go(func() { p.pipe(c, up) })
			p.wg.Go(func() { p.pipe(up, c) })
		}
	})
	return p, nil
}

type chunk struct {
	at time.Time
	b  []byte
}

// pipe copies from src to dst, each chunk written delay after it was read,
// in order.
func (p *delayProxy) pipe(src, dst net.Conn) {
	ch := make(chan chunk, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range ch {
			if w := time.Until(c.at); w > 0 {
				time.Sleep(w)
			}
			if _, err := dst.Write(c.b); err != nil {
				src.Close()
				for range ch {
				}
				return
			}
		}
	}()
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 {
			ch <- chunk{at: time.Now().Add(p.delay), b: buf[:n]}
		}
		if err != nil {
			break
		}
	}
	close(ch)
	<-done
	dst.Close()
}

func (p *delayProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// printCache writes the cache part's tables.
func (c *cacheReport) print(w io.Writer) {
	if c == nil {
		return
	}
	fmt.Fprintf(w, "\n### Session cache: on and off in the same run (gRPC, concurrency %d, closed loop)\n\n", c.conc)
	fmt.Fprintf(w, "| target | req/s | p50 | p99 | req/s vs no-op | server CPU µs per Check | Redis commands per Check (EVALSHA per Check) | Redis µs per script call | Redis CPU µs per Check | of which in the script (share) | errors | CPU cores used |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	noop := c.runs[0].stats
	var perScript float64 // Redis CPU per script call, from the cache-off row
	if len(c.runs) > 2 {
		perScript = c.runs[2].cmds.scriptCPU()
	}
	for i, r := range c.runs {
		s := r.stats
		us := 0.0
		if s.Requests > 0 {
			us = s.CPU["server"] * s.Elapsed.Seconds() / float64(s.Requests) * 1e6
		}
		cmds, scriptUS, redisUS, inCmds := "", "", "", ""
		if i > 0 {
			all, sc, u := r.cmds.perCheck()
			cmds = fmt.Sprintf("%.3f (%.3f)", all, sc)
			scriptUS = fmt.Sprintf("%.1f", u)
			redisUS = fmt.Sprintf("%.2f", r.cmds.cpuUsecPerCheck())
			inCmds = r.cmds.scriptShare(perScript)
		}
		fmt.Fprintf(w, "| %s | %.0f | %s | %s | **%.2f** | %.1f | %s | %s | %s | %s | %d | %s |\n", r.name, s.RPS(), ms(s.P50), ms(s.P99),
			ratio(s.RPS(), noop.RPS()), us, cmds, scriptUS, redisUS, inCmds, s.Errors, cpu(s.CPU))
	}
	fmt.Fprintf(w, "\nThe targets alternate in rounds. \"+%v each way\": Redis behind a loopback TCP proxy (in the load generator's process) that holds every chunk %v in each direction. Redis commands per Check: INFO commandstats delta over the window and its warm-up (scripts' inner commands included, INFO excluded; the other idle replicas' heartbeat PINGs included) / Checks sent. Redis CPU µs per Check: INFO cpu (used_cpu_user + used_cpu_sys) delta over the same span / Checks (everything Redis did meanwhile, the idle replicas' heartbeats included); of which in the script: EVALSHA per Check × Redis CPU per EVALSHA in the cache-off row (%.1f µs, where nearly all Redis does is the script, its socket I/O included), and its share; the rest is the heartbeat PINGs, invalidation messages and the other commands. (commandstats' usec is wall time, inflated on a loaded machine, so not used for this.)\n", c.delay, c.delay, perScript)
	if s := c.steady; s.checks > 0 {
		all, sc, _ := s.cmds.perCheck()
		ping := s.cmds.calls["ping"] / s.cmds.requests
		fmt.Fprintf(w, "\n### Steady state: one cache-on replica at %d Checks/s over %d sessions for %v\n\n", s.rate, s.sessions, s.duration)
		redisUS := s.cmds.cpuUsecPerCheck()
		fmt.Fprintf(w, "| Checks | errors | Redis commands per Check | of which PING (every replica's heartbeats) | EVALSHA per Check | PEXPIREAT (slides) per Check | Redis CPU µs per Check | of which in the script (share) |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		fmt.Fprintf(w, "| %d | %d | %.3f | %.3f | %.3f | %.3f | %.2f | %s |\n", s.checks, s.errors, all, ping, sc, s.cmds.calls["pexpireat"]/s.cmds.requests,
			redisUS, s.cmds.scriptShare(perScript))
		fmt.Fprintf(w, "\nLonger than one slide interval (1 %% of the 30 min idle timeout: 18 s), so every session is slid and reread about once in it.\n")
	}
	r := c.revoke
	fmt.Fprintf(w, "\n### Revocation under load: two replicas with the cache on, 16 callers alternating between them for %v; half-way, %d of %d sessions revoked one by one through replica B's admin API\n\n", r.duration, r.revoked, r.sessions)
	fmt.Fprintf(w, "| Checks | on A / on B | Checks sent after their session's revoke returned (A / B) | of those answered OK | other errors | revoke call mean / max | Redis commands per Check (EVALSHA) |\n")
	fmt.Fprintf(w, "|---:|---|---|---:|---:|---|---|\n")
	fmt.Fprintf(w, "| %d | %d / %d | %d (%d / %d) | **%d** | %d | %s / %s | %.3f (%.3f) |\n", r.checks, r.checksA, r.checksB, r.afterRevoke, r.afterA, r.afterB,
		r.wrongOK, r.errors, ms(r.revokeCall), ms(r.revokeCallMax), r.redisCmdsPerCheck, r.redisEvalshaPerCheck)
}
