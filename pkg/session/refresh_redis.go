package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Refresh family keys, next to the session keys (redis.go). Unlike those,
// a family's keys share one hash slot, the slot of its hash tag {F}, F the
// family ref, so that a refresh and a family revocation are each one Lua
// script on one slot, atomic in Cluster as everywhere else:
//
//	sg:f:{F}        hash    the family: subject, access session template, lifetimes,
//	                        current token ref, current access session ref, last retired token ref;
//	                        TTL = refresh idle expiry, capped by the family's end
//	sg:g:{F}        string  the successor pair of the last rotation, sealed under the
//	                        token it retired (refresh.go); TTL = the reuse grace
//	sg:s:<ref>      string  the family's access session: an ordinary session key, whose
//	                        ID the store picks so that the key lands in F's slot (newID)
//	sg:r:<tref>     string  "F:<family end ms>" for every token ever issued in F, by the
//	                        token's ref; TTL = the family's end. A pointer only: whether
//	                        the token is current, in grace or retired is the family's to say,
//	                        so a pointer to a family that is gone is an invalid token
//	sg:uf:<subject> zset    the subject's families scored by their end, for revoke-user and
//	                        update-user; TTL = the latest end among them
//
// The access session key has no hash tag (the Check path computes it from
// the ref alone), so the store picks the access session ID itself: in
// Cluster mode it draws IDs until the key's slot is the family's (about
// 16384 draws, a few ms of CPU, on login and refresh only); elsewhere
// every key is on one node and any ID does. The old access session's key
// is found in the family hash, not passed in: it is in the family's slot
// by the same construction, which is all Redis Cluster asks of a script.
//
// Token pointers and the two indexes live on other slots. Each is written
// so that stopping between two steps leaves nothing usable: a token
// pointer is written before the family can make its token current (a
// pointer to a token never handed out is never presented); index entries
// of families or sessions that are gone are pruned by readers.
const (
	familyPrefix     = "sg:f:"
	gracePrefix      = "sg:g:"
	tokenPrefix      = "sg:r:"
	userFamilyPrefix = "sg:uf:"
)

func familyKey(fam string) string            { return familyPrefix + "{" + fam + "}" }
func graceKey(fam string) string             { return gracePrefix + "{" + fam + "}" }
func tokenKey(tref string) string            { return tokenPrefix + tref }
func userFamilyKey(sub string) string        { return userFamilyPrefix + sub }
func pointerOf(fam string, end int64) string { return fam + ":" + strconv.FormatInt(end, 10) }

// endFamilyLua is the one piece of Lua that ends a family: it deletes the
// family's current access session, its sealed successor and the family
// record, and returns {subject, access ref} (false if there was no
// family). Both refreshScript (reuse) and endFamilyScript run it.
const endFamilyLua = `
local function end_family(fk, gk)
  local f = redis.call('HMGET', fk, 'sub', 'acc')
  if not f[1] then
    redis.call('DEL', gk)
    return false
  end
  if f[2] then redis.call('DEL', 'sg:s:' .. f[2]) end
  redis.call('DEL', fk, gk)
  return {f[1], f[2] or ''}
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function ms(n) return string.format('%.0f', n) end
`

// endFamilyScript ends one family. KEYS: family, grace.
var endFamilyScript = redis.NewScript(endFamilyLua + `
return end_family(KEYS[1], KEYS[2])
`)

// familyCreateScript writes a new family. KEYS: family. ARGV: field/value
// pairs, then the family's first idle expiry (ms) last.
var familyCreateScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local exp = table.remove(ARGV)
redis.call('HSET', KEYS[1], unpack(ARGV))
redis.call('PEXPIREAT', KEYS[1], exp)
return 1
`)

// refreshScript is a refresh, whole: KEYS family, grace, the candidate
// successor's session key; ARGV the presented token's ref, the candidate
// token's ref, the candidate access ref, the candidate pair sealed under
// the presented token. Replies:
//
//	{0}                                  invalid: no such family, or past its end
//	{1, access end, family end, subject, old access ref}   rotated to the candidate
//	{2, access end, family end, subject, sealed pair}      in grace: the pair of the rotation that retired it
//	{3, subject, access ref}             reused: the family has been ended
var refreshScript = redis.NewScript(endFamilyLua + `
local fk, gk = KEYS[1], KEYS[2]
local f = redis.call('HMGET', fk, 'sub', 'tpl', 'ver', 'end', 'ridle', 'aidle', 'aabs', 'grace', 'cur', 'acc', 'aexp', 'prev')
if not f[1] then return {0} end
local now = now_ms()
local fend = tonumber(f[4])
if now >= fend then
  end_family(fk, gk)
  return {0}
