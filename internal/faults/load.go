// Package faults drives a real Check server over a real session store with
// a steady mix of requests and keeps score: what every Check answered, how
// long it took, and whether any answer was wrong. The fault-injection and
// soak tests in this package (build tag "faults", run by `make
// test-faults`, which `make test` calls) use it while they stop, kill, fill
// and fail over real Redis processes.
//
// A wrong answer is an OK for a session that was revoked or never existed,
// or a 401 for a session that exists: the first lets someone in, the second
// is a lost session. A 503 is not wrong: it is how sessiongate fails
// closed, and the scenarios measure how long it lasts.
package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
)

// Entry is one session ID the load presents.
type Entry struct {
	ID      string
	unknown bool         // never created: must never be OK
	revoke  atomic.Int64 // unix ns when a revocation started; 0 = none
	revoked atomic.Int64 // unix ns when it was confirmed; OK after this is wrong
}

// Pool is the set of session IDs the load picks from: live ones, revoked
// ones and ones that never existed.
type Pool struct {
	mu      sync.RWMutex
	live    []*Entry
	revoked []*Entry // the most recent maxRevoked, oldest overwritten
	next    int      // ring position in revoked
	unknown []*Entry
}

// maxRevoked bounds the revoked entries kept, so a long soak holds a
// constant amount of memory.
const maxRevoked = 2000

// AddLive adds the ID of a session that exists.
func (p *Pool) AddLive(id string) *Entry {
	e := &Entry{ID: id}
	p.mu.Lock()
	p.live = append(p.live, e)
	p.mu.Unlock()
	return e
}

// AddUnknown adds an ID that was never created.
func (p *Pool) AddUnknown(id string) {
	p.mu.Lock()
	p.unknown = append(p.unknown, &Entry{ID: id, unknown: true})
	p.mu.Unlock()
}

// Live returns the live entries, for checks after a scenario.
func (p *Pool) Live() []*Entry {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return append([]*Entry(nil), p.live...)
}

// RevokedEntries returns the revoked entries.
func (p *Pool) RevokedEntries() []*Entry {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return append([]*Entry(nil), p.revoked...)
}

// Unknown returns the never-created entries.
func (p *Pool) Unknown() []*Entry {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return append([]*Entry(nil), p.unknown...)
}

// Len is the number of live entries.
func (p *Pool) Len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.live)
}

// BeginRevoke takes a random live entry out of the live set: from now on a
// 401 for it is expected and an OK is not yet wrong, because the revocation
// may not have happened yet. nil if there is none.
func (p *Pool) BeginRevoke() *Entry {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.live) == 0 {
		return nil
	}
	i := rand.IntN(len(p.live))
	e := p.live[i]
	p.live[i] = p.live[len(p.live)-1]
	p.live = p.live[:len(p.live)-1]
	e.revoke.Store(time.Now().UnixNano())
	return e
}

// Revoked records that the store confirmed e's revocation: every Check that
// starts after this must not answer OK.
func (p *Pool) Revoked(e *Entry) {
	e.revoked.Store(time.Now().UnixNano())
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.revoked) < maxRevoked {
		p.revoked = append(p.revoked, e)
		return
	}
	p.revoked[p.next] = e
	p.next = (p.next + 1) % maxRevoked
}

// pick chooses what to present: mostly live sessions, some revoked, some
// that never existed.
func (p *Pool) pick() *Entry {
	p.mu.RLock()
	defer p.mu.RUnlock()
	r := rand.IntN(100)
	switch {
	case r < 15 && len(p.revoked) > 0:
		return p.revoked[rand.IntN(len(p.revoked))]
	case r < 30 && len(p.unknown) > 0:
		return p.unknown[rand.IntN(len(p.unknown))]
	case len(p.live) > 0:
		return p.live[rand.IntN(len(p.live))]
	case len(p.unknown) > 0:
		return p.unknown[rand.IntN(len(p.unknown))]
	}
	return nil
}

// Load sends Checks at a steady rate from several goroutines.
type Load struct {
	Server  authv3.AuthorizationServer
	Pool    *Pool
	Workers int     // concurrent callers
	Rate    float64 // Checks per second, all workers together
	Cookie  string  // session cookie name

	cancel context.CancelFunc
	wg     sync.WaitGroup
	score  score
}

// Start begins sending; Stop ends it.
func (l *Load) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.score.start = time.Now()
	lim := rate.NewLimiter(rate.Limit(l.Rate), max(1, int(l.Rate/100)))
	for range max(l.Workers, 1) {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for lim.Wait(ctx) == nil {
				if e := l.Pool.pick(); e != nil {
					// Not ctx: Stop must not cancel a Check in flight, which
					// would score as a 503 that no fault caused.
					l.CheckOne(context.WithoutCancel(ctx), e)
				}
			}
		}()
	}
}

// Stop ends the load and returns its figures.
func (l *Load) Stop() Figures {
	l.cancel()
	l.wg.Wait()
	return l.score.figures(time.Since(l.score.start))
}

// Figures so far, while the load runs.
func (l *Load) Figures() Figures { return l.score.figures(time.Since(l.score.start)) }

