package session

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/internal/redistest"
)

// warmTopology is a real Redis deployment for the warm-start tests: the
// options sessiongate would be given, and a direct client per node to read
// the node's own statistics.
type warmTopology struct {
	opts  RedisOptions
	nodes []*redis.Client
}

// TestRedisFirstTouchIsOneRoundTrip is the test that would have caught the
// e2e flake where a login answered 503 at 105 ms against a 100 ms
// redis.timeout: the first EVALSHA of each script got NOSCRIPT and was sent
// again as EVAL, and the first call dialled. After Warm, the first Touch of
// a session must reach Redis as exactly one command, EVALSHA, over a
// connection that was already open. Redis itself does the counting (INFO
// commandstats and total_connections_received on every node), so a hidden
// retry, redirect or slot-map reload would show.
func TestRedisFirstTouchIsOneRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) warmTopology
	}{
		{"standalone", func(t *testing.T) warmTopology {
			srv := redistest.Start(t)
			return warmTopology{opts: RedisOptions{URL: srv.URL()}, nodes: []*redis.Client{srv.Client()}}
		}},
		{"cluster", func(t *testing.T) warmTopology {
			c := redistest.StartCluster(t)
			w := warmTopology{opts: RedisOptions{ClusterAddrs: c.Addrs()[:1]}}
			for _, n := range c.Nodes {
				w.nodes = append(w.nodes, n.Client())
			}
			// A replica shows in CLUSTER SLOTS only once it is attached;
			// Warm can load scripts only on the nodes the map names.
			ctx := context.Background()
			if !redistest.Eventually(ctx, 10*time.Second, func() bool {
				slots, err := w.nodes[0].ClusterSlots(ctx).Result()
				seen := map[string]bool{}
				for _, r := range slots {
					for _, n := range r.Nodes {
						seen[n.Addr] = true
					}
				}
				return err == nil && len(seen) == len(w.nodes)
			}) {
				t.Fatal("CLUSTER SLOTS never listed every node")
			}
			return w
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			topo := tc.start(t)
			opts := topo.opts
			opts.Timeout = 100 * time.Millisecond

			// Seed through another client, then flush every script cache:
			// the store under test starts as sessiongate does, cold.
			seeder := redisClientFixture(t, RedisOptions{URL: opts.URL, ClusterAddrs: opts.ClusterAddrs, Timeout: time.Second}).store
			var refs []string
			for i := range 12 {
				s := newSession(t, fmt.Sprintf("warm-%d", i), time.Minute, time.Hour)
				mustCreate(t, seeder, s, Limit{})
				refs = append(refs, s.Ref)
			}
			for _, n := range topo.nodes {
				if err := n.ScriptFlush(ctx).Err(); err != nil {
					t.Fatal(err)
				}
			}

			rdb, err := opts.NewClient()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { rdb.Close() })
			store := NewRedisStore(rdb)
			// Warm runs with the client's 100 ms command timeout; on a
			// loaded machine one attempt may time out, and serve retries
			// it through the readiness probe, so the test does too.
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			for err := store.Warm(wctx); err != nil; err = store.Warm(wctx) {
				if wctx.Err() != nil {
					t.Fatalf("warm-up never succeeded: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			for i, n := range topo.nodes {
				for _, sc := range scripts {
					ok, err := n.ScriptExists(ctx, sc.Hash()).Result()
					if err != nil || !ok[0] {
						t.Fatalf("node %d: script %s not loaded by Warm: %v %v", i, sc.Hash(), ok, err)
					}
				}
			}
			// The warm pool fills in the background; wait for it so a
			// background dial is not mistaken for one the Touch made.
			want := uint32(minIdleConns * len(topo.nodes))
			if !redistest.Eventually(ctx, 5*time.Second, func() bool { return rdb.PoolStats().IdleConns >= want }) {
				t.Fatalf("warm pool: %d idle connections, want %d", rdb.PoolStats().IdleConns, want)
			}
			for _, n := range topo.nodes {
				if err := n.ConfigResetStat(ctx).Err(); err != nil {
					t.Fatal(err)
				}
			}

			touches := len(refs)
			if tc.name == "standalone" {
				touches = 1 // the very first call after startup
			}
			for _, ref := range refs[:touches] {
				tctx, cancel := context.WithTimeout(ctx, opts.Timeout)
				_, err := store.Touch(tctx, ref)
				cancel()
				if err != nil {
					t.Fatalf("first touch: %v", err)
				}
			}

			calls, dials := map[string]int64{}, int64(0)
			for _, n := range topo.nodes {
				for cmd, c := range commandCalls(t, n) {
					calls[cmd] += c
				}
				dials += infoInt(t, n, "stats", "total_connections_received")
			}
			// CONFIG RESETSTAT and INFO are this test's own; commandstats
			// also count the commands the touch script runs inside Redis,
			// which cost no round trip.
			for _, own := range []string{"config|resetstat", "info", "get", "time", "pexpireat", "del"} {
				delete(calls, own)
			}
			if len(calls) != 1 || calls["evalsha"] != int64(touches) {
				t.Errorf("%d first touches reached Redis as %v, want exactly %d evalsha", touches, calls, touches)
			}
			if dials != 0 {
				t.Errorf("first touches dialled %d new connections, want 0 (warm pool)", dials)
			}
		})
	}
}