end
if ARGV[1] == f[9] then
  if f[10] then redis.call('DEL', 'sg:s:' .. f[10]) end
  local aexp = math.min(now + tonumber(f[7]), fend)
  local aidle = tonumber(f[6])
  redis.call('SET', KEYS[3], '1:' .. f[3] .. ':' .. ms(aexp) .. ':' .. ms(aidle) .. ':' .. f[2], 'PXAT', ms(math.min(now + aidle, aexp)))
  local fexp = math.min(now + tonumber(f[5]), fend)
  redis.call('HSET', fk, 'cur', ARGV[2], 'acc', ARGV[3], 'aexp', ms(aexp), 'prev', ARGV[1])
  redis.call('PEXPIREAT', fk, ms(fexp))
  local grace = tonumber(f[8])
  if grace > 0 then
    redis.call('SET', gk, ARGV[4], 'PXAT', ms(math.min(now + grace, fexp)))
  else
    redis.call('DEL', gk)
  end
  return {1, ms(aexp), f[4], f[1], f[10] or ''}
end
if ARGV[1] == f[12] then
  local sealed = redis.call('GET', gk)
  if sealed then return {2, f[11], f[4], f[1], sealed} end
end
local gone = end_family(fk, gk)
return {3, gone[1], gone[2]}
`)

// familyCASScript replaces a family's access session template if it is
// unchanged since it was read, and bumps the version its access sessions
// get. KEYS: family. ARGV: old template, new template.
var familyCASScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[1], 'tpl', 'ver')
if not f[1] then return -1 end
if f[1] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'tpl', ARGV[2], 'ver', tostring(tonumber(f[2]) + 1))
return 1
`)

// userFamilyAddScript indexes a family under its subject, keeping the index
// alive as long as the family. KEYS: index. ARGV: family ref, its end (ms).
var userFamilyAddScript = redis.NewScript(`
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local cur = redis.call('PEXPIRETIME', KEYS[1])
local want = tonumber(ARGV[2])
if cur < want then redis.call('PEXPIREAT', KEYS[1], want) end
return 1
`)

func init() {
	scripts = append(scripts, endFamilyScript, familyCreateScript, refreshScript, familyCASScript, userFamilyAddScript)
}

// newID returns an ID for an access session of family fam: in Cluster mode
// one whose session key lands in the family's slot, anywhere else any.
//
// The candidates share 24 random bytes and differ in the last 8 (random
// too, XORed with a counter), so each ID keeps at least 192 random bits
// after the choice, which reveals only its 14-bit slot.
func (r *RedisStore) newID(fam string) (string, error) {
	if _, ok := r.rdb.(*redis.ClusterClient); !ok {
		return NewID()
	}
	return idInSlot(crc16([]byte(fam)) & (clusterSlots - 1))
}

// clusterSlots is Redis Cluster's slot count.
const clusterSlots = 16384

// idDraws bounds the search of idInSlot; failing it takes odds of about
// e^-1000.
const idDraws = 1 << 24

func idInSlot(slot uint16) (string, error) {
	var seed [32]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return "", fmt.Errorf("new session id: %w", err)
	}
	tail := binary.LittleEndian.Uint64(seed[24:])
	var id [IDLen]byte
	base64.RawURLEncoding.Encode(id[:], seed[:])
	prefix := crc16([]byte(sessionPrefix))
	const hexDigits = "0123456789abcdef"
	var last [8]byte
	for i := uint64(0); i < idDraws; i++ {
		// Bytes 24..31 are characters 32..42: only those change.
		binary.LittleEndian.PutUint64(last[:], tail^i)
		base64.RawURLEncoding.Encode(id[32:], last[:])
		sum := sha256.Sum256(id[:])
		// The CRC of sessionKey(RefOf(id)), without building it.
		crc := prefix
		for _, c := range sum[:RefLen/2] {
			crc = crc<<8 ^ crc16Table[byte(crc>>8)^hexDigits[c>>4]]
			crc = crc<<8 ^ crc16Table[byte(crc>>8)^hexDigits[c&15]]
		}
		if crc&(clusterSlots-1) == slot {
			return string(id[:]), nil
		}
	}
	return "", errors.New("new session id: no ID found for the family's slot")
}

