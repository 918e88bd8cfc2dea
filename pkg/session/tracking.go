package session

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The invalidation link. On each master sessiongate keeps one dedicated
// connection that, before it subscribes to __redis__:invalidate, runs
//
//	CLIENT TRACKING ON REDIRECT <its own id> BCAST PREFIX sg:s:
//
// so Redis sends it, as RESP2 Pub/Sub messages, the name of every sg:s: key
// any client changes (writes, deletes, expiries, evictions; a flush sends
// none and is read as the link failing). Tracking state lives and dies with
// that one connection: if it drops, Redis forgets it, and the reader sees
// the drop at once and empties the cache. There is no second connection
// whose silent loss could leave the cache without invalidations.
//
// Liveness is proven, not assumed: the reader sends a PING every
// cacheHeartbeat on the same connection and the cache serves entries only
// until cacheLease after the send time of the last PING answered. Replies
// come in order, so that answer means every invalidation sent before it has
// been applied.
const (
	invalidateChannel = "__redis__:invalidate"
	cacheHeartbeat    = 100 * time.Millisecond
	cacheLease        = 500 * time.Millisecond
	// silentLimit is how long a reader waits for any message before it
	// gives the connection up and reconnects (dropping the cache). Longer
	// than the lease: a machine stalled for a moment only pauses serving.
	silentLimit = 2 * time.Second
	// trackRetry paces reconnects while a node is unreachable.
	trackRetry = 100 * time.Millisecond
	// topologyEvery is how often the tracker compares the nodes it
	// listens to with the nodes the data client writes to.
	topologyEvery = 250 * time.Millisecond
)

// tracker runs one invalidation reader per master and feeds the cache.
type tracker struct {
	cache *localCache
	// masters lists the nodes to track: each entry's options reach one
	// master (for Sentinel, whichever the data client's Sentinel names).
	masters func(ctx context.Context) (map[string]*redis.Options, error)
	// dataAddr is the address of the node the data client last dialled
	// (Sentinel and standalone); empty when unknown or in Cluster.
	dataAddr func() string

	mu    sync.Mutex
	nodes map[string]*trackedNode

	stop context.CancelFunc
	done sync.WaitGroup
}

// trackedNode is one master's invalidation connection.
type trackedNode struct {
	t      *tracker
	key    string
	client *redis.Client
	// remote is the address the current connection was dialled to.
	remote atomic.Pointer[string]
	// ps is the current subscription, closed to force a reconnect.
	ps atomic.Pointer[redis.PubSub]
	// guard is the current connection, as the Check path inspects it.
	guard atomic.Pointer[guardConn]
	// freshAt is the send time of the last answered PING on the current
	// connection; 0 while the node is not confirmed. Guarded by t.mu.
	freshAt int64
	// Pings in flight: send time by sequence number; pings sent before the
	// current subscription was confirmed are ignored.
	pingMu  sync.Mutex
	seq     uint64
	subSeq  uint64
	pending map[uint64]int64
	waiters map[uint64]chan struct{}
	cancel  context.CancelFunc
}

func newTracker(c *localCache, masters func(context.Context) (map[string]*redis.Options, error), dataAddr func() string) *tracker {
	ctx, cancel := context.WithCancel(context.Background())
	t := &tracker{cache: c, masters: masters, dataAddr: dataAddr, nodes: map[string]*trackedNode{}, stop: cancel}
	t.done.Go(func() { t.watch(ctx) })
	return t
}

// close stops every reader and closes their connections.
func (t *tracker) close() {
	t.stop()
	t.cache.dropAll() // before any connection closes (see guardConn)
	t.mu.Lock()
	nodes := t.nodes
	t.nodes = nil
	t.mu.Unlock()
	for _, n := range nodes {
		n.cancel()
		// A reader blocked in Read does not see ctx; closing unblocks it.
		if ps := n.ps.Load(); ps != nil {
			ps.Close()
		}
	}
	t.done.Wait()
	for _, n := range nodes {
		n.client.Close()
	}
	t.cache.dropAll()
}

