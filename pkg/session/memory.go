package session

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// MemoryStore keeps sessions in process memory. It exists for `serve --dev`
// and tests: it is lost on restart and not shared between replicas. It stores
// the same encoded records as RedisStore, so both run the same codec.
type MemoryStore struct {
	now func() time.Time

	mu       sync.Mutex
	sessions map[string]memRecord         // by ref
	users    map[string]map[string]uint64 // subject → ref → index position
	// seq numbers index entries in insertion order, as the Redis index's
	// scores do, so ListPage walks both stores the same way.
	seq uint64

	svc memServices    // service_memory.go
	rev memRevocations // revoked.go

	// Refresh families (refresh_memory.go): by family ref, and every
	// issued token's ref → its family.
	families map[string]*memFamily
	tokens   map[string]string
}

type memRecord struct {
	raw     string
	subject string
	expires time.Time // current (sliding) expiry
}

// NewMemoryStore returns an empty store. now may be nil (time.Now).
func NewMemoryStore(now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{
		now:      now,
		sessions: make(map[string]memRecord),
		users:    make(map[string]map[string]uint64),
	}
}

// live returns the record for ref if it has not expired, dropping it if it has.
// Callers hold mu.
func (m *MemoryStore) live(ref string, now time.Time) (memRecord, bool) {
	r, ok := m.sessions[ref]
	if !ok {
		return memRecord{}, false
	}
	if !now.Before(r.expires) {
		m.drop(ref, r.subject)
		return memRecord{}, false
	}
	return r, true
}

func (m *MemoryStore) drop(ref, subject string) {
	delete(m.sessions, ref)
	if refs := m.users[subject]; refs != nil {
		delete(refs, ref)
		if len(refs) == 0 {
			delete(m.users, subject)
		}
	}
}

// liveSessions returns subject's live sessions, oldest first, with
// IdleExpiresAt set. Callers hold mu.
func (m *MemoryStore) liveSessions(subject string, now time.Time) ([]*Session, error) {
	var out []*Session
	for ref := range m.users[subject] {
		r, ok := m.live(ref, now)
		if !ok {
			continue
		}
		e, err := parseEntry(ref, r.raw)
		if err != nil {
			return nil, err
		}
		s, err := e.Session()
		if err != nil {
			return nil, err
		}
		s.IdleExpiresAt = r.expires
		out = append(out, s)
	}
	sortOldestFirst(out)
	return out, nil
}

func sortOldestFirst(ss []*Session) {
	sort.Slice(ss, func(i, j int) bool {
		if !ss[i].CreatedAt.Equal(ss[j].CreatedAt) {
			return ss[i].CreatedAt.Before(ss[j].CreatedAt)
		}
		return ss[i].Ref < ss[j].Ref
	})
}

// Create implements Store.
func (m *MemoryStore) Create(_ context.Context, s *Session, limit Limit) ([]string, error) {
	now := m.now()
	if err := checkNew(s, now); err != nil {
		return nil, err
	}
	if s.Version == 0 {
		s.Version = 1
	}
	raw, err := encodeRecord(s)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.create(s, raw, limit, now)
}

// create stores an encoded record and applies the limit. Callers hold mu.
func (m *MemoryStore) create(s *Session, raw string, limit Limit, now time.Time) ([]string, error) {
	var evicted []string
	if limit.MaxPerUser > 0 {
		// Only a cap needs the existing sessions: decoding them all on every
		// create made filling one subject quadratic.
		existing, err := m.liveSessions(s.Subject, now)
		if err != nil {
			return nil, err
		}
		if len(existing) >= limit.MaxPerUser {
			if limit.Reject {
				return nil, ErrLimit
			}
			var gone []ended
			for _, old := range existing[:len(existing)-limit.MaxPerUser+1] {
				m.drop(old.Ref, old.Subject)
				if old.FamilyRef != "" {
					m.famInit()
					m.endFamily(old.FamilyRef) // eviction ends the login, refresh included
				}
				evicted = append(evicted, old.Ref)
				gone = append(gone, ended{ref: old.Ref, abs: old.ExpiresAt})
			}
			m.recordRevoked(now, gone)
		}
	}
	m.sessions[s.Ref] = memRecord{raw: raw, subject: s.Subject, expires: nextExpiry(now, s.ExpiresAt, s.IdleTimeout)}
	if m.users[s.Subject] == nil {
		m.users[s.Subject] = make(map[string]uint64)
	}
	m.seq++
	m.users[s.Subject][s.Ref] = m.seq
	return evicted, nil
}