// crc16 is CRC-16/XMODEM, Redis Cluster's key hash.
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^c]
	}
	return crc
}

var crc16Table = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[i] = crc
	}
	return t
}()

// CreateFamily implements Store.
func (r *RedisStore) CreateFamily(ctx context.Context, s *Session, limit Limit, p RefreshPolicy) (Refreshed, []string, error) {
	if err := p.check(); err != nil {
		return Refreshed{}, nil, err
	}
	fam, err := NewFamilyRef()
	if err != nil {
		return Refreshed{}, nil, err
	}
	id, err := r.newID(fam)
	if err != nil {
		return Refreshed{}, nil, err
	}
	tok, err := NewRefreshToken()
	if err != nil {
		return Refreshed{}, nil, err
	}
	now := r.now()
	end := s.CreatedAt.Add(p.TTL)
	s.Ref, s.FamilyRef = RefOf(id), fam
	s.ExpiresAt = minTime(s.CreatedAt.Add(p.AccessAbsolute), end)
	s.IdleTimeout = p.AccessIdle
	if s.Version == 0 {
		s.Version = 1
	}
	if err := checkNew(s, now); err != nil {
		return Refreshed{}, nil, err
	}
	tpl, err := encodeBody(s)
	if err != nil {
		return Refreshed{}, nil, err
	}
	tref := refreshRefOf(tok)
	endMS := end.UnixMilli()
	// The pointer first, then the family and its index entry, then the
	// access session through Create (the limit, the session index). The
	// token is handed out only after all of it.
	if err := r.rdb.Set(ctx, tokenKey(tref), pointerOf(fam, endMS), time.Until(end)).Err(); err != nil {
		return Refreshed{}, nil, wrap("create refresh token", err)
	}
	if err := r.run(ctx, userFamilyAddScript, []string{userFamilyKey(s.Subject)}, fam, endMS).Err(); err != nil {
		return Refreshed{}, nil, wrap("index family", err)
	}
	if r.hooks.familyIndexed != nil {
		r.hooks.familyIndexed()
	}
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	fields := []any{
		"sub", s.Subject, "tpl", tpl, "ver", strconv.FormatUint(s.Version, 10),
		"end", strconv.FormatInt(endMS, 10), "ridle", ms(p.Idle), "aidle", ms(p.AccessIdle),
		"aabs", ms(p.AccessAbsolute), "grace", ms(p.Grace), "cur", tref, "acc", s.Ref,
		"aexp", msString(s.ExpiresAt), msString(minTime(now.Add(p.Idle), end)),
	}
	if err := r.run(ctx, familyCreateScript, []string{familyKey(fam)}, fields...).Err(); err != nil {
		r.undoFamily(ctx, fam, s.Subject)
		return Refreshed{}, nil, wrap("create family", err)
	}
	evicted, err := r.Create(ctx, s, limit)
	if err != nil {
		r.undoFamily(ctx, fam, s.Subject)
		return Refreshed{}, nil, err
	}
	return Refreshed{ID: id, Ref: s.Ref, ExpiresAt: s.ExpiresAt, RefreshToken: tok, RefreshExpiresAt: end,
		FamilyRef: fam, Subject: s.Subject}, evicted, nil
}

// undoFamily ends a family whose creation failed half-way; best effort, as
// undoCreate.
func (r *RedisStore) undoFamily(ctx context.Context, fam, subject string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	_, _ = r.endFamily(ctx, fam)
	_ = r.rdb.ZRem(ctx, userFamilyKey(subject), fam).Err()
}