// watch keeps the set of readers equal to the set of masters. Any change
// (a Cluster failover or resharding onto new nodes, a Sentinel failover)
// drops the cache: a new master holds no tracking state for us.
func (t *tracker) watch(ctx context.Context) {
	tick := time.NewTicker(topologyEvery)
	defer tick.Stop()
	for {
		t.sync(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (t *tracker) sync(ctx context.Context) {
	mctx, cancel := context.WithTimeout(ctx, time.Second)
	want, err := t.masters(mctx)
	cancel()
	if err != nil {
		return // keep what there is; a dead node's reader fails by itself
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.nodes == nil {
		return
	}
	changed := false
	for k, n := range t.nodes {
		if _, ok := want[k]; !ok {
			t.cache.dropAll() // before the connection closes (see guardConn)
			n.cancel()
			n.client.Close()
			delete(t.nodes, k)
			changed = true
		}
	}
	for k, o := range want {
		if _, ok := t.nodes[k]; !ok {
			t.nodes[k] = t.start(ctx, k, o)
			changed = true
		}
	}
	// Sentinel: the data client follows a failover by dialling the new
	// master; a reader still on the old one (demoted or cut off, but
	// answering) would never hear of the new master's writes.
	if da := t.dataAddr(); da != "" {
		for _, n := range t.nodes {
			if ra := n.remote.Load(); ra != nil && *ra != da {
				n.remote.Store(nil)
				n.freshAt = 0
				t.cache.dropAll() // before the connection closes (see guardConn)
				if ps := n.ps.Load(); ps != nil {
					ps.Close() // the reader fails and reconnects through the client's Sentinel
				}
				changed = true
			}
		}
	}
	if changed {
		t.cache.dropAll()
		t.publishLocked()
	}
}

// start makes the dedicated client of one node and its reader.
func (t *tracker) start(ctx context.Context, key string, base *redis.Options) *trackedNode {
	o := *base
	o.Protocol = 2 // invalidations as Pub/Sub messages on the subscribed connection
	o.PoolSize = 1
	o.MinIdleConns = 0
	o.MaxIdleConns = 0
	n := &trackedNode{t: t, key: key, pending: map[uint64]int64{}, waiters: map[uint64]chan struct{}{}}
	dial := o.Dialer // set by go-redis when the client was made: TLS, or Sentinel's master
	o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		cn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		ra := cn.RemoteAddr().String()
		n.remote.Store(&ra)
		g := newGuardConn(cn)
		n.guard.Store(g)
		return g, nil
	}
	o.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
		id, err := cn.ClientID(ctx).Result()
		if err != nil {
			return err
		}
		return cn.Do(ctx, "CLIENT", "TRACKING", "ON", "REDIRECT", id, "BCAST", "PREFIX", sessionPrefix).Err()
	}
	n.client = redis.NewClient(&o)
	nctx, cancel := context.WithCancel(ctx)
	n.cancel = cancel
	t.done.Go(func() { n.run(nctx) })
	return n
}

// run subscribes and reads until ctx ends, reconnecting after any failure.
func (n *trackedNode) run(ctx context.Context) {
	for ctx.Err() == nil {
		ps := n.client.Subscribe(ctx, invalidateChannel)
		n.ps.Store(ps)
		if ctx.Err() != nil { // closed between the check and the Store
			ps.Close()
			return
		}
		n.read(ctx, ps)
		ps.Close()
		n.down()
		select {
		case <-ctx.Done():
		case <-time.After(trackRetry):
		}
	}
}

// read handles one connection's messages; it returns when that connection
// fails, goes silent, or sends anything it does not expect.
func (n *trackedNode) read(ctx context.Context, ps *redis.PubSub) {
	hctx, stopPings := context.WithCancel(ctx)
	defer stopPings()
	subscribed := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, silentLimit)
		if err != nil {
			return // a timeout too: a live connection answers a PING every cacheHeartbeat
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" || m.Channel != invalidateChannel || subscribed {
				return
			}
			subscribed = true
			n.pingMu.Lock()
			n.subSeq = n.seq
			clear(n.pending)
			for _, ch := range n.waiters {
				close(ch) // sent on the previous connection, whose end dropped the cache
			}
			clear(n.waiters)
			n.pingMu.Unlock()
			n.t.done.Go(func() { n.pings(hctx, ps) })
		case *redis.Message:
			if m.Channel != invalidateChannel || !subscribed {
				return
			}
			if m.PayloadSlice == nil {
				n.invalidate(m.Payload)
			}
			for _, k := range m.PayloadSlice {
				n.invalidate(k)
			}
		case *redis.Pong:
			n.pong(m.Payload)
		default:
			return
		}
	}
}

func (n *trackedNode) invalidate(key string) {
	if ref, ok := strings.CutPrefix(key, sessionPrefix); ok {
		n.t.cache.invalidate(ref)
	}
}

