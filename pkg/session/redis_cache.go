package session

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"
)

// CacheOptions configure RedisStore's local session cache (see EnableCache).
type CacheOptions struct {
	// MaxEntries bounds the cached records (cache.max_entries).
	MaxEntries int
	// SlideInterval is how often at most a session's idle expiry is slid in
	// Redis (session.slide_interval). Zero: 1 % of the session's idle
	// timeout, at least 1 s. Either way at most a quarter of the idle
	// timeout, so a session in use never lapses between two slides.
	SlideInterval time.Duration
	// Timeout bounds each background slide batch (redis.timeout).
	Timeout time.Duration
}

// CacheStats are the cache's counters since EnableCache.
type CacheStats struct {
	Hits, Misses  uint64
	Invalidations uint64 // cached records dropped because Redis reported them changed, or on a reconnect
	TrackingUp    bool   // entries may be served now
}

// slideScript is the Check path's script when the cache is on. Like
// touchScript it returns the record and deletes one past its absolute
// expiry, but it slides the idle expiry only when that moves it by at least
// the slide interval (ARGV[1] ms, 0 for the default; the same rule as
// slideEvery) or up to the absolute expiry, so a session in steady use costs one write per slide interval,
// not one per request. It also returns the key's expiry and Redis's clock,
// from which the cache knows when Redis will expire the key.
var slideScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return false end
local abs, idle = string.match(v, '^1:%d+:(%d+):(%d+):')
if not abs then return {v, 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
abs = tonumber(abs)
if now >= abs then
  redis.call('DEL', KEYS[1])
  return false
end
idle = tonumber(idle)
local every = tonumber(ARGV[1])
if every == 0 then every = math.max(math.floor(idle / 100), 1000) end
every = math.min(every, math.floor(idle / 4))
local exp = now + idle
if exp > abs then exp = abs end
local cur = redis.call('PEXPIRETIME', KEYS[1])
if cur < 0 or exp - cur >= every or (exp == abs and cur < abs) then
  redis.call('PEXPIREAT', KEYS[1], exp)
  cur = exp
end
return {v, cur, now}
`)

var slideSHA any = slideScript.Hash()

// slideQueue bounds the slides waiting for the background slider; a full
// queue skips a slide, which the next Check asks for again.
const slideQueue = 4096

// slideBatch is the most slides sent in one pipeline.
const slideBatch = 256

// EnableCache turns on the local session cache: Touch answers from memory
// while Redis confirms the invalidation link, and slides idle expiries at
// most once per slide interval, in the background. Call it once, before the
// store is used; Close stops it. See localCache and tracking.go for the
// rules that keep it exact.
func (r *RedisStore) EnableCache(o CacheOptions) error {
	if o.MaxEntries < 1 {
		return fmt.Errorf("cache.max_entries: must be at least 1, got %d", o.MaxEntries)
	}
	if o.SlideInterval < 0 {
		return fmt.Errorf("session.slide_interval: must not be negative, got %v", o.SlideInterval)
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	c := newLocalCache(o.MaxEntries)
	dataAddr := func() string { return "" }
	if cl, ok := r.rdb.(*redis.Client); ok && cl.Options().Addr == "FailoverClient" {
		w := &dialWatch{}
		cl.AddHook(w)
		dataAddr = w.addr
	}
	r.cache = c
	r.cacheOpts = o
	r.slideArg = o.SlideInterval.Milliseconds()
	r.slides = make(chan *cacheEntry, slideQueue)
	r.slidesDone = make(chan struct{})
	r.tracker = newTracker(c, trackedMasters(r.rdb), dataAddr)
	go r.slider()
	return nil
}

// CacheStats reports the cache's counters; zero without a cache.
func (r *RedisStore) CacheStats() CacheStats {
	c := r.cache
	if c == nil {
		return CacheStats{}
	}
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Invalidations: c.invalidations.Load(),
		TrackingUp: c.servable(c.clock())}
}

// CacheEnabled reports whether EnableCache was called.
func (r *RedisStore) CacheEnabled() bool { return r.cache != nil }

// slideEvery is the slide interval for a session with the given idle timeout.
func (r *RedisStore) slideEvery(idle time.Duration) time.Duration {
	d := r.cacheOpts.SlideInterval
	if d == 0 {
		d = max(idle/100, time.Second)
	}
	return min(d, idle/4)
}

// touchCached is Touch with the cache on. A hit costs no Redis command; a
// slide that is due is queued for the slider. A miss runs slideScript and
// keeps the record if the cache can take it.
func (r *RedisStore) touchCached(ctx context.Context, c *localCache, ref string) (Entry, error) {
	now := c.clock()
	if p := c.get(ref, now); p != nil {
		// Redis enforces the absolute expiry with its own clock; check ours
		// too so a skewed Redis clock cannot extend a session.
		if !r.now().Before(p.e.ExpiresAt) {
			c.drop(ref, p)
			return Entry{}, ErrNotFound
		}
		if now >= p.slideAt.Load() && p.sliding.CompareAndSwap(false, true) {
			select {
			case r.slides <- p:
			default:
				p.sliding.Store(false)
			}
		}
		c.hits.Add(1)
		return p.e, nil
	}
	c.misses.Add(1)
	slot := c.reserve(ref, now)
	v, exp, rnow, err := r.slideTouch(ctx, sessionKey(ref))
	if err != nil {
		if slot != nil {
			c.drop(ref, slot)
		}
		if isNil(err) {
			return Entry{}, ErrNotFound
		}
		return Entry{}, wrap("touch session", err)
	}
	e, err := parseEntry(ref, v)
	if err != nil || !r.now().Before(e.ExpiresAt) {
		if slot != nil {
			c.drop(ref, slot)
		}
		if err != nil {
			return Entry{}, err
		}
		return Entry{}, ErrNotFound
	}
	if slot != nil {
		deadline, slideAt := r.expiries(e, now, exp, rnow)
		c.fill(slot, e, v, deadline, slideAt)
	}
	return e, nil
}

// expiries maps the key's Redis expiry (exp, read at Redis time rnow, both
// ms) onto the cache clock, counting from sent, a clock reading taken
// before the read was sent: when the entry stops being served, and when
// its next slide is due (never once the idle expiry has reached the
// absolute one).
func (r *RedisStore) expiries(e Entry, sent, exp, rnow int64) (deadline, slideAt int64) {
	deadline = sent + (exp-rnow)*int64(time.Millisecond)
	if exp >= e.ExpiresAt.UnixMilli() {
		return deadline, math.MaxInt64
	}
	return deadline, deadline - int64(e.idle) + int64(r.slideEvery(e.idle))
}

// slideTouch runs slideScript on key, through the touch batcher when there
// is one (see touch).
func (r *RedisStore) slideTouch(ctx context.Context, key string) (v string, exp, rnow int64, err error) {
	defer r.touching.Add(-1)
	if r.touching.Add(1) == 1 || r.touches == nil {
		return slideReply(r.run(ctx, slideScript, []string{key}, r.slideArg))
	}
	cmd := redis.NewCmd(ctx, "evalsha", slideSHA, 1, key, r.slideArg)
	if err := r.touches.Submit(ctx, cmd).WaitContext(ctx); err != nil {
		if redis.HasErrorPrefix(err, "NOSCRIPT") {
			return slideReply(r.run(ctx, slideScript, []string{key}, r.slideArg))
		}
		return "", 0, 0, err
	}
	return slideReply(cmd)
}

// slideReply reads slideScript's answer.
func slideReply(cmd *redis.Cmd) (string, int64, int64, error) {
	vals, err := cmd.Slice()
	if err != nil {
		return "", 0, 0, err
	}
	if len(vals) != 3 {
		return "", 0, 0, fmt.Errorf("slide script: %d values", len(vals))
	}
	v, _ := vals[0].(string)
	exp, _ := vals[1].(int64)
	rnow, _ := vals[2].(int64)
	return v, exp, rnow, nil
}

// slider sends the queued slides in pipelined batches, off the Check path.
// A slide that moved the expiry invalidates the key (every replica, this
// one too, rereads it once); one that found the record changed or gone
// drops the entry; one that failed drops it too, so the next Check asks
// Redis again.
func (r *RedisStore) slider() {
	defer close(r.slidesDone)
	batch := make([]*cacheEntry, 0, slideBatch)
	for p := range r.slides {
		batch = append(batch[:0], p)
	more:
		for len(batch) < slideBatch {
			select {
			case q, ok := <-r.slides:
				if !ok {
					break more
				}
				batch = append(batch, q)
			default:
				break more
			}
		}
		r.slideBatch(batch)
	}
}

func (r *RedisStore) slideBatch(batch []*cacheEntry) {
	c := r.cache
	ctx, cancel := context.WithTimeout(context.Background(), r.cacheOpts.Timeout)
	defer cancel()
	sent := c.clock()
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(batch))
	for i, p := range batch {
		cmds[i] = pipe.EvalSha(ctx, slideScript.Hash(), []string{sessionKey(p.e.Ref)}, r.slideArg)
	}
	_, _ = pipe.Exec(ctx)
	noscript := false
	for i, p := range batch {
		v, exp, rnow, err := slideReply(cmds[i])
		switch {
		case err != nil || v != p.raw:
			noscript = noscript || redis.HasErrorPrefix(err, "NOSCRIPT")
			c.drop(p.e.Ref, p)
		default:
			deadline, slideAt := r.expiries(p.e, sent, exp, rnow)
			p.deadline.Store(deadline)
			p.slideAt.Store(slideAt)
		}
		p.sliding.Store(false)
	}
	if noscript {
		r.reloadScripts(ctx)
	}
}

// syncCache is called after every write this store makes to session keys
// (revocations, updates, evictions): it returns once the cache can no
// longer serve what the write replaced (see tracker.barrier).
func (r *RedisStore) syncCache(ctx context.Context) {
	if r.cache == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cacheOpts.Timeout)
	defer cancel()
	r.tracker.barrier(ctx)
}

// closeCache stops the tracker and the slider.
func (r *RedisStore) closeCache() {
	if r.cache == nil {
		return
	}
	r.tracker.close()
	close(r.slides)
	<-r.slidesDone
}
