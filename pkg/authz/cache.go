package authz

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// tokenCache keeps signed tokens so a session is signed for at most once per
// (session version, audience, signing key) and half a token lifetime, not
// once per request. It is consulted only after the store has confirmed the
// session on this very request, and it is keyed by the version the store
// returned, so a revoked or updated session can never be served from it.
type tokenCache struct {
	seed   maphash.Seed
	shards [cacheShards]cacheShard
	max    int // entries per shard
}

const cacheShards = 32

type cacheShard struct {
	mu sync.RWMutex
	m  map[cacheKey]cached
}

type cacheKey struct {
	ref      string
	version  uint64
	audience string
	kid      string
}

// cached is what a Check needs from a session when its token is cached:
// the token, and what it needs for the role check and access logs.
type cached struct {
	token   string
	subject string
	roles   []string
	refresh time.Time // re-sign after this
	expires time.Time // token's exp
	// shared holds the parts of the allow answer built from this token, so
	// a cache hit does not rebuild them (see Server.ok). Set by put: an
	// entry that never reached the cache builds its own.
	shared *atomic.Pointer[okParts]
}

func newTokenCache(maxEntries int) *tokenCache {
	c := &tokenCache{seed: maphash.MakeSeed(), max: max(maxEntries/cacheShards, 1)}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]cached)
	}
	return c
}

func (c *tokenCache) shard(k cacheKey) *cacheShard {
	return &c.shards[maphash.String(c.seed, k.ref)%cacheShards]
}

func (c *tokenCache) get(k cacheKey, now time.Time) (cached, bool) {
	s := c.shard(k)
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	if !ok || !now.Before(e.refresh) {
		return cached{}, false
	}
	return e, true
}

func (c *tokenCache) put(k cacheKey, e cached, now time.Time) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= c.max {
		// Sweep what is stale; if the shard is still full, drop arbitrary
		// entries. Either way the cost is a re-sign, never a wrong answer.
		for key, v := range s.m {
			if !now.Before(v.refresh) {
				delete(s.m, key)
			}
		}
		for key := range s.m {
			if len(s.m) < c.max {
				break
			}
			delete(s.m, key)
		}
	}
	if e.shared == nil {
		e.shared = new(atomic.Pointer[okParts])
	}
	s.m[k] = e
}