// pings sends a PING every cacheHeartbeat, its payload a sequence number.
func (n *trackedNode) pings(ctx context.Context, ps *redis.PubSub) {
	tick := time.NewTicker(cacheHeartbeat)
	defer tick.Stop()
	for {
		n.pingMu.Lock()
		n.seq++
		seq := n.seq
		n.pending[seq] = n.t.cache.clock()
		n.pingMu.Unlock()
		if err := ps.Ping(ctx, strconv.FormatUint(seq, 10)); err != nil {
			return // the reader sees the failure too
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// pong confirms the link as of the matching PING's send time.
func (n *trackedNode) pong(payload string) {
	seq, err := strconv.ParseUint(payload, 10, 64)
	if err != nil {
		return
	}
	n.pingMu.Lock()
	sent, ok := n.pending[seq]
	delete(n.pending, seq)
	for s := range n.pending {
		if s < seq {
			delete(n.pending, s) // lost with a reconnect
		}
	}
	for s, ch := range n.waiters {
		if s <= seq {
			close(ch)
			delete(n.waiters, s)
		}
	}
	valid := ok && seq > n.subSeq
	n.pingMu.Unlock()
	if !valid {
		return
	}
	t := n.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.nodes[n.key] != n {
		return
	}
	if sent > n.freshAt {
		n.freshAt = sent
	}
	t.publishLocked()
}

// barrier returns once every invalidation Redis sent before it was called
// has been applied: a PING on each node's invalidation connection has been
// answered. Writes through this store call it before they return, so a
// revocation made here is never followed by a hit on the revoked record,
// whichever goroutine reads the invalidation. If it cannot confirm that by
// ctx's deadline it drops the whole cache, which is as good.
func (t *tracker) barrier(ctx context.Context) {
	t.mu.Lock()
	nodes := make([]*trackedNode, 0, len(t.nodes))
	for _, n := range t.nodes {
		nodes = append(nodes, n)
	}
	t.mu.Unlock()
	for _, n := range nodes {
		ch := n.ping(ctx)
		if ch == nil {
			t.cache.dropAll()
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.cache.dropAll()
			return
		}
	}
}

// ping sends one PING and returns a channel closed when it is answered (or
// the connection is replaced); nil if it could not be sent.
func (n *trackedNode) ping(ctx context.Context) chan struct{} {
	ps := n.ps.Load()
	if ps == nil {
		return nil
	}
	ch := make(chan struct{})
	n.pingMu.Lock()
	n.seq++
	seq := n.seq
	n.pending[seq] = n.t.cache.clock()
	n.waiters[seq] = ch
	n.pingMu.Unlock()
	if err := ps.Ping(ctx, strconv.FormatUint(seq, 10)); err != nil {
		return nil
	}
	return ch
}

// down marks the node unconfirmed and drops the cache: whatever tracking
// state the connection had is gone.
func (n *trackedNode) down() {
	t := n.t
	t.mu.Lock()
	defer t.mu.Unlock()
	n.freshAt = 0
	t.cache.dropAll()
	t.publishLocked()
}

// publishLocked sets how long the cache may serve: the oldest node
// confirmation plus the lease, or not at all while any node is unconfirmed.
func (t *tracker) publishLocked() {
	if len(t.nodes) == 0 {
		t.cache.setFreshUntil(0)
		return
	}
	oldest := int64(0)
	gs := make([]*guardConn, 0, len(t.nodes))
	for _, n := range t.nodes {
		g := n.guard.Load()
		if n.freshAt == 0 || g == nil {
			t.cache.setFreshUntil(0)
			return
		}
		if oldest == 0 || n.freshAt < oldest {
			oldest = n.freshAt
		}
		gs = append(gs, g)
	}
	if cur := t.cache.guards.Load(); cur == nil || !slices.Equal(*cur, gs) {
		t.cache.guards.Store(&gs)
	}
	t.cache.setFreshUntil(oldest + int64(cacheLease))
}

// up reports whether every node is confirmed (metrics).
func (t *tracker) up() bool { return t.cache.servable(t.cache.clock()) }

// trackedMasters lists the masters of a data client, keyed by address.
func trackedMasters(rdb redis.UniversalClient) func(context.Context) (map[string]*redis.Options, error) {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return func(ctx context.Context) (map[string]*redis.Options, error) {
			var mu sync.Mutex
			out := map[string]*redis.Options{}
			err := c.ForEachMaster(ctx, func(_ context.Context, m *redis.Client) error {
				mu.Lock()
				out[m.Options().Addr] = m.Options()
				mu.Unlock()
				return nil
			})
			return out, err
		}
	case *redis.Client:
		// Standalone, or Sentinel: the copied dialer asks the data
		// client's Sentinel for the current master on every dial.
		o := c.Options()
		return func(context.Context) (map[string]*redis.Options, error) {
			return map[string]*redis.Options{"master": o}, nil
		}
	}
	return func(context.Context) (map[string]*redis.Options, error) {
		return nil, errors.New("unsupported client")
	}
}

// dialWatch records the remote address of the data client's latest
// connection.
type dialWatch struct{ last atomic.Pointer[string] }

func (w *dialWatch) addr() string {
	if p := w.last.Load(); p != nil {
		return *p
	}
	return ""
}

func (w *dialWatch) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		cn, err := next(ctx, network, addr)
		if err == nil {
			ra := cn.RemoteAddr().String()
			w.last.Store(&ra)
		}
		return cn, err
	}
}
func (w *dialWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (w *dialWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
