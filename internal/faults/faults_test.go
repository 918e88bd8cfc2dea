//go:build faults

package faults

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// checkRate is the steady Check load during every fault scenario.
const checkRate = 400

// TestFaultRedisPaused stalls Redis with SIGSTOP for two seconds under load:
// connections stay open and nothing answers, the worst case for a client
// without deadlines. Every Check must answer within redis.timeout.
func TestFaultRedisPaused(t *testing.T) {
	srv := redistest.Start(t)
	r := newRig(t, session.RedisOptions{URL: srv.URL()})
	r.seed(200, 40, 40)
	l, before := r.startLoad()

	srv.Pause()
	time.Sleep(2 * time.Second)
	srv.Resume()
	lifted := time.Now()
	time.Sleep(2 * time.Second)
	f := l.Stop()

	if f.Unavailable == 0 {
		t.Error("no 503 while Redis was stopped: the fault did not bite")
	}
	t.Log("503s by start, relative to SIGCONT:", outageShape(f, lifted))
	s := scenario{Name: "Redis SIGSTOP 2 s, then SIGCONT", Figures: f,
		Note: "recovery counted from SIGCONT"}
	s = r.conclude(t, l, s, lifted, before)
	if s.Recovery > time.Second {
		t.Errorf("recovered %v after SIGCONT", s.Recovery)
	}
}

// TestFaultRedisKilledAndRestarted kills Redis with SIGKILL under load and
// starts it again a second later. It runs with appendfsync always, so Redis
// itself loses nothing: every session must be back, every revocation must
// still hold.
func TestFaultRedisKilledAndRestarted(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	r := newRig(t, session.RedisOptions{URL: srv.URL()})
	r.seed(200, 40, 40)
	l, before := r.startLoad()
	r.revoke(nil) // a revocation under load, before the crash

	srv.Stop() // SIGKILL
	time.Sleep(time.Second)
	srv.Restart()
	lifted := time.Now()
	time.Sleep(3 * time.Second)
	r.revoke(nil) // and one after
	time.Sleep(time.Second)
	f := l.Stop()

	if f.Unavailable == 0 {
		t.Error("no 503 while Redis was down: the fault did not bite")
	}
	t.Log("503s by start, relative to the restart:", outageShape(f, lifted))
	s := scenario{Name: "Redis SIGKILL, restarted after 1 s (AOF, fsync always)", Figures: f,
		Note: "recovery counted from the restart"}
	s = r.conclude(t, l, s, lifted, before)
	// go-redis probes a dead address once a second before dialling again.
	if s.Recovery > 2*time.Second {
		t.Errorf("recovered %v after the restart", s.Recovery)
	}
}

