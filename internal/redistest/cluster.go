package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Client returns a plain client for the server, for test set-up and
// inspection (CONFIG SET, WAIT, ROLE...). It is made once, survives
// Restart and is closed when the test ends.
func (s *Server) Client() *redis.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		s.client = redis.NewClient(&redis.Options{
			Addr: s.Addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
			MaxRetries: -1, DisableIdentity: true, TLSConfig: s.tls,
		})
		c := s.client
		s.t.Cleanup(func() { c.Close() })
	}
	return s.client
}

// Cluster is a Redis Cluster of three masters, each with one replica, all on
// loopback. Node timeouts are short so a killed master's replica takes over
// in a couple of seconds.
type Cluster struct {
	t     testing.TB
	Nodes []*Server // as created: the first three start as masters
}

// clusterNodeTimeout is how long a node must be unreachable before the
// others mark it failed and its replica starts an election.
const clusterNodeTimeout = 1000

// StartCluster starts six cluster-enabled redis-servers and joins them with
// `redis-cli --cluster create --cluster-replicas 1`, then waits until every
// node reports cluster_state:ok and every replica is in sync. extra is
// passed to every node.
func StartCluster(t testing.TB, extra ...string) *Cluster {
	t.Helper()
	cli := cliBinary(t)
	c := &Cluster{t: t}
	addrs := make([]string, 6)
	for i := range addrs {
		port, bus := FreePort(t), FreePort(t)
		args := append([]string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(clusterNodeTimeout),
			// The bus port defaults to port+10000, which may be taken or
			// beyond 65535 for a port from the ephemeral range.
			"--cluster-port", strconv.Itoa(bus),
			// A replica whose link broke long ago may still be promoted:
			// the test wants the failover, not a cluster that waits.
			"--cluster-replica-validity-factor", "0",
			// Redis 7 waits 5 s before a diskless full sync by default.
			"--repl-diskless-sync-delay", "0",
		}, extra...)
		n := startOn(t, port, t.TempDir(), nil, args...)
		c.Nodes = append(c.Nodes, n)
		addrs[i] = n.Addr
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		t.Fatalf("cluster: %v", err)
	}
	return c
}

func cliBinary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli not found on PATH: install it (Debian: apt-get install redis-tools; `make test` does this when run as root)")
	}
	return p
}

// Addrs are the seed addresses of every node.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr
	}
	return out
}

// node returns the running node listening on addr.
func (c *Cluster) node(addr string) *Server {
	for _, n := range c.Nodes {
		if n.Addr == addr && n.Running() {
			return n
		}
	}
	return nil
}

// live returns any running node, to ask about the cluster.
func (c *Cluster) live() (*Server, error) {
	for _, n := range c.Nodes {
		if n.Running() {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no cluster node is running")
}

// MasterOf returns the node currently serving key's slot as master, and
// its replicas.
func (c *Cluster) MasterOf(ctx context.Context, key string) (master *Server, replicas []*Server, err error) {
	n, err := c.live()
	if err != nil {
		return nil, nil, err
	}
	rdb := n.Client()
	slot, err := rdb.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("cluster keyslot: %w", err)
	}
	slots, err := rdb.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("cluster slots: %w", err)
	}
	for _, r := range slots {
		if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 {
			master = c.node(r.Nodes[0].Addr)
			for _, rn := range r.Nodes[1:] {
				if s := c.node(rn.Addr); s != nil {
					replicas = append(replicas, s)
				}
			}
			if master == nil {
				return nil, nil, fmt.Errorf("slot %d: master %s is not running", slot, r.Nodes[0].Addr)
			}
			return master, replicas, nil
		}
	}
	return nil, nil, fmt.Errorf("slot %d is not served", slot)
}

// WaitHealthy waits until every running node reports cluster_state:ok, every
// slot is served by a running master, and every running replica's link to
// its master is up.
func (c *Cluster) WaitHealthy(limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var last error
	for {
		if last = c.healthy(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy after %v: %w", limit, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Cluster) healthy(ctx context.Context) error {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		rdb := n.Client()
		info, err := rdb.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("%s: cluster info: %w", n.Addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("%s: cluster_state is not ok", n.Addr)
		}
		slots, err := rdb.ClusterSlots(ctx).Result()
		if err != nil {
			return fmt.Errorf("%s: cluster slots: %w", n.Addr, err)
		}
		covered := 0
		for _, r := range slots {
			if len(r.Nodes) == 0 || c.node(r.Nodes[0].Addr) == nil {
				return fmt.Errorf("%s: slots %d-%d have no running master", n.Addr, r.Start, r.End)
			}
			covered += int(r.End-r.Start) + 1
		}
		if covered != 16384 {
			return fmt.Errorf("%s: %d of 16384 slots served", n.Addr, covered)
		}
		repl, err := rdb.Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("%s: info replication: %w", n.Addr, err)
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return fmt.Errorf("%s: replica not in sync", n.Addr)
		}
	}
	return nil
}
