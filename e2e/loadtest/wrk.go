package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// wrkScript sends GET requests round-robin over a list of session cookies,
// formatted once in init so that the client spends nothing per request on
// Lua string building. wrk passes the arguments after "--" to init.
const wrkScript = `
local reqs = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do
    reqs[#reqs + 1] = wrk.format("GET", args[2], {
      ["Cookie"] = "theme=dark; __Host-sid=" .. line,
      ["Accept"] = "application/json",
      ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    })
  end
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
-- The latency distribution at every 0.1%, in microseconds, so that rounds
-- of the same load can be merged into one distribution (see parseWrk).
done = function(summary, latency, requests)
  local q = {}
  for k = 1, 1000 do q[k] = latency:percentile(k / 10) end
  io.write("QUANTILES_US " .. table.concat(q, " ") .. "\n")
end
`

// HTTPLoad is one wrk run against an Envoy listener.
type HTTPLoad struct {
	URL         string // http://127.0.0.1:port/path
	Concurrency int    // connections, HTTP/1.1 keep-alive, one request in flight each
	Threads     int
	Duration    time.Duration
	Cookies     string // file with one session ID per line
	Dir         string // where the script is written
	Watch       map[string]int
}

// Run runs wrk (a warm-up of one second first, unmeasured) and parses its
// report. Every request of this harness should be allowed: non-2xx answers
// and socket errors are counted as errors.
func (l HTTPLoad) Run(ctx context.Context) (Stats, error) {
	u, err := url.Parse(l.URL)
	if err != nil {
		return Stats{}, err
	}
	if err := loopbackOnly(u.Host); err != nil {
		return Stats{}, err
	}
	script := filepath.Join(l.Dir, "wrk-cookies.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return Stats{}, err
	}
	run := func(d time.Duration) (string, Stats, error) {
		args := []string{"-t", strconv.Itoa(l.Threads), "-c", strconv.Itoa(l.Concurrency),
			"-d", fmt.Sprintf("%ds", int(d.Seconds())), "--latency", "--timeout", "2s",
			"-s", script, u.Scheme + "://" + u.Host, "--", l.Cookies, u.RequestURI()}
		cctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, "wrk", args...)
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Start(); err != nil {
			return "", Stats{}, fmt.Errorf("wrk: %w (install it: apt-get install wrk)", err)
		}
		watch := map[string]int{"wrk": cmd.Process.Pid}
		for k, v := range l.Watch {
			watch[k] = v
		}
		time.Sleep(200 * time.Millisecond) // wrk connects; CPU window starts after
		cpu0, t0 := cpuTimes(watch), time.Now()
		werr := cmd.Wait()
		elapsed := time.Since(t0)
		// The wrk process is gone by now; its CPU comes from the reading
		// before the end plus nothing, so report it from rusage instead.
		cpu1 := cpuTimes(l.Watch)
		st := Stats{CPU: cpuUse(cpu0, cpu1, elapsed)}
		if ps := cmd.ProcessState; ps != nil {
			st.CPU["wrk"] = float64(ps.UserTime()+ps.SystemTime()) / float64(elapsed+200*time.Millisecond)
		}
		if werr != nil {
			return out.String(), st, fmt.Errorf("wrk %s: %v: %s", strings.Join(args, " "), werr, stderr.String())
		}
		return out.String(), st, nil
	}
	if _, _, err := run(time.Second); err != nil {
		return Stats{}, err
	}
	out, st, err := run(l.Duration)
	if err != nil {
		return Stats{}, err
	}
	parsed, err := parseWrk(out)
	if err != nil {
		return Stats{}, fmt.Errorf("%w\n%s", err, out)
	}
	parsed.CPU = st.CPU
	// A shared, noisy machine can push a rare Check past sessiongate's
	// Redis timeout (an honest 503); those are counted and reported. More
	// than 1% means something is broken, not slow.
	if parsed.Errors*100 > parsed.Requests {
		return parsed, fmt.Errorf("%d of %d requests failed (non-2xx or socket errors) on %s:\n%s", parsed.Errors, parsed.Requests, l.URL, out)
	}
	return parsed, nil
}

var (
	wrkTotal   = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),`)
	wrkRPS     = regexp.MustCompile(`(?m)^Requests/sec:\s+([\d.]+)`)
	wrkPct     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$`)
	wrkNon2xx  = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses: (\d+)`)
	wrkSockErr = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkQuant   = regexp.MustCompile(`(?m)^QUANTILES_US ([\d. ]+)$`)
)

// wrkQuantiles turns the script's 1000 quantiles into a sample of the
// latency distribution, each quantile standing for an equal share of the
// run's requests (at least one sample each), so that Stats.merge can pool
// rounds of different lengths.
func wrkQuantiles(out string, requests int) ([]time.Duration, error) {
	m := wrkQuant.FindStringSubmatch(out)
	if m == nil {
		return nil, nil
	}
	fields := strings.Fields(m[1])
	reps := max(requests/len(fields), 1)
	lat := make([]time.Duration, 0, reps*len(fields))
	for _, f := range fields {
		us, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, fmt.Errorf("wrk quantile %q: %w", f, err)
		}
		for range reps {
			lat = append(lat, time.Duration(us*float64(time.Microsecond)))
		}
	}
	return lat, nil
}

// parseWrk reads wrk's --latency report.
func parseWrk(out string) (Stats, error) {
	var st Stats
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		return st, fmt.Errorf("wrk: no request count in the report")
	}
	st.Requests, _ = strconv.Atoi(m[1])
	d, err := wrkDuration(m[2], m[3])
	if err != nil {
		return st, err
	}
	if r := wrkRPS.FindStringSubmatch(out); r != nil {
		// wrk's own rate is over its own clock; keep it exact.
		rps, _ := strconv.ParseFloat(r[1], 64)
		if rps > 0 {
			d = time.Duration(float64(st.Requests) / rps * float64(time.Second))
		}
	}
	st.Elapsed = d
	for _, p := range wrkPct.FindAllStringSubmatch(out, -1) {
		v, err := wrkDuration(p[2], p[3])
		if err != nil {
			return st, err
		}
		if p[1] == "50" {
			st.P50 = v
		} else {
			st.P99 = v
		}
	}
	if st.P50 == 0 || st.P99 == 0 {
		return st, fmt.Errorf("wrk: no latency distribution in the report (run with --latency)")
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		n, _ := strconv.Atoi(m[1])
		st.Errors += n
	}
	if m := wrkSockErr.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			st.Errors += n
		}
	}
	if st.lat, err = wrkQuantiles(out, st.Requests); err != nil {
		return st, err
	}
	return st, nil
}

func wrkDuration(v, unit string) (time.Duration, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, err
	}
	switch unit {
	case "us":
		return time.Duration(f * float64(time.Microsecond)), nil
	case "ms":
		return time.Duration(f * float64(time.Millisecond)), nil
	case "s":
		return time.Duration(f * float64(time.Second)), nil
	case "m":
		return time.Duration(f * float64(time.Minute)), nil
	}
	return 0, fmt.Errorf("wrk: unknown unit %q", unit)
}
