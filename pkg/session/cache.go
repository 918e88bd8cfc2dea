package session

import (
	"sync"
	"sync/atomic"
	"time"
)

// localCache holds session records by ref for RedisStore.Touch. It is kept
// exact by Redis: the tracker (tracking.go) subscribes to Redis's
// invalidation messages for every sg:s: key and drops the entry of each key
// Redis reports changed. Its rules:
//
//   - An entry is served only while the tracker has confirmed the
//     invalidation link: every node's subscription answered a heartbeat sent
//     less than cacheLease (500 ms) ago. A heartbeat answered means every
//     invalidation Redis sent before it has been applied (one connection,
//     in order), so a revocation is seen when its invalidation arrives, and
//     never later than cacheLease after Redis ran it, even over a link that
//     went silent.
//   - Everything is dropped whenever a node's invalidation connection fails
//     or is replaced (a reconnect, a failover, a Cluster topology change):
//     its tracking state died with it.
//   - A miss reads Redis. Its reply is kept only if no invalidation of that
//     key (and no drop of everything) came in between: the miss reserves a
//     placeholder before its read is sent, an invalidation removes it, and
//     the fill only replaces that same placeholder in the same generation.
//     A write after the read therefore always wins.
//   - Bounded: at most maxEntries refs; inserting into a full shard evicts
//     an arbitrary entry of that shard.
type localCache struct {
	base time.Time // clock origin: monotonic nanoseconds since base

	// gen changes whenever everything is dropped; a fill from an older
	// generation is discarded.
	gen atomic.Uint64
	// freshUntil is the clock reading until which entries may be served:
	// the oldest answered heartbeat across the nodes plus cacheLease; 0 (or
	// the past) while the link is not confirmed.
	freshUntil atomic.Int64
	// guards are the invalidation connections; an entry is served only
	// while every one is quiet (see guardConn).
	guards atomic.Pointer[[]*guardConn]

	shards   [cacheShards]cacheShard
	shardCap int

	hits, misses, invalidations atomic.Uint64

	// onInvalidate, if set (tests), is called after an invalidation dropped
	// an entry or a placeholder.
	onInvalidate func(ref string)
}

// cacheShards spreads the lock: Checks on 2 cores rarely contend, but the
// invalidation reader and the fills should not queue behind each other.
const cacheShards = 64

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]*cacheEntry
}

// cacheEntry is a filled record or, with ready false, the placeholder of a
// read in flight. Fields other than the atomics never change after the
// entry is in the map.
type cacheEntry struct {
	ready bool
	gen   uint64
	e     Entry
	raw   string
	// deadline is when Redis expires the key by its idle (or absolute)
	// expiry, on our clock: the entry is not served from then on.
	deadline atomic.Int64
	// slideAt is when the idle expiry should next be slid in Redis.
	slideAt atomic.Int64
	// sliding is set while a slide of this entry is queued or running.
	sliding atomic.Bool
}

func newLocalCache(maxEntries int) *localCache {
	c := &localCache{base: time.Now(), shardCap: max(1, (maxEntries+cacheShards-1)/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*cacheEntry)
	}
	return c
}

// clock is monotonic nanoseconds since the cache was made.
func (c *localCache) clock() int64 { return int64(time.Since(c.base)) }

func (c *localCache) shard(ref string) *cacheShard {
	// FNV-1a over the ref, which is already a uniform hex hash: a few bytes
	// are plenty.
	h := uint32(2166136261)
	for i := 0; i < len(ref) && i < 8; i++ {
		h = (h ^ uint32(ref[i])) * 16777619
	}
	return &c.shards[h%cacheShards]
}

// servable reports whether entries may be served at clock now.
func (c *localCache) servable(now int64) bool { return now < c.freshUntil.Load() }

// get returns the ready entry for ref if it may be served at clock now.
// The links are checked clear of ref before the lookup: every invalidation
// of ref that reached this process before then has been applied.
func (c *localCache) get(ref string, now int64) *cacheEntry {
	if !c.servable(now) {
		return nil
	}
	gs := c.guards.Load()
	if gs == nil {
		return nil
	}
	for _, g := range *gs {
		if !g.clear(ref) {
			return nil
		}
	}
	s := c.shard(ref)
	s.mu.RLock()
	p := s.m[ref]
	s.mu.RUnlock()
	if p == nil || !p.ready || now >= p.deadline.Load() {
		return nil
	}
	return p
}

// reserve puts a placeholder for ref before its read is sent; nil when the
// cache cannot take entries now.
func (c *localCache) reserve(ref string, now int64) *cacheEntry {
	gen := c.gen.Load()
	if !c.servable(now) {
		return nil
	}
	p := &cacheEntry{gen: gen}
	s := c.shard(ref)
	s.mu.Lock()
	c.makeRoom(s, ref)
	s.m[ref] = p
	s.mu.Unlock()
	return p
}

// fill replaces the placeholder p with the entry read for it, unless an
// invalidation or a drop of everything came in between.
func (c *localCache) fill(p *cacheEntry, e Entry, raw string, deadline, slideAt int64) {
	n := &cacheEntry{ready: true, gen: p.gen, e: e, raw: raw}
	n.deadline.Store(deadline)
	n.slideAt.Store(slideAt)
	s := c.shard(e.Ref)
	s.mu.Lock()
	if s.m[e.Ref] == p && c.gen.Load() == p.gen {
		s.m[e.Ref] = n
	}
	s.mu.Unlock()
}

// makeRoom evicts an arbitrary entry of a full shard. Called with s.mu held.
func (c *localCache) makeRoom(s *cacheShard, ref string) {
	if len(s.m) < c.shardCap {
		return
	}
	if _, ok := s.m[ref]; ok {
		return // replaced in place
	}
	for k := range s.m {
		delete(s.m, k)
		return
	}
}

// drop removes p if it is still ref's entry.
func (c *localCache) drop(ref string, p *cacheEntry) {
	s := c.shard(ref)
	s.mu.Lock()
	if s.m[ref] == p {
		delete(s.m, ref)
	}
	s.mu.Unlock()
}

// invalidate drops ref's entry or placeholder: Redis reported its key
// changed.
func (c *localCache) invalidate(ref string) {
	s := c.shard(ref)
	s.mu.Lock()
	p, ok := s.m[ref]
	if ok {
		delete(s.m, ref)
	}
	s.mu.Unlock()
	if ok && p.ready {
		c.invalidations.Add(1)
	}
	if ok && c.onInvalidate != nil {
		c.onInvalidate(ref)
	}
}

// dropAll stops serving, then drops every entry and placeholder. Serving
// resumes only when the tracker confirms the link again (setFreshUntil).
func (c *localCache) dropAll() {
	c.freshUntil.Store(0)
	c.gen.Add(1)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n := 0
		for _, p := range s.m {
			if p.ready {
				n++
			}
		}
		clear(s.m)
		s.mu.Unlock()
		c.invalidations.Add(uint64(n))
	}
}

// setFreshUntil records the latest confirmation of the link.
func (c *localCache) setFreshUntil(t int64) { c.freshUntil.Store(t) }

// len counts ready entries (tests).
func (c *localCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		for _, p := range s.m {
			if p.ready {
				n++
			}
		}
		s.mu.RUnlock()
	}
	return n
}
