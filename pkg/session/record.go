package session

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/sessiongate/sessiongate/pkg/token"
)

// A stored record is a short text header followed by a JSON body:
//
//	1:<version>:<absolute expiry, unix ms>:<idle timeout, ms>:<json>
//
// The header is what the hot path needs without decoding JSON: Redis's Touch
// script reads the expiries from it to slide the TTL, and the Check handler
// keys its token cache on the version, so a cache hit never parses the body.
// The leading "1" is the format version; anything else is rejected.
const recordFormat = "1"

// MaxRecordSize bounds a stored record. A larger value in the store is
// treated as corrupt rather than decoded.
const MaxRecordSize = 16 << 10

type recordBody struct {
	Subject   string            `json:"sub"`
	Tenant    string            `json:"ten,omitempty"`
	Roles     []string          `json:"rol,omitempty"`
	Claims    map[string]string `json:"clm,omitempty"`
	Device    *Device           `json:"dev,omitempty"`
	CreatedAt int64             `json:"cat"`
	// Family is the refresh family an access session belongs to.
	Family string `json:"fam,omitempty"`
}

// Entry is a record as read from a store: the parsed header plus the raw
// body, decoded only when needed.
type Entry struct {
	Ref       string
	Version   uint64
	ExpiresAt time.Time // absolute expiry
	idle      time.Duration
	body      string
}

