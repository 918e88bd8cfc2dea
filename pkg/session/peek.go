package session

import "context"

// Peek returns a live session without sliding its idle expiry: for a
// caller that must know the session still stands (token exchange acting
// for its user) without that check counting as the user's activity.
// ErrNotFound for an unknown, expired or revoked session.
func (r *RedisStore) Peek(ctx context.Context, ref string) (Entry, error) {
	v, err := r.rdb.Get(ctx, sessionKey(ref)).Result()
	if err != nil {
		if isNil(err) {
			return Entry{}, ErrNotFound
		}
		return Entry{}, wrap("read session", err)
	}
	return r.liveEntry(ref, v)
}

// Peek returns a live session without sliding its idle expiry.
func (m *MemoryStore) Peek(_ context.Context, ref string) (Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.live(ref, m.now())
	if !ok {
		return Entry{}, ErrNotFound
	}
	return parseEntry(ref, r.raw)
}

// RecordKey is the Redis key that holds the record of the session ref, for
// tools and tests that reach Redis directly; the layout is in the README.
func RecordKey(ref string) string { return sessionKey(ref) }
