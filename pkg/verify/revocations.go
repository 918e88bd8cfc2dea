package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"sync"
	"time"
)

// Defaults of FollowRevocations.
const (
	// DefaultMaxStale is how long a verifier keeps accepting tokens after it
	// last heard from a synchronised feed. sessiongate sends a heartbeat
	// every 10 s, so 30 s rides out two lost ones and a reconnect to another
	// replica (a rolling restart), while staying a tenth of the 5 m token
	// lifetime the feed exists to cut short: a revocation made while the
	// feed is down is enforced at most this long late (plus delivery), not
	// up to the token's exp.
	DefaultMaxStale = 30 * time.Second
	// DefaultMaxRevocations bounds the sids held: about 100 bytes each.
	DefaultMaxRevocations = 1_000_000
)

// Reconnect backoff bounds.
const (
	minRevocationBackoff = 100 * time.Millisecond
	maxRevocationBackoff = 5 * time.Second
)

// ErrRevoked means the token's session was revoked (the revocation feed
// named its sid).
var ErrRevoked = errors.New("session revoked")

// ErrRevocationsStale means the revocation feed has not been heard from,
// synchronised, for longer than its bound, and the verifier fails closed.
var ErrRevocationsStale = errors.New("revocation feed not synchronised")

// RevocationOption configures FollowRevocations.
type RevocationOption func(*Revocations)

// RevocationToken sends token as a bearer token (sessiongate's
// revocations.token_file).
func RevocationToken(token string) RevocationOption {
	return func(r *Revocations) { r.token = token }
}

// RevocationMaxStale sets how long after last hearing from a synchronised
// feed tokens are still accepted (default DefaultMaxStale).
func RevocationMaxStale(d time.Duration) RevocationOption {
	return func(r *Revocations) {
		if d > 0 {
			r.maxStale = d
		}
	}
}

// RevocationFailOpen makes a stale feed accept tokens (only a revoked sid
// already known is refused) instead of refusing every token that carries a
// sid. Availability over revocation: choose it only for services where a
// revoked session's tokens living to their exp is acceptable.
func RevocationFailOpen() RevocationOption {
	return func(r *Revocations) { r.failOpen = true }
}

// RevocationHTTPClient sets the client the feed is read with (default: a
// client with no overall timeout, since the stream is long-lived; the feed's
// own staleness bound ends a silent connection).
func RevocationHTTPClient(c *http.Client) RevocationOption {
	return func(r *Revocations) {
		if c != nil {
			r.client = c
		}
	}
}

// RevocationMaxEntries bounds the sids held (default DefaultMaxRevocations);
// a feed that names more is treated as out of sync.
func RevocationMaxEntries(n int) RevocationOption {
	return func(r *Revocations) {
		if n > 0 {
			r.maxEntries = n
		}
	}
}

// RevocationStatusFunc is called, from the feed's goroutine, whenever the
// status changes: synchronised, lost, stale (failing closed or open). Use
// it for metrics and readiness; it must not block.
func RevocationStatusFunc(f func(RevocationStatus)) RevocationOption {
	return func(r *Revocations) { r.onStatus = f }
}

// RevocationLogger sets where connection failures are logged (Warn).
func RevocationLogger(l *slog.Logger) RevocationOption {
	return func(r *Revocations) { r.log = l }
}

// RevocationStatus is the feed's state as the verifier applies it.
type RevocationStatus struct {
	// Synced: connected and caught up (the snapshot was read).
	Synced bool
	// Stale: not heard from a synchronised feed for longer than the bound
	// (or never): tokens with a sid are refused, or accepted with
	// RevocationFailOpen.
	Stale bool
	// FailOpen: the configured mode when stale.
	FailOpen bool
	// LastHeard is when a synchronised feed last sent anything (zero: never).
	LastHeard time.Time
	// Entries is how many revoked sids are held.
	Entries int
	// Err is the last connection error, if the feed is not synced.
	Err error
}

