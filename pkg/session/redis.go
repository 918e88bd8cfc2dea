package session

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Key layout. Every operation touches one key at a time, or runs a script on
// one key, so the layout is correct in Redis Cluster without hash tags: a
// session key and its subject's index usually live on different slots.
// Refresh families (refresh_redis.go) are the exception: a family's keys
// and its access session keys share one slot, so a refresh is one script.
//
//	sg:s:<ref>      string  the encoded record; TTL = sliding idle expiry capped by the absolute one
//	sg:u:<subject>  zset    refs of the subject's sessions, scored by insertion order;
//	                        TTL = the latest absolute expiry among them
//	sg:revoked      zset    the revocation feed's entries (revoked.go)
//
// The index may briefly name sessions that have expired or were deleted
// between two steps; every reader checks the session keys and prunes what is
// gone, so the index converges and never resurrects a session.
//
// # Redis Cluster
//
// No hash tags, on purpose: a tag per subject would put a heavy user's
// sessions on one slot, a common tag would put every session on one node.
// Instead nothing needs two keys on one slot:
//
//   - Scripts (touch, index add, compare-and-swap) declare exactly one key,
//     KEYS[1], and touch no other, so Cluster routes them by that key.
//   - Multi-key steps are plain pipelines (never MULTI/EXEC): go-redis's
//     ClusterClient splits a pipeline by slot and sends each part to its
//     node, following MOVED/ASK per command. EXISTS, GET and DEL over many
//     session keys are therefore one round trip per node, not a
//     cross-slot command.
//   - Each multi-key operation is ordered so that stopping between any two
//     steps leaves nothing a Check could accept: Create writes the session,
//     then indexes it (and undoes both on failure); Delete, DeleteUser and
//     eviction delete session keys first and unindex after, so the worst a
//     partial failure leaves is a stale index entry, which readers prune.
//     Revocation is decided by the session key alone: the Check path never
//     reads the index.
//   - max_per_user holds without a transaction because the index's scores
//     are an insertion sequence assigned by a single-key script: racing
//     logins all read the same order and agree on who is oldest (Create).
//   - UpdateUser replaces each record with a single-key compare-and-swap
//     and keeps its TTL, so a session deleted meanwhile stays deleted.
//   - Every step is safe to apply twice, which is what a retry after a lost
//     reply does: SET NX recognises its own record, index and unindex are
//     set operations, DEL of a deleted key is a no-op.
//
// The same holds with Sentinel, where all keys live on one master.
const (
	sessionPrefix = "sg:s:"
	userPrefix    = "sg:u:"
)

// touchScript resolves a session and slides its expiry in one round trip. It
// reads the absolute expiry and idle timeout from the record header, so the
// sliding window is capped without a second command; a record past its
// absolute expiry is deleted and reported missing. Records whose header it
// cannot read are returned as they are: the client rejects them as corrupt.
var touchScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return false end
local abs, idle = string.match(v, '^1:%d+:(%d+):(%d+):')
if not abs then return v end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
abs = tonumber(abs)
if now >= abs then
  redis.call('DEL', KEYS[1])
  return false
end
local exp = now + tonumber(idle)
if exp > abs then exp = abs end
redis.call('PEXPIREAT', KEYS[1], exp)
return v
`)

// indexAddScript appends a ref to a subject's index and keeps the index
// alive at least as long as the session it names. The score is an insertion
// sequence, not a clock: racing logins then agree on which one came first,
// which is what makes max_per_user hold without a cross-slot transaction.
var indexAddScript = redis.NewScript(`
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local seq = 1
if last[2] then seq = tonumber(last[2]) + 1 end
redis.call('ZADD', KEYS[1], seq, ARGV[1])
local cur = redis.call('PEXPIRETIME', KEYS[1])
local want = tonumber(ARGV[2])
if cur < want then redis.call('PEXPIREAT', KEYS[1], want) end
return seq
`)

// casScript replaces a record only if it is unchanged since it was read, and
// keeps its TTL: an update never extends a session.
var casScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
`)

// touchSHA is touchScript's hash boxed once: the batched touch would
// otherwise box it into a fresh interface value on every Check.
var touchSHA any = touchScript.Hash()

// scripts are every Lua script the store runs; Warm loads them all.
var scripts = []*redis.Script{touchScript, indexAddScript, casScript, slideScript, revokeScript}

