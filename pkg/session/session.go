// Package session is sessiongate's server-side session model: the opaque
// session IDs handed to clients, the records kept for them, and the stores
// that keep those records (Redis in production, memory for --dev and tests).
//
// A store never sees a usable session ID. Everything past the edge works with
// the session's ref, a one-way hash of the ID: Redis keys, the admin API, logs
// and the internal JWT's sid claim. Stealing a Redis dump or a log line
// therefore yields nothing a client could present.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"time"
)

// IDLen is the length of an encoded session ID: 32 random bytes, base64url,
// no padding.
const IDLen = 43

// RefLen is the length of a session ref: the first 16 bytes of SHA-256(ID),
// hex-encoded. 128 bits keeps collisions out of reach while staying short in
// keys and logs.
const RefLen = 32

var (
	// ErrNotFound means the session does not exist or has expired.
	ErrNotFound = errors.New("session not found")
	// ErrLimit means max_per_user is reached and on_limit is "reject".
	ErrLimit = errors.New("session limit reached for subject")
	// ErrCorrupt means a stored record could not be decoded; callers must
	// treat the session as unusable.
	ErrCorrupt = errors.New("session record corrupt")
)

// NewID returns a fresh session ID from crypto/rand.
func NewID() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// ValidID reports whether id has exactly the shape NewID produces. It is the
// gate in front of every store access: anything else is rejected without a
// lookup, so garbage never costs a Redis round trip.
func ValidID(id string) bool {
	if len(id) != IDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	// 43 characters carry 258 bits; the last character's two low bits must be
	// zero for the encoding to be canonical. Otherwise two spellings would map
	// to one ID.
	return b64val(id[IDLen-1])&0x3 == 0
}

func b64val(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c - 'A'
	case c >= 'a' && c <= 'z':
		return c - 'a' + 26
	case c >= '0' && c <= '9':
		return c - '0' + 52
	case c == '-':
		return 62
	default:
		return 63
	}
}

// RefOf returns the ref of a session ID.
func RefOf(id string) string {
	// Stack buffers: on the Check path this is one allocation (the
	// result), not three. An ID longer than the buffer (never a valid one)
	// only costs the copy on the heap.
	var in [IDLen]byte
	sum := sha256.Sum256(append(in[:0], id...))
	var out [RefLen]byte
	hex.Encode(out[:], sum[:RefLen/2])
	return string(out[:])
}

