// Package revocation serves sessiongate's revocation feed: the sids of
// sessions ended while tokens of them may still be alive, as a
// Server-Sent Events stream that verifiers (pkg/verify's FollowRevocations)
// follow to refuse those tokens before their exp.
//
// One Feed per replica follows the session store's revocations (a Redis
// subscription shared by every replica, or the memory store's in-process
// equivalent) and keeps the entries in force in memory; each SSE client is
// served from that copy: first every entry in force, then `event: synced`,
// then each new entry as it arrives, with a comment line every heartbeat.
// The stream is a statement that the client has everything: whenever the
// Feed cannot vouch for that (its subscription broke, or more entries are
// in force than it may hold), it drops every client and refuses new ones
// until it has resynchronised, so a verifier's own clock of "not synced"
// starts and its fail-closed bound applies.
//
// Bounded throughout: the entries held (MaxEntries), the clients served
// (MaxSubscribers), and each client's queue; a client that does not keep
// up is dropped, never buffered for.
package revocation

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// Defaults for zero Options fields.
const (
	DefaultMaxSubscribers = 256
	DefaultMaxEntries     = 100_000
	// DefaultHeartbeat is how often an idle stream carries a comment, so a
	// client notices a dead connection within a few of them (pkg/verify
	// gives up after three) and proxies do not close it as idle.
	DefaultHeartbeat    = 10 * time.Second
	DefaultWriteTimeout = 10 * time.Second
)

// queueLen is how many live entries may wait for one client. A burst
// larger than this (a revoke-user of a huge subject) reaching a client
// that is not reading drops it; it reconnects and gets them all in the
// snapshot, which is written without a queue.
const queueLen = 4096

// Source is where revocations come from: *session.RedisStore and
// *session.MemoryStore.
type Source interface {
	FollowRevocations(ctx context.Context, limit int, snapshot func([]session.Revocation), live func(session.Revocation)) error
}

// Options configures a Feed.
type Options struct {
	Source         Source
	MaxSubscribers int           // SSE clients served at once; beyond, 503
	MaxEntries     int           // entries in force the Feed holds; beyond, it is out of sync
	Heartbeat      time.Duration // comment interval on idle streams
	WriteTimeout   time.Duration // a write to a client that takes longer drops it
	Log            *slog.Logger
	Now            func() time.Time
}

// Stats is what the Feed reports to metrics.
type Stats struct {
	Synced      bool   // the Feed holds every entry in force
	Subscribers int    // SSE clients connected
	Entries     int    // entries in force held
	Dropped     uint64 // clients dropped for not keeping up
	Resyncs     uint64 // times the Feed lost its source and had to resynchronise
}

// Feed is one replica's revocation feed. It is an http.Handler for
// GET /v1/revocations; Run must be running for it to serve.
type Feed struct {
	o      Options
	tokens atomic.Pointer[[][sha256.Size]byte] // nil: open

	mu      sync.Mutex
	synced  bool
	entries map[string]time.Time
	subs    map[*subscriber]struct{}
	stop    context.CancelFunc // ends the current follow (overflow)

	dropped atomic.Uint64
	resyncs atomic.Uint64
	queue   int // queueLen; tests shrink it
}

type subscriber struct {
	ch   chan session.Revocation
	gone chan struct{} // closed when the Feed drops it
}

// New returns a Feed; nothing is served until Run has synchronised it.
func New(o Options) *Feed {
	if o.MaxSubscribers <= 0 {
		o.MaxSubscribers = DefaultMaxSubscribers
	}
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Feed{o: o, entries: make(map[string]time.Time), subs: make(map[*subscriber]struct{}), queue: queueLen}
}

// SetTokens makes the stream require one of tokens as a bearer token; nil
// or empty opens it. Safe to call while serving (a reloaded token file).
func (f *Feed) SetTokens(tokens []string) {
	if len(tokens) == 0 {
		f.tokens.Store(nil)
		return
	}
	sums := make([][sha256.Size]byte, len(tokens))
	for i, t := range tokens {
		sums[i] = sha256.Sum256([]byte(t))
	}
	f.tokens.Store(&sums)
}

// Stats reports the Feed's state.
func (f *Feed) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Stats{Synced: f.synced, Subscribers: len(f.subs), Entries: len(f.entries),
		Dropped: f.dropped.Load(), Resyncs: f.resyncs.Load()}
}

// Backoff bounds between attempts to follow the source again.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Run follows the source until ctx ends, following it again (with backoff)
// whenever it fails; in between the Feed is out of sync.
func (f *Feed) Run(ctx context.Context) {
	backoff := minBackoff
	prune := time.NewTicker(f.o.Heartbeat)
	defer prune.Stop()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-prune.C:
				f.prune()
			}
		}
	}()
	for {
		fctx, cancel := context.WithCancel(ctx)
		f.mu.Lock()
		f.stop = cancel
		f.mu.Unlock()
		start := time.Now()
		err := f.o.Source.FollowRevocations(fctx, f.o.MaxEntries, f.snapshot, f.live)
		cancel()
		f.desync()
		if ctx.Err() != nil {
			return
		}
		f.resyncs.Add(1)
		if time.Since(start) > time.Minute {
			backoff = minBackoff
		}
		f.o.Log.Warn("revocation feed: lost its source; verifiers are dropped until it resynchronises", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// snapshot replaces the entries with those in force and marks the Feed
// synced.
func (f *Feed) snapshot(in []session.Revocation) {
	now := f.o.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = make(map[string]time.Time, len(in))
	for _, r := range in {
		if r.Until.After(now) {
			f.entries[r.Ref] = r.Until
		}
	}
	if !f.synced {
		f.o.Log.Info("revocation feed synchronised", "entries", len(f.entries))
	}
	f.synced = true
}

// live adds one entry and passes it to every client.
func (f *Feed) live(r session.Revocation) {
	now := f.o.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !r.Until.After(now) {
		return
	}
	if cur, ok := f.entries[r.Ref]; ok && !r.Until.After(cur) {
		return // already known
	}
	f.entries[r.Ref] = r.Until
	if len(f.entries) > f.o.MaxEntries {
		f.pruneLocked(now)
		if len(f.entries) > f.o.MaxEntries {
			f.o.Log.Error("revocation feed: more entries in force than revocations.max_entries; out of sync until they expire",
				"max_entries", f.o.MaxEntries)
			f.stop() // Run desyncs and retries; the snapshot overflows until entries expire
			return
		}
	}
	for s := range f.subs {
		select {
		case s.ch <- r:
		default:
			f.dropLocked(s)
			f.dropped.Add(1)
		}
	}
}

// desync drops every client and refuses new ones until the next snapshot.
func (f *Feed) desync() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.synced = false
	for s := range f.subs {
		f.dropLocked(s)
	}
}

func (f *Feed) dropLocked(s *subscriber) {
	delete(f.subs, s)
	close(s.gone)
}

func (f *Feed) prune() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pruneLocked(f.o.Now())
}