// RedisStore keeps sessions in Redis: standalone, Sentinel or Cluster,
// through go-redis's UniversalClient.
type RedisStore struct {
	rdb redis.UniversalClient
	now func() time.Time
	// reloading is set while a script reload started by a NOSCRIPT reply
	// runs, so a burst of NOSCRIPTs after a failover starts one, not one
	// per call.
	reloading atomic.Bool
	// warmed is set once Warm has succeeded; until then Ping warms up (see
	// Ping).
	warmed atomic.Bool
	// touches batches the Check path's touch scripts: concurrent Checks
	// share one write and one read on one connection instead of each taking
	// a pooled connection for its own round trip. Nil for Cluster clients,
	// whose touches go through rdb one by one.
	touches *redis.AutoPipeliner
	// touching counts the touches in progress. A touch with none other in
	// flight has nothing to share a batch with and skips the batcher's
	// hand-off (about 40 µs on a lone Check).
	touching atomic.Int64

	// The revocation feed (revoked.go): how long entries are kept, and
	// how many this store recorded.
	revWindow    atomic.Int64
	revPublished atomic.Uint64

	// The local session cache (redis_cache.go), nil unless EnableCache.
	cache      *localCache
	cacheOpts  CacheOptions
	slideArg   any // slideScript's ARGV[1], boxed once
	tracker    *tracker
	slides     chan *cacheEntry
	slidesDone chan struct{}

	// hooks let the package's tests stop a multi-step write between two
	// steps; nil outside them.
	hooks struct {
		credentialListed, credentialsDeleted, recordDeleted func()
		credentialKeyDeleted                                func()
		familyIndexed, refreshRotated, evictionChosen       func()
	}
}

// touchQueueBound caps the touches queued for the batcher. A stalled Redis
// cannot make them pile up without bound: beyond it a Touch fails at once
// (a 503, closed), and callers return at their own deadline in any case.
const touchQueueBound = 16384

// NewRedisStore wraps a client. The client should have ContextTimeoutEnabled
// set (NewRedisClient does): without it go-redis ignores context deadlines and
// a stalled Redis would hold every Check for its socket timeout.
//
// For a standalone or Sentinel client, Touch is auto-pipelined (go-redis's
// deferred AutoPipeliner, one ordered batch in flight): with 64 Checks in
// flight this cut sessiongate's CPU per Check by about a fifth
// (BenchmarkCheckGRPC/redis) and Redis's by about a third (the load test);
// a touch with no other in flight skips the batcher (see touch); see
// docs/BENCHMARKS.md. Each caller still waits on its own context only, so
// redis.timeout bounds a Touch exactly as before; the rest of the store
// stays on plain round trips.
func NewRedisStore(rdb redis.UniversalClient) *RedisStore {
	r := &RedisStore{rdb: rdb, now: time.Now}
	if c, ok := rdb.(*redis.Client); ok {
		o := redis.DefaultAutoPipelineOptions()
		o.MaxQueuedCommands = touchQueueBound
		// Cached on the client and closed with it. On error (an invalid
		// configuration, never expected) touches stay unbatched.
		if ap, err := c.AsyncAutoPipelineWithOptions(o); err == nil {
			r.touches = ap
		}
	}
	return r
}

// scriptReloadTimeout bounds a background script reload after NOSCRIPT.
const scriptReloadTimeout = 2 * time.Second

