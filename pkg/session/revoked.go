package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Revoked sessions are published for verifiers (the revocation feed): a
// token sessiongate signed lives until its exp even after its session is
// gone, so a verifier that follows the feed can refuse it earlier. Every
// store path that ends a session a client held (Delete, DeleteUser, the
// eviction in Create) records it through one step, recordRevoked, so no
// caller can forget: the record carries the session's ref (the token's sid)
// and the time until which tokens of it may exist.
//
//	sg:revoked        zset     refs scored by that time (unix ms), pruned past it;
//	                           TTL = the latest such time
//	sg:revocations    channel  "<ref> <unix ms>" for each new entry
//
// In Redis the record is one single-key script on sg:revoked that adds,
// prunes and PUBLISHes. The session key and sg:revoked live on different
// Cluster slots, so one script cannot hold both: the record is made after
// the session is read and before it is deleted (see revokeRefs for why
// that order). A failure to record fails the revocation, with nothing
// deleted.
const (
	revokedKey     = "sg:revoked"
	revokedChannel = "sg:revocations"
)

// DefaultRevocationWindow is how long a revocation is kept and published
// unless SetRevocationWindow says otherwise: token.ttl's default.
const DefaultRevocationWindow = 5 * time.Minute

// Revocation is one entry of the revocation feed.
type Revocation struct {
	Ref string // the session's ref: the sid claim of its tokens
	// Until is when the last token of the session that may exist expires:
	// the revocation time plus the token lifetime, or the session's
	// absolute end if that is earlier. Past it the entry is dropped.
	Until time.Time
}

// ErrRevocationsOverflow means more revocations are in force than a
// follower accepts: it cannot present a complete set and must say so
// rather than serve part of one.
var ErrRevocationsOverflow = errors.New("session: more revocations in force than the feed may hold")

// revokeScript records revocations. KEYS[1] = sg:revoked; ARGV[1] = the
// window (ms), ARGV[2] = the channel, then pairs of ref and the session's
// absolute end (unix ms, 0 = unknown). Redis's clock stamps the entry, so
// every replica agrees on it; an entry already recorded keeps the later
// time (ZADD GT). Returns how many entries were published.
var revokeScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local window = tonumber(ARGV[1])
local latest = 0
local n = 0
for i = 3, #ARGV, 2 do
  local exp = now + window
  local abs = tonumber(ARGV[i + 1])
  if abs > 0 and abs < exp then exp = abs end
  if exp > now then
    redis.call('ZADD', KEYS[1], 'GT', exp, ARGV[i])
    redis.call('PUBLISH', ARGV[2], ARGV[i] .. ' ' .. exp)
    if exp > latest then latest = exp end
    n = n + 1
  end
end
if latest > 0 and redis.call('PEXPIRETIME', KEYS[1]) < latest then
  redis.call('PEXPIREAT', KEYS[1], latest)