func (f *Feed) pruneLocked(now time.Time) {
	for ref, u := range f.entries {
		if !u.After(now) {
			delete(f.entries, ref)
		}
	}
}

// subscribe registers a client and returns the entries in force; nil
// with a status when it is refused.
func (f *Feed) subscribe() (*subscriber, []session.Revocation, int) {
	now := f.o.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.synced {
		return nil, nil, http.StatusServiceUnavailable
	}
	if len(f.subs) >= f.o.MaxSubscribers {
		return nil, nil, http.StatusServiceUnavailable
	}
	snap := make([]session.Revocation, 0, len(f.entries))
	for ref, u := range f.entries {
		if u.After(now) {
			snap = append(snap, session.Revocation{Ref: ref, Until: u})
		}
	}
	s := &subscriber{ch: make(chan session.Revocation, f.queue), gone: make(chan struct{})}
	f.subs[s] = struct{}{}
	return s, snap, 0
}

func (f *Feed) unsubscribe(s *subscriber) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.subs[s]; ok {
		f.dropLocked(s)
	}
}

// authorized checks the bearer token when one is required. Every
// configured token is compared, so the time taken says nothing about
// which one nearly matched.
func (f *Feed) authorized(r *http.Request) bool {
	want := f.tokens.Load()
	if want == nil {
		return true
	}
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return false
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return false
	}
	got := sha256.Sum256([]byte(tok))
	match := 0
	for _, w := range *want {
		match |= subtle.ConstantTimeCompare(got[:], w[:])
	}
	return match == 1
}

// ServeHTTP serves GET /v1/revocations.
func (f *Feed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet {
		h.Set("Allow", "GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !f.authorized(r) {
		h.Set("WWW-Authenticate", `Bearer realm="sessiongate-revocations"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	s, snap, code := f.subscribe()
	if s == nil {
		h.Set("Retry-After", "1")
		http.Error(w, "revocation feed unavailable", code)
		return
	}
	defer f.unsubscribe(s)
	err := f.stream(w, r.Context(), s, snap)
	if errors.Is(err, errWrite) {
		// A write that failed or timed out: the client is not keeping up
		// (or is gone without closing).
		f.dropped.Add(1)
	}
	if err != nil {
		f.o.Log.Debug("revocation feed: stream ended", "remote", r.RemoteAddr, "err", err)
	}
}

// errDropped ends a stream the Feed dropped (a slow client, or the Feed out
// of sync).
var errDropped = errors.New("dropped by the feed")

// errWrite ends a stream whose write failed or missed WriteTimeout.
var errWrite = errors.New("write to the client failed")

func (f *Feed) stream(w http.ResponseWriter, ctx context.Context, s *subscriber, snap []session.Revocation) error {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Accel-Buffering", "no") // nginx-style proxies: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 16<<10)
	flush := func() error {
		if err := rc.SetWriteDeadline(time.Now().Add(f.o.WriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return fmt.Errorf("%w: %w", errWrite, err)
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("%w: %w", errWrite, err)
		}
		if err := rc.Flush(); err != nil {
			return fmt.Errorf("%w: %w", errWrite, err)
		}
		return nil
	}
	for _, r := range snap {
		writeRevoked(bw, r)
		if bw.Buffered() > 12<<10 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	bw.WriteString("event: synced\ndata: {\"count\":" + strconv.Itoa(len(snap)) + "}\n\n")
	if err := flush(); err != nil {
		return err
	}
	beat := time.NewTicker(f.o.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.gone:
			return errDropped
		case r := <-s.ch:
			writeRevoked(bw, r)
			for more := true; more && bw.Buffered() < 12<<10; {
				select {
				case r := <-s.ch:
					writeRevoked(bw, r)
				default:
					more = false
				}
			}
		case <-beat.C:
			bw.WriteString(": ping\n\n")
		}
		if err := flush(); err != nil {
			return err
		}
	}
}

// writeRevoked writes one entry. exp is rounded up to the second, so a
// verifier never forgets an entry before the last token it covers expires.
func writeRevoked(bw *bufio.Writer, r session.Revocation) {
	exp := (r.Until.UnixMilli() + 999) / 1000
	bw.WriteString("event: revoked\ndata: {\"sid\":\"")
	bw.WriteString(r.Ref) // a ref: 32 hex digits, nothing to escape
	bw.WriteString("\",\"exp\":")
	bw.WriteString(strconv.FormatInt(exp, 10))
	bw.WriteString("}\n\n")
}
