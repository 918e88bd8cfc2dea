// Package selfservice is what a signed-in user sees of their own sessions:
// one row per session (device, when it signed in, when it was last used,
// when it ends), as JSON for clients and as a small server-rendered HTML
// page with sign-out buttons for browsers.
//
// It renders and nothing else. Who may see or end which session, CSRF,
// and the routes themselves are pkg/authz's (selfservice.go there), which
// answers them at the edge; keeping the two apart keeps the Check package
// free of templates and user-agent guessing, and this one free of Envoy.
package selfservice

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// Row is one session as its owner sees it.
type Row struct {
	Ref       string
	FamilyRef string // the refresh family (one device's logins); "" without refresh
	Current   bool   // the session making the request
	Device    session.Device
	// Label is the device as a person would name it: its name when the
	// login service gave one, else derived from the user agent
	// ("Chrome on Linux").
	Label     string
	CreatedAt time.Time
	// LastSeen is when the session was last used, to the store's slide
	// granularity; zero when the store could not tell.
	LastSeen  time.Time
	ExpiresAt time.Time // absolute end
}

// Rows turns a subject's sessions into rows: the current one (ref current)
// first, then the others, most recently used first. now bounds LastSeen,
// which a store's clock ahead of ours could put in the future.
func Rows(ss []*session.Session, current string, now time.Time) []Row {
	rows := make([]Row, 0, len(ss))
	for _, s := range ss {
		r := Row{Ref: s.Ref, FamilyRef: s.FamilyRef, Current: s.Ref == current, Device: s.Device, Label: DeviceLabel(s.Device),
			CreatedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt}
		if !s.IdleExpiresAt.IsZero() {
			seen := s.IdleExpiresAt.Add(-s.IdleTimeout)
			if seen.Before(s.CreatedAt) {
				seen = s.CreatedAt // the idle expiry was capped at the absolute end
			}
			if seen.After(now) {
				seen = now
			}
			r.LastSeen = seen
		}
		rows = append(rows, r)
	}
	slices.SortStableFunc(rows, func(a, b Row) int {
		switch {
		case a.Current != b.Current:
			if a.Current {
				return -1
			}
			return 1
		case !a.LastSeen.Equal(b.LastSeen):
			return b.LastSeen.Compare(a.LastSeen)
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
	return rows
}

// jsonRow is a Row on the wire: GET {path_prefix}.
type jsonRow struct {
	Ref         string     `json:"session_ref"`
	FamilyRef   string     `json:"family_ref,omitempty"`
	Current     bool       `json:"current"`
	Device      jsonDevice `json:"device"`
	CreatedAt   time.Time  `json:"created_at"`
	LastSeenAt  *time.Time `json:"last_seen_at,omitempty"`
	ExpiresAt   time.Time  `json:"expires_at"`
	DeviceLabel string     `json:"device_label"`
}

type jsonDevice struct {
	Name      string `json:"name,omitempty"`
	UserAgent string `json:"user_agent,omitempty"`
	IP        string `json:"ip,omitempty"`
}

// JSON renders rows as {"sessions":[…]}. encoding/json escapes <, > and &,
// so a user agent cannot become markup even if a client renders it raw.
func JSON(rows []Row) ([]byte, error) {
	out := struct {
		Sessions []jsonRow `json:"sessions"`
	}{Sessions: make([]jsonRow, 0, len(rows))}
	for _, r := range rows {
		j := jsonRow{
			Ref: r.Ref, FamilyRef: r.FamilyRef, Current: r.Current, DeviceLabel: r.Label,
			Device:    jsonDevice{Name: r.Device.Name, UserAgent: r.Device.UserAgent, IP: r.Device.IP},
			CreatedAt: r.CreatedAt.UTC(), ExpiresAt: r.ExpiresAt.UTC(),
		}
		if !r.LastSeen.IsZero() {
			seen := r.LastSeen.UTC()
			j.LastSeenAt = &seen
		}
		out.Sessions = append(out.Sessions, j)
	}
	return json.Marshal(out)
}
