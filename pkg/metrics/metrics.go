// Package metrics holds sessiongate's Prometheus metrics. The names are part
// of the product's interface (dashboards and alerts depend on them) and are
// documented in the README; change them only with a release note.
package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// Metrics are the collectors sessiongate updates.
type Metrics struct {
	Decisions        *prometheus.CounterVec   // sessiongate_check_decisions_total{result}
	CheckDuration    prometheus.Histogram     // sessiongate_check_duration_seconds
	StoreDuration    *prometheus.HistogramVec // sessiongate_store_duration_seconds{op}
	StoreErrors      *prometheus.CounterVec   // sessiongate_store_errors_total{op}
	StoreCanceled    *prometheus.CounterVec   // sessiongate_store_canceled_total{op}
	ShadowDecisions  *prometheus.CounterVec   // sessiongate_shadow_decisions_total{rule,decision}
	SessionsCreated  prometheus.Counter       // sessiongate_sessions_created_total
	SessionsRevoked  prometheus.Counter       // sessiongate_sessions_revoked_total
	TokenCacheHits   prometheus.Counter       // sessiongate_token_cache_hits_total
	TokenCacheMisses prometheus.Counter       // sessiongate_token_cache_misses_total
	TokenBytes       prometheus.Histogram     // sessiongate_token_bytes
	StoreUp          prometheus.Gauge         // sessiongate_store_up
	TokenRequests    *prometheus.CounterVec   // sessiongate_token_requests_total{grant,result}
	Refresh          *prometheus.CounterVec   // sessiongate_refresh_total{result}

	SecurityEvents        *prometheus.CounterVec // sessiongate_security_events_total{type}
	SecurityEventsDropped prometheus.Counter     // sessiongate_security_events_dropped_total
	SecurityEventsWebhook *prometheus.CounterVec // sessiongate_security_events_webhook_total{result}
}

// Catalog lists every metric sessiongate exports, by name, with its
// Prometheus type: what dashboards, alerts and the Kubernetes checks may
// name. A test holds it to what New registers.
func Catalog() map[string]string {
	return map[string]string{
		"sessiongate_check_decisions_total":         "counter",
		"sessiongate_check_duration_seconds":        "histogram",
		"sessiongate_store_duration_seconds":        "histogram",
		"sessiongate_store_errors_total":            "counter",
		"sessiongate_store_canceled_total":          "counter",
		"sessiongate_shadow_decisions_total":        "counter",
		"sessiongate_sessions_created_total":        "counter",
		"sessiongate_sessions_revoked_total":        "counter",
		"sessiongate_token_cache_hits_total":        "counter",
		"sessiongate_token_cache_misses_total":      "counter",
		"sessiongate_token_bytes":                   "histogram",
		"sessiongate_store_up":                      "gauge",
		"sessiongate_token_requests_total":          "counter",
		"sessiongate_refresh_total":                 "counter",
		"sessiongate_security_events_total":         "counter",
		"sessiongate_security_events_dropped_total": "counter",
		"sessiongate_security_events_webhook_total": "counter",
		// RegisterCache's, with the Redis session cache on.
		"sessiongate_cache_hits_total":          "counter",
		"sessiongate_cache_misses_total":        "counter",
		"sessiongate_cache_invalidations_total": "counter",
		"sessiongate_cache_tracking_up":         "gauge",
		// RegisterRevocations', the revocation feed.
		"sessiongate_revocations_published_total":          "counter",
		"sessiongate_revocation_subscribers":               "gauge",
		"sessiongate_revocation_subscribers_dropped_total": "counter",
		"sessiongate_revocation_feed_synced":               "gauge",
		"sessiongate_revocation_feed_resyncs_total":        "counter",
		"sessiongate_revocation_entries":                   "gauge",
	}
}