// Warm makes the first calls after startup as cheap as every other: one
// round trip each. Without it, the first EVALSHA of each script gets
// NOSCRIPT and is sent again as EVAL, and the first use of each pooled
// connection pays its HELLO: together enough to push a login past a
// 100 ms redis.timeout on a loaded machine. So Warm, on every node:
//
//   - loads every script (SCRIPT LOAD). In Cluster mode that is every
//     shard, replicas included, so a replica promoted later already has
//     them. Sentinel replicas are not reached; after a failover the first
//     NOSCRIPT reloads the scripts on the new master (see run);
//   - takes MinIdleConns connections from the pool at once and sends a
//     PING on each, so the warm pool NewClient keeps (MinIdleConns) holds
//     connections that are dialled and initialised, not just dialled;
//   - in Cluster mode, has the client fetch its COMMAND table (below).
//
// Failure is not fatal: every script call still falls back to EVAL, and a
// cold connection is only slower.
func (r *RedisStore) Warm(ctx context.Context) error {
	var err error
	if c, ok := r.rdb.(*redis.ClusterClient); ok {
		err = c.ForEachShard(ctx, warmNode)
		if err == nil {
			// The cluster client fetches COMMAND (its routing table of
			// key positions and policies) on the first keyed command, on
			// a context of its own of 5 s that redis.timeout does not
			// bound. Any keyed command fetches it; let it be this one.
			err = c.Exists(ctx, sessionPrefix).Err()
		}
	} else if c, ok := r.rdb.(*redis.Client); ok {
		err = warmNode(ctx, c) // standalone, and the Sentinel-managed master
		if err == nil && r.touches != nil {
			// The touch batcher rides the client's separate pipeline pool:
			// one PING through it dials and initialises that connection too.
			err = r.touches.Ping(ctx).Err()
		}
	} else {
		err = fmt.Errorf("unexpected client type %T", r.rdb)
	}
	if err != nil {
		return wrap("warm up", err)
	}
	r.warmed.Store(true)
	return nil
}

// warmNode loads the scripts on one node and initialises its warm pool.
func warmNode(ctx context.Context, c *redis.Client) error {
	warm := c.Options().MinIdleConns // minIdleConns for clients NewClient made
	conns := make([]*redis.Conn, max(warm, 1))
	defer func() {
		for _, cn := range conns {
			if cn != nil {
				cn.Close() // back to the pool, initialised
			}
		}
	}()
	for i := range conns {
		// A sticky Conn holds its connection until Close, so each PING
		// initialises a different one.
		conns[i] = c.Conn()
		if err := conns[i].Ping(ctx).Err(); err != nil {
			return err
		}
	}
	for _, sc := range scripts {
		if err := sc.Load(ctx, conns[0]).Err(); err != nil {
			return err
		}
	}
	// Holding these, the pool dials as many again in the background to keep
	// MinIdleConns idle: fresh, not yet initialised connections. The pool
	// hands out the most recently returned connection first, so wait for
	// those dials to land before giving ours back on top of them. Bounded
	// by ctx; giving up only means a first call may pay a HELLO.
	for warm > 0 && c.PoolStats().TotalConns < uint32(2*warm) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// run runs a script with EVALSHA and, when the node answers NOSCRIPT (a
// restarted Redis, a promoted replica, SCRIPT FLUSH), sends it again as
// EVAL on the same context: the fallback is bounded by the caller's
// deadline like any other call, never by a second timeout. A NOSCRIPT
// also starts one background reload of all scripts, so the store's other
// scripts do not each pay the extra round trip once more.
func (r *RedisStore) run(ctx context.Context, sc *redis.Script, keys []string, args ...any) *redis.Cmd {
	cmd := sc.EvalSha(ctx, r.rdb, keys, args...)
	if !redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		return cmd
	}
	r.reloadScripts(ctx)
	return sc.Eval(ctx, r.rdb, keys, args...)
}

// reloadScripts starts one background reload of every script, unless one
// is running.
func (r *RedisStore) reloadScripts(ctx context.Context) {
	if r.reloading.CompareAndSwap(false, true) {
		go func() {
			defer r.reloading.Store(false)
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), scriptReloadTimeout)
			defer cancel()
			// Best effort: a failure leaves the EVAL fallback in place.
			_ = r.Warm(rctx)
		}()
	}
}

func sessionKey(ref string) string    { return sessionPrefix + ref }
func userKey(subject string) string   { return userPrefix + subject }
func msString(t time.Time) string     { return strconv.FormatInt(t.UnixMilli(), 10) }
func isNil(err error) bool            { return errors.Is(err, redis.Nil) }
func wrap(op string, err error) error { return fmt.Errorf("redis %s: %w", op, err) }
func keysOf(refs []string) []string {
	keys := make([]string, len(refs))
	for i, r := range refs {
		keys[i] = sessionKey(r)
	}
	return keys
}