end
return n
`)

// ended is a session a store just deleted: its ref and absolute end (zero
// when its record could not be read).
type ended struct {
	ref string
	abs time.Time
}

// SetRevocationWindow sets how long revocations are kept and published:
// the longest lifetime of a token sessiongate signs (token.ttl,
// token.exchange_ttl). Call it before serving.
func (r *RedisStore) SetRevocationWindow(d time.Duration) {
	if d > 0 {
		r.revWindow.Store(int64(d))
	}
}

func (r *RedisStore) window() time.Duration {
	if d := r.revWindow.Load(); d > 0 {
		return time.Duration(d)
	}
	return DefaultRevocationWindow
}

// RevocationsPublished counts the revocations this store recorded.
func (r *RedisStore) RevocationsPublished() uint64 { return r.revPublished.Load() }

// recordRevoked is the one step that publishes ended sessions, for every
// path that deletes sessions a client may hold tokens of (Delete, and
// revokeRefs for DeleteUser and eviction; anything else that ends sessions,
// refresh-token families included, goes through those or calls it the
// same way). It is called with records just read and before they are
// deleted; the entries are idempotent, so a retried call is harmless.
func (r *RedisStore) recordRevoked(ctx context.Context, gone []ended) error {
	if len(gone) == 0 {
		return nil
	}
	args := make([]any, 0, 2+2*len(gone))
	args = append(args, r.window().Milliseconds(), revokedChannel)
	for _, g := range gone {
		var abs int64
		if !g.abs.IsZero() {
			abs = g.abs.UnixMilli()
		}
		args = append(args, g.ref, abs)
	}
	n, err := r.run(ctx, revokeScript, []string{revokedKey}, args...).Int64()
	if err != nil {
		return wrap("record revocation", err)
	}
	r.revPublished.Add(uint64(n))
	return nil
}

// RevocationsIn reads the revocations in force, at most limit of them
// (ErrRevocationsOverflow beyond).
func (r *RedisStore) RevocationsIn(ctx context.Context, limit int) ([]Revocation, error) {
	now := r.now()
	zs, err := r.rdb.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
		Key: revokedKey, Start: "(" + msString(now), Stop: "+inf", ByScore: true, Count: int64(limit) + 1,
	}).Result()
	if err != nil {
		return nil, wrap("read revocations", err)
	}
	if len(zs) > limit {
		return nil, ErrRevocationsOverflow
	}
	out := make([]Revocation, 0, len(zs))
	for _, z := range zs {
		ref, _ := z.Member.(string)
		if !ValidRef(ref) {
			return nil, fmt.Errorf("%w: revocation entry is not a ref", ErrCorrupt)
		}
		out = append(out, Revocation{Ref: ref, Until: time.UnixMilli(int64(z.Score))})
	}
	return out, nil
}

// followPing is how long a revocation subscription may stay silent before
// it is pinged, and how long the ping may take: a Redis that stopped
// answering is noticed within twice this.
const followPing = 5 * time.Second

// FollowRevocations subscribes to revocations, then reads those in force
// (at most limit) and hands them to snapshot, then hands each new one to
// live until ctx ends or the subscription fails; it returns why. In that
// order nothing published between the two is missed: it arrives on the
// subscription, perhaps also in the snapshot, and entries are idempotent.
// A follower that calls it again after an error gets a fresh snapshot,
// which covers whatever the broken subscription lost.
func (r *RedisStore) FollowRevocations(ctx context.Context, limit int, snapshot func([]Revocation), live func(Revocation)) error {
	ps := r.rdb.Subscribe(ctx)
	defer ps.Close()
	if err := ps.Subscribe(ctx, revokedChannel); err != nil {
		return wrap("subscribe revocations", err)
	}
	// The confirmation: from here on every PUBLISH reaches us.
	if _, err := ps.ReceiveTimeout(ctx, followPing); err != nil {
		return wrap("subscribe revocations", err)
	}
	in, err := r.RevocationsIn(ctx, limit)
	if err != nil {
		return err
	}
	snapshot(in)
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, followPing)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				if err := ps.Ping(ctx); err != nil {
					return wrap("ping revocation subscription", err)
				}
				pinged = true
				continue
			}
			return wrap("follow revocations", err)
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Message:
			rev, ok := parseRevocationMessage(m.Payload)
			if !ok {
				return fmt.Errorf("%w: revocation message %q", ErrCorrupt, truncate(m.Payload, 80))
			}
			live(rev)
		case *redis.Subscription:
			// A resubscription after go-redis reconnected: messages may
			// have been lost in between.
			return errors.New("redis follow revocations: subscription was re-established")
		}
	}
}

// parseRevocationMessage reads "<ref> <unix ms>" exactly: the one
// spelling the script publishes (no sign, no leading zero).
func parseRevocationMessage(p string) (Revocation, bool) {
	ref, ms, ok := strings.Cut(p, " ")
	if !ok || !ValidRef(ref) || ms == "" || len(ms) > 15 || (ms[0] == '0' && len(ms) > 1) {
		return Revocation{}, false
	}
	for i := 0; i < len(ms); i++ {
		if ms[i] < '0' || ms[i] > '9' {
			return Revocation{}, false
		}
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return Revocation{}, false
	}
	return Revocation{Ref: ref, Until: time.UnixMilli(n)}, true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// memRevocations is the memory store's feed: the same entries, kept in
// process, and its followers called in place of pub/sub.
type memRevocations struct {
	mu        sync.Mutex
	window    time.Duration
	until     map[string]time.Time
	followers map[int]func(Revocation)
	next      int
	published uint64
	pruneAt   int // prune when this many entries are held: amortised O(1) per record
}

// SetRevocationWindow is RedisStore.SetRevocationWindow for memory.
func (m *MemoryStore) SetRevocationWindow(d time.Duration) {
	m.rev.mu.Lock()
	defer m.rev.mu.Unlock()
	if d > 0 {
		m.rev.window = d
	}
}

// RevocationsPublished counts the revocations this store recorded.
func (m *MemoryStore) RevocationsPublished() uint64 {
	m.rev.mu.Lock()
	defer m.rev.mu.Unlock()
	return m.rev.published
}

// recordRevoked is RedisStore.recordRevoked for memory. Callers may hold
// m.mu; it takes only the feed's own lock, and followers must not call
// back into the store.
func (m *MemoryStore) recordRevoked(now time.Time, gone []ended) {
	m.rev.mu.Lock()
	defer m.rev.mu.Unlock()
	if m.rev.until == nil {
		m.rev.until = make(map[string]time.Time)
	}
	w := m.rev.window
	if w <= 0 {
		w = DefaultRevocationWindow
	}
	if len(m.rev.until) >= m.rev.pruneAt {
		for ref, u := range m.rev.until {
			if !u.After(now) {
				delete(m.rev.until, ref)
			}
		}
		m.rev.pruneAt = max(1024, 2*len(m.rev.until))
	}
	for _, g := range gone {
		until := now.Add(w)
		if !g.abs.IsZero() && g.abs.Before(until) {
			until = g.abs
		}
		if !until.After(now) {
			continue
		}
		if cur, ok := m.rev.until[g.ref]; !ok || until.After(cur) {
			m.rev.until[g.ref] = until
		}
		m.rev.published++
		for _, f := range m.rev.followers {
			f(Revocation{Ref: g.ref, Until: until})
		}
	}
}

// FollowRevocations is RedisStore.FollowRevocations for memory: it never
// fails, and returns when ctx ends.
func (m *MemoryStore) FollowRevocations(ctx context.Context, limit int, snapshot func([]Revocation), live func(Revocation)) error {
	now := m.now()
	m.rev.mu.Lock()
	var in []Revocation
	for ref, u := range m.rev.until {
		if u.After(now) {
			in = append(in, Revocation{Ref: ref, Until: u})
		}
	}
	if len(in) > limit {
		m.rev.mu.Unlock()
		return ErrRevocationsOverflow
	}
	// Registered under the same lock the snapshot was read under: nothing
	// falls between them.
	if m.rev.followers == nil {
		m.rev.followers = make(map[int]func(Revocation))
	}
	id := m.rev.next
	m.rev.next++
	m.rev.followers[id] = live
	snapshot(in)
	m.rev.mu.Unlock()
	<-ctx.Done()
	m.rev.mu.Lock()
	delete(m.rev.followers, id)
	m.rev.mu.Unlock()
	return ctx.Err()
}