// New creates the collectors and registers them with reg (nil: not
// registered, for tests and benchmarks).
func New(reg prometheus.Registerer) *Metrics {
	// Check is expected to take well under a millisecond; the buckets resolve
	// that range and the Redis timeout region above it.
	checkBuckets := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25}
	m := &Metrics{
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiongate_check_decisions_total",
			Help: "Check decisions by result.",
		}, []string{"result"}),
		CheckDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sessiongate_check_duration_seconds",
			Help:    "Time to answer one Check, including the store round trip.",
			Buckets: checkBuckets,
		}),
		StoreDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sessiongate_store_duration_seconds",
			Help:    "Session store call latency by operation.",
			Buckets: checkBuckets,
		}, []string{"op"}),
		StoreErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiongate_store_errors_total",
			Help: "Session store calls that failed (not counting not-found), by operation.",
		}, []string{"op"}),
		StoreCanceled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiongate_store_canceled_total",
			Help: "Session store calls abandoned because the caller went away (Envoy cancelled the Check), by operation.",
		}, []string{"op"}),
		ShadowDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiongate_shadow_decisions_total",
			Help: "What shadow rules (rule: its index in routes) and the shadow CSRF check (rule: csrf) would have decided, had they been enforced.",
		}, []string{"rule", "decision"}),
		SessionsCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessiongate_sessions_created_total",
			Help: "Sessions created through the admin API.",
		}),
		SessionsRevoked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessiongate_sessions_revoked_total",
			Help: "Sessions deleted by logout, revocation or eviction.",
		}),
		TokenCacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessiongate_token_cache_hits_total",
			Help: "Checks answered with an already signed token.",
		}),
		TokenCacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessiongate_token_cache_misses_total",
			Help: "Checks that had to sign a token.",
		}),
		// Observed when Check signs, not on cache hits: the size of tokens
		// issued. The buckets straddle the header limits proxies enforce
		// (8 KiB per line is common) and token.warn_bytes/max_bytes.
		TokenBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sessiongate_token_bytes",
			Help:    "Size in bytes of the tokens Check signed (once per signature, not per cache hit), over token.max_bytes included.",
			Buckets: []float64{256, 512, 1024, 2048, 3072, 4096, 6144, 8192, 12288, 16384},
		}),
		TokenRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiongate_token_requests_total",
			Help: "POST /oauth2/token answers by grant and result (ok or the RFC 6749 error code).",
		}, []string{"grant", "result"}),
		Refresh: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessiongate_refresh_total",
			Help: "Refresh-token requests answered at the edge (refresh.path), by result: ok, or why not.",
		}, []string{"result"}),
		StoreUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sessiongate_store_up",
			Help: "1 when the last store health probe succeeded, else 0.",
		}),
	}
	m.SecurityEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessiongate_security_events_total",
		Help: "Security events recorded (logins, logouts, revocations, binding mismatches), by type.",
	}, []string{"type"})
	m.SecurityEventsDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sessiongate_security_events_dropped_total",
		Help: "Security events counted but not stored in the event log: queue full or store failure.",
	})
	m.SecurityEventsWebhook = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sessiongate_security_events_webhook_total",
		Help: "Security events sent to events.webhook.url, by result: delivered, failed (every attempt), dropped (queue full or shutdown).",
	}, []string{"result"})
	if reg != nil {
		reg.MustRegister(m.Decisions, m.CheckDuration, m.StoreDuration, m.StoreErrors, m.StoreCanceled, m.ShadowDecisions,
			m.SessionsCreated, m.SessionsRevoked, m.TokenCacheHits, m.TokenCacheMisses, m.TokenBytes, m.StoreUp, m.TokenRequests, m.Refresh)
		reg.MustRegister(m.SecurityEvents, m.SecurityEventsDropped, m.SecurityEventsWebhook)
	}
	return m
}

