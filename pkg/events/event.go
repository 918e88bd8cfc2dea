// Package events is sessiongate's security event log: logins, logouts,
// revocations and binding mismatches, as structured events every replica
// appends to one place (a Redis stream, or memory in dev mode), read back
// page by page through the admin API.
//
// An event never holds a session ID or a token: sessions appear by
// session_ref.
package events

import (
	"context"
	"errors"
	"time"
)

// Type is what happened. The values are product API (metric labels, the
// admin API, alert rules): never rename one.
type Type string

const (
	Login           Type = "login"            // a session was created
	Logout          Type = "logout"           // the session's owner logged out
	Revoke          Type = "revoke"           // a session was ended by someone else; details.by says who
	BindingMismatch Type = "binding_mismatch" // a request did not match its session's binding
	RateAnomaly     Type = "rate_anomaly"     // a session made more Checks per minute than allowed
	NetworkChange   Type = "network_change"   // a session was seen from another network than before (binding action log)
	CountryChange   Type = "country_change"   // a session was used from another country than it was created in
	RefreshReuse    Type = "refresh_reuse"    // a retired refresh token was presented again; its family was revoked (details.family_ref)
)

// Types lists every type, for exporting each metric label at zero.
func Types() []Type {
	return []Type{Login, Logout, Revoke, BindingMismatch, RateAnomaly, NetworkChange, CountryChange, RefreshReuse}
}

// Event is one security event.
type Event struct {
	// ID is the event's position in the log, assigned when it is stored:
	// "<unix ms>-<sequence>", increasing.
	ID         string            `json:"id"`
	Type       Type              `json:"type"`
	Time       time.Time         `json:"time"`
	Subject    string            `json:"subject"`     // "" when not known where it happened (logout through Check)
	SessionRef string            `json:"session_ref"` // "" for events about a subject (revoke-user)
	Replica    string            `json:"replica"`     // the sessiongate instance that saw it
	RequestID  string            `json:"request_id"`  // x-request-id of the request, when it had one
	Details    map[string]string `json:"details"`
}

// Store keeps events in order. Append assigns the ID; Page returns at most
// limit events after the ID after ("" = from the oldest kept), oldest first.
// Only the newest events are kept (a bound the store is given).
type Store interface {
	Append(ctx context.Context, e Event) (string, error)
	Page(ctx context.Context, after string, limit int) ([]Event, error)
}

// ErrBadID is a cursor that is not an event ID.
var ErrBadID = errors.New("events: not an event ID")

// ValidID reports whether id has the form stores hand out: two decimal
// numbers of at most 20 digits joined by "-", without leading zeros.
func ValidID(id string) bool {
	ms, seq, ok := cutID(id)
	return ok && ms >= 0 && seq >= 0
}

// cutID splits an ID into its two numbers.
func cutID(id string) (ms, seq int64, ok bool) {
	num := func(s string) (int64, bool) {
		if len(s) == 0 || len(s) > 19 || (len(s) > 1 && s[0] == '0') {
			return 0, false
		}
		var n int64
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return 0, false
			}
			n = n*10 + int64(s[i]-'0')
		}
		return n, n >= 0
	}
	for i := 0; i < len(id); i++ {
		if id[i] == '-' {
			a, ok1 := num(id[:i])
			b, ok2 := num(id[i+1:])
			return a, b, ok1 && ok2
		}
	}
	return 0, 0, false
}
