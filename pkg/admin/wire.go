// Package admin is sessiongate's admin API: the HTTP+JSON interface a login
// service uses to create sessions and an operator uses to list, revoke and
// re-permission them, plus the Go client for it.
//
// The API addresses sessions by session_ref, never by session ID: the ID is
// returned exactly once, at creation, for the login service to hand to the
// client. A refresh family (a login with "refresh": true) is addressed by
// its family_ref ("fam_" and 32 hex characters), which the revoke endpoint
// takes in place of a session_ref.
package admin

import "time"

// Device is what the login service knows about where a login came from.
type Device struct {
	UserAgent string `json:"user_agent,omitempty"`
	IP        string `json:"ip,omitempty"`
	Name      string `json:"name,omitempty"`
}

// CreateRequest is the body of POST /v1/sessions.
type CreateRequest struct {
	Subject string            `json:"subject"`
	Tenant  string            `json:"tenant,omitempty"`
	Roles   []string          `json:"roles,omitempty"`
	Claims  map[string]string `json:"claims,omitempty"`
	// IdleTimeout and AbsoluteTimeout are Go durations ("15m"); they may
	// shorten the configured timeouts, never lengthen them.
	IdleTimeout     string  `json:"idle_timeout,omitempty"`
	AbsoluteTimeout string  `json:"absolute_timeout,omitempty"`
	Device          *Device `json:"device,omitempty"`
	// Refresh asks for a refresh token (refresh.enabled): the session is
	// then the first access session of a refresh family, with the
	// refresh.access_* timeouts; IdleTimeout and AbsoluteTimeout may not
	// be given with it.
	Refresh bool `json:"refresh,omitempty"`
}

// CreateResponse is the answer to POST /v1/sessions.
type CreateResponse struct {
	SessionID  string    `json:"session_id"`
	SessionRef string    `json:"session_ref"`
	SetCookie  string    `json:"set_cookie"`
	ExpiresAt  time.Time `json:"expires_at"`
	// With "refresh": true: the refresh token (shown once, like the
	// session ID), the family's absolute end and its ref.
	RefreshToken     string     `json:"refresh_token,omitempty"`
	RefreshExpiresAt *time.Time `json:"refresh_expires_at,omitempty"`
	FamilyRef        string     `json:"family_ref,omitempty"`
}

// SessionInfo describes one session in a listing.
type SessionInfo struct {
	SessionRef string    `json:"session_ref"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	Device     Device    `json:"device"`
	// FamilyRef names the session's refresh family, if it has one; the
	// row is then the family's current access session.
	FamilyRef string `json:"family_ref,omitempty"`
}

// ListResponse is the answer to GET /v1/users/{subject}/sessions: one page,
// oldest first. NextCursor, absent on the last page, is passed back as
// ?cursor= for the next one; it is opaque and bound to the subject.
type ListResponse struct {
	Sessions   []SessionInfo `json:"sessions"`
	NextCursor string        `json:"next_cursor,omitempty"`
}

// UpdateRequest is the body of PATCH /v1/users/{subject}/sessions. Roles and
// Claims replace the sessions' values when present; absent ones are kept.
type UpdateRequest struct {
	Roles  *[]string         `json:"roles,omitempty"`
	Claims map[string]string `json:"claims,omitempty"`
}

// RevokeResponse is the answer to DELETE /v1/users/{subject}/sessions.
type RevokeResponse struct {
	Revoked int `json:"revoked"`
}

// UpdateResponse is the answer to PATCH /v1/users/{subject}/sessions.
type UpdateResponse struct {
	Updated int `json:"updated"`
}

// ErrorResponse is the body of every non-2xx answer.
type ErrorResponse struct {
	Error string `json:"error"`
}