// RegisterCache exports the local session cache's counters, read from
// stats at each scrape (the cache keeps them as atomics: nothing on the
// Check path):
//
//	sessiongate_cache_hits_total           Checks answered from the cache
//	sessiongate_cache_misses_total         Checks that read Redis
//	sessiongate_cache_invalidations_total  cached records dropped on Redis's word
//	sessiongate_cache_tracking_up          1 while the invalidation link is confirmed
func RegisterCache(reg prometheus.Registerer, stats func() session.CacheStats) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sessiongate_cache_hits_total",
			Help: "Checks answered from the local session cache.",
		}, func() float64 { return float64(stats().Hits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sessiongate_cache_misses_total",
			Help: "Checks that read the session from Redis (the cache had no servable entry).",
		}, func() float64 { return float64(stats().Misses) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sessiongate_cache_invalidations_total",
			Help: "Cached session records dropped because Redis reported their key changed or the invalidation link was replaced.",
		}, func() float64 { return float64(stats().Invalidations) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sessiongate_cache_tracking_up",
			Help: "1 while every Redis master's invalidation connection is confirmed, so the cache may serve; else 0.",
		}, func() float64 {
			if stats().TrackingUp {
				return 1
			}
			return 0
		}),
	)
}

// RevocationStats is what the revocation feed reports; RegisterRevocations
// reads it at each scrape.
type RevocationStats struct {
	Published   uint64 // revocations this replica recorded and published
	Subscribers int    // SSE clients connected
	Dropped     uint64 // clients dropped for not keeping up
	Synced      bool   // the feed holds every revocation in force
	Resyncs     uint64 // times the feed lost its source
	Entries     int    // revocations in force held
}

// RegisterRevocations exports the revocation feed's state:
//
//	sessiongate_revocations_published_total           revocations recorded by this replica
//	sessiongate_revocation_subscribers                verifiers following this replica
//	sessiongate_revocation_subscribers_dropped_total  verifiers dropped for not keeping up
//	sessiongate_revocation_feed_synced                1 while the feed can vouch for its set
//	sessiongate_revocation_feed_resyncs_total         times it lost Redis and resynchronised
//	sessiongate_revocation_entries                    revocations in force held
func RegisterRevocations(reg prometheus.Registerer, stats func() RevocationStats) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sessiongate_revocations_published_total",
			Help: "Revoked sessions this replica recorded and published on the revocation feed.",
		}, func() float64 { return float64(stats().Published) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sessiongate_revocation_subscribers",
			Help: "Verifiers following this replica's revocation feed.",
		}, func() float64 { return float64(stats().Subscribers) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sessiongate_revocation_subscribers_dropped_total",
			Help: "Revocation feed clients dropped for not keeping up.",
		}, func() float64 { return float64(stats().Dropped) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sessiongate_revocation_feed_synced",
			Help: "1 while this replica's revocation feed holds every revocation in force and serves; else 0 (followers are refused).",
		}, func() float64 { return b(stats().Synced) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sessiongate_revocation_feed_resyncs_total",
			Help: "Times the revocation feed lost its Redis subscription (or overflowed) and resynchronised.",
		}, func() float64 { return float64(stats().Resyncs) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sessiongate_revocation_entries",
			Help: "Revocations in force held by this replica's feed.",
		}, func() float64 { return float64(stats().Entries) }),
	)
}

// Store wraps a session store so every call is timed and failures counted.
func (m *Metrics) Store(s session.Store) session.Store {
	return &instrumentedStore{Store: s, m: m, touch: m.storeOp("touch")}
}

type storeOp struct {
	dur      prometheus.Observer
	err      prometheus.Counter
	canceled prometheus.Counter
}

func (m *Metrics) storeOp(op string) storeOp {
	return storeOp{dur: m.StoreDuration.WithLabelValues(op), err: m.StoreErrors.WithLabelValues(op),
		canceled: m.StoreCanceled.WithLabelValues(op)}
}

// done records one call. A call abandoned because its caller went away is
// counted apart: a burst of clients hanging up must not look like a store
// outage on the error rate.
func (o storeOp) done(start time.Time, err error) {
	o.dur.Observe(time.Since(start).Seconds())
	switch {
	case err == nil, errors.Is(err, session.ErrNotFound), errors.Is(err, session.ErrLimit),
		errors.Is(err, session.ErrRefreshInvalid), errors.Is(err, session.ErrRefreshReused):
		// Answers about the request, not store failures.
	case errors.Is(err, context.Canceled):
		o.canceled.Inc()
	default:
		o.err.Inc()
	}
}

