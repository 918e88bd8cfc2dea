package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"strings"
	"time"
)

// Service credentials are API keys for machine callers: a registered service
// presents one as a bearer token and gets a service token. Like a session
// ID, a credential is shown once and stored only as its ref, a one-way hash.
//
// Form: "sgsvc_" + 43 random base62 characters + 6 base62 characters of the
// CRC32 of the random part. The fixed prefix lets secret scanners find a
// leaked one; the checksum lets Check refuse a mistyped or made-up one
// without a store round trip. The checksum is no secret and no defence: the
// 256 random bits are.
const (
	CredentialPrefix = "sgsvc_"
	credRandLen      = 43
	credSumLen       = 6
	// CredentialLen is the length of a service credential.
	CredentialLen = len(CredentialPrefix) + credRandLen + credSumLen
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// ErrServiceExists means a service of that name is already registered.
var ErrServiceExists = errors.New("service already exists")

// NewCredential returns a fresh service credential from crypto/rand.
func NewCredential() (string, error) {
	var b [CredentialLen]byte
	copy(b[:], CredentialPrefix)
	r := b[len(CredentialPrefix) : len(CredentialPrefix)+credRandLen]
	// Rejection sampling: bytes of 248 and above would make the first 8
	// characters likelier than the rest.
	var buf [64]byte
	for i := 0; i < len(r); {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", fmt.Errorf("new service credential: %w", err)
		}
		for _, c := range buf {
			if c < 248 && i < len(r) {
				r[i] = base62[c%62]
				i++
			}
		}
	}
	putChecksum(b[len(CredentialPrefix)+credRandLen:], crc32.ChecksumIEEE(r))
	return string(b[:]), nil
}

// putChecksum writes sum as credSumLen base62 digits, most significant
// first (62^6 > 2^32, so every sum fits).
func putChecksum(dst []byte, sum uint32) {
	v := uint64(sum)
	for i := credSumLen - 1; i >= 0; i-- {
		dst[i] = base62[v%62]
		v /= 62
	}
}

// ValidCredential reports whether s has exactly the form NewCredential
// produces, checksum included. It allocates nothing and is the gate in
// front of every store access for a credential.
func ValidCredential(s string) bool {
	if len(s) != CredentialLen || !strings.HasPrefix(s, CredentialPrefix) {
		return false
	}
	body := s[len(CredentialPrefix):]
	for i := 0; i < len(body); i++ {
		if !isBase62(body[i]) {
			return false
		}
	}
	var want [credSumLen]byte
	putChecksum(want[:], crcString(body[:credRandLen]))
	return string(want[:]) == body[credRandLen:]
}

// crcString is crc32.ChecksumIEEE over a string, table-driven in place:
// the library's entry points take a slice through a function value, which
// makes the caller's copy escape to the heap on every Check.
func crcString(s string) uint32 {
	crc := ^uint32(0)
	for i := 0; i < len(s); i++ {
		crc = crc32.IEEETable[byte(crc)^s[i]] ^ crc>>8
	}
	return ^crc
}

