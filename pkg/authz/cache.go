package authz

import (
	"errors"
	"hash/maphash"
	"sync"
	"time"
)

// tokenCache keeps signed tokens so a session is signed for at most once per
// (session version, audience, signing key, token shape) and half a token
// lifetime, not
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
	// signing holds the signatures in progress, so that Checks racing on a
	// session whose token is missing wait for one signature instead of
	// each signing their own (see getOrSign).
	signing map[cacheKey]*signCall
}

// signCall is one signature in progress; e and err are set before done is
// closed.
type signCall struct {
	done chan struct{}
	e    cached
	err  error
}

type cacheKey struct {
	ref      string
	version  uint64
	audience string
	kid      string
	by       callerKind // what ref names
	// shape is the token shape's id (shape.go): which claims and roles the
	// token carries. 0, the default, carries all of them.
	shape uint64
}

// callerKind says what a cache key's ref names, so that a session ref, a
// credential ref and a service name can never stand for one another.
type callerKind uint8

const (
	bySession    callerKind = iota
	byCredential            // ref is a service credential's ref
	byPrincipal             // ref is a service name, from an mTLS principal
)

// cached is what a Check needs from a session when its token is cached:
// the token, and what it needs for the role check and access logs.
type cached struct {
	token   string
	roles   []string
	refresh time.Time // re-sign after this
	expires time.Time // token's exp
	// parts are the allow answer's pieces fixed by this token, built once
	// when it is signed and shared by every answer that carries it (see
	// Server.ok).
	parts *okParts
	// origin is where the session was created, for the binding (binding.go).
	origin origin
	// tooLarge: the token signed was over Options.TokenMaxBytes, so there
	// is none (token and parts are empty) and the answer is a 403 until
	// the entry is refreshed; remembered so a refusal costs no signature.
	tooLarge bool
	// warned: the token is over Options.TokenWarnBytes and that was
	// logged, for this key, by this entry or the one it refreshed.
	warned bool
}

func newTokenCache(maxEntries int) *tokenCache {
	c := &tokenCache{seed: maphash.MakeSeed(), max: max(maxEntries/cacheShards, 1)}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]cached)
		c.shards[i].signing = make(map[cacheKey]*signCall)
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

// getOrSign returns the entry for k, calling sign to make it when there is
// none, at most once at a time per key: concurrent callers for the same key
// wait for that one call and share its result, error included (a failed
// signature fails every Check waiting on it, closed). signed reports
// whether this caller's sign ran. sign runs without the shard lock held and
// is given the stale entry it replaces, if any (else the zero value), so
// what an entry remembers (warned) outlives its refresh.
func (c *tokenCache) getOrSign(k cacheKey, now time.Time, sign func(prev cached) (cached, error)) (e cached, signed bool, err error) {
	s := c.shard(k)
	s.mu.Lock()
	prev, ok := s.m[k]
	if ok && now.Before(prev.refresh) {
		s.mu.Unlock()
		return prev, false, nil
	}
	if call, ok := s.signing[k]; ok {
		s.mu.Unlock()
		<-call.done
		return call.e, false, call.err
	}
	call := &signCall{done: make(chan struct{})}
	s.signing[k] = call
	s.mu.Unlock()
	// Deferred so that waiters are released even if sign panics.
	defer func() {
		s.mu.Lock()
		delete(s.signing, k)
		if call.err == nil {
			c.putLocked(s, k, &call.e, now)
		}
		s.mu.Unlock()
		close(call.done)
	}()
	call.err = errSignPanicked
	call.e, call.err = sign(prev)
	return call.e, true, call.err
}

func (c *tokenCache) put(k cacheKey, e cached, now time.Time) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	c.putLocked(s, k, &e, now)
}

// putLocked stores e with s.mu held.
func (c *tokenCache) putLocked(s *cacheShard, k cacheKey, e *cached, now time.Time) {
	if len(s.m) >= c.max {
		// Sweep what is stale; if the shard is still full, drop arbitrary
		// entries. Either way the cost is a re-sign, never a wrong answer.
		// Dropping down to 7/8 of the bound, not just below it, keeps a
		// full cache from paying a whole-shard scan on every put.
		for key, v := range s.m {
			if !now.Before(v.refresh) {
				delete(s.m, key)
			}
		}
		for key := range s.m {
			if len(s.m) < c.max-c.max/8 {
				break
			}
			delete(s.m, key)
		}
	}
	s.m[k] = *e
}

// errSignPanicked is what Checks waiting on a signature get if the signing
// call panicked instead of returning.
var errSignPanicked = errors.New("token signing did not complete")