// Session decodes the full record.
func (e Entry) Session() (*Session, error) {
	var b recordBody
	dec := json.NewDecoder(strings.NewReader(e.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the record", ErrCorrupt)
	}
	if b.Subject == "" {
		return nil, fmt.Errorf("%w: empty subject", ErrCorrupt)
	}
	if b.Family != "" && !ValidFamilyRef(b.Family) {
		return nil, fmt.Errorf("%w: bad family ref", ErrCorrupt)
	}
	if !b.clean() {
		return nil, fmt.Errorf("%w: control character in a value", ErrCorrupt)
	}
	// The admin API refuses such names; a record holding one was written by
	// something else (an older version, or a hand in Redis), and signing it
	// would let "SUB" or "\u017fub" stand in for sub at a verifier that
	// decodes claims into a struct.
	for k := range b.Claims {
		if err := token.CheckCustomClaim(k); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
	}
	s := &Session{
		Ref:         e.Ref,
		Subject:     b.Subject,
		Tenant:      b.Tenant,
		Roles:       b.Roles,
		Claims:      b.Claims,
		CreatedAt:   time.UnixMilli(b.CreatedAt),
		ExpiresAt:   e.ExpiresAt,
		IdleTimeout: e.idle,
		Version:     e.Version,
		FamilyRef:   b.Family,
	}
	if b.Device != nil {
		s.Device = *b.Device
	}
	return s, nil
}

// ControlRune reports whether r may not appear in a stored session value:
// C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
// The admin API refuses values holding one on create and update, and the
// record decoder refuses records holding one: both ask this function, so
// what one accepts the other reads.
func ControlRune(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029'
}

// clean reports whether no value holds a control character (ControlRune). The admin API
// never stores one, so a record that does was written by something else;
// its values would go into signed claims and into Envoy's dynamic metadata
// (and so its access log), where a CR or LF is a log or header injection
// for whoever copies them on. Such a record is corrupt, and corrupt is a
// denial.
func (b *recordBody) clean() bool {
	ok := func(v string) bool {
		for _, r := range v {
			if ControlRune(r) {
				return false
			}
		}
		return true
	}
	if !ok(b.Subject) || !ok(b.Tenant) {
		return false
	}
	for _, r := range b.Roles {
		if !ok(r) {
			return false
		}
	}
	for k, v := range b.Claims {
		if !ok(k) || !ok(v) {
			return false
		}
	}
	return b.Device == nil || (ok(b.Device.UserAgent) && ok(b.Device.IP) && ok(b.Device.Name))
}

// encodeRecord renders s in the stored format.
func encodeRecord(s *Session) (string, error) {
	b := recordBody{
		Subject:   s.Subject,
		Tenant:    s.Tenant,
		Roles:     s.Roles,
		Claims:    s.Claims,
		CreatedAt: s.CreatedAt.UnixMilli(),
		Family:    s.FamilyRef,
	}
	if s.Device != (Device{}) {
		d := s.Device
		b.Device = &d
	}
	js, err := json.Marshal(b)
	if err != nil {
		return "", fmt.Errorf("encode session %s: %w", s.Ref, err)
	}
	raw := recordHeader(s.Version, s.ExpiresAt, s.IdleTimeout) + string(js)
	if len(raw) > MaxRecordSize {
		return "", fmt.Errorf("encode session %s: record of %d bytes exceeds %d", s.Ref, len(raw), MaxRecordSize)
	}
	return raw, nil
}

// recordHeader renders a record's header, up to and including the colon
// before the JSON body.
func recordHeader(version uint64, abs time.Time, idle time.Duration) string {
	var sb strings.Builder
	sb.Grow(48)
	sb.WriteString(recordFormat)
	sb.WriteByte(':')
	sb.WriteString(strconv.FormatUint(version, 10))
	sb.WriteByte(':')
	sb.WriteString(strconv.FormatInt(abs.UnixMilli(), 10))
	sb.WriteByte(':')
	sb.WriteString(strconv.FormatInt(idle.Milliseconds(), 10))
	sb.WriteByte(':')
	return sb.String()
}

// parseEntry parses a stored record's header. It allocates nothing: the body
// stays a substring of raw.
func parseEntry(ref, raw string) (Entry, error) {
	if len(raw) > MaxRecordSize {
		return Entry{}, fmt.Errorf("%w: %d bytes", ErrCorrupt, len(raw))
	}
	rest, ok := strings.CutPrefix(raw, recordFormat+":")
	if !ok {
		return Entry{}, fmt.Errorf("%w: unknown format", ErrCorrupt)
	}
	var nums [3]uint64
	for i := range nums {
		n, tail, ok := cutNumber(rest)
		if !ok {
			return Entry{}, fmt.Errorf("%w: bad header", ErrCorrupt)
		}
		nums[i], rest = n, tail
	}
	if len(rest) == 0 || rest[0] != '{' || nums[1] > 1<<53 || nums[2] > 1<<53 {
		return Entry{}, fmt.Errorf("%w: bad header", ErrCorrupt)
	}
	return Entry{
		Ref:       ref,
		Version:   nums[0],
		ExpiresAt: time.UnixMilli(int64(nums[1])),
		idle:      time.Duration(nums[2]) * time.Millisecond,
		body:      rest,
	}, nil
}

// cutNumber reads decimal digits up to the next ':'.
func cutNumber(s string) (n uint64, rest string, ok bool) {
	i := 0
	for ; i < len(s) && i < 20; i++ {
		c := s[i]
		if c == ':' {
			break
		}
		if c < '0' || c > '9' {
			return 0, "", false
		}
	}
	if i == 0 || i >= len(s) || s[i] != ':' {
		return 0, "", false
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		return 0, "", false
	}
	return n, s[i+1:], true
}

// nextExpiry is when a record touched at now expires: the idle window,
// capped by the absolute expiry.
func nextExpiry(now, abs time.Time, idle time.Duration) time.Time {
	exp := now.Add(idle)
	if exp.After(abs) {
		return abs
	}
	return exp
}

// applyUpdate returns a copy of s with u applied and the version bumped.
func applyUpdate(s *Session, u Update) *Session {
	c := *s
	if u.Roles != nil {
		c.Roles = append([]string(nil), (*u.Roles)...)
	}
	if u.Claims != nil {
		c.Claims = make(map[string]string, len(u.Claims))
		for k, v := range u.Claims {
			c.Claims[k] = v
		}
	}
	c.Version++
	return &c
}

// checkNew rejects a session a store must not keep: one without a proper ref
// or subject, or one that would expire before it starts. Both stores call it
// so they refuse the same things.
func checkNew(s *Session, now time.Time) error {
	switch {
	case !ValidRef(s.Ref):
		return fmt.Errorf("create session: invalid ref")
	case s.Subject == "":
		return fmt.Errorf("create session %s: empty subject", s.Ref)
	case s.IdleTimeout < time.Millisecond:
		return fmt.Errorf("create session %s: idle timeout %v too short", s.Ref, s.IdleTimeout)
	case s.ExpiresAt.Sub(now) < time.Millisecond:
		return fmt.Errorf("create session %s: expires before it starts", s.Ref)
	}
	return nil
}