func isBase62(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// HasCredentialPrefix reports whether s starts with the credential prefix in
// any ASCII case: anything so marked is treated as a service credential
// (valid or not), never as something else.
func HasCredentialPrefix(s string) bool {
	return len(s) >= len(CredentialPrefix) && strings.EqualFold(s[:len(CredentialPrefix)], CredentialPrefix)
}

// CredentialRefOf returns the ref of a service credential: the first 128
// bits of its SHA-256, hex, as for session IDs. The prefix is part of the
// hashed input, so a credential ref never equals the ref of a session ID.
func CredentialRefOf(cred string) string {
	// A stack copy, as in RefOf: one allocation (the result).
	var in [CredentialLen]byte
	sum := sha256.Sum256(append(in[:0], cred...))
	var out [RefLen]byte
	hex.Encode(out[:], sum[:RefLen/2])
	return string(out[:])
}

// MaxServiceName bounds a service name.
const MaxServiceName = 63

// ValidServiceName reports whether name is a service name: a DNS label
// (1 to 63 of a-z 0-9 and '-', not starting or ending with '-'). That is
// what a Kubernetes service account, and so a SPIFFE ID's last segment,
// can be, and it is safe as a token subject, an audience and a Redis key.
func ValidServiceName(name string) bool {
	if name == "" || len(name) > MaxServiceName || name[0] == '-' || name[len(name)-1] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Service is a registered machine caller.
type Service struct {
	Name  string
	Roles []string
	// Audiences are the audiences the service may request for itself.
	Audiences   []string
	CreatedAt   time.Time
	Credentials []CredentialInfo
}

// CredentialInfo names one credential of a service, by ref.
type CredentialInfo struct {
	Ref       string
	CreatedAt time.Time
}

// ServiceEntry is a credential as Check reads it: which service it belongs
// to, the record's version (which keys token caches), and the rest of the
// record, decoded only when a token must be signed.
type ServiceEntry struct {
	Ref     string // credential ref; "" for a service resolved by name
	Name    string
	Version uint64
	body    string
	// record: body is the service record (ResolveServiceName), not a
	// credential record.
	record bool
}

// Roles decodes the service's roles from the record it was read from. An
// entry of a service that is not registered has none.
func (e ServiceEntry) Roles() ([]string, error) {
	if e.body == "" {
		return nil, nil
	}
	var roles []string
	if e.record {
		s, err := decodeService(recordFormat + ":" + e.body)
		if err != nil {
			return nil, err
		}
		if s.Name != e.Name {
			return nil, fmt.Errorf("%w: service record of %s under %s", ErrCorrupt, s.Name, e.Name)
		}
		roles = s.Roles
	} else {
		var b credBody
		if err := strictJSON(e.body, &b); err != nil {
			return nil, err
		}
		roles = b.Roles
	}
	for _, r := range roles {
		if !cleanText(r) {
			return nil, fmt.Errorf("%w: control character in a role", ErrCorrupt)
		}
	}
	return roles, nil
}

// serviceEntryOf is the entry of a service read by name from its raw
// record: the name, and a version that changes whenever the record does
// (an FNV-1a hash of it, computed without allocating), so a token cached
// for it is never served once its roles have changed.
func serviceEntryOf(name, raw string) (ServiceEntry, error) {
	body, ok := strings.CutPrefix(raw, recordFormat+":")
	if !ok || len(raw) > MaxRecordSize {
		return ServiceEntry{}, fmt.Errorf("%w: service %s: unknown format", ErrCorrupt, name)
	}
	h := uint64(14695981039346656037)
	for i := 0; i < len(raw); i++ {
		h ^= uint64(raw[i])
		h *= 1099511628211
	}
	return ServiceEntry{Name: name, Version: h, body: body, record: true}, nil
}

// ServiceStore keeps services and their credentials. Both stores implement
// it next to Store; the conformance tests hold them to it.
//
// A credential lives under its own key (its ref), so Check reads exactly
// one key; the service record lists its credentials, so deleting the
// service can reach every one.
type ServiceStore interface {
	// CreateService registers s with one first credential (by ref);
	// ErrServiceExists if the name is taken.
	CreateService(ctx context.Context, s *Service, credRef string) error
	// AddCredential adds a credential to a service; ErrNotFound if there is
	// no such service.
	AddCredential(ctx context.Context, name, credRef string) error
	// RevokeCredential deletes one credential; ErrNotFound if the service
	// has no such credential. It fails on the next Check.
	RevokeCredential(ctx context.Context, name, credRef string) error
	// DeleteService deletes a service and every credential, and returns how
	// many credentials it deleted; ErrNotFound if there was none.
	DeleteService(ctx context.Context, name string) (int, error)
	// GetService returns one service; ErrNotFound if there is none.
	GetService(ctx context.Context, name string) (*Service, error)
	// ListServices returns every service, by name.
	ListServices(ctx context.Context) ([]*Service, error)
	// ResolveCredential returns the credential behind ref: ErrNotFound for
	// an unknown or revoked one, ErrCorrupt for a record sessiongate would
	// not have written, anything else when the store could not answer.
	ResolveCredential(ctx context.Context, ref string) (ServiceEntry, error)
	// ResolveServiceName returns the service registered under name, for a
	// caller identified by name (an mTLS certificate); ErrNotFound when no
	// such service is registered. Errors otherwise as ResolveCredential.
	ResolveServiceName(ctx context.Context, name string) (ServiceEntry, error)
}

// Interface guards.
var (
	_ ServiceStore = (*MemoryStore)(nil)
	_ ServiceStore = (*RedisStore)(nil)
)

// Stored forms. A credential record is what Check reads:
//
//	1:<version>:<service name>:<json {"rol","cat"}>
//
// with the name in the header, so a Check whose token is cached needs no
// JSON decoding, as for sessions. A service record is "1:" and JSON.
type credBody struct {
	Roles     []string `json:"rol,omitempty"`
	CreatedAt int64    `json:"cat"`
}

type serviceBody struct {
	Name        string      `json:"name"`
	Roles       []string    `json:"rol,omitempty"`
	Audiences   []string    `json:"aud,omitempty"`
	CreatedAt   int64       `json:"cat"`
	Credentials []credEntry `json:"cred"`
}

type credEntry struct {
	Ref       string `json:"ref"`
	CreatedAt int64  `json:"cat"`
}

func encodeCredential(s *Service, createdAt time.Time) (string, error) {
	js, err := json.Marshal(credBody{Roles: s.Roles, CreatedAt: createdAt.UnixMilli()})
	if err != nil {
		return "", fmt.Errorf("encode credential of %s: %w", s.Name, err)
	}
	return recordFormat + ":1:" + s.Name + ":" + string(js), nil
}

// parseServiceEntry reads a credential record's header. It allocates
// nothing: the name and body stay substrings of raw.
func parseServiceEntry(ref, raw string) (ServiceEntry, error) {
	if len(raw) > MaxRecordSize {
		return ServiceEntry{}, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(raw))
	}
	rest, ok := strings.CutPrefix(raw, recordFormat+":")
	if !ok {
		return ServiceEntry{}, fmt.Errorf("%w: unknown format", ErrCorrupt)
	}
	v, rest, ok := cutNumber(rest)
	if !ok {
		return ServiceEntry{}, fmt.Errorf("%w: bad header", ErrCorrupt)
	}
	name, body, ok := strings.Cut(rest, ":")
	if !ok || !ValidServiceName(name) || len(body) == 0 || body[0] != '{' {
		return ServiceEntry{}, fmt.Errorf("%w: bad header", ErrCorrupt)
	}
	return ServiceEntry{Ref: ref, Name: name, Version: v, body: body}, nil
}

func encodeService(s *Service) (string, error) {
	b := serviceBody{Name: s.Name, Roles: s.Roles, Audiences: s.Audiences, CreatedAt: s.CreatedAt.UnixMilli(),
		Credentials: make([]credEntry, 0, len(s.Credentials))}
	for _, c := range s.Credentials {
		b.Credentials = append(b.Credentials, credEntry{Ref: c.Ref, CreatedAt: c.CreatedAt.UnixMilli()})
	}
	js, err := json.Marshal(b)
	if err != nil {
		return "", fmt.Errorf("encode service %s: %w", s.Name, err)
	}
	if len(js)+2 > MaxRecordSize {
		return "", fmt.Errorf("encode service %s: record of %d bytes exceeds %d", s.Name, len(js)+2, MaxRecordSize)
	}
	return recordFormat + ":" + string(js), nil
}

func decodeService(raw string) (*Service, error) {
	if len(raw) > MaxRecordSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(raw))
	}
	body, ok := strings.CutPrefix(raw, recordFormat+":")
	if !ok {
		return nil, fmt.Errorf("%w: unknown format", ErrCorrupt)
	}
	var b serviceBody
	if err := strictJSON(body, &b); err != nil {
		return nil, err
	}
	if !ValidServiceName(b.Name) {
		return nil, fmt.Errorf("%w: bad service name", ErrCorrupt)
	}
	s := &Service{Name: b.Name, Roles: b.Roles, Audiences: b.Audiences, CreatedAt: time.UnixMilli(b.CreatedAt)}
	for _, c := range b.Credentials {
		if !ValidRef(c.Ref) {
			return nil, fmt.Errorf("%w: bad credential ref", ErrCorrupt)
		}
		s.Credentials = append(s.Credentials, CredentialInfo{Ref: c.Ref, CreatedAt: time.UnixMilli(c.CreatedAt)})
	}
	return s, nil
}