// Revocations follows sessiongate's revocation feed (GET /v1/revocations)
// and holds the sids revoked while tokens of them may exist. Put it in
// Options.Revocations: the Verifier then refuses a token whose sid it
// holds (ErrRevoked), and, while the feed is stale, every token with a sid
// (ErrRevocationsStale) unless RevocationFailOpen. Tokens without a sid
// (service tokens) are not affected.
type Revocations struct {
	url        string
	token      string
	maxStale   time.Duration
	failOpen   bool
	client     *http.Client
	maxEntries int
	onStatus   func(RevocationStatus)
	log        *slog.Logger
	now        func() time.Time
	leeway     time.Duration // the verifier's, set by newVerifier

	once     sync.Once
	cancel   context.CancelFunc
	reportMu sync.Mutex

	mu        sync.Mutex
	sids      map[string]int64 // sid → unix seconds until which its tokens may exist
	synced    bool
	lastHeard time.Time
	lastErr   error
	reported  bool
	last      RevocationStatus // as last reported
}

// FollowRevocations returns a follower of the feed at url (sessiongate's
// http_addr, path /v1/revocations). It starts when the Verifier it is
// given to is created, and stops with New's context or Close.
func FollowRevocations(url string, opts ...RevocationOption) *Revocations {
	r := &Revocations{
		url:        url,
		maxStale:   DefaultMaxStale,
		client:     &http.Client{},
		maxEntries: DefaultMaxRevocations,
		log:        slog.Default(),
		now:        time.Now,
		sids:       make(map[string]int64),
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// start runs the follower until ctx ends or Close; only the first call
// starts it.
func (r *Revocations) start(ctx context.Context, leeway time.Duration) {
	r.once.Do(func() {
		ctx, cancel := context.WithCancel(ctx)
		r.mu.Lock()
		r.cancel = cancel
		r.leeway = leeway
		r.mu.Unlock()
		go r.run(ctx)
	})
}

// Start follows the feed until ctx ends, for a service that verifies
// tokens itself and asks Check; a Verifier given r starts it instead.
// Entries are then kept DefaultLeeway past their exp. Only the first start
// (by Start or a Verifier) counts.
func (r *Revocations) Start(ctx context.Context) { r.start(ctx, DefaultLeeway) }

// Check says whether a token carrying sid, already verified by the caller,
// must be refused: ErrRevoked, ErrRevocationsStale (failing closed), or
// nil. An empty sid (a token of no session) is never refused.
func (r *Revocations) Check(sid string) error { return r.check(sid) }

// Close stops following the feed; from then on it is stale.
func (r *Revocations) Close() {
	r.mu.Lock()
	c := r.cancel
	r.mu.Unlock()
	if c != nil {
		c()
	}
}

// Status reports the follower's state.
func (r *Revocations) Status() RevocationStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.statusLocked(r.now())
}

func (r *Revocations) statusLocked(now time.Time) RevocationStatus {
	st := RevocationStatus{Synced: r.synced, FailOpen: r.failOpen, LastHeard: r.lastHeard, Entries: len(r.sids)}
	st.Stale = r.lastHeard.IsZero() || now.Sub(r.lastHeard) > r.maxStale
	if !r.synced {
		st.Err = r.lastErr
	}
	return st
}

// check refuses a token of a revoked session, or any token with a sid
// while the feed is stale and failing closed.
func (r *Revocations) check(sid string) error {
	if sid == "" {
		return nil
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if exp, ok := r.sids[sid]; ok && now.Unix() <= exp+int64(r.leeway/time.Second)+1 {
		return ErrRevoked
	}
	if !r.failOpen && (r.lastHeard.IsZero() || now.Sub(r.lastHeard) > r.maxStale) {
		return ErrRevocationsStale
	}
	return nil
}

func (r *Revocations) run(ctx context.Context) {
	backoff := minRevocationBackoff
	go func() {
		// Reports the feed going stale, which no read marks, within a
		// second; prunes expired sids once per staleness bound.
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		lastPrune := r.now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				r.report()
				if r.now().Sub(lastPrune) > r.maxStale {
					r.prune()
					lastPrune = r.now()
				}
			}
		}
	}()
	for {
		start := r.now()
		err := r.follow(ctx)
		r.mu.Lock()
		r.synced = false
		r.lastErr = err
		r.mu.Unlock()
		r.report()
		if ctx.Err() != nil {
			return
		}
		if r.now().Sub(start) > time.Minute {
			backoff = minRevocationBackoff
		}
		r.log.Warn("revocation feed: disconnected; reconnecting", "url", r.url, "error", err, "retry_in", backoff)
		// Full jitter: verifiers dropped together by a restarting replica
		// do not come back in step.
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, maxRevocationBackoff)
	}
}

