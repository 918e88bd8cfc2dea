package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Refresh tokens let a client that holds a short-lived access session (an
// ordinary session ID) get the next one without logging in again.
//
// A login that asks for refresh starts a family: one access session and one
// refresh token, both short of the family's absolute end. Each refresh
// rotates: it retires the presented refresh token, ends the family's access
// session and returns a successor pair. A family therefore has at most one
// live access session and one current refresh token at a time, and a
// stable family ref that names it in the admin API.
//
// Reuse detection (RFC 9700 §4.14.2): a retired refresh token presented
// again means two parties hold the family's tokens, so the whole family is
// revoked and ErrRefreshReused reported. Two requests racing with the same
// token (a client retrying a lost reply, two tabs) are not reuse: within the
// reuse grace counted from the rotation, the retired token yields the same
// successor pair again.
//
// The grace must not leave a usable credential at rest. The successor pair
// is sealed with AES-256-GCM under a key derived from the retired token
// (HMAC-SHA256(token, label)), and the sealed blob is kept only for the
// grace window. A store dump holds the token's hash, never the token, so it
// cannot open the blob; only a caller presenting the retired token can. The
// successor is random, not derived from the retired token: a derivation
// would let whoever once held a token compute every later one offline.

// RefreshTokenPrefix marks a refresh token, so a refresh token is never a
// valid session ID (ValidID: exactly 43 base64url chars) and a session ID is
// never a valid refresh token.
const RefreshTokenPrefix = "sgr_"

// RefreshTokenLen is the length of a refresh token.
const RefreshTokenLen = len(RefreshTokenPrefix) + IDLen

// FamilyRefPrefix marks a family ref, so the admin API can tell it from a
// session ref (32 hex characters) by shape alone.
const FamilyRefPrefix = "fam_"

// FamilyRefLen is the length of a family ref: the prefix and 128 random
// bits, hex.
const FamilyRefLen = len(FamilyRefPrefix) + RefLen

var (
	// ErrRefreshInvalid: unknown, expired, malformed or revoked refresh token → invalid_grant.
	ErrRefreshInvalid = errors.New("session: refresh token invalid")
	// ErrRefreshReused: a retired token presented after the grace window; the
	// whole family has been revoked by the same call → invalid_grant + refresh_reuse event.
	ErrRefreshReused = errors.New("session: refresh token reused")
)

// Refreshed is the outcome of a successful refresh.
type Refreshed struct {
	ID               string    // the new access session's ID: the client's next bearer / access_token
	Ref              string    // its session ref
	ExpiresAt        time.Time // the new access session's absolute end (expires_in counts to it)
	RefreshToken     string    // the successor refresh token
	RefreshExpiresAt time.Time // the family's absolute end
	FamilyRef        string
	Subject          string
}

// RefreshPolicy sets a family's lifetimes, fixed when it starts.
type RefreshPolicy struct {
	// AccessIdle and AccessAbsolute are each access session's timeouts,
	// capped by the family's end.
	AccessIdle     time.Duration
	AccessAbsolute time.Duration
	// TTL is the family's absolute lifetime from login; Idle is how long an
	// unused refresh token stays valid.
	TTL  time.Duration
	Idle time.Duration
	// Grace is how long after a rotation the retired token still yields the
	// same successor; 0 makes every second use reuse.
	Grace time.Duration
}

// check refuses a policy a store must not apply.
func (p RefreshPolicy) check() error {
	switch {
	case p.AccessIdle < time.Millisecond || p.AccessAbsolute < time.Millisecond:
		return fmt.Errorf("refresh policy: access timeouts must be positive")
	case p.TTL < time.Millisecond || p.Idle < time.Millisecond:
		return fmt.Errorf("refresh policy: refresh lifetimes must be positive")
	case p.Grace < 0:
		return fmt.Errorf("refresh policy: negative grace")
	}
	return nil
}

// NewRefreshToken returns a fresh refresh token from crypto/rand.
func NewRefreshToken() (string, error) {
	id, err := NewID()
	if err != nil {
		return "", fmt.Errorf("new refresh token: %w", err)
	}
	return RefreshTokenPrefix + id, nil
}

// ValidRefreshToken reports whether s is shaped like a refresh token:
// the prefix + 43 base64url chars (32 random bytes), canonical last char.
func ValidRefreshToken(s string) bool {
	return len(s) == RefreshTokenLen && strings.HasPrefix(s, RefreshTokenPrefix) && ValidID(s[len(RefreshTokenPrefix):])
}

// refreshRefOf is what a store keeps of a refresh token: the first 128 bits
// of its SHA-256, hex. The prefix is hashed too, so it never equals the ref
// of the session ID made of the same characters.
func refreshRefOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:RefLen/2])
}

