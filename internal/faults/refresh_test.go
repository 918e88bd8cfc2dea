//go:build faults

package faults

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// A refresh is one Lua script on the family's slot. These scenarios run
// refreshes of many families in a loop while Redis stalls or its master
// is killed, then read Redis directly and hold every family to one of the
// two legal states: the token the client last got is still current (with
// its access session live), or exactly one successor is (its access
// session live, the client's token retired, the successor reachable from
// it through the grace). Never two live access sessions of one family,
// never a family record without its access session or the reverse.

const (
	refreshFamilies = 24
	// The grace outlasts the fault, so a client whose reply was lost can
	// still collect the successor afterwards, as a real client would retry.
	refreshGrace = time.Minute
)

// family is what a client knows of its family: every pair it was handed,
// latest last.
type family struct {
	ref   string
	pairs []session.Refreshed
}

func refreshStore(t *testing.T, o session.RedisOptions) *session.RedisStore {
	t.Helper()
	o.Timeout = storeTimeout
	rdb, err := o.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	st := session.NewRedisStore(rdb)
	t.Cleanup(func() { st.Close() })
	if !redistest.Eventually(context.Background(), 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return st.Warm(ctx) == nil
	}) {
		t.Fatal("warm up failed")
	}
	return st
}

func startFamilies(t *testing.T, st session.Store) []*family {
	t.Helper()
	p := session.RefreshPolicy{AccessIdle: time.Hour, AccessAbsolute: 2 * time.Hour, TTL: 24 * time.Hour, Idle: time.Hour, Grace: refreshGrace}
	fams := make([]*family, refreshFamilies)
	for i := range fams {
		var r session.Refreshed
		var err error
		if !redistest.Eventually(context.Background(), 5*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			r, _, err = st.CreateFamily(ctx, &session.Session{Subject: "refresh-fault", CreatedAt: time.Now().Truncate(time.Millisecond)}, session.Limit{}, p)
			return err == nil
		}) {
			t.Fatalf("create family: %v", err)
		}
		fams[i] = &family{ref: r.FamilyRef, pairs: []session.Refreshed{r}}
	}
	return fams
}

// refreshLoop refreshes every family over and over, each with its latest
// pair, until stop closes; it returns how many refreshes succeeded and
// failed.
//
// timeout bounds each refresh: redis.timeout, except in Cluster mode under
// -race, where picking an access session ID in the family's slot (about
// 16384 SHA-256 draws, ~2 ms in a plain build) alone takes longer.
func refreshLoop(st session.Store, fams []*family, stop <-chan struct{}, timeout time.Duration) (ok, failed *int64, done func()) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, failed = new(int64), new(int64)
	for _, f := range fams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				r, err := st.Refresh(ctx, f.pairs[len(f.pairs)-1].RefreshToken)
				cancel()
				mu.Lock()
				if err == nil {
					*ok++
					if r.ID != f.pairs[len(f.pairs)-1].ID {
						f.pairs = append(f.pairs, r)
					}
				} else {
					*failed++
				}
				mu.Unlock()
			}
		}()
	}
	return ok, failed, wg.Wait
}

func tokenRef(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:16])
}

// verifyFamilies reads the family records and every access session key on
// master and holds each family to a legal state, then has the client
// continue with its latest pair (retrying through the grace where its last
// reply may have been lost) and checks that it can.
func verifyFamilies(t *testing.T, st session.Store, rdb redis.UniversalClient, fams []*family) {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	live := map[string][]string{} // family ref → refs of its live access sessions
	scan := func(ctx context.Context, node *redis.Client) error {
		iter := node.Scan(ctx, 0, "sg:s:*", 1000).Iterator()
		for iter.Next(ctx) {
			k := iter.Val()
			v, err := node.Get(ctx, k).Result()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				return err
			}
			if i := strings.Index(v, `"fam":"`); i >= 0 {
				fam := v[i+7 : i+7+session.FamilyRefLen]
				mu.Lock()
				live[fam] = append(live[fam], strings.TrimPrefix(k, "sg:s:"))
				mu.Unlock()
			}
		}
		return iter.Err()
	}
	var err error
	if c, ok := rdb.(*redis.ClusterClient); ok {
		err = c.ForEachMaster(ctx, scan)
	} else {
		err = scan(ctx, rdb.(*redis.Client))
	}
	if err != nil {
		t.Fatal(err)
	}
	var current, successor int
	for _, f := range fams {
		rec, err := rdb.HGetAll(ctx, "sg:f:{"+f.ref+"}").Result()
		if err != nil {
			t.Fatal(err)
		}
		accs := live[f.ref]
		if len(rec) == 0 {
			t.Errorf("family %s: record gone (access sessions %v): revoked without cause", f.ref, accs)
			continue
		}
		if len(accs) != 1 || accs[0] != rec["acc"] {
			t.Errorf("family %s: live access sessions %v, family names %s: want exactly that one", f.ref, accs, rec["acc"])
			continue
		}
		last := f.pairs[len(f.pairs)-1]
		switch {
		case rec["cur"] == tokenRef(last.RefreshToken):
			// The client's token is current: its access session is the live one.
			if rec["acc"] != last.Ref {
				t.Errorf("family %s: current token is the client's but the live session %s is not its %s", f.ref, rec["acc"], last.Ref)
			}
			current++
		case rec["prev"] == tokenRef(last.RefreshToken):
			// Exactly one successor, whose reply the client lost.
			if rec["acc"] == last.Ref {
				t.Errorf("family %s: rotated but the client's access session %s is still the live one", f.ref, last.Ref)
			}
			successor++
		default:
			t.Errorf("family %s: current token is neither the client's nor its one successor", f.ref)
			continue
		}
		// And the client carries on: its token yields a pair whose access
		// session is the family's live one (a rotation, or the successor
		// from the grace), and the family keeps exactly one.
		// Store errors are retried: the client may still be finding the
		// new master. A refresh error is final.
		var r session.Refreshed
		redistest.Eventually(ctx, 15*time.Second, func() bool {
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			r, err = st.Refresh(rctx, last.RefreshToken)
			return err == nil || errors.Is(err, session.ErrRefreshInvalid) || errors.Is(err, session.ErrRefreshReused)
		})
		if err != nil {
			t.Errorf("family %s: refresh after recovery: %v", f.ref, err)
			continue
		}
		if e, err := st.Touch(ctx, r.Ref); err != nil {
			t.Errorf("family %s: the pair after recovery does not resolve: %v (%+v)", f.ref, err, e)
		}
		if rec["prev"] == tokenRef(last.RefreshToken) && r.Ref != rec["acc"] {
			t.Errorf("family %s: the grace gave %s, not the live successor %s", f.ref, r.Ref, rec["acc"])
		}
	}
	t.Logf("FIGURES families=%d client-token-current=%d one-successor(reply lost)=%d", len(fams), current, successor)
}

