package token

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// Claims is what one internal JWT says about one session.
type Claims struct {
	Subject, Tenant, SessionRef, Audience, ID string // ID = jti
	Roles                                     []string
	// Custom holds free-form string claims. Every name must pass
	// CheckCustomClaim, or Sign fails: a session attribute must never be
	// able to spoof the issuer, audience, expiry, subject or roles, not even
	// for a verifier that matches names case-insensitively.
	Custom                         map[string]string
	IssuedAt, NotBefore, ExpiresAt time.Time
	// Kind is KindUser (also when empty) or KindService; it sets the kind
	// claim and the header's typ.
	Kind string
	// Actor, for a token obtained by token exchange, is who acts for the
	// subject (RFC 8693 §4.1): the act claim.
	Actor *Actor
}

// Actor is an act claim: the acting party's subject and, when it acted for
// yet another, that one's act in turn.
type Actor struct {
	Subject string `json:"sub"`
	Actor   *Actor `json:"act,omitempty"`
}

// MaxActorDepth bounds an act chain: a delegation deeper than that is
// refused rather than signed.
const MaxActorDepth = 8

// Depth is the length of the act chain starting at a (0 for nil).
func (a *Actor) Depth() int {
	n := 0
	for ; a != nil; a = a.Actor {
		n++
	}
	return n
}

// wireClaims fixes the JSON shape and member order of the payload. Times are
// NumericDate seconds, aud is a single string, roles is always an array.
// Its JSON names are exactly ownedClaims.
type wireClaims struct {
	Iss    string   `json:"iss,omitempty"`
	Sub    string   `json:"sub,omitempty"`
	Aud    string   `json:"aud,omitempty"`
	Exp    int64    `json:"exp"`
	Nbf    int64    `json:"nbf"`
	Iat    int64    `json:"iat"`
	Jti    string   `json:"jti"`
	Sid    string   `json:"sid,omitempty"`
	Tenant string   `json:"tenant,omitempty"`
	Roles  []string `json:"roles"`
	Kind   string   `json:"kind"`
	Act    *Actor   `json:"act,omitempty"`
}

// Signer mints internal JWTs. It is safe for concurrent use; SetKeys swaps the
// key set atomically so a rotation never blocks or tears a Sign call.
type Signer struct {
	keys   atomic.Pointer[KeySet]
	issuer string
}

// NewSigner returns a Signer that signs with ks and stamps iss = issuer.
func NewSigner(ks *KeySet, issuer string) *Signer {
	s := &Signer{issuer: issuer}
	s.keys.Store(ks)
	return s
}

// SetKeys atomically replaces the key set used by subsequent Sign calls and
// served by JWKSHandler. A nil ks is ignored so a failed reload can never
// leave the signer without keys.
func (s *Signer) SetKeys(ks *KeySet) {
	if ks != nil {
		s.keys.Store(ks)
	}
}

// Keys returns the current key set.
func (s *Signer) Keys() *KeySet { return s.keys.Load() }

// ActiveKID is the key ID Sign uses now.
func (s *Signer) ActiveKID() string { return s.Keys().ActiveKID() }

// Issuer returns the iss value stamped on every token.
func (s *Signer) Issuer() string { return s.issuer }

// Sign returns a compact JWS for c with header {alg, kid, typ}: typ "JWT"
// for a user token, "service+jwt" for a service token (Claims.Kind).
// ExpiresAt is required. A zero IssuedAt means now, a zero NotBefore means
// IssuedAt, and an empty ID gets a random 128-bit jti.
func (s *Signer) Sign(c Claims) (string, error) {
	ks := s.keys.Load()
	if ks == nil {
		return "", errors.New("sign token: no key set configured")
	}
	iat := c.IssuedAt
	if iat.IsZero() {
		iat = time.Now()
	}
	nbf := c.NotBefore
	if nbf.IsZero() {
		nbf = iat
	}
	if c.ExpiresAt.IsZero() {
		return "", errors.New("sign token: ExpiresAt is required")
	}
	if !c.ExpiresAt.After(iat) {
		return "", errors.New("sign token: ExpiresAt must be after IssuedAt")
	}
	jti := c.ID
	if jti == "" {
		jti = rand.Text()
	}
	kind, header := KindUser, ks.header
	switch c.Kind {
	case "", KindUser:
	case KindService:
		kind, header = KindService, ks.serviceHeader
	default:
		return "", fmt.Errorf("sign token: unknown kind %q", c.Kind)
	}
	if c.Actor.Depth() > MaxActorDepth {
		return "", fmt.Errorf("sign token: act chain deeper than %d", MaxActorDepth)
	}
	for a := c.Actor; a != nil; a = a.Actor {
		if a.Subject == "" {
			return "", errors.New("sign token: act without sub")
		}
	}
	roles := c.Roles
	if roles == nil {
		roles = []string{} // downstream code can rely on an array, never null
	}
	payload, err := json.Marshal(wireClaims{
		Iss:    s.issuer,
		Sub:    c.Subject,
		Aud:    c.Audience,
		Exp:    c.ExpiresAt.Unix(),
		Nbf:    nbf.Unix(),
		Iat:    iat.Unix(),
		Jti:    jti,
		Sid:    c.SessionRef,
		Tenant: c.Tenant,
		Roles:  roles,
		Kind:   kind,
		Act:    c.Actor,
	})
	if err != nil {
		return "", fmt.Errorf("sign token: encode claims: %w", err)
	}
	if len(c.Custom) > 0 {
		if payload, err = appendCustom(payload, c.Custom); err != nil {
			return "", fmt.Errorf("sign token: encode custom claims: %w", err)
		}
	}

	enc := base64.RawURLEncoding
	var b strings.Builder
	// Room for header, payload and the largest signature (RSA-3072+ → 512
	// bytes base64) so the builder normally allocates once.
	b.Grow(len(header) + 2 + enc.EncodedLen(len(payload)) + 700)
	b.WriteString(header)
	b.WriteByte('.')
	scratch := make([]byte, max(enc.EncodedLen(len(payload)), 700))
	n := enc.EncodedLen(len(payload))
	enc.Encode(scratch[:n], payload)
	b.Write(scratch[:n])
	// strings.Builder never rewrites bytes already written, so the signing
	// input can alias the buffer that the signature is appended to.
	signingInput := b.String()
	sig, err := ks.method.Sign(signingInput, ks.signKey)
	if err != nil {
		return "", fmt.Errorf("sign token with kid %s: %w", ks.ActiveKID(), err)
	}
	b.WriteByte('.')
	n = enc.EncodedLen(len(sig))
	if n > len(scratch) {
		scratch = make([]byte, n)
	}
	enc.Encode(scratch[:n], sig)
	b.Write(scratch[:n])
	return b.String(), nil
}

// appendCustom merges the custom claims into the already encoded payload
// object. A name CheckCustomClaim refuses fails the whole token rather than
// being dropped: it can only come from a record the admin API did not
// write, which is corrupt, not something to sign around.
func appendCustom(payload []byte, custom map[string]string) ([]byte, error) {
	for k := range custom {
		if err := CheckCustomClaim(k); err != nil {
			return nil, err
		}
	}
	extra, err := json.Marshal(custom) // sorted keys: deterministic payload
	if err != nil {
		return nil, err
	}
	// payload is `{...}` and extra is `{...}`: splice to `{...,...}`.
	out := make([]byte, 0, len(payload)+len(extra))
	out = append(out, payload[:len(payload)-1]...)
	out = append(out, ',')
	out = append(out, extra[1:]...)
	return out, nil
}