// Refresh implements Store: one read of the token's pointer, then the
// refresh script on the family's slot, which rotates, answers from the
// grace, or ends the family, atomically.
func (r *RedisStore) Refresh(ctx context.Context, token string) (Refreshed, error) {
	if !ValidRefreshToken(token) {
		return Refreshed{}, ErrRefreshInvalid
	}
	ptr, err := r.rdb.Get(ctx, tokenKey(refreshRefOf(token))).Result()
	if isNil(err) {
		return Refreshed{}, ErrRefreshInvalid
	}
	if err != nil {
		return Refreshed{}, wrap("read refresh token", err)
	}
	fam, endStr, ok := strings.Cut(ptr, ":")
	end, perr := strconv.ParseInt(endStr, 10, 64)
	if !ok || perr != nil || !ValidFamilyRef(fam) {
		return Refreshed{}, fmt.Errorf("refresh token: %w", ErrCorrupt)
	}
	// A pointer outlives its family by at most a clock skew; past the end
	// there is nothing to refresh, and a SET with a non-positive TTL would
	// keep the candidate's pointer forever.
	ttl := time.Until(time.UnixMilli(end))
	if ttl < time.Millisecond {
		return Refreshed{}, ErrRefreshInvalid
	}
	next, err := newSuccessor(token, fam, func() (string, error) { return r.newID(fam) })
	if err != nil {
		return Refreshed{}, err
	}
	// The candidate's pointer goes first: if this call rotates, the token it
	// hands out already resolves. If it does not, nobody ever sees the
	// candidate token, and its pointer is removed (or expires with the family).
	nk := tokenKey(next.tref)
	if err := r.rdb.Set(ctx, nk, pointerOf(fam, end), ttl).Err(); err != nil {
		return Refreshed{}, wrap("create refresh token", err)
	}
	res, err := r.run(ctx, refreshScript, []string{familyKey(fam), graceKey(fam), sessionKey(next.ref)},
		next.presentedRef, next.tref, next.ref, next.sealed).Slice()
	if err != nil {
		// The rotation may have happened with the reply lost; the client's
		// retry with the same token gets the pair from the grace.
		return Refreshed{}, wrap("refresh", err)
	}
	code, _ := res[0].(int64)
	if code != 1 {
		r.dropPointer(ctx, nk)
	}
	switch code {
	case 0:
		return Refreshed{}, ErrRefreshInvalid
	case 1, 2:
		out, err := refreshedOf(res, fam)
		if err != nil {
			return Refreshed{}, err
		}
		if code == 2 {
			id, tok, err := openSuccessor(token, fam, res[4].(string))
			if err != nil {
				return Refreshed{}, err
			}
			out.ID, out.Ref, out.RefreshToken = id, RefOf(id), tok
			return out, nil
		}
		out.ID, out.Ref, out.RefreshToken = next.id, next.ref, next.token
		defer r.syncCache(ctx)
		if r.hooks.refreshRotated != nil {
			r.hooks.refreshRotated()
		}
		// The index follows the rotation; if this fails the session is
		// still ended with its family (revoke-user reaches families through
		// their own index), only missing from listings until the next
		// refresh, so the refresh itself stands.
		uk := userKey(out.Subject)
		if r.run(ctx, indexAddScript, []string{uk}, out.Ref, msString(out.ExpiresAt)).Err() == nil {
			if old, _ := res[4].(string); old != "" {
				_ = r.rdb.ZRem(ctx, uk, old).Err()
			}
		}
		return out, nil
	case 3:
		sub, _ := res[1].(string)
		acc, _ := res[2].(string)
		// Reuse ended the family inside the script; its access session is
		// published after the fact (best effort: the family is ended either
		// way, and a verifier's copy of its tokens lapses at exp).
		if acc != "" {
			_ = r.recordRevoked(ctx, []ended{{ref: acc}})
		}
		r.unindexFamily(ctx, fam, sub, acc)
		return Refreshed{FamilyRef: fam, Subject: sub}, ErrRefreshReused
	}
	return Refreshed{}, fmt.Errorf("refresh: unexpected reply %v", res)
}

// refreshedOf reads the times and subject of a refresh script's reply.
func refreshedOf(res []any, fam string) (Refreshed, error) {
	if len(res) != 5 {
		return Refreshed{}, fmt.Errorf("refresh: unexpected reply of %d values", len(res))
	}
	aexp, err1 := strconv.ParseInt(fmt.Sprint(res[1]), 10, 64)
	fend, err2 := strconv.ParseInt(fmt.Sprint(res[2]), 10, 64)
	sub, _ := res[3].(string)
	if err1 != nil || err2 != nil || sub == "" {
		return Refreshed{}, fmt.Errorf("refresh: %w: family %s", ErrCorrupt, fam)
	}
	return Refreshed{ExpiresAt: time.UnixMilli(aexp), RefreshExpiresAt: time.UnixMilli(fend), FamilyRef: fam, Subject: sub}, nil
}

