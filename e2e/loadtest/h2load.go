package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// RateLoad is one h2load run against an Envoy listener at a fixed request
// rate: Concurrency HTTP/1.1 connections, each sending RatePerConn
// requests per second whatever the answers' latency (an open loop, unlike
// wrk's closed one). Below saturation it measures what a request waits for,
// not the queue a closed loop builds in front of the slowest component:
// what "moderate load" means. h2load fires every connection's request on
// the same 1/rate tick, so the load arrives as bursts of Concurrency
// simultaneous requests: the latency includes queueing inside each burst.
type RateLoad struct {
	URL         string
	Concurrency int
	RatePerConn int
	Duration    time.Duration // whole seconds
	SessionID   string        // the cookie every request carries (h2load sends one header set)
	Dir         string        // where h2load's per-request log is written
	Watch       map[string]int
}

// Run runs h2load (one unmeasured second first) and computes the stats from
// its per-request log (start µs, status, µs to the end of the response).
func (l RateLoad) Run(ctx context.Context) (Stats, error) {
	u, err := url.Parse(l.URL)
	if err != nil {
		return Stats{}, err
	}
	if err := loopbackOnly(u.Host); err != nil {
		return Stats{}, err
	}
	logPath := filepath.Join(l.Dir, "h2load-requests.log")
	run := func(d time.Duration) (Stats, error) {
		os.Remove(logPath)
		args := []string{"--h1", "-t", "1", "-c", strconv.Itoa(l.Concurrency), "--rps", strconv.Itoa(l.RatePerConn),
			"-D", strconv.Itoa(max(int(d.Seconds()), 1)), "--log-file", logPath,
			"-H", "cookie: theme=dark; __Host-sid=" + l.SessionID,
			"-H", "accept: application/json",
			"-H", "user-agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
			l.URL}
		cctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(cctx, "h2load", args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cpu0, t0 := cpuTimes(l.Watch), time.Now()
		if err := cmd.Run(); err != nil {
			return Stats{}, fmt.Errorf("h2load %s: %w (install it: apt-get install nghttp2-client)\n%s", strings.Join(args[:len(args)-1], " "), err, out.String())
		}
		elapsed := time.Since(t0)
		st, err := parseH2loadLog(logPath)
		if err != nil {
			return st, fmt.Errorf("%w\n%s", err, out.String())
		}
		st.Elapsed = d
		st.CPU = cpuUse(cpu0, cpuTimes(l.Watch), elapsed)
		if ps := cmd.ProcessState; ps != nil {
			st.CPU["h2load"] = float64(ps.UserTime()+ps.SystemTime()) / float64(elapsed)
		}
		return st, nil
	}
	if _, err := run(time.Second); err != nil {
		return Stats{}, err
	}
	st, err := run(l.Duration)
	if err != nil {
		return st, err
	}
	if st.Errors*100 > st.Requests+st.Errors {
		return st, fmt.Errorf("%d of %d requests failed on %s", st.Errors, st.Requests+st.Errors, l.URL)
	}
	return st, nil
}

// parseH2loadLog reads h2load's --log-file: one line per request, tab
// separated: start time (µs since the epoch), HTTP status, µs until the
// response ended. Anything but a 200 is an error.
func parseH2loadLog(path string) (Stats, error) {
	f, err := os.Open(path)
	if err != nil {
		return Stats{}, fmt.Errorf("h2load log: %w", err)
	}
	defer f.Close()
	var st Stats
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			return st, fmt.Errorf("h2load log line %q: want 3 fields", sc.Text())
		}
		code, err1 := strconv.Atoi(fields[1])
		us, err2 := strconv.ParseInt(fields[2], 10, 64)
		if err1 != nil || err2 != nil {
			return st, fmt.Errorf("h2load log line %q: bad number", sc.Text())
		}
		if code != 200 {
			st.Errors++
			continue
		}
		st.lat = append(st.lat, time.Duration(us)*time.Microsecond)
	}
	if err := sc.Err(); err != nil {
		return st, err
	}
	st.Requests = len(st.lat)
	if st.Requests == 0 {
		return st, fmt.Errorf("h2load log: no successful request")
	}
	st.P50, st.P99 = percentiles(st.lat)
	return st, nil
}