// Create implements Store.
//
// Two logins of one subject may race. Each appends itself to the index (an
// atomic single-key script) and then reads the index in insertion order; both
// therefore agree on which sessions are the oldest, and the cap holds
// whichever finishes first. With Reject, a session that finds itself beyond the cap removes
// itself, so racing logins can both be rejected but never both admitted
// past the cap.
func (r *RedisStore) Create(ctx context.Context, s *Session, limit Limit) ([]string, error) {
	now := r.now()
	if err := checkNew(s, now); err != nil {
		return nil, err
	}
	if s.Version == 0 {
		s.Version = 1
	}
	raw, err := encodeRecord(s)
	if err != nil {
		return nil, err
	}
	// checkNew guarantees a positive TTL: SETNX without one would keep the
	// session forever.
	ttl := nextExpiry(now, s.ExpiresAt, s.IdleTimeout).Sub(now)
	sk := sessionKey(s.Ref)
	ok, err := r.rdb.SetNX(ctx, sk, raw, ttl).Result()
	if err != nil {
		// The write may have landed before the reply was lost.
		r.undoCreate(ctx, "", s.Ref)
		return nil, wrap("create session", err)
	}
	if !ok {
		// A retried SET NX (go-redis retries once after a lost reply) finds
		// the record its first attempt wrote. Anything else under a fresh
		// 128-bit ref is a collision and must not be overwritten.
		cur, err := r.rdb.Get(ctx, sk).Result()
		if err != nil || cur != raw {
			return nil, fmt.Errorf("create session %s: ref already exists", s.Ref)
		}
	}
	uk := userKey(s.Subject)
	if err := r.run(ctx, indexAddScript, []string{uk}, s.Ref, msString(s.ExpiresAt)).Err(); err != nil {
		// Without the index entry the session could not be listed or revoked
		// by subject: undo it rather than leave it half-made.
		r.undoCreate(ctx, uk, s.Ref)
		return nil, wrap("index session", err)
	}
	if limit.MaxPerUser <= 0 {
		return nil, nil
	}
	live, raws, err := r.liveRefs(ctx, uk)
	if err != nil {
		// The caller never learns this session's ID, so a session left
		// behind would only count against the subject's cap until it
		// expired, and with on_limit: reject lock the user out meanwhile.
		r.undoCreate(ctx, uk, s.Ref)
		return nil, err
	}
	if len(live) <= limit.MaxPerUser {
		return nil, nil
	}
	if limit.Reject {
		for i, ref := range live {
			if ref == s.Ref && i >= limit.MaxPerUser {
				if err := r.remove(ctx, uk, []string{s.Ref}); err != nil {
					r.undoCreate(ctx, uk, s.Ref)
					return nil, err
				}
				return nil, ErrLimit
			}
		}
		return nil, nil
	}
	evicted := live[:len(live)-limit.MaxPerUser]
	if r.hooks.evictionChosen != nil {
		r.hooks.evictionChosen()
	}
	n, err := r.revokeRefs(ctx, uk, evicted)
	if err == nil && n < len(evicted) {
		// A refresh may have rotated an evicted access session away since
		// it was read: the revoke found nothing to end, and the family
		// lives on in a new access session. End the families of the
		// records read above, which the eviction chose.
		err = r.endFamiliesOf(ctx, raws[:len(evicted)])
	}
	if err != nil {
		// The login fails, so the new session goes too; the old ones that
		// survived stay valid and are evicted by the next login.
		r.undoCreate(ctx, uk, s.Ref)
		return nil, err
	}
	return evicted, nil
}

// undoTimeout bounds the cleanup after a failed Create. It runs after the
// caller's deadline may have passed, so it gets its own.
const undoTimeout = time.Second

// undoCreate removes a session whose creation failed half-way; best effort,
// because it runs when Redis is already failing. Whatever it cannot remove
// is a session nobody holds the ID of, gone at its idle expiry.
func (r *RedisStore) undoCreate(ctx context.Context, uk, ref string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	if err := r.rdb.Del(ctx, sessionKey(ref)).Err(); err != nil || uk == "" {
		return
	}
	_ = r.rdb.ZRem(ctx, uk, ref).Err()
}

