package events

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// MemoryStore keeps the newest events in process memory: dev mode and
// tests. IDs follow the Redis stream form.
type MemoryStore struct {
	mu     sync.Mutex
	max    int
	events []Event
	lastMS int64
	seq    int64
	now    func() time.Time
}

// NewMemoryStore keeps at most maxEvents events (at least 1).
func NewMemoryStore(maxEvents int) *MemoryStore {
	return &MemoryStore{max: max(1, maxEvents), now: time.Now}
}

func (m *MemoryStore) Append(_ context.Context, e Event) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ms := m.now().UnixMilli()
	if ms <= m.lastMS {
		ms, m.seq = m.lastMS, m.seq+1
	} else {
		m.seq = 0
	}
	m.lastMS = ms
	e.ID = strconv.FormatInt(ms, 10) + "-" + strconv.FormatInt(m.seq, 10)
	m.events = append(m.events, e)
	if len(m.events) > m.max {
		m.events = append(m.events[:0:0], m.events[len(m.events)-m.max:]...)
	}
	return e.ID, nil
}

func (m *MemoryStore) Page(_ context.Context, after string, limit int) ([]Event, error) {
	var ams, aseq int64 = -1, -1
	if after != "" {
		var ok bool
		if ams, aseq, ok = cutID(after); !ok {
			return nil, ErrBadID
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Event
	for _, e := range m.events {
		ms, seq, _ := cutID(e.ID)
		if ms < ams || ms == ams && seq <= aseq {
			continue
		}
		if len(out) == limit {
			break
		}
		out = append(out, e)
	}
	return out, nil
}