// TestRedisNoscriptFallbackReloads flushes the script cache under a warm
// store, as a restart or a promoted Sentinel replica does: the next Touch
// must still answer within redis.timeout (EVAL fallback on the same
// deadline), and the NOSCRIPT must have reloaded every script, so the
// store's other scripts are back to one round trip too.
func TestRedisNoscriptFallbackReloads(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb, err := NewRedisClient(srv.URL(), 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	store := NewRedisStore(rdb)
	if err := store.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	s := newSession(t, "noscript", time.Minute, time.Hour)
	mustCreate(t, store, s, Limit{})
	raw := srv.Client()
	if err := raw.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	e, err := store.Touch(tctx, s.Ref)
	cancel()
	if err != nil || e.Ref != s.Ref {
		t.Fatalf("touch after SCRIPT FLUSH: %+v %v", e, err)
	}
	hashes := make([]string, len(scripts))
	for i, sc := range scripts {
		hashes[i] = sc.Hash()
	}
	if !redistest.Eventually(ctx, 3*time.Second, func() bool {
		ok, err := raw.ScriptExists(ctx, hashes...).Result()
		if err != nil {
			return false
		}
		for _, b := range ok {
			if !b {
				return false
			}
		}
		return true
	}) {
		t.Fatal("scripts not reloaded after NOSCRIPT")
	}
	if !redistest.Eventually(ctx, 3*time.Second, func() bool { return !store.reloading.Load() }) {
		t.Fatal("script reload still running")
	}
}

// commandCalls reads INFO commandstats: calls per command.
func commandCalls(t *testing.T, c *redis.Client) map[string]int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\r\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok || !strings.HasPrefix(line, "cmdstat_") {
			continue
		}
		n, _, _ := strings.Cut(rest, ",")
		v, err := strconv.ParseInt(n, 10, 64)
		if err != nil {
			t.Fatalf("commandstats line %q: %v", line, err)
		}
		out[name] = v
	}
	return out
}

// infoInt reads one integer field of an INFO section.
func infoInt(t *testing.T, c *redis.Client, section, field string) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), section).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("INFO %s %s=%q: %v", section, field, v, err)
			}
			return n
		}
	}
	t.Fatalf("INFO %s has no %s", section, field)
	return 0
}

// TestRedisPingWarmsUpLate starts the store while Redis is down, as a
// sessiongate started before its Redis: Warm fails, and the first Ping that
// reaches Redis (serve's readiness probe) must do the warm-up then.
func TestRedisPingWarmsUpLate(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	srv.Stop()
	rdb, err := NewRedisClient(srv.URL(), 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	store := NewRedisStore(rdb)
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if err := store.Warm(wctx); err == nil {
		t.Fatal("Warm succeeded with Redis down")
	}
	if err := store.Ping(wctx); err == nil {
		t.Fatal("Ping succeeded with Redis down")
	}

	srv.Restart()
	if !redistest.Eventually(ctx, 5*time.Second, func() bool {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		return store.Ping(pctx) == nil
	}) {
		t.Fatal("Ping never succeeded after Redis came back")
	}
	for _, sc := range scripts {
		ok, err := srv.Client().ScriptExists(ctx, sc.Hash()).Result()
		if err != nil || !ok[0] {
			t.Errorf("script %s not loaded by the first successful Ping: %v %v", sc.Hash(), ok, err)
		}
	}
}
