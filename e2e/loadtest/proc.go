package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// loopbackOnly refuses any target that is not on this machine's loopback:
// the load test must never send traffic anywhere else.
func loopbackOnly(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("target %q: %w", hostport, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("target %q is not a loopback address; the load test only targets 127.0.0.1", hostport)
	}
	return nil
}

// clockTick is the unit of utime/stime in /proc/<pid>/stat (USER_HZ, 100 on
// every Linux this runs on).
const clockTick = 100

// cpuTimes reads the CPU time (user+system) used so far by each process; a
// pid of 0 means this process.
func cpuTimes(pids map[string]int) map[string]time.Duration {
	out := make(map[string]time.Duration, len(pids))
	for name, pid := range pids {
		if pid == 0 {
			var ru syscall.Rusage
			if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
				out[name] = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			}
			continue
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses and may
		// contain spaces: state is field 3, utime 14, stime 15.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[name] = time.Duration((ut + st) * int64(time.Second) / clockTick)
	}
	return out
}

// cpuUse turns two readings into cores used over elapsed.
func cpuUse(before, after map[string]time.Duration, elapsed time.Duration) map[string]float64 {
	out := make(map[string]float64, len(after))
	for name, t1 := range after {
		if t0, ok := before[name]; ok && elapsed > 0 {
			out[name] = float64(t1-t0) / float64(elapsed)
		}
	}
	return out
}
