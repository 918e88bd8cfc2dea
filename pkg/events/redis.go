package events

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// StreamKey is the Redis stream every replica appends to.
const StreamKey = "sg:events"

// RedisStore keeps events in a Redis stream, capped near MaxLen entries
// (MAXLEN ~: Redis trims whole nodes, so a few more may stay). Each entry
// holds the event as JSON in one field; the entry ID is the event ID.
type RedisStore struct {
	rdb    redis.UniversalClient
	maxLen int64
}

// NewRedisStore appends to StreamKey through rdb.
func NewRedisStore(rdb redis.UniversalClient, maxLen int) *RedisStore {
	return &RedisStore{rdb: rdb, maxLen: int64(maxLen)}
}

func (r *RedisStore) Append(ctx context.Context, e Event) (string, error) {
	e.ID = ""
	b, err := json.Marshal(e)
	if err != nil {
		return "", err
	}
	id, err := r.rdb.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey, MaxLen: r.maxLen, Approx: true, Values: []string{"e", string(b)}}).Result()
	if err != nil {
		return "", fmt.Errorf("redis xadd: %w", err)
	}
	return id, nil
}

func (r *RedisStore) Page(ctx context.Context, after string, limit int) ([]Event, error) {
	start := "-"
	if after != "" {
		if !ValidID(after) {
			return nil, ErrBadID
		}
		start = "(" + after
	}
	msgs, err := r.rdb.XRangeN(ctx, StreamKey, start, "+", int64(limit)).Result()
	if err != nil {
		return nil, fmt.Errorf("redis xrange: %w", err)
	}
	out := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		var e Event
		raw, _ := m.Values["e"].(string)
		if err := json.Unmarshal([]byte(raw), &e); err != nil {
			// Not something sessiongate wrote; shown as what it is rather
			// than hidden, so a page never silently shrinks.
			e = Event{Type: "unreadable", Details: map[string]string{}}
		}
		e.ID = m.ID
		out = append(out, e)
	}
	return out, nil
}

// Close closes the Redis client.
func (r *RedisStore) Close() error { return r.rdb.Close() }
