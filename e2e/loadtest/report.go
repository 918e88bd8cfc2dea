package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"
)

type grpcRow struct {
	conc     int
	noop, sg Stats
}

type envoyRow struct {
	conc int
	rate int      // fixed total req/s (h2load), 0 for wrk's closed loop
	runs [3]Stats // ext_authz disabled, to the no-op server, to sessiongate
}

type scaleRow struct {
	sessions   int
	keys       int64
	mem        int64   // Redis used_memory with this point loaded
	perSession float64 // bytes of used_memory this point's sessions added, per session
	stats      Stats
}

type report struct {
	o                   options
	began               time.Time
	took                time.Duration
	memEmpty, memActive int64
	seedRate            float64
	grpc                []grpcRow
	envoy               []envoyRow
	envoyRate           *envoyRow
	scale               []scaleRow
	cache               *cacheReport
	answer              *answerReport
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func signedMS(d time.Duration) string {
	return fmt.Sprintf("%+.3f ms", float64(d)/float64(time.Millisecond))
}

// cpu renders the cores each watched process used, e.g. "loadgen 0.9, sessiongate 0.7".
func cpu(m map[string]float64) string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %.2f", n, m[n])
	}
	return strings.Join(parts, ", ")
}

func (r *report) print(w io.Writer) {
	host, _ := os.Hostname()
	fmt.Fprintf(w, "\n## sessiongate load test — %s\n\n", r.began.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Machine: %d CPUs (%s), %s/%s, %s; every process on the same machine, loopback only. "+
		"Windows of %v after %v warm-up; %d active sessions, each request names one of them (round-robin).\n",
		runtime.NumCPU(), cpuModel(), runtime.GOOS, runtime.GOARCH, host, r.o.duration, r.o.warmup, r.o.active)
	if r.took > 0 {
		fmt.Fprintf(w, "Whole run: %v.\n", r.took.Round(time.Second))
	}

	if len(r.grpc) > 0 {
		fmt.Fprintf(w, "\n### gRPC level: Check over 4 connections, closed loop\n\n")
		fmt.Fprintf(w, "| concurrency | no-op req/s | no-op p50 | no-op p99 | sessiongate req/s | sessiongate p50 | sessiongate p99 | req/s ratio (b/a) | errors (a/b) | CPU cores used, no-op run | CPU cores used, sessiongate run |\n")
		fmt.Fprintf(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
		for _, g := range r.grpc {
			fmt.Fprintf(w, "| %d | %.0f | %s | %s | %.0f | %s | %s | **%.2f** | %d/%d | %s | %s |\n", g.conc,
				g.noop.RPS(), ms(g.noop.P50), ms(g.noop.P99), g.sg.RPS(), ms(g.sg.P50), ms(g.sg.P99),
				ratio(g.sg.RPS(), g.noop.RPS()), g.noop.Errors, g.sg.Errors, cpu(g.noop.CPU), cpu(g.sg.CPU))
		}
		fmt.Fprintf(w, "\nThe two targets alternate in %d rounds per concurrency; \"loadgen\" is this process (the load generator).\n", r.o.rounds)
	}

	if len(r.envoy) > 0 {
		fmt.Fprintf(w, "\n### Through Envoy 1.40: wrk (HTTP/1.1 keep-alive) → Envoy (2 workers) → upstream\n\n")
		fmt.Fprintf(w, "| connections | ext_authz | req/s | p50 | p99 | p50 added | p99 added | req/s vs no-op ext_authz | errors | CPU cores used |\n")
		fmt.Fprintf(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, e := range r.envoy {
			d, n, s := e.runs[0], e.runs[1], e.runs[2]
			fmt.Fprintf(w, "| %d | disabled | %.0f | %s | %s | | | | %d | %s |\n", e.conc, d.RPS(), ms(d.P50), ms(d.P99), d.Errors, cpu(d.CPU))
			fmt.Fprintf(w, "| %d | no-op server | %.0f | %s | %s | %s over disabled | %s over disabled | 1.00 | %d | %s |\n", e.conc, n.RPS(), ms(n.P50), ms(n.P99),
				signedMS(n.P50-d.P50), signedMS(n.P99-d.P99), n.Errors, cpu(n.CPU))
			fmt.Fprintf(w, "| %d | sessiongate | %.0f | %s | %s | %s over no-op (%s over disabled) | **%s over no-op** (%s over disabled) | **%.2f** | %d | %s |\n", e.conc, s.RPS(), ms(s.P50), ms(s.P99),
				signedMS(s.P50-n.P50), signedMS(s.P50-d.P50), signedMS(s.P99-n.P99), signedMS(s.P99-d.P99), ratio(s.RPS(), n.RPS()), s.Errors, cpu(s.CPU))
		}
		fmt.Fprintf(w, "\nThe three listeners alternate in %d rounds per connection count (each after a 1 s unmeasured wrk warm-up); percentiles are of the pooled rounds. wrk is closed-loop: at a given connection count, latency and req/s are two faces of one figure (latency ≈ connections / req/s).\n", r.o.rounds)
	}

	if e := r.envoyRate; e != nil {
		fmt.Fprintf(w, "\n### Through Envoy 1.40 at moderate load: h2load, %d req/s over %d HTTP/1.1 connections (fixed rate, open loop)\n\n", e.rate, e.conc)
		fmt.Fprintf(w, "| ext_authz | req/s | p50 | p99 | p50 added | p99 added | errors | CPU cores used |\n")
		fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---|\n")
		d, n, s := e.runs[0], e.runs[1], e.runs[2]
		fmt.Fprintf(w, "| disabled | %.0f | %s | %s | | | %d | %s |\n", d.RPS(), ms(d.P50), ms(d.P99), d.Errors, cpu(d.CPU))
		fmt.Fprintf(w, "| no-op server | %.0f | %s | %s | %s over disabled | %s over disabled | %d | %s |\n", n.RPS(), ms(n.P50), ms(n.P99),
			signedMS(n.P50-d.P50), signedMS(n.P99-d.P99), n.Errors, cpu(n.CPU))
		fmt.Fprintf(w, "| sessiongate | %.0f | %s | %s | %s over no-op (%s over disabled) | **%s over no-op** (%s over disabled) | %d | %s |\n", s.RPS(), ms(s.P50), ms(s.P99),
			signedMS(s.P50-n.P50), signedMS(s.P50-d.P50), signedMS(s.P99-n.P99), signedMS(s.P99-d.P99), s.Errors, cpu(s.CPU))
		fmt.Fprintf(w, "\nEvery request carries the same session cookie (h2load sends one header set): a Redis round trip per Check as always, the token from the cache. Listeners alternate in %d rounds; percentiles from h2load's per-request log, pooled.\n", r.o.rounds)
	}

	r.answer.print(w)
	r.cache.print(w)

	if len(r.scale) > 0 {
		fmt.Fprintf(w, "\n### Scale: the same Check load (gRPC, concurrency 16, %d active sessions) with more sessions in Redis\n\n", r.o.active)
		fmt.Fprintf(w, "Both points on one redis-server: the small one in database 0, the large one in database 1 (the same active sessions plus cold ones), each behind its own identical sessiongate, measured alternately in %d rounds.\n\n", r.o.rounds)
		fmt.Fprintf(w, "| sessions in Redis | keys | Redis used_memory | bytes per session (index included) | req/s | p50 | p99 | p99 vs first row | CPU cores used |\n")
		fmt.Fprintf(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, s := range r.scale {
			fmt.Fprintf(w, "| %d | %d | %.1f MiB | %.0f | %.0f | %s | %s | %.2f× | %s |\n", s.sessions, s.keys, float64(s.mem)/(1<<20), s.perSession,
				s.stats.RPS(), ms(s.stats.P50), ms(s.stats.P99), ratio(float64(s.stats.P99), float64(r.scale[0].stats.P99)), cpu(s.stats.CPU))
		}
		fmt.Fprintf(w, "\nEach session: one `sg:s:<ref>` string (record with subject, tenant, one role, an email claim and a browser's device info) and its own `sg:u:<subject>` index (one session per subject: the most index memory per session). Bytes per session = growth of used_memory while the point's sessions were loaded / sessions.")
		if r.seedRate > 0 {
			fmt.Fprintf(w, " Bulk load: %.0f sessions/s (pipelined, the exact layout, checked against session.RedisStore.Create).", r.seedRate)
		}
		fmt.Fprintln(w)
	}
	r.printTargets(w)
}

func (r *report) printTargets(w io.Writer) {
	var rows [][3]string
	for _, g := range r.grpc {
		if g.conc == 64 {
			rt := ratio(g.sg.RPS(), g.noop.RPS())
			rows = append(rows, [3]string{"gRPC c=64, Redis round trip: sessiongate ≥ 0.6× no-op req/s", fmt.Sprintf("%.2f×", rt), verdict(rt >= 0.6)})
		}
	}
	if e := r.envoyRate; e != nil {
		added := e.runs[2].P99 - e.runs[1].P99
		rows = append(rows, [3]string{fmt.Sprintf("Envoy, moderate load (%d req/s over c=%d): p99 added over no-op ext_authz ≤ 0.5 ms", e.rate, e.conc), signedMS(added), verdict(added <= 500*time.Microsecond)})
	}
	for _, e := range r.envoy {
		if e.conc == 16 {
			added := e.runs[2].P99 - e.runs[1].P99
			rows = append(rows, [3]string{"Envoy c=16 closed loop (saturated): p99 added over no-op ext_authz ≤ 0.5 ms", signedMS(added), verdict(added <= 500*time.Microsecond)})
			rt := ratio(e.runs[2].RPS(), e.runs[1].RPS())
			rows = append(rows, [3]string{"Envoy c=16: req/s ≥ 0.8× Envoy with no-op ext_authz", fmt.Sprintf("%.2f×", rt), verdict(rt >= 0.8)})
		}
	}
	if len(r.scale) == 2 {
		rt := ratio(float64(r.scale[1].stats.P99), float64(r.scale[0].stats.P99))
		rows = append(rows, [3]string{fmt.Sprintf("Scale: p99 at %d sessions within 10%% of p99 at %d", r.scale[1].sessions, r.scale[0].sessions), fmt.Sprintf("%.2f×", rt), verdict(rt <= 1.10)})
		per := r.scale[1].perSession
		rows = append(rows, [3]string{"Redis memory per session, index included ≤ 600 B", fmt.Sprintf("%.0f B", per), verdict(per <= 600)})
	}
	if c := r.cache; c != nil && len(c.runs) >= 5 {
		noop, on, off := c.runs[0].stats, c.runs[1].stats, c.runs[2].stats
		rt := ratio(on.RPS(), noop.RPS())
		rows = append(rows, [3]string{"gRPC c=64, 1 000 active sessions, cache on: ≥ 0.90× no-op req/s", fmt.Sprintf("%.2f× (cache off %.2f×)", rt, ratio(off.RPS(), noop.RPS())), verdict(rt >= 0.90)})
		all, sc, _ := c.runs[1].cmds.perCheck()
		label := "Redis commands per Check, cache on, c=64 rounds ≤ 0.05"
		if s := c.steady; s.checks > 0 {
			all, sc, _ = s.cmds.perCheck()
			label = fmt.Sprintf("Redis commands per Check in steady state (%d Checks/s over 1 000 sessions), cache on ≤ 0.05", s.rate)
		}
		rows = append(rows, [3]string{label, fmt.Sprintf("%.3f (EVALSHA %.3f)", all, sc), verdict(all <= 0.05)})
		perCheck := func(s Stats) float64 {
			if s.Requests == 0 {
				return 0
			}
			return s.CPU["server"] * s.Elapsed.Seconds() / float64(s.Requests) * 1e6
		}
		d := perCheck(on) - perCheck(noop)
		got := fmt.Sprintf("%+.1f µs", d)
		if len(c.runs) > 5 {
			got += fmt.Sprintf(" (envoy.dynamic_metadata: false %+.1f µs)", perCheck(c.runs[5].stats)-perCheck(noop))
		}
		rows = append(rows, [3]string{"CPU per Check at c=64, cache on ≤ no-op + 10 µs", got, verdict(d <= 10)})
		rows = append(rows, [3]string{"Revocation under load: Checks after the revoke returned answered OK = 0", fmt.Sprintf("%d of %d", c.revoke.wrongOK, c.revoke.afterRevoke), verdict(c.revoke.wrongOK == 0 && c.revoke.afterRevoke > 0)})
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\n### Targets\n\n| target | measured | |\n|---|---:|---|\n")
	for _, row := range rows {
		fmt.Fprintf(w, "| %s | %s | %s |\n", row[0], row[1], row[2])
	}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
