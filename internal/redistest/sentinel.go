package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name the sentinels monitor the master under.
const SentinelMaster = "sessiongate"

// Sentinel is one master, one replica and three sentinels (quorum 2), all
// on loopback, tuned so that a failover completes in about a second.
type Sentinel struct {
	t         testing.TB
	Data      []*Server // the master and the replica, in start order
	Sentinels []*Server
}

// StartSentinel starts the topology and waits until the replica is in sync
// and every sentinel knows the replica and the two other sentinels. extra
// is passed to the master and the replica.
func StartSentinel(t testing.TB, extra ...string) *Sentinel {
	t.Helper()
	// Redis 7 waits 5 s before a diskless full sync by default.
	extra = append([]string{"--repl-diskless-sync-delay", "0"}, extra...)
	master := startOn(t, FreePort(t), t.TempDir(), nil, extra...)
	replica := startOn(t, FreePort(t), t.TempDir(), nil,
		append(extra, "--replicaof", "127.0.0.1", port(master.Addr))...)
	s := &Sentinel{t: t, Data: []*Server{master, replica}}
	for range 3 {
		p := FreePort(t)
		dir := t.TempDir()
		// A sentinel rewrites its config file as it learns the topology,
		// so it must be a writable file of its own.
		conf := filepath.Join(dir, "sentinel.conf")
		body := strings.Join([]string{
			"port " + strconv.Itoa(p),
			"bind 127.0.0.1",
			"daemonize no",
			"dir " + dir,
			"logfile " + filepath.Join(dir, "redis.log"),
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %s 2", SentinelMaster, port(master.Addr)),
			"sentinel down-after-milliseconds " + SentinelMaster + " 1000",
			"sentinel failover-timeout " + SentinelMaster + " 5000",
			"sentinel parallel-syncs " + SentinelMaster + " 1",
			"",
		}, "\n")
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatalf("write sentinel config: %v", err)
		}
		srv := &Server{t: t, Addr: "127.0.0.1:" + strconv.Itoa(p), dir: dir, args: []string{conf, "--sentinel"}}
		srv.start(Binary(t))
		t.Cleanup(srv.Stop)
		s.Sentinels = append(s.Sentinels, srv)
	}
	if err := s.waitReady(master.Addr, 30*time.Second); err != nil {
		t.Fatalf("sentinel: %v", err)
	}
	return s
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// Addrs are the sentinels' addresses.
func (s *Sentinel) Addrs() []string {
	out := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		out[i] = n.Addr
	}
	return out
}