// liveRefs returns the refs in a subject's index whose session keys still
// exist, oldest first, with their records, pruning the others from the
// index. The records tell which refresh family each session belongs to,
// as it was when the session was counted (see Create).
func (r *RedisStore) liveRefs(ctx context.Context, uk string) ([]string, []string, error) {
	refs, err := r.indexRefs(ctx, uk)
	if err != nil || len(refs) == 0 {
		return nil, nil, err
	}
	live := refs[:0:0]
	var raws []string
	err = overRefs(ctx, r, uk, refs, getCmd, "check sessions", "prune index",
		func(_ int, ref string, c *redis.StringCmd) (refVerdict, error) {
			v, err := c.Result()
			if isNil(err) {
				return dropRef, nil
			}
			if err != nil {
				return 0, wrap("check session", err)
			}
			live = append(live, ref)
			raws = append(raws, v)
			return keepRef, nil
		})
	if err != nil {
		return nil, nil, err
	}
	return live, raws, nil
}

// remove deletes sessions and their index entries, session keys first so a
// failure in between leaves only a stale index entry, which readers prune.
// An evicted access session ends its refresh family too, which is why the
// records are read as they are deleted.
func (r *RedisStore) remove(ctx context.Context, uk string, refs []string) error {
	defer r.syncCache(ctx)
	var raws []string
	err := overRefs(ctx, r, uk, refs, getDelCmd, "delete sessions", "unindex sessions",
		func(_ int, _ string, c *redis.StringCmd) (refVerdict, error) {
			if v, err := c.Result(); err == nil {
				raws = append(raws, v)
			}
			return dropRef, nil
		})
	if err != nil {
		return err
	}
	return r.endFamiliesOf(ctx, raws)
}

// revokeRefs is remove for sessions a client may hold tokens of: it ends
// sessions and publishes them for the revocation feed, in the one order a
// lost reply cannot break: read the records (one pipeline),
// record those that exist, then delete them and unindex. Recording after a
// delete would hinge on the delete's reply, and a reply lost and retried
// (go-redis retries once) reads "nothing deleted": the revocation would
// never be published. Recording first can at worst publish a session a
// failed delete left alive, whose caller then sees the error; and a
// session that does not exist is never recorded, so no caller can fill the
// feed with made-up refs. It returns how many sessions the deletes ended.
func (r *RedisStore) revokeRefs(ctx context.Context, uk string, refs []string) (int, error) {
	defer r.syncCache(ctx)
	var gone []ended
	var raws []string
	err := overRefs(ctx, r, uk, refs, getCmd, "read sessions", "prune index",
		func(_ int, ref string, c *redis.StringCmd) (refVerdict, error) {
			v, err := c.Result()
			if isNil(err) {
				return dropRef, nil
			}
			gone = append(gone, ended{ref: ref, abs: absoluteEnd(ref, v)})
			raws = append(raws, v)
			return keepRef, nil
		})
	if err != nil {
		return 0, err
	}
	if err := r.recordRevoked(ctx, gone); err != nil {
		return 0, err
	}
	live := make([]string, len(gone))
	for i, g := range gone {
		live[i] = g.ref
	}
	n := 0
	err = overRefs(ctx, r, uk, live, delCmd, "delete sessions", "unindex sessions",
		func(_ int, _ string, c *redis.IntCmd) (refVerdict, error) {
			n += int(c.Val())
			return dropRef, nil
		})
	if err != nil {
		return n, err
	}
	// An evicted or revoked access session ends its refresh family too.
	return n, r.endFamiliesOf(ctx, raws)
}

// absoluteEnd reads a deleted record's absolute expiry; zero if it cannot.
func absoluteEnd(ref, raw string) time.Time {
	e, err := parseEntry(ref, raw)
	if err != nil {
		return time.Time{}
	}
	return e.ExpiresAt
}

// indexRefs reads every ref in a subject's index, oldest first.
func (r *RedisStore) indexRefs(ctx context.Context, uk string) ([]string, error) {
	refs, err := r.rdb.ZRange(ctx, uk, 0, -1).Result()
	if err != nil {
		return nil, wrap("read index", err)
	}
	return refs, nil
}

// refVerdict is what a pass over an index's refs does with one of them.
type refVerdict int

const (
	keepRef refVerdict = iota // leave it in the index
	dropRef                   // remove it from the index
	stopRef                   // leave it, and look at no more refs
)

func getCmd(ctx context.Context, p redis.Pipeliner, key string) *redis.StringCmd {
	return p.Get(ctx, key)
}
func delCmd(ctx context.Context, p redis.Pipeliner, key string) *redis.IntCmd { return p.Del(ctx, key) }
func getDelCmd(ctx context.Context, p redis.Pipeliner, key string) *redis.StringCmd {
	return p.GetDel(ctx, key)
}