// CheckOne presents e once, scores the answer and returns the HTTP status
// Envoy would send (200 for OK; 0 for a gRPC error).
func (l *Load) CheckOne(ctx context.Context, e *Entry) int {
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api/orders", Host: "app.example.com", Scheme: "https",
			Headers: map[string]string{"cookie": l.Cookie + "=" + e.ID},
		}}}}
	start := time.Now()
	resp, err := l.Server.Check(ctx, req)
	took := time.Since(start)
	status := 0
	if err == nil {
		status = httpStatus(resp)
	}
	l.score.record(e, start, took, status)
	return status
}

func httpStatus(resp *authv3.CheckResponse) int {
	if d := resp.GetDeniedResponse(); d != nil {
		return int(d.GetStatus().GetCode())
	}
	if resp.GetOkResponse() != nil && resp.GetStatus().GetCode() == int32(codes.OK) {
		for _, h := range resp.GetOkResponse().GetHeaders() {
			if h.GetHeader().GetKey() != "" && h.GetAppendAction() == corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				return 200
			}
		}
		return -1 // an OK without a token: not what an authenticated route answers
	}
	return -1
}

// Figures summarise a load run.
type Figures struct {
	Duration    time.Duration
	Checks      int64
	ByStatus    map[int]int64
	WrongOK     int64 // OK for a revoked or unknown session: must be 0
	Lost        int64 // 401 for a session that exists: must be 0
	Unexpected  int64 // gRPC errors, statuses other than 200, 401, 503: must be 0
	Unavailable int64 // 503s: fail-closed answers while the store was down
	MaxLatency  time.Duration
	MaxAt       time.Time // when the slowest Check started
	P99         time.Duration
	// First and last 503; zero if there was none.
	FirstUnavailable, LastUnavailable time.Time
	// UnavailableAt holds when the first maxUnavailableAt 503s started, so a
	// scenario can tell an outage from a stray slow Check later on.
	UnavailableAt []time.Time
	Problems      []string // the first wrong answers, for failure messages
}

// Rate is Checks per second.
func (f Figures) Rate() float64 { return float64(f.Checks) / f.Duration.Seconds() }

// Wrong is the number of answers that must not happen.
func (f Figures) Wrong() int64 { return f.WrongOK + f.Lost + f.Unexpected }

type score struct {
	start                     time.Time
	mu                        sync.Mutex
	n                         int64
	by                        map[int]int64
	wrongOK, lost, unexpected int64
	maxLat                    time.Duration
	maxAt                     time.Time
	lat                       []time.Duration // reservoir for the percentile
	firstU, lastU             time.Time
	unavailableAt             []time.Time
	problems                  []string
}

const maxUnavailableAt = 5000

const reservoir = 20000

func (s *score) record(e *Entry, start time.Time, took time.Duration, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.by == nil {
		s.by = map[int]int64{}
	}
	s.n++
	s.by[status]++
	if took > s.maxLat {
		s.maxLat, s.maxAt = took, start
	}
	if len(s.lat) < reservoir {
		s.lat = append(s.lat, took)
	} else if i := rand.Int64N(s.n); i < reservoir {
		s.lat[i] = took
	}
	problem := func(format string, args ...any) {
		if len(s.problems) < 10 {
			s.problems = append(s.problems, fmt.Sprintf("%s: ", start.Format("15:04:05.000"))+fmt.Sprintf(format, args...))
		}
	}
	revokedAt := e.revoked.Load()
	switch status {
	case 200:
		switch {
		case e.unknown:
			s.wrongOK++
			problem("OK for a session that never existed")
		case revokedAt != 0 && start.UnixNano() > revokedAt:
			s.wrongOK++
			problem("OK for a session revoked %v before the Check started", time.Duration(start.UnixNano()-revokedAt))
		}
	case 401:
		if !e.unknown && e.revoke.Load() == 0 {
			s.lost++
			problem("401 for a live session")
		}
	case 503:
		if s.firstU.IsZero() {
			s.firstU = start
		}
		s.lastU = start.Add(took)
		if len(s.unavailableAt) < maxUnavailableAt {
			s.unavailableAt = append(s.unavailableAt, start)
		}
	default:
		s.unexpected++
		problem("unexpected answer %d", status)
	}
}

func (s *score) figures(d time.Duration) Figures {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := Figures{
		Duration: d, Checks: s.n, ByStatus: map[int]int64{},
		WrongOK: s.wrongOK, Lost: s.lost, Unexpected: s.unexpected, Unavailable: s.by[503],
		MaxLatency: s.maxLat, MaxAt: s.maxAt, FirstUnavailable: s.firstU, LastUnavailable: s.lastU,
		Problems:      append([]string(nil), s.problems...),
		UnavailableAt: append([]time.Time(nil), s.unavailableAt...),
	}
	for k, v := range s.by {
		f.ByStatus[k] = v
	}
	if len(s.lat) > 0 {
		lat := append([]time.Duration(nil), s.lat...)
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		f.P99 = lat[len(lat)*99/100]
	}
	return f
}