// Touch implements Store.
func (m *MemoryStore) Touch(_ context.Context, ref string) (Entry, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.live(ref, now)
	if !ok {
		return Entry{}, ErrNotFound
	}
	e, err := parseEntry(ref, r.raw)
	if err != nil {
		return Entry{}, err
	}
	r.expires = nextExpiry(now, e.ExpiresAt, e.idle)
	m.sessions[ref] = r
	return e, nil
}

// Delete implements Store.
func (m *MemoryStore) Delete(_ context.Context, ref string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	r, ok := m.live(ref, now)
	if !ok {
		return ErrNotFound
	}
	m.drop(ref, r.subject)
	var abs time.Time
	if e, err := parseEntry(ref, r.raw); err == nil {
		abs = e.ExpiresAt
	}
	m.recordRevoked(now, []ended{{ref: ref, abs: abs}})
	m.endFamilyOf(r.raw)
	return nil
}

// List implements Store.
func (m *MemoryStore) List(_ context.Context, subject string) ([]*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.liveSessions(subject, m.now())
}

// ListPage implements Store. The memory store prunes as it reads, so its
// pages are only short at the end of a walk.
func (m *MemoryStore) ListPage(_ context.Context, subject string, after uint64, limit int) (Page, error) {
	if limit < 1 {
		return Page{}, errPageLimit
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	type entry struct {
		ref string
		seq uint64
	}
	var rest []entry
	for ref, seq := range m.users[subject] {
		if seq > after {
			rest = append(rest, entry{ref, seq})
		}
	}
	slices.SortFunc(rest, func(a, b entry) int { return cmp.Compare(a.seq, b.seq) })
	now := m.now()
	var p Page
	for i, e := range rest {
		if len(p.Sessions) == limit {
			p.Next = rest[i-1].seq
			break
		}
		r, ok := m.live(e.ref, now)
		if !ok {
			continue
		}
		en, err := parseEntry(e.ref, r.raw)
		if err != nil {
			return Page{}, fmt.Errorf("session %s: %w", e.ref, err)
		}
		s, err := en.Session()
		if err != nil {
			return Page{}, fmt.Errorf("session %s: %w", e.ref, err)
		}
		p.Sessions = append(p.Sessions, s)
	}
	return p, nil
}

// DeleteUser implements Store.
func (m *MemoryStore) DeleteUser(_ context.Context, subject string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// Families first: each ends with its access session, live or not, and
	// counts once.
	now := m.now()
	m.famInit()
	n := m.endUserFamilies(subject)
	ss, err := m.liveSessions(subject, now)
	if err != nil {
		return n, err
	}
	gone := make([]ended, 0, len(ss))
	for _, s := range ss {
		m.drop(s.Ref, subject)
		gone = append(gone, ended{ref: s.Ref, abs: s.ExpiresAt})
	}
	m.recordRevoked(now, gone)
	return n + len(ss), nil
}

// UpdateUser implements Store.
func (m *MemoryStore) UpdateUser(_ context.Context, subject string, u Update) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.famInit()
	if err := m.updateUserFamilies(subject, u); err != nil {
		return 0, err
	}
	ss, err := m.liveSessions(subject, m.now())
	if err != nil {
		return 0, err
	}
	for _, s := range ss {
		raw, err := encodeRecord(applyUpdate(s, u))
		if err != nil {
			return 0, err
		}
		r := m.sessions[s.Ref]
		r.raw = raw
		m.sessions[s.Ref] = r
	}
	return len(ss), nil
}

// Ping implements Store; memory is always reachable.
func (m *MemoryStore) Ping(context.Context) error { return nil }

// Close implements Store.
func (m *MemoryStore) Close() error { return nil }