// NewFamilyRef returns a fresh family ref.
func NewFamilyRef() (string, error) {
	var b [RefLen / 2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new family ref: %w", err)
	}
	return FamilyRefPrefix + hex.EncodeToString(b[:]), nil
}

// ValidFamilyRef reports whether s has the shape NewFamilyRef produces.
func ValidFamilyRef(s string) bool {
	return len(s) == FamilyRefLen && strings.HasPrefix(s, FamilyRefPrefix) && ValidRef(s[len(FamilyRefPrefix):])
}

// graceLabel separates the grace key from any other use of a token.
const graceLabel = "sessiongate refresh grace v1"

// graceAEAD is the cipher that seals a successor pair for the holder of the
// token it replaced.
func graceAEAD(token string) (cipher.AEAD, error) {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte(graceLabel))
	block, err := aes.NewCipher(mac.Sum(nil))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// sealSuccessor seals the successor pair (access ID, refresh token) under
// the retired token. The family ref and the retired token's ref are bound
// as associated data, so a blob moved to another family or token fails.
func sealSuccessor(oldToken, family, id, next string) (string, error) {
	aead, err := graceAEAD(oldToken)
	if err != nil {
		return "", fmt.Errorf("seal successor: %w", err)
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(id)+1+len(next)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal successor: %w", err)
	}
	out := aead.Seal(nonce, nonce, []byte(id+":"+next), []byte(family+":"+refreshRefOf(oldToken)))
	return base64.RawStdEncoding.EncodeToString(out), nil
}

// openSuccessor opens what sealSuccessor sealed. Any failure means the blob
// is not the successor of this token in this family: ErrRefreshInvalid.
func openSuccessor(oldToken, family, sealed string) (id, next string, err error) {
	raw, err := base64.RawStdEncoding.DecodeString(sealed)
	if err != nil {
		return "", "", ErrRefreshInvalid
	}
	aead, err := graceAEAD(oldToken)
	if err != nil {
		return "", "", fmt.Errorf("open successor: %w", err)
	}
	if len(raw) < aead.NonceSize() {
		return "", "", ErrRefreshInvalid
	}
	pt, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(family+":"+refreshRefOf(oldToken)))
	if err != nil {
		return "", "", ErrRefreshInvalid
	}
	id, next, ok := strings.Cut(string(pt), ":")
	if !ok || !ValidID(id) || !ValidRefreshToken(next) {
		return "", "", ErrRefreshInvalid
	}
	return id, next, nil
}

// successor is a candidate next pair, made before the store's atomic step:
// the step either installs it or, for a racing duplicate, returns the pair
// another call installed.
type successor struct {
	id, ref      string
	token, tref  string
	sealed       string // the pair sealed under the presented token
	presentedRef string
}

// newSuccessor makes a candidate pair; newID makes the access session ID
// (the Redis Cluster store picks one whose key lands in the family's slot).
func newSuccessor(presented, family string, newID func() (string, error)) (successor, error) {
	id, err := newID()
	if err != nil {
		return successor{}, err
	}
	tok, err := NewRefreshToken()
	if err != nil {
		return successor{}, err
	}
	sealed, err := sealSuccessor(presented, family, id, tok)
	if err != nil {
		return successor{}, err
	}
	return successor{id: id, ref: RefOf(id), token: tok, tref: refreshRefOf(tok), sealed: sealed,
		presentedRef: refreshRefOf(presented)}, nil
}

// encodeBody renders the JSON part of a record: what a family keeps as the
// template of its access sessions.
func encodeBody(s *Session) (string, error) {
	c := *s // the header is the access session's, not the template's
	c.ExpiresAt, c.IdleTimeout = time.UnixMilli(0), 0
	raw, err := encodeRecord(&c)
	if err != nil {
		return "", err
	}
	e, err := parseEntry(s.Ref, raw)
	if err != nil {
		return "", err
	}
	return e.body, nil
}

// decodeBody decodes a family's template as a session.
func decodeBody(body string) (*Session, error) {
	if len(body) == 0 || body[0] != '{' || len(body) > MaxRecordSize {
		return nil, fmt.Errorf("%w: family template", ErrCorrupt)
	}
	return Entry{body: body}.Session()
}