// dropPointer removes the pointer of a candidate token nobody got; best
// effort, it expires with the family anyway.
func (r *RedisStore) dropPointer(ctx context.Context, key string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
	defer cancel()
	_ = r.rdb.Del(ctx, key).Err()
}

// RevokeFamily implements Store.
func (r *RedisStore) RevokeFamily(ctx context.Context, fam string) error {
	if !ValidFamilyRef(fam) {
		return ErrNotFound
	}
	ok, err := r.endFamily(ctx, fam)
	if err != nil {
		return err
	}
	if !ok {
		return ErrNotFound
	}
	return nil
}

// Families implements Store: the subject's family index, less the
// entries past their family's end (scored by it).
func (r *RedisStore) Families(ctx context.Context, subject string) ([]string, error) {
	fams, err := r.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: userFamilyKey(subject), Start: "(" + msString(r.now()), Stop: "+inf", ByScore: true,
	}).Result()
	if err != nil {
		return nil, wrap("read family index", err)
	}
	return fams, nil
}

// endFamily is the one way the Redis store ends a family outside a refresh
// (revoke by family ref, logout, revoke-user, eviction): endFamilyScript
// deletes the family's access session and the family atomically, then the
// index entries go. A reuse ends the family inside refreshScript with the
// same Lua (endFamilyLua) and unindexes the same way (unindexFamily). It
// reports whether there was a family.
func (r *RedisStore) endFamily(ctx context.Context, fam string) (bool, error) {
	defer r.syncCache(ctx)
	// The access session is recorded for the revocation feed before it is
	// deleted, as revokeRefs does, so a lost reply cannot leave it
	// unpublished; one a refresh rotated to meanwhile is recorded after.
	pre, err := r.recordFamilyAccess(ctx, fam)
	if err != nil {
		return false, err
	}
	res, err := r.run(ctx, endFamilyScript, []string{familyKey(fam), graceKey(fam)}).Slice()
	if isNil(err) {
		return false, nil
	}
	if err != nil {
		return false, wrap("end family", err)
	}
	if len(res) != 2 {
		return false, fmt.Errorf("end family: unexpected reply %v", res)
	}
	sub, _ := res[0].(string)
	acc, _ := res[1].(string)
	if acc != "" && acc != pre {
		if err := r.recordRevoked(ctx, []ended{{ref: acc}}); err != nil {
			return true, err
		}
	}
	r.unindexFamily(ctx, fam, sub, acc)
	return true, nil
}

// recordFamilyAccess records a family's current access session as revoked
// and returns its ref ("" if the family has none or does not exist).
func (r *RedisStore) recordFamilyAccess(ctx context.Context, fam string) (string, error) {
	f, err := r.rdb.HMGet(ctx, familyKey(fam), "acc", "aexp").Result()
	if err != nil {
		return "", wrap("read family", err)
	}
	acc, _ := f[0].(string)
	if acc == "" {
		return "", nil
	}
	var abs time.Time
	if ms, err := strconv.ParseInt(fmt.Sprint(f[1]), 10, 64); err == nil {
		abs = time.UnixMilli(ms)
	}
	return acc, r.recordRevoked(ctx, []ended{{ref: acc, abs: abs}})
}

// unindexFamily removes an ended family and its access session from the
// subject's indexes; best effort: readers prune what is left.
func (r *RedisStore) unindexFamily(ctx context.Context, fam, sub, acc string) {
	if sub == "" {
		return
	}
	_ = r.rdb.ZRem(ctx, userFamilyKey(sub), fam).Err()
	if acc != "" {
		_ = r.rdb.ZRem(ctx, userKey(sub), acc).Err()
	}
}