// TestFaultSentinelFailover fails the master over to its replica with
// SENTINEL FAILOVER while Checks run. Before the failover the test waits
// until the replica has acknowledged every write (sessions and
// revocations): Redis replicates asynchronously, and a write the replica
// never received is lost by Redis, not by sessiongate.
func TestFaultSentinelFailover(t *testing.T) {
	st := redistest.StartSentinel(t)
	r := newRig(t, session.RedisOptions{SentinelMaster: redistest.SentinelMaster, SentinelAddrs: st.Addrs()})
	r.seed(200, 40, 40)
	l, before := r.startLoad()
	r.revoke(nil)

	ctx := context.Background()
	master := replicatedMaster(t, st)
	start := time.Now()
	next, err := st.Failover(ctx, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	done := time.Since(start)
	f := r.afterFailover(t, l)

	s := scenario{Name: "Sentinel failover (SENTINEL FAILOVER) under load", Figures: f,
		Note: "failover " + master.Addr + "→" + next.Addr + " complete (all sentinels agree, old master resynced) in " + done.Round(time.Millisecond).String() + "; recovery counted from the command"}
	s = r.conclude(t, l, s, start, before)
	if s.Recovery > 5*time.Second {
		t.Errorf("recovered %v after the failover started", s.Recovery)
	}
}

// TestFaultSentinelMasterKilled kills the master with SIGKILL while Checks
// run: the sentinels see it down after down-after-milliseconds (1 s) and
// promote the replica, and the client must follow without a restart. As in
// TestFaultSentinelFailover, the test first waits until the replica has
// every write, so any lost session would be sessiongate's.
func TestFaultSentinelMasterKilled(t *testing.T) {
	st := redistest.StartSentinel(t)
	r := newRig(t, session.RedisOptions{SentinelMaster: redistest.SentinelMaster, SentinelAddrs: st.Addrs()})
	r.seed(200, 40, 40)
	l, before := r.startLoad()
	r.revoke(nil)

	ctx := context.Background()
	master := replicatedMaster(t, st)
	start := time.Now()
	master.Stop() // SIGKILL
	next, err := st.WaitNewMaster(ctx, master, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	promoted := time.Since(start)
	f := r.afterFailover(t, l)

	t.Log("503s by start, relative to the kill:", outageShape(f, start))
	s := scenario{Name: "Sentinel master SIGKILL, replica promoted by the sentinels", Figures: f,
		Note: "master " + master.Addr + " killed, " + next.Addr + " promoted (all sentinels agree) in " + promoted.Round(time.Millisecond).String() + "; recovery counted from the kill"}
	s = r.conclude(t, l, s, start, before)
	// down-after-milliseconds 1 s, then an election and the client's switch.
	if s.Recovery > 10*time.Second {
		t.Errorf("recovered %v after the kill", s.Recovery)
	}
}

// TestFaultClusterMasterKilled kills one of three Cluster masters with
// SIGKILL under load; its replica is promoted after cluster-node-timeout
// (1 s). As with Sentinel, the test first waits until every replica has
// acknowledged every write.
func TestFaultClusterMasterKilled(t *testing.T) {
	c := redistest.StartCluster(t)
	r := newRig(t, session.RedisOptions{ClusterAddrs: c.Addrs()[:1]})
	r.seed(300, 60, 40)
	l, before := r.startLoad()
	r.revoke(nil)

	ctx := context.Background()
	victim, replicas, err := c.MasterOf(ctx, session.RecordKey(session.RefOf(r.pool.Live()[0].ID)))
	if err != nil {
		t.Fatal(err)
	}
	if len(replicas) == 0 {
		t.Fatal("victim master has no replica")
	}
	for _, n := range c.Nodes {
		if n.Running() && role(ctx, n) == "master" {
			if err := redistest.WaitReplicated(ctx, n, 5*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	start := time.Now()
	victim.Stop() // SIGKILL
	if err := c.WaitHealthy(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	promoted := time.Since(start)
	f := r.afterFailover(t, l)

	t.Log("503s by start, relative to the kill:", outageShape(f, start))
	s := scenario{Name: "Cluster master SIGKILL, replica promoted", Figures: f,
		Note: "replica " + replicas[0].Addr + " promoted, cluster_state ok in " + promoted.Round(time.Millisecond).String() + "; recovery counted from the kill"}
	s = r.conclude(t, l, s, start, before)
	// Without the slot-map refresh on errors (session.clusterRefresh),
	// go-redis keeps routing to the dead master for up to 60 s.
	if s.Recovery > 8*time.Second {
		t.Errorf("recovered %v after the kill", s.Recovery)
	}
}

func role(ctx context.Context, s *redistest.Server) string {
	info, err := s.Client().Info(ctx, "replication").Result()
	if err != nil {
		return ""
	}
	if strings.Contains(info, "role:master") {
		return "master"
	}
	return "replica"
}

// TestFaultRedisMaxmemory fills Redis to maxmemory with noeviction under
// load. New sessions must fail cleanly (503, nothing half-made), while
// Checks of existing sessions keep working, including the idle-expiry slide
// (PEXPIREAT does not allocate, so Redis allows it when full), and
// revocation keeps working (GETDEL, DEL and ZREM free memory).
func TestFaultRedisMaxmemory(t *testing.T) {
	srv := redistest.Start(t, "--maxmemory-policy", "noeviction")
	r := newRig(t, session.RedisOptions{URL: srv.URL()})
	r.seed(200, 40, 40)
	ctx := context.Background()
	raw := srv.Client()
	// A session with a short idle timeout, to watch its TTL slide.
	code, short := r.create("short-idle", map[string]any{"idle_timeout": "10s"})
	if code != http.StatusCreated {
		t.Fatalf("create: %d", code)
	}
	// Kept out of the pool until its TTL has been watched: a Check from
	// the load would slide it too and hide whether this one did.
	shortEntry := &Entry{ID: short.SessionID}
	shortKey := session.RecordKey(short.SessionRef)

	l, before := r.startLoad()

	used, err := usedMemory(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.ConfigSet(ctx, "maxmemory", itoa(used+256<<10)).Err(); err != nil {
		t.Fatal(err)
	}
	filled := 0
	for i := 0; ; i++ {
		err := raw.Set(ctx, "junk:"+itoa(int64(i)), strings.Repeat("x", 16<<10), 0).Err()
		if err != nil {
			if !strings.Contains(err.Error(), "OOM") {
				t.Fatalf("filling: %v", err)
			}
			break
		}
		filled++
	}
	// A refused write frees its own query buffer, so memory may now sit
	// just under the limit, where Redis accepts small writes again. Pin
	// the limit below what is used: from here every write that allocates
	// is refused with OOM, as on a Redis that stays full.
	used, err = usedMemory(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.ConfigSet(ctx, "maxmemory", itoa(used-128<<10)).Err(); err != nil {
		t.Fatal(err)
	}
	full := time.Now()

	creates503 := 0
	for i := range 20 {
		code, _ := r.create("at-maxmemory", nil)
		switch code {
		case http.StatusServiceUnavailable:
			creates503++
		default:
			t.Errorf("create %d at maxmemory: %d, want 503", i, code)
		}
	}
	if n, err := r.store.List(ctx, "at-maxmemory"); err != nil || len(n) != 0 {
		t.Errorf("failed creates left sessions behind: %v %v", n, err)
	}

	// The idle expiry still slides: PEXPIREAT is allowed at maxmemory.
	time.Sleep(1500 * time.Millisecond)
	ttlBefore := raw.PTTL(ctx, shortKey).Val()
	if got := l.CheckOne(ctx, shortEntry); got != 200 {
		t.Errorf("check at maxmemory: %d", got)
	}
	ttlAfter := raw.PTTL(ctx, shortKey).Val()
	if ttlAfter <= ttlBefore+time.Second {
		t.Errorf("idle expiry did not slide at maxmemory: TTL %v before the Check, %v after", ttlBefore, ttlAfter)
	}
	r.pool.AddLive(short.SessionID)
	if !r.revoke(nil) {
		t.Error("revocation at maxmemory failed")
	}
	time.Sleep(time.Second)

	if err := raw.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	lifted := time.Now()
	var recovery time.Duration
	if !redistest.Eventually(ctx, 5*time.Second, func() bool {
		code, s := r.create("after-maxmemory", nil)
		if code == http.StatusCreated {
			recovery = time.Since(lifted)
			r.pool.AddLive(s.SessionID)
			return true
		}
		return false
	}) {
		t.Error("creates did not recover after maxmemory was lifted")
	}
	time.Sleep(time.Second)
	f := l.Stop()

	if f.Unavailable != 0 {
		t.Errorf("%d Checks answered 503 at maxmemory; reads and TTL slides must keep working", f.Unavailable)
	}
	s := scenario{Name: "Redis at maxmemory, noeviction", Figures: f, Recovery: recovery,
		Note: itoa(int64(creates503)) + "/20 creates → 503 while full (" + time.Since(full).Round(time.Second).String() + ", " + itoa(int64(filled)) + "×16 KiB junk" +
			"), Checks and TTL slide unaffected, revoke works; recovery = first 201 after maxmemory was raised"}
	s = r.conclude(t, l, s, time.Time{}, before)
}

// replicatedMaster returns the Sentinel-managed master once its replica has
// acknowledged every write so far: Redis replicates asynchronously, and a
// write the replica never received would be lost by Redis, not by
// sessiongate.
func replicatedMaster(t *testing.T, st *redistest.Sentinel) *redistest.Server {
	t.Helper()
	ctx := context.Background()
	master, err := st.Master(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := redistest.WaitReplicated(ctx, master, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	return master
}