// TestFaultRefreshRedisPaused stalls Redis with SIGSTOP for two seconds
// while refreshes run: every refresh caught in the stall times out at
// redis.timeout, and its script may still run after SIGCONT.
func TestFaultRefreshRedisPaused(t *testing.T) {
	srv := redistest.Start(t)
	st := refreshStore(t, session.RedisOptions{URL: srv.URL()})
	fams := startFamilies(t, st)
	stop := make(chan struct{})
	ok, failed, wait := refreshLoop(st, fams, stop, storeTimeout)

	time.Sleep(500 * time.Millisecond)
	srv.Pause()
	time.Sleep(2 * time.Second)
	// The clients give up while Redis is stopped, so the refreshes they
	// sent last are still queued on their connections: their scripts run
	// after SIGCONT, with nobody reading the reply.
	close(stop)
	wait()
	srv.Resume()
	time.Sleep(500 * time.Millisecond)
	if *failed == 0 {
		t.Error("no refresh failed while Redis was stopped: the fault did not bite")
	}
	t.Logf("FIGURES refreshes ok=%d failed=%d", *ok, *failed)
	verifyFamilies(t, st, srv.Client(), fams)
}

// TestFaultRefreshSentinelMasterKilled kills the master with SIGKILL while
// refreshes run, after the replica has every write so far; the sentinels
// promote the replica. The refreshes in flight at the kill either reached
// the replica whole or not at all (a script replicates as one unit); one
// whose reply was lost leaves exactly one successor for the grace to hand
// out. A refresh the old master applied and acknowledged but never
// replicated would be lost by Redis (asynchronous replication): the test
// would report it as a family whose current token is not the client's.
func TestFaultRefreshSentinelMasterKilled(t *testing.T) {
	sn := redistest.StartSentinel(t)
	st := refreshStore(t, session.RedisOptions{SentinelMaster: redistest.SentinelMaster, SentinelAddrs: sn.Addrs()})
	fams := startFamilies(t, st)
	ctx := context.Background()
	master := replicatedMaster(t, sn)
	stop := make(chan struct{})
	ok, failed, wait := refreshLoop(st, fams, stop, storeTimeout)

	time.Sleep(500 * time.Millisecond)
	master.Stop() // SIGKILL: the refreshes in flight die with it, applied or not
	// And the refreshes keep coming for a while, as apps' do: each finds
	// the master gone (until the sentinels promote the replica) and fails,
	// so the fault bites even when none happened to be in flight at the kill.
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wait()
	next, err := sn.WaitNewMaster(ctx, master, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if *failed == 0 {
		t.Error("no refresh failed while the master was down: the fault did not bite")
	}
	t.Logf("FIGURES refreshes ok=%d failed=%d", *ok, *failed)
	verifyFamilies(t, st, next.Client(), fams)
}

// TestFaultRefreshClusterMasterKilled kills, while refreshes run, the
// Cluster master that serves the first family's slot (the slot of all its
// keys, access sessions included); its replica is promoted after
// cluster-node-timeout. The other families live on other masters or the
// same one and are judged alike.
func TestFaultRefreshClusterMasterKilled(t *testing.T) {
	c := redistest.StartCluster(t)
	st := refreshStore(t, session.RedisOptions{ClusterAddrs: c.Addrs()[:1]})
	fams := startFamilies(t, st)
	ctx := context.Background()
	victim, replicas, err := c.MasterOf(ctx, "sg:f:{"+fams[0].ref+"}")
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
	stop := make(chan struct{})
	ok, failed, wait := refreshLoop(st, fams, stop, time.Second)

	time.Sleep(2 * time.Second)
	victim.Stop() // SIGKILL
	close(stop)
	wait()
	if err := c.WaitHealthy(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("FIGURES refreshes ok=%d failed=%d", *ok, *failed)
	check := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{replicas[0].Addr}})
	t.Cleanup(func() { check.Close() })
	if !redistest.Eventually(ctx, 15*time.Second, func() bool {
		return check.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return n.Ping(ctx).Err() }) == nil
	}) {
		t.Fatal("cluster not reachable after the failover")
	}
	verifyFamilies(t, st, check, fams)
}