type instrumentedStore struct {
	session.Store
	m     *Metrics
	touch storeOp // resolved once: Touch is on the Check path
}

func (s *instrumentedStore) Touch(ctx context.Context, ref string) (session.Entry, error) {
	start := time.Now()
	e, err := s.Store.Touch(ctx, ref)
	s.touch.done(start, err)
	return e, err
}

func (s *instrumentedStore) Create(ctx context.Context, in *session.Session, l session.Limit) ([]string, error) {
	start := time.Now()
	ev, err := s.Store.Create(ctx, in, l)
	s.m.storeOp("create").done(start, err)
	if err == nil {
		s.m.SessionsCreated.Inc()
		s.m.SessionsRevoked.Add(float64(len(ev)))
	}
	return ev, err
}

// CreateFamily is a login like Create, and shares its op and counters.
func (s *instrumentedStore) CreateFamily(ctx context.Context, in *session.Session, l session.Limit, p session.RefreshPolicy) (session.Refreshed, []string, error) {
	start := time.Now()
	r, ev, err := s.Store.CreateFamily(ctx, in, l, p)
	s.m.storeOp("create").done(start, err)
	if err == nil {
		s.m.SessionsCreated.Inc()
		s.m.SessionsRevoked.Add(float64(len(ev)))
	}
	return r, ev, err
}

// Refresh is timed as its own op; an invalid or reused token is an answer,
// not a store error.
func (s *instrumentedStore) Refresh(ctx context.Context, token string) (session.Refreshed, error) {
	start := time.Now()
	r, err := s.Store.Refresh(ctx, token)
	s.m.storeOp("refresh").done(start, err)
	if errors.Is(err, session.ErrRefreshReused) {
		s.m.SessionsRevoked.Inc()
	}
	return r, err
}

// RevokeFamily shares the "delete" op: to an operator it is a revocation.
func (s *instrumentedStore) RevokeFamily(ctx context.Context, ref string) error {
	start := time.Now()
	err := s.Store.RevokeFamily(ctx, ref)
	s.m.storeOp("delete").done(start, err)
	if err == nil {
		s.m.SessionsRevoked.Inc()
	}
	return err
}

func (s *instrumentedStore) Delete(ctx context.Context, ref string) error {
	start := time.Now()
	err := s.Store.Delete(ctx, ref)
	s.m.storeOp("delete").done(start, err)
	if err == nil {
		s.m.SessionsRevoked.Inc()
	}
	return err
}

func (s *instrumentedStore) List(ctx context.Context, subject string) ([]*session.Session, error) {
	start := time.Now()
	ss, err := s.Store.List(ctx, subject)
	s.m.storeOp("list").done(start, err)
	return ss, err
}

// Families shares the "list" op: it reads a subject's index as List does.
func (s *instrumentedStore) Families(ctx context.Context, subject string) ([]string, error) {
	start := time.Now()
	fams, err := s.Store.Families(ctx, subject)
	s.m.storeOp("list").done(start, err)
	return fams, err
}

// ListPage shares the "list" op: to an operator both are the admin listing.
func (s *instrumentedStore) ListPage(ctx context.Context, subject string, after uint64, limit int) (session.Page, error) {
	start := time.Now()
	p, err := s.Store.ListPage(ctx, subject, after, limit)
	s.m.storeOp("list").done(start, err)
	return p, err
}

func (s *instrumentedStore) DeleteUser(ctx context.Context, subject string) (int, error) {
	start := time.Now()
	n, err := s.Store.DeleteUser(ctx, subject)
	s.m.storeOp("delete_user").done(start, err)
	s.m.SessionsRevoked.Add(float64(n))
	return n, err
}

func (s *instrumentedStore) UpdateUser(ctx context.Context, subject string, u session.Update) (int, error) {
	start := time.Now()
	n, err := s.Store.UpdateUser(ctx, subject, u)
	s.m.storeOp("update_user").done(start, err)
	return n, err
}

func (s *instrumentedStore) Ping(ctx context.Context) error {
	start := time.Now()
	err := s.Store.Ping(ctx)
	s.m.storeOp("ping").done(start, err)
	return err
}
