package session

import (
	"context"
	"slices"
	"time"
)

// memFamily is the memory store's refresh family: the same state the Redis
// family hash holds (refresh_redis.go). Guarded by MemoryStore.mu.
type memFamily struct {
	subject string
	tpl     string // JSON body of its access sessions
	ver     uint64 // their record version; bumped by UpdateUser
	end     time.Time
	expires time.Time // refresh idle expiry, capped by end
	p       RefreshPolicy
	cur     string // current refresh token's ref
	acc     string // current access session's ref
	accExp  time.Time
	// prev is the token the last rotation retired; sealed its successor
	// pair, readable only with that token, until graceEnd.
	prev     string
	sealed   string
	graceEnd time.Time
	tokens   []string // every token ref issued, forgotten with the family
}

func (m *MemoryStore) famInit() {
	if m.families == nil {
		m.families = make(map[string]*memFamily)
		m.tokens = make(map[string]string)
	}
}

// CreateFamily implements Store.
func (m *MemoryStore) CreateFamily(_ context.Context, s *Session, limit Limit, p RefreshPolicy) (Refreshed, []string, error) {
	if err := p.check(); err != nil {
		return Refreshed{}, nil, err
	}
	fam, err := NewFamilyRef()
	if err != nil {
		return Refreshed{}, nil, err
	}
	id, err := NewID()
	if err != nil {
		return Refreshed{}, nil, err
	}
	tok, err := NewRefreshToken()
	if err != nil {
		return Refreshed{}, nil, err
	}
	end := s.CreatedAt.Add(p.TTL)
	s.Ref, s.FamilyRef = RefOf(id), fam
	s.ExpiresAt = minTime(s.CreatedAt.Add(p.AccessAbsolute), end)
	s.IdleTimeout = p.AccessIdle
	if s.Version == 0 {
		s.Version = 1
	}
	now := m.now()
	if err := checkNew(s, now); err != nil {
		return Refreshed{}, nil, err
	}
	raw, err := encodeRecord(s)
	if err != nil {
		return Refreshed{}, nil, err
	}
	tpl, err := encodeBody(s)
	if err != nil {
		return Refreshed{}, nil, err
	}
	// One critical section: a revoke-user cannot fall between the access
	// session and its family.
	m.mu.Lock()
	defer m.mu.Unlock()
	evicted, err := m.create(s, raw, limit, now)
	if err != nil {
		return Refreshed{}, nil, err
	}
	m.famInit()
	tref := refreshRefOf(tok)
	m.families[fam] = &memFamily{
		subject: s.Subject, tpl: tpl, ver: s.Version, end: end, p: p,
		expires: minTime(now.Add(p.Idle), end),
		cur:     tref, acc: s.Ref, accExp: s.ExpiresAt, tokens: []string{tref},
	}
	m.tokens[tref] = fam
	return Refreshed{ID: id, Ref: s.Ref, ExpiresAt: s.ExpiresAt, RefreshToken: tok, RefreshExpiresAt: end,
		FamilyRef: fam, Subject: s.Subject}, evicted, nil
}