// overRefs is the one pass every multi-session operation makes over refs
// read from the index uk: one command per session key, all in one pipeline
// (go-redis splits it by node in Cluster: one round trip per node, never a
// cross-slot command), then visit on each reply in order, then one ZREM of
// the refs visit dropped. A missing key (redis.Nil) is a reply for visit to
// read, not a failure. sendOp and pruneOp name the two steps in errors. An
// error from visit returns at once, before anything is pruned.
func overRefs[C redis.Cmder](ctx context.Context, r *RedisStore, uk string, refs []string,
	send func(context.Context, redis.Pipeliner, string) C, sendOp, pruneOp string,
	visit func(i int, ref string, c C) (refVerdict, error),
) error {
	if len(refs) == 0 {
		return nil
	}
	pipe := r.rdb.Pipeline()
	cmds := make([]C, len(refs))
	for i, ref := range refs {
		cmds[i] = send(ctx, pipe, sessionKey(ref))
	}
	if _, err := pipe.Exec(ctx); err != nil && !isNil(err) {
		return wrap(sendOp, err)
	}
	var dead []any
	for i, ref := range refs {
		v, err := visit(i, ref, cmds[i])
		if err != nil {
			return err
		}
		if v == stopRef {
			break
		}
		if v == dropRef {
			dead = append(dead, ref)
		}
	}
	if len(dead) > 0 {
		if err := r.rdb.ZRem(ctx, uk, dead...).Err(); err != nil {
			return wrap(pruneOp, err)
		}
	}
	return nil
}

// Touch implements Store.
func (r *RedisStore) Touch(ctx context.Context, ref string) (Entry, error) {
	if r.cache != nil {
		return r.touchCached(ctx, r.cache, ref)
	}
	v, err := r.touch(ctx, sessionKey(ref))
	if err != nil {
		if isNil(err) {
			return Entry{}, ErrNotFound
		}
		return Entry{}, wrap("touch session", err)
	}
	return r.liveEntry(ref, v)
}

// liveEntry parses a record read from Redis. Redis enforces the absolute
// expiry with its own clock; ours is checked too, so a skewed Redis clock
// cannot extend a session.
func (r *RedisStore) liveEntry(ref, raw string) (Entry, error) {
	e, err := parseEntry(ref, raw)
	if err != nil {
		return Entry{}, err
	}
	if !r.now().Before(e.ExpiresAt) {
		return Entry{}, ErrNotFound
	}
	return e, nil
}

// touch runs the touch script on key, through the batcher when there is
// one. The caller waits for its own answer or its own deadline, whichever
// comes first; a touch abandoned at the deadline still runs when Redis
// answers, which only slides an idle expiry the caller did not get to use.
// NOSCRIPT goes to run, which falls back to EVAL and reloads the scripts.
func (r *RedisStore) touch(ctx context.Context, key string) (string, error) {
	defer r.touching.Add(-1)
	if r.touching.Add(1) == 1 || r.touches == nil {
		return r.run(ctx, touchScript, []string{key}).Text()
	}
	cmd := redis.NewCmd(ctx, "evalsha", touchSHA, 1, key)
	if err := r.touches.Submit(ctx, cmd).WaitContext(ctx); err != nil {
		if redis.HasErrorPrefix(err, "NOSCRIPT") {
			return r.run(ctx, touchScript, []string{key}).Text()
		}
		return "", err
	}
	return cmd.Text()
}

// Delete implements Store. The session is recorded for the revocation
// feed before it is deleted, for the reason revokeRefs gives.
func (r *RedisStore) Delete(ctx context.Context, ref string) error {
	defer r.syncCache(ctx)
	key := sessionKey(ref)
	v, err := r.rdb.Get(ctx, key).Result()
	if err != nil {
		if isNil(err) {
			return ErrNotFound
		}
		return wrap("read session", err)
	}
	e, perr := parseEntry(ref, v)
	if err := r.recordRevoked(ctx, []ended{{ref: ref, abs: e.ExpiresAt}}); err != nil {
		return err
	}
	// A reply of 0 (deleted meanwhile, or a retry after a lost reply)
	// is still this revocation done: the session existed and is gone.
	if err := r.rdb.Del(ctx, key).Err(); err != nil {
		return wrap("delete session", err)
	}
	if perr != nil {
		return nil // gone; a corrupt record's index entry is pruned by readers
	}
	s, err := e.Session()
	if err != nil {
		return nil
	}
	if s.FamilyRef != "" {
		// Logging out of an access session ends its refresh family.
		if _, err := r.endFamily(ctx, s.FamilyRef); err != nil {
			return err
		}
	}
	if err := r.rdb.ZRem(ctx, userKey(s.Subject), ref).Err(); err != nil {
		return wrap("unindex session", err)
	}
	return nil
}

