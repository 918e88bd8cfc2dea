package events

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Recorder takes events where they happen. Record never blocks and never
// fails its caller: a Check or an admin request does not wait for the
// event log.
type Recorder interface {
	Record(e Event)
}

// Options configure a Log.
type Options struct {
	Store   Store
	Replica string // this instance's name in every event
	// Queue bounds the events waiting to be stored; 0 = 1024. When it is
	// full, new events are dropped and counted: Record must not block.
	Queue int
	// Timeout bounds each store call; 0 = 2s.
	Timeout time.Duration
	// Counted counts every recorded event by type
	// (sessiongate_security_events_total), Dropped the ones that could not
	// be stored (sessiongate_security_events_dropped_total). Nil: not
	// counted.
	Counted *prometheus.CounterVec
	Dropped prometheus.Counter
	Log     *slog.Logger
	Now     func() time.Time
	// Webhook, if set, receives every event once it is stored (with its
	// ID), or once storing it failed (without).
	Webhook *Webhook
}

// Log is a Recorder that stores events in the background, in the order
// they were recorded.
type Log struct {
	o       Options
	q       chan Event
	counted map[Type]prometheus.Counter
	done    chan struct{}
	// mu orders Record's sends before Close: once closed is set, nothing
	// more enters q, so the writer's final drain stores everything queued.
	mu      sync.RWMutex
	closed  bool
	closing chan struct{}
}

// NewLog starts the writer; Close stops it after storing what is queued.
func NewLog(o Options) *Log {
	if o.Queue <= 0 {
		o.Queue = 1024
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &Log{o: o, q: make(chan Event, o.Queue), counted: map[Type]prometheus.Counter{}, done: make(chan struct{}), closing: make(chan struct{})}
	for _, t := range Types() {
		if o.Counted != nil {
			l.counted[t] = o.Counted.WithLabelValues(string(t))
		}
	}
	go l.write()
	return l
}

// Record implements Recorder. It sets Time (when zero), Replica and an
// empty Details, counts the event, and queues it.
func (l *Log) Record(e Event) {
	if e.Time.IsZero() {
		e.Time = l.o.Now()
	}
	e.Time = e.Time.UTC()
	e.Replica = l.o.Replica
	if e.Details == nil {
		e.Details = map[string]string{}
	}
	if c := l.counted[e.Type]; c != nil {
		c.Inc()
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.drop(e, "event log closed")
		return
	}
	select {
	case l.q <- e:
	default:
		l.drop(e, "event queue full")
	}
}

func (l *Log) drop(e Event, why string) {
	if l.o.Dropped != nil {
		l.o.Dropped.Inc()
	}
	l.o.Log.Warn("events: event not stored", "why", why, "type", string(e.Type), "session_ref", e.SessionRef)
}

func (l *Log) write() {
	defer close(l.done)
	for {
		select {
		case e := <-l.q:
			l.store(e)
		case <-l.closing:
			for {
				select {
				case e := <-l.q:
					l.store(e)
				default:
					return
				}
			}
		}
	}
}

func (l *Log) store(e Event) {
	ctx, cancel := context.WithTimeout(context.Background(), l.o.Timeout)
	defer cancel()
	id, err := l.o.Store.Append(ctx, e)
	if err != nil {
		if l.o.Dropped != nil {
			l.o.Dropped.Inc()
		}
		l.o.Log.Warn("events: store event", "type", string(e.Type), "session_ref", e.SessionRef, "err", err)
	}
	if l.o.Webhook != nil {
		e.ID = id
		l.o.Webhook.Send(e)
	}
}

// Webhook is the webhook events are forwarded to, or nil.
func (l *Log) Webhook() *Webhook { return l.o.Webhook }

// Close stores what is queued, within the store timeout per event, and
// stops the writer. Events recorded after Close are dropped and counted.
func (l *Log) Close() {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.closing)
	}
	l.mu.Unlock()
	<-l.done
}