// strictJSON decodes one JSON object with no unknown fields and nothing
// after it; anything else is a corrupt record.
func strictJSON(body string, v any) error {
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: data after the record", ErrCorrupt)
	}
	return nil
}

// cleanText reports whether v holds no control character (see
// recordBody.clean).
func cleanText(v string) bool {
	for _, r := range v {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return false
		}
	}
	return true
}

// checkNewService refuses a service a store must not keep; both stores call
// it so they refuse the same things.
func checkNewService(s *Service, credRef string) error {
	switch {
	case !ValidServiceName(s.Name):
		return fmt.Errorf("create service: invalid name %q", s.Name)
	case !ValidRef(credRef):
		return fmt.Errorf("create service %s: invalid credential ref", s.Name)
	}
	return nil
}

// withCredential returns a copy of s with one more credential.
func withCredential(s *Service, ref string, at time.Time) *Service {
	c := *s
	c.Credentials = append(append([]CredentialInfo(nil), s.Credentials...), CredentialInfo{Ref: ref, CreatedAt: at})
	return &c
}

// withoutCredential returns a copy of s without the credential ref, and
// whether it had it.
func withoutCredential(s *Service, ref string) (*Service, bool) {
	c := *s
	c.Credentials = nil
	found := false
	for _, ci := range s.Credentials {
		if ci.Ref == ref {
			found = true
			continue
		}
		c.Credentials = append(c.Credentials, ci)
	}
	return &c, found
}

// maxCredentials bounds the credentials of one service: two are enough for
// a rotation; a few more leave room for staged rollouts.
const maxCredentials = 10

// ErrTooManyCredentials means a service already has maxCredentials.
var ErrTooManyCredentials = errors.New("service has " + strconv.Itoa(maxCredentials) + " credentials; revoke one first")