// sessions reads the live sessions named by a subject's index. With
// seen, each key's expiry (PEXPIRETIME: by Redis's clock, the one the touch
// script slid it with) is read in the same pipeline and set as
// IdleExpiresAt; the callers that only rewrite records skip it.
func (r *RedisStore) sessions(ctx context.Context, subject string, seen bool) ([]*Session, []string, error) {
	uk := userKey(subject)
	refs, err := r.indexRefs(ctx, uk)
	if err != nil || len(refs) == 0 {
		return nil, nil, err
	}
	var out []*Session
	var raws []string
	var expiries []*redis.DurationCmd
	send := getCmd
	if seen {
		expiries = make([]*redis.DurationCmd, 0, len(refs))
		send = func(ctx context.Context, p redis.Pipeliner, key string) *redis.StringCmd {
			get := p.Get(ctx, key)
			expiries = append(expiries, p.PExpireTime(ctx, key)) // one key: the same node, right after the GET
			return get
		}
	}
	err = overRefs(ctx, r, uk, refs, send, "read sessions", "prune index",
		func(i int, ref string, c *redis.StringCmd) (refVerdict, error) {
			v, err := c.Result()
			if isNil(err) {
				return dropRef, nil
			}
			if err != nil {
				return 0, wrap("read session", err)
			}
			s, err := decodeSession(ref, v)
			if err != nil {
				return 0, err
			}
			if seen {
				// A key deleted between the two commands has no expiry
				// (-2): the session is listed without a last use.
				if d, err := expiries[i].Result(); err == nil && d > 0 {
					s.IdleExpiresAt = time.UnixMilli(d.Milliseconds())
				}
			}
			out = append(out, s)
			raws = append(raws, v)
			return keepRef, nil
		})
	if err != nil {
		return nil, nil, err
	}
	return out, raws, nil
}

// decodeSession decodes a record read by a listing; errors name the session.
func decodeSession(ref, v string) (*Session, error) {
	e, err := parseEntry(ref, v)
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", ref, err)
	}
	s, err := e.Session()
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", ref, err)
	}
	return s, nil
}

// List implements Store.
func (r *RedisStore) List(ctx context.Context, subject string) ([]*Session, error) {
	ss, _, err := r.sessions(ctx, subject, true)
	if err != nil {
		return nil, err
	}
	sortOldestFirst(ss)
	return ss, nil
}

// listRounds bounds the index reads of one ListPage. Each round reads the
// entries the page still lacks; only entries of expired sessions (stale
// until a reader prunes them) make it take another, so a page comes back
// short, with a Next to continue from, only after that many rounds of
// stale entries in a row, and each walk prunes what it passed.
const listRounds = 4

// ListPage implements Store. The index is a sorted set scored by insertion
// sequence, so a page is ZRANGE BYSCORE from just after the last position
// returned: positions are unique within a subject and only grow, so a walk
// never sees a session twice (unlike a SCAN cursor), and one key is read,
// so it works unchanged in Cluster. Each round reads one entry more than
// the page needs, which tells whether anything follows the page without a
// final empty one.
func (r *RedisStore) ListPage(ctx context.Context, subject string, after uint64, limit int) (Page, error) {
	if limit < 1 {
		return Page{}, errPageLimit
	}
	uk := userKey(subject)
	var p Page
	pos := after
	for range listRounds {
		need := limit - len(p.Sessions)
		zs, err := r.rdb.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{
			Key: uk, Start: "(" + strconv.FormatUint(pos, 10), Stop: "+inf", ByScore: true, Count: int64(need) + 1,
		}).Result()
		if err != nil {
			return Page{}, wrap("read index", err)
		}
		refs := make([]string, len(zs))
		for i, z := range zs {
			refs[i], _ = z.Member.(string)
		}
		full := false
		err = overRefs(ctx, r, uk, refs, getCmd, "read sessions", "prune index",
			func(i int, ref string, c *redis.StringCmd) (refVerdict, error) {
				if len(p.Sessions) == limit {
					full = true // zs[i] follows the page
					return stopRef, nil
				}
				v, err := c.Result()
				verdict := keepRef
				switch {
				case isNil(err):
					verdict = dropRef
				case err != nil:
					return 0, wrap("read session", err)
				default:
					s, err := decodeSession(ref, v)
					if err != nil {
						return 0, err
					}
					p.Sessions = append(p.Sessions, s)
				}
				pos = uint64(zs[i].Score)
				return verdict, nil
			})
		if err != nil {
			return Page{}, err
		}
		if full {
			p.Next = pos
			return p, nil
		}
		if len(zs) <= need {
			return p, nil // the index ends within this round
		}
	}
	// Rounds of stale entries: hand back what there is and where to go on.
	p.Next = pos
	return p, nil
}