// Refresh implements Store.
func (m *MemoryStore) Refresh(_ context.Context, token string) (Refreshed, error) {
	if !ValidRefreshToken(token) {
		return Refreshed{}, ErrRefreshInvalid
	}
	tref := refreshRefOf(token)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.famInit()
	fref, ok := m.tokens[tref]
	if !ok {
		return Refreshed{}, ErrRefreshInvalid
	}
	f := m.families[fref]
	now := m.now()
	if f == nil {
		return Refreshed{}, ErrRefreshInvalid
	}
	if !now.Before(f.expires) {
		m.endFamily(fref)
		return Refreshed{}, ErrRefreshInvalid
	}
	switch {
	case tref == f.cur:
		next, err := newSuccessor(token, fref, NewID)
		if err != nil {
			return Refreshed{}, err
		}
		if r, ok := m.sessions[f.acc]; ok {
			m.drop(f.acc, r.subject)
		}
		accExp := minTime(now.Add(f.p.AccessAbsolute), f.end)
		raw := recordHeader(f.ver, accExp, f.p.AccessIdle) + f.tpl
		m.sessions[next.ref] = memRecord{raw: raw, subject: f.subject, expires: nextExpiry(now, accExp, f.p.AccessIdle)}
		if m.users[f.subject] == nil {
			m.users[f.subject] = make(map[string]uint64)
		}
		m.seq++
		m.users[f.subject][next.ref] = m.seq
		f.prev, f.sealed, f.graceEnd = tref, next.sealed, minTime(now.Add(f.p.Grace), f.end)
		f.cur, f.acc, f.accExp = next.tref, next.ref, accExp
		f.expires = minTime(now.Add(f.p.Idle), f.end)
		f.tokens = append(f.tokens, next.tref)
		m.tokens[next.tref] = fref
		return Refreshed{ID: next.id, Ref: next.ref, ExpiresAt: accExp, RefreshToken: next.token,
			RefreshExpiresAt: f.end, FamilyRef: fref, Subject: f.subject}, nil
	case tref == f.prev && now.Before(f.graceEnd):
		id, next, err := openSuccessor(token, fref, f.sealed)
		if err != nil {
			return Refreshed{}, err
		}
		return Refreshed{ID: id, Ref: RefOf(id), ExpiresAt: f.accExp, RefreshToken: next,
			RefreshExpiresAt: f.end, FamilyRef: fref, Subject: f.subject}, nil
	default:
		m.endFamily(fref)
		return Refreshed{FamilyRef: fref, Subject: f.subject}, ErrRefreshReused
	}
}

// RevokeFamily implements Store.
func (m *MemoryStore) RevokeFamily(_ context.Context, fref string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.famInit()
	if f := m.families[fref]; f == nil || !m.now().Before(f.expires) {
		m.endFamily(fref)
		return ErrNotFound
	}
	m.endFamily(fref)
	return nil
}

// Families implements Store.
func (m *MemoryStore) Families(_ context.Context, subject string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var out []string
	for ref, f := range m.families {
		if f.subject == subject && now.Before(f.expires) {
			out = append(out, ref)
		}
	}
	slices.Sort(out)
	return out, nil
}

// endFamily is the memory store's one way a family ends: its access
// session and every token of it go. It returns the access session's ref if
// that was live. Callers hold mu.
func (m *MemoryStore) endFamily(fref string) (subject, acc string) {
	f := m.families[fref]
	if f == nil {
		return "", ""
	}
	delete(m.families, fref)
	for _, t := range f.tokens {
		delete(m.tokens, t)
	}
	if _, ok := m.live(f.acc, m.now()); ok {
		m.drop(f.acc, f.subject)
		acc = f.acc
		m.recordRevoked(m.now(), []ended{{ref: acc, abs: f.accExp}})
	}
	return f.subject, acc
}

// endFamilyOf ends the family of a session being deleted, if it has one.
// Callers hold mu.
func (m *MemoryStore) endFamilyOf(raw string) {
	e, err := parseEntry("", raw)
	if err != nil {
		return
	}
	if s, err := e.Session(); err == nil && s.FamilyRef != "" {
		m.famInit()
		m.endFamily(s.FamilyRef)
	}
}

// endUserFamilies ends every family of subject and returns how many were
// live. Callers hold mu.
func (m *MemoryStore) endUserFamilies(subject string) int {
	n := 0
	now := m.now()
	for fref, f := range m.families {
		if f.subject != subject {
			continue
		}
		if now.Before(f.expires) {
			n++
		}
		m.endFamily(fref)
	}
	return n
}

// updateUserFamilies applies u to the template of every family of subject,
// so access sessions a refresh makes later carry it. Callers hold mu.
func (m *MemoryStore) updateUserFamilies(subject string, u Update) error {
	for _, f := range m.families {
		if f.subject != subject {
			continue
		}
		s, err := decodeBody(f.tpl)
		if err != nil {
			return err
		}
		tpl, err := encodeBody(applyUpdate(s, u))
		if err != nil {
			return err
		}
		f.tpl = tpl
		f.ver++
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