// endFamiliesOf ends the families of sessions being deleted.
func (r *RedisStore) endFamiliesOf(ctx context.Context, raws []string) error {
	for _, raw := range raws {
		e, err := parseEntry("", raw)
		if err != nil {
			continue
		}
		s, err := e.Session()
		if err != nil || s.FamilyRef == "" {
			continue
		}
		if _, err := r.endFamily(ctx, s.FamilyRef); err != nil {
			return err
		}
	}
	return nil
}

// endUserFamilies ends every family of subject and returns how many there
// were.
func (r *RedisStore) endUserFamilies(ctx context.Context, subject string) (int, error) {
	fk := userFamilyKey(subject)
	fams, err := r.rdb.ZRange(ctx, fk, 0, -1).Result()
	if err != nil {
		return 0, wrap("read family index", err)
	}
	n := 0
	for _, fam := range fams {
		ok, err := r.endFamily(ctx, fam)
		if err != nil {
			return n, err
		}
		if ok {
			n++ // and endFamily unindexed it
		}
	}
	// A family not found is gone, or not written yet: CreateFamily indexes
	// a family before it writes it, so a login racing this one may be just
	// between the two. Its entry must stay, or once its access session
	// lapsed no later revoke-user would reach the family and its refresh
	// token. Only entries past their family's end, whose families are gone
	// for certain, are pruned.
	if len(fams) > 0 {
		if err := r.rdb.ZRemRangeByScore(ctx, fk, "-inf", msString(r.now())).Err(); err != nil {
			return n, wrap("prune family index", err)
		}
	}
	return n, nil
}

// updateUserFamilies applies u to the template of every family of subject,
// by compare-and-swap, so access sessions made by later refreshes carry it,
// and to each family's current access session. It returns the refs of the
// access sessions it updated.
func (r *RedisStore) updateUserFamilies(ctx context.Context, subject string, u Update) (map[string]bool, error) {
	fams, err := r.rdb.ZRange(ctx, userFamilyKey(subject), 0, -1).Result()
	if err != nil {
		return nil, wrap("read family index", err)
	}
	done := map[string]bool{}
	for _, fam := range fams {
		if err := r.updateFamily(ctx, fam, u, done); err != nil {
			return done, err
		}
	}
	return done, nil
}

// updateFamily swaps a family's template, then updates the access session
// the family names at that point. A refresh that rotated before the swap
// made that session from the old template and may not have indexed it yet
// (the index follows the rotation), so the pass over the subject's index
// can miss it; every refresh after the swap uses the new template.
func (r *RedisStore) updateFamily(ctx context.Context, fam string, u Update, done map[string]bool) error {
	fk := familyKey(fam)
	for range casAttempts {
		vals, err := r.rdb.HMGet(ctx, fk, "tpl").Result()
		if err != nil {
			return wrap("read family", err)
		}
		tpl, ok := vals[0].(string)
		if !ok {
			return nil // ended meanwhile
		}
		s, err := decodeBody(tpl)
		if err != nil {
			return fmt.Errorf("family %s: %w", fam, err)
		}
		next, err := encodeBody(applyUpdate(s, u))
		if err != nil {
			return err
		}
		swapped, err := r.run(ctx, familyCASScript, []string{fk}, tpl, next).Int()
		if err != nil {
			return wrap("update family", err)
		}
		switch swapped {
		case -1:
			return nil // ended meanwhile
		case 1:
			return r.updateFamilyAccess(ctx, fam, u, done)
		}
	}
	return fmt.Errorf("update family %s: still contended after %d attempts", fam, casAttempts)
}

// updateFamilyAccess applies u to a family's current access session, if it
// has a live one, and adds its ref to done.
func (r *RedisStore) updateFamilyAccess(ctx context.Context, fam string, u Update, done map[string]bool) error {
	acc, err := r.rdb.HGet(ctx, familyKey(fam), "acc").Result()
	if isNil(err) || acc == "" {
		return nil // ended meanwhile, or no access session yet
	}
	if err != nil {
		return wrap("read family", err)
	}
	raw, err := r.rdb.Get(ctx, sessionKey(acc)).Result()
	if isNil(err) {
		return nil // lapsed or not written yet: a login, not a refresh
	}
	if err != nil {
		return wrap("read session", err)
	}
	s, err := decodeSession(acc, raw)
	if err != nil {
		return err
	}
	ok, err := r.updateOne(ctx, s, raw, u)
	if ok {
		done[acc] = true
	}
	return err
}