// DeleteUser implements Store. Only the refs it read are removed from the
// index, so a login racing with it keeps its entry; the sessions it deleted
// are recorded for the revocation feed.
func (r *RedisStore) DeleteUser(ctx context.Context, subject string) (int, error) {
	defer r.syncCache(ctx)
	// Families first: each ends with its access session, live or not, and
	// counts once; their access sessions are then gone from the index pass.
	n, err := r.endUserFamilies(ctx, subject)
	if err != nil {
		return n, err
	}
	uk := userKey(subject)
	refs, err := r.indexRefs(ctx, uk)
	if err != nil || len(refs) == 0 {
		return n, err
	}
	k, err := r.revokeRefs(ctx, uk, refs)
	return n + k, err
}

// UpdateUser implements Store. Each record is replaced by compare-and-swap so
// a concurrent update is never lost; a session deleted meanwhile stays deleted.
func (r *RedisStore) UpdateUser(ctx context.Context, subject string, u Update) (int, error) {
	defer r.syncCache(ctx)
	// Families first, so a refresh racing with this update either rotated
	// before the template was swapped, and updateFamily updates the access
	// session it made (which the index may not list yet), or makes it from
	// the updated template. The pass below skips what updateFamily did.
	done, err := r.updateUserFamilies(ctx, subject, u)
	if err != nil {
		return len(done), err
	}
	ss, raws, err := r.sessions(ctx, subject, false)
	if err != nil {
		return len(done), err
	}
	n := len(done)
	for i, s := range ss {
		if done[s.Ref] {
			continue
		}
		ok, err := r.updateOne(ctx, s, raws[i], u)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

func (r *RedisStore) updateOne(ctx context.Context, s *Session, raw string, u Update) (bool, error) {
	const attempts = 5
	key := sessionKey(s.Ref)
	for range attempts {
		next, err := encodeRecord(applyUpdate(s, u))
		if err != nil {
			return false, err
		}
		swapped, err := r.run(ctx, casScript, []string{key}, raw, next).Int()
		if err != nil {
			return false, wrap("update session", err)
		}
		if swapped == 1 {
			return true, nil
		}
		raw, err = r.rdb.Get(ctx, key).Result()
		if isNil(err) {
			return false, nil
		}
		if err != nil {
			return false, wrap("reread session", err)
		}
		e, err := parseEntry(s.Ref, raw)
		if err != nil {
			return false, err
		}
		if s, err = e.Session(); err != nil {
			return false, err
		}
	}
	return false, fmt.Errorf("update session %s: still contended after %d attempts", s.Ref, attempts)
}

// Ping implements Store.
//
// Until Warm has succeeded once, Ping is Warm: serve's readiness probe calls
// it every second, so a sessiongate started while Redis was unreachable
// warms up as soon as Redis answers, and reports ready only then. This
// matters most in Cluster mode, where go-redis fetches its COMMAND table on
// the first keyed command with a 5 s timeout of its own that redis.timeout
// does not bound; Warm fetches it outside any Check.
func (r *RedisStore) Ping(ctx context.Context) error {
	if !r.warmed.Load() {
		return r.Warm(ctx)
	}
	if err := r.rdb.Ping(ctx).Err(); err != nil {
		return wrap("ping", err)
	}
	return nil
}

// Close implements Store.
func (r *RedisStore) Close() error {
	r.closeCache()
	return r.rdb.Close()
}
