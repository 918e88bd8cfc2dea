package authz

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// seenSessions is what this replica remembers about the sessions it
// answered for: its Check rate per minute, and which binding mismatches
// it already recorded. It is per replica by design: counting in Redis
// would cost the Check path a second round trip (or a longer script on
// the one it has). Behind N replicas a session's requests are spread
// across them, so a replica sees about 1/N of its rate.
type seenSessions struct {
	seed   maphash.Seed
	shards [seenShards]seenShard
}

const (
	seenShards = 32
	// seenPerShard bounds the memory: 32 × 4096 sessions seen within the
	// last two minutes. Beyond it, new sessions go untracked until older
	// ones age out (a full shard is swept first).
	seenPerShard = 4096
)

type seenShard struct {
	mu    sync.Mutex
	m     map[string]*seen
	swept int64 // minute of the last sweep
}

// seen is one session on this replica.
type seen struct {
	last        int64  // the minute the session was last seen (unix minutes)
	minute      int64  // the minute count is for
	count, prev uint32 // Checks in minute and in the minute before
	rateLogged  int64  // the minute a rate anomaly was last recorded
	// network is the client network of the last network mismatch recorded
	// for the session (log mode); mismatches lists the other reasons
	// already recorded.
	network    netip.Prefix
	mismatches uint8
	// client is the last client address the country was looked up for,
	// clientCountry its country; countryLogged the last other country
	// recorded (log mode).
	client        netip.Addr
	clientCountry string
	countryLogged string
}

func newSeenSessions() *seenSessions {
	s := &seenSessions{seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*seen)
	}
	return s
}

// with runs f on ref's entry under its shard's lock, creating the entry
// if there is room. When there is none, f is not run and with returns
// false: the caller decides without memory.
func (s *seenSessions) with(ref string, now time.Time, f func(e *seen, minute int64)) bool {
	minute := now.Unix() / 60
	sh := &s.shards[maphash.String(s.seed, ref)%seenShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[ref]
	if e == nil {
		// At most one sweep per shard and minute: a flood of new sessions
		// against a full shard costs a map lookup each, not a sweep each.
		if sh.swept < minute {
			sh.sweep(minute)
		}
		if len(sh.m) >= seenPerShard {
			return false
		}
		e = &seen{minute: minute}
		sh.m[ref] = e
	}
	e.last = minute
	f(e, minute)
	return true
}

// sweep forgets sessions not seen in this minute or the one before.
func (sh *seenShard) sweep(minute int64) {
	for ref, e := range sh.m {
		if e.last < minute-1 {
			delete(sh.m, ref)
		}
	}
	sh.swept = minute
}

// rate counts one Check at now and returns the session's rate per minute:
// this minute's count plus the part of the previous minute's that still
// falls within the last 60 seconds (a sliding window from two counters).
func (e *seen) rate(now time.Time, minute int64) float64 {
	switch {
	case e.minute == minute:
	case e.minute == minute-1:
		e.prev, e.count, e.minute = e.count, 0, minute
	default:
		e.prev, e.count, e.minute = 0, 0, minute
	}
	e.count++
	into := float64(now.UnixMilli()%60_000) / 60_000
	return float64(e.prev)*(1-into) + float64(e.count)
}