// Server returns the data node listening on addr.
func (s *Sentinel) Server(addr string) *Server {
	for _, n := range s.Data {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// Master asks the first running sentinel for the current master.
func (s *Sentinel) Master(ctx context.Context) (*Server, error) {
	var last error
	for _, sn := range s.Sentinels {
		if !sn.Running() {
			continue
		}
		addr, err := s.sentinelClient(sn).GetMasterAddrByName(ctx, SentinelMaster).Result()
		if err != nil {
			last = err
			continue
		}
		if m := s.Server(net.JoinHostPort(addr[0], addr[1])); m != nil {
			return m, nil
		}
		return nil, fmt.Errorf("sentinel names unknown master %v", addr)
	}
	return nil, fmt.Errorf("no sentinel answered: %v", last)
}

func (s *Sentinel) sentinelClient(sn *Server) *redis.SentinelClient {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.sentinel == nil {
		sn.sentinel = redis.NewSentinelClient(&redis.Options{
			Addr: sn.Addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1, DisableIdentity: true,
		})
		c := sn.sentinel
		s.t.Cleanup(func() { c.Close() })
	}
	return sn.sentinel
}

// Failover makes a sentinel fail the master over to the replica
// (SENTINEL FAILOVER, no agreement needed) and waits until every sentinel
// names the new master, it answers as master, and the old master has
// become its replica and is in sync. It returns the new master.
func (s *Sentinel) Failover(ctx context.Context, limit time.Duration) (*Server, error) {
	old, err := s.Master(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.sentinelClient(s.Sentinels[0]).Failover(ctx, SentinelMaster).Err(); err != nil {
		return nil, fmt.Errorf("sentinel failover: %w", err)
	}
	var next *Server
	ok := Eventually(ctx, limit, func() bool {
		for _, sn := range s.Sentinels {
			addr, err := s.sentinelClient(sn).GetMasterAddrByName(ctx, SentinelMaster).Result()
			if err != nil || net.JoinHostPort(addr[0], addr[1]) == old.Addr {
				return false
			}
			next = s.Server(net.JoinHostPort(addr[0], addr[1]))
		}
		return next != nil && role(ctx, next) == "master" && inSync(ctx, old)
	})
	if !ok {
		return nil, fmt.Errorf("failover from %s not complete after %v", old.Addr, limit)
	}
	return next, nil
}

// waitReady waits for the replica to be in sync and for every sentinel to
// know it and the other two sentinels, without which a failover could not
// pick a replica or reach quorum.
// WaitNewMaster waits until every sentinel names a master other than old
// and that node says it is a master: how a test sees an automatic failover
// (after old was killed) complete.
func (s *Sentinel) WaitNewMaster(ctx context.Context, old *Server, limit time.Duration) (*Server, error) {
	var next *Server
	ok := Eventually(ctx, limit, func() bool {
		next = nil
		for _, sn := range s.Sentinels {
			addr, err := s.sentinelClient(sn).GetMasterAddrByName(ctx, SentinelMaster).Result()
			if err != nil || net.JoinHostPort(addr[0], addr[1]) == old.Addr {
				return false
			}
			n := s.Server(net.JoinHostPort(addr[0], addr[1]))
			if n == nil || (next != nil && n != next) {
				return false
			}
			next = n
		}
		return next != nil && role(ctx, next) == "master"
	})
	if !ok {
		return nil, fmt.Errorf("no new master after %s for %v", old.Addr, limit)
	}
	return next, nil
}

func (s *Sentinel) waitReady(masterAddr string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var last string
	ok := Eventually(ctx, limit, func() bool {
		if !inSync(ctx, s.Data[1]) {
			last = "replica not in sync"
			return false
		}
		for _, sn := range s.Sentinels {
			m, err := s.sentinelClient(sn).Master(ctx, SentinelMaster).Result()
			if err != nil {
				last = err.Error()
				return false
			}
			if m["num-other-sentinels"] != "2" || m["num-slaves"] != "1" {
				last = fmt.Sprintf("%s: other sentinels %s, replicas %s", sn.Addr, m["num-other-sentinels"], m["num-slaves"])
				return false
			}
			reps, err := s.sentinelClient(sn).Replicas(ctx, SentinelMaster).Result()
			if err != nil || len(reps) != 1 || reps[0]["master-link-status"] != "ok" || strings.Contains(reps[0]["flags"], "down") {
				last = fmt.Sprintf("%s: replica not known in good state: %v %v", sn.Addr, reps, err)
				return false
			}
		}
		return true
	})
	if !ok {
		return fmt.Errorf("not ready after %v: %s", limit, last)
	}
	return nil
}

func role(ctx context.Context, s *Server) string {
	info, err := s.Client().Info(ctx, "replication").Result()
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(info, "\r\n") {
		if r, ok := strings.CutPrefix(line, "role:"); ok {
			return r
		}
	}
	return ""
}

// inSync reports whether s is a replica whose link to its master is up.
func inSync(ctx context.Context, s *Server) bool {
	info, err := s.Client().Info(ctx, "replication").Result()
	return err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_link_status:up")
}

// WaitReplicated waits until every replica of master has acknowledged all
// the writes master had accepted when it was called. Redis replicates
// asynchronously: a failover loses what the replica had not received, so a
// test that wants "no session lost that Redis kept" waits for this first.
func WaitReplicated(ctx context.Context, master *Server, limit time.Duration) error {
	offsets := func() (own int64, replicas []int64, err error) {
		info, err := master.Client().Info(ctx, "replication").Result()
		if err != nil {
			return 0, nil, err
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "master_repl_offset:"); ok {
				own, _ = strconv.ParseInt(v, 10, 64)
			}
			// slave0:ip=127.0.0.1,port=6380,state=online,offset=1234,lag=0
			if strings.HasPrefix(line, "slave") && strings.Contains(line, "offset=") {
				for _, kv := range strings.Split(line[strings.Index(line, ":")+1:], ",") {
					if v, ok := strings.CutPrefix(kv, "offset="); ok {
						n, _ := strconv.ParseInt(v, 10, 64)
						replicas = append(replicas, n)
					}
				}
			}
		}
		return own, replicas, nil
	}
	want, reps, err := offsets()
	if err != nil {
		return fmt.Errorf("info replication on %s: %w", master.Addr, err)
	}
	if len(reps) == 0 {
		return fmt.Errorf("%s has no replica", master.Addr)
	}
	ok := Eventually(ctx, limit, func() bool {
		_, reps, err := offsets()
		if err != nil || len(reps) == 0 {
			return false
		}
		for _, r := range reps {
			if r < want {
				return false
			}
		}
		return true
	})
	if !ok {
		return fmt.Errorf("replicas of %s did not reach offset %d within %v", master.Addr, want, limit)
	}
	return nil
}