// ValidRef reports whether ref has the shape RefOf produces.
func ValidRef(ref string) bool {
	if len(ref) != RefLen {
		return false
	}
	for i := 0; i < len(ref); i++ {
		c := ref[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Device describes where a session was created, as told by the login service.
type Device struct {
	UserAgent string `json:"user_agent,omitempty"`
	IP        string `json:"ip,omitempty"`
	Name      string `json:"name,omitempty"`
}

// Session is one login.
type Session struct {
	Ref         string
	Subject     string
	Tenant      string
	Roles       []string
	Claims      map[string]string
	Device      Device
	CreatedAt   time.Time
	ExpiresAt   time.Time     // absolute expiry, never extended
	IdleTimeout time.Duration // sliding window renewed by every Touch
	Version     uint64        // changes on every update; keys token caches
	// IdleExpiresAt is the current sliding expiry, set by List only (zero
	// elsewhere): IdleExpiresAt − IdleTimeout is when the session was last
	// used, to the store's slide granularity (a RedisStore with its cache on
	// slides at most once per slide interval). Near the absolute end the
	// idle expiry is capped there, and the difference is only a lower bound.
	IdleExpiresAt time.Time
	// FamilyRef names the refresh family of an access session; "" for a
	// session without refresh.
	FamilyRef string
}

// HasAnyRole reports whether have contains at least one of want. An empty
// want is satisfied by anything.
func HasAnyRole(have, want []string) bool {
	if len(want) == 0 {
		return true
	}
	for _, w := range want {
		for _, h := range have {
			if h == w {
				return true
			}
		}
	}
	return false
}

// Limit is the per-subject session cap applied by Create.
type Limit struct {
	MaxPerUser int  // 0 = unlimited
	Reject     bool // reject the new session instead of evicting the oldest
}

// Update is a permission change applied to every session of a subject.
// Nil fields are left as they are.
type Update struct {
	Roles  *[]string
	Claims map[string]string
}

// Page is one page of a subject's sessions, in index order (oldest first).
type Page struct {
	Sessions []*Session
	// Next is the position to pass as ListPage's after for the following
	// page; 0 when the walk is done. It is a position in the subject's
	// index, not a count, so sessions created or deleted between pages do
	// not shift it.
	Next uint64
}

// errPageLimit refuses a page of no sessions: it could never make progress.
var errPageLimit = errors.New("list page: limit must be at least 1")

// Interface guards.
var (
	_ Store = (*MemoryStore)(nil)
	_ Store = (*RedisStore)(nil)
)

// Store is the contract both stores meet; the conformance tests hold them to
// it. Everything is keyed by ref or subject, never by session ID.
type Store interface {
	// Create stores s (s.Ref, Subject, CreatedAt, ExpiresAt and IdleTimeout
	// set by the caller) and applies the limit. It returns the refs of
	// sessions evicted to make room.
	Create(ctx context.Context, s *Session, limit Limit) (evicted []string, err error)
	// Touch resolves a session and extends its idle expiry (capped at the
	// absolute one) in one atomic step: the Check path's single round trip.
	// A RedisStore with its cache on (EnableCache) may answer from memory
	// and slide the expiry later, at most once per slide interval.
	Touch(ctx context.Context, ref string) (Entry, error)
	// Delete removes one session; ErrNotFound if there was none.
	Delete(ctx context.Context, ref string) error
	// List returns the live sessions of subject, oldest first, with
	// IdleExpiresAt set.
	List(ctx context.Context, subject string) ([]*Session, error)
	// ListPage returns at most limit (≥ 1) live sessions of subject from
	// the position after (0: the start), and where the next page starts.
	// Positions only grow along a walk, so following Next from 0 never
	// returns a session twice, and returns every session that lives
	// throughout the walk; one created during it may or may not appear.
	// Index entries of expired sessions are skipped (and pruned) without
	// ending the walk: a page may hold fewer than limit sessions, even
	// none, while Next is not 0. Only Next == 0 means done.
	ListPage(ctx context.Context, subject string, after uint64, limit int) (Page, error)
	// DeleteUser removes every session of subject and returns how many.
	DeleteUser(ctx context.Context, subject string) (int, error)
	// UpdateUser applies u to every session of subject, bumping each version.
	UpdateUser(ctx context.Context, subject string, u Update) (int, error)
	// CreateFamily starts a refresh family (refresh.go) for s: its first
	// access session, whose ID the store picks, and its first refresh
	// token. s carries the login (Subject, CreatedAt, ...); the store sets
	// Ref, FamilyRef, ExpiresAt and IdleTimeout from p. The limit applies
	// as for Create, and evicted refs are returned likewise.
	CreateFamily(ctx context.Context, s *Session, limit Limit, p RefreshPolicy) (Refreshed, []string, error)
	// Refresh rotates the family of refreshToken in one atomic step:
	// ErrRefreshInvalid for an unknown, expired, malformed or revoked
	// token; ErrRefreshReused, with the family revoked, for a retired one
	// past the grace (and only FamilyRef and Subject set, for the
	// refresh_reuse event); any other error is a store failure.
	Refresh(ctx context.Context, refreshToken string) (Refreshed, error)
	// RevokeFamily ends a family: its access session and every refresh
	// token of it. ErrNotFound if there was none.
	RevokeFamily(ctx context.Context, familyRef string) error
	// Families returns the refs of subject's refresh families, including
	// those whose access session has lapsed (List does not show them, yet
	// their refresh token still works). It may name a family that has
	// ended since; RevokeFamily of one is ErrNotFound.
	Families(ctx context.Context, subject string) ([]string, error)
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
	Close() error
}
