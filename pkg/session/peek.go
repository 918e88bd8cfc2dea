package session

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Peek returns the stored entry behind ref without touching it: no idle
// slide, no write. It is for tools that only look, such as explain; Check
// uses Touch. Errors are Touch's: ErrNotFound, ErrCorrupt, or the store's.
func (s *RedisStore) Peek(ctx context.Context, ref string) (Entry, error) {
	raw, err := s.rdb.Get(ctx, sessionKey(ref)).Result()
	if errors.Is(err, redis.Nil) {
		return Entry{}, ErrNotFound
	}
	if err != nil {
		return Entry{}, fmt.Errorf("redis peek session: %w", err)
	}
	return parseEntry(ref, raw)
}

// Peek is RedisStore.Peek for the memory store.
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