// follow reads one connection of the feed until it fails.
func (r *Revocations) follow(parent context.Context) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	// A connection silent for the staleness bound is dead (sessiongate
	// writes a heartbeat every 10 s): end it and reconnect. It runs from
	// before the request, so a server that never answers is left too.
	idle := time.AfterFunc(r.maxStale, cancel)
	defer idle.Stop()
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revocation feed: %s", resp.Status)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/event-stream" {
		return fmt.Errorf("revocation feed: content type %q, want text/event-stream", resp.Header.Get("Content-Type"))
	}
	synced := false
	heard := func() {
		idle.Reset(r.maxStale)
		if synced {
			r.mu.Lock()
			r.lastHeard = r.now()
			r.mu.Unlock()
		}
	}
	sse := newSSEReader(resp.Body)
	for {
		ev, err := sse.next(heard)
		if err != nil {
			if parent.Err() != nil {
				return parent.Err()
			}
			if ctx.Err() != nil {
				return fmt.Errorf("revocation feed: silent for %v: %w", r.maxStale, err)
			}
			if err == io.EOF {
				return errors.New("revocation feed: stream ended")
			}
			return err
		}
		if ev.synced {
			if synced {
				return fmt.Errorf("%w: second synced event", errSSE)
			}
			synced = true
			r.mu.Lock()
			r.synced, r.lastErr, r.lastHeard = true, nil, r.now()
			r.mu.Unlock()
			r.report()
			continue
		}
		if err := r.add(ev.sid, ev.exp); err != nil {
			return err
		}
		if synced {
			heard()
		}
	}
}

// add holds one revoked sid, dropping expired ones when the bound is hit.
func (r *Revocations) add(sid string, exp int64) error {
	now := r.now().Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	grace := int64(r.leeway/time.Second) + 1
	if exp+grace < now {
		return nil
	}
	if cur, ok := r.sids[sid]; ok && cur >= exp {
		return nil
	}
	if _, ok := r.sids[sid]; !ok && len(r.sids) >= r.maxEntries {
		for s, e := range r.sids {
			if e+grace < now {
				delete(r.sids, s)
			}
		}
		if len(r.sids) >= r.maxEntries {
			return fmt.Errorf("revocation feed: more than %d revoked sessions in force", r.maxEntries)
		}
	}
	r.sids[sid] = exp
	return nil
}

// report calls the status callback when Synced or Stale changed since
// the last call.
func (r *Revocations) report() {
	// One report at a time, so the callback is never called concurrently
	// and sees the changes in order.
	r.reportMu.Lock()
	defer r.reportMu.Unlock()
	r.mu.Lock()
	st := r.statusLocked(r.now())
	changed := !r.reported || st.Stale != r.last.Stale || st.Synced != r.last.Synced
	r.reported, r.last = true, st
	r.mu.Unlock()
	if changed && r.onStatus != nil {
		r.onStatus(st)
	}
}

// prune drops sids whose tokens have all expired.
func (r *Revocations) prune() {
	now := r.now().Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	grace := int64(r.leeway/time.Second) + 1
	for s, e := range r.sids {
		if e+grace < now {
			delete(r.sids, s)
		}
	}
}
