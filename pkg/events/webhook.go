package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Webhook headers. The signature is HMAC-SHA256 over the timestamp, a dot
// and the body, keyed with the shared secret, hex-encoded after "sha256=":
// a receiver recomputes it, compares in constant time, and refuses a
// timestamp too far from its clock (a replayed delivery).
const (
	SignatureHeader = "X-Sessiongate-Signature"
	TimestampHeader = "X-Sessiongate-Timestamp"
)

// Sign returns the SignatureHeader value for body sent at ts.
func Sign(secret []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// WebhookOptions configure a Webhook.
type WebhookOptions struct {
	URL    string
	Secret []byte
	// Queue bounds the events waiting for delivery; 0 = 1024. Full: the
	// event is dropped and counted (it stays in the event log).
	Queue int
	// Attempts per event, 0 = 5; the waits between them double from
	// Backoff (0 = 1s) up to 30s.
	Attempts int
	Backoff  time.Duration
	// Timeout bounds one delivery; 0 = 5s.
	Timeout time.Duration
	// Deliveries counts each event's outcome by result: delivered, failed
	// (every attempt failed), dropped (queue full or shutting down).
	Deliveries *prometheus.CounterVec
	Client     *http.Client
	Log        *slog.Logger
	Now        func() time.Time
}

// Webhook posts each event as JSON to a URL, in order, from one
// background worker, retrying with backoff. Send never blocks.
type Webhook struct {
	o      WebhookOptions
	q      chan Event
	stop   context.CancelFunc
	ctx    context.Context
	done   chan struct{}
	mu     sync.RWMutex
	closed bool
}

// NewWebhook starts the worker; Close stops it.
func NewWebhook(o WebhookOptions) *Webhook {
	if o.Queue <= 0 {
		o.Queue = 1024
	}
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Client == nil {
		// No redirects: a signed event goes to the configured URL only.
		o.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	ctx, stop := context.WithCancel(context.Background())
	w := &Webhook{o: o, q: make(chan Event, o.Queue), ctx: ctx, stop: stop, done: make(chan struct{})}
	go w.run()
	return w
}

// Send queues e for delivery.
func (w *Webhook) Send(e Event) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.count("dropped")
		return
	}
	select {
	case w.q <- e:
	default:
		w.count("dropped")
		w.o.Log.Warn("events: webhook queue full; event dropped (it stays in the event log)", "type", string(e.Type), "id", e.ID)
	}
}

func (w *Webhook) count(result string) {
	if w.o.Deliveries != nil {
		w.o.Deliveries.WithLabelValues(result).Inc()
	}
}

func (w *Webhook) run() {
	defer close(w.done)
	for {
		select {
		case e := <-w.q:
			w.deliver(e)
		case <-w.ctx.Done():
			for {
				select {
				case <-w.q:
					w.count("dropped")
				default:
					return
				}
			}
		}
	}
}

// deliver tries e up to Attempts times. A 2xx answer is a delivery; any
// other answer or a transport error is retried after the backoff.
func (w *Webhook) deliver(e Event) {
	body, err := json.Marshal(e)
	if err != nil {
		w.count("failed")
		return
	}
	wait := w.o.Backoff
	var last error
	for attempt := 1; attempt <= w.o.Attempts; attempt++ {
		if last = w.post(body); last == nil {
			w.count("delivered")
			return
		}
		if attempt == w.o.Attempts {
			break
		}
		select {
		case <-time.After(wait):
		case <-w.ctx.Done():
			w.count("dropped")
			return
		}
		wait = min(2*wait, 30*time.Second)
	}
	w.count("failed")
	w.o.Log.Warn("events: webhook delivery failed; the event stays in the event log", "type", string(e.Type), "id", e.ID, "attempts", w.o.Attempts, "err", last)
}

func (w *Webhook) post(body []byte) error {
	ctx, cancel := context.WithTimeout(w.ctx, w.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.o.URL, bytes.NewReader(body))
	if err != nil {
		return withoutURL(err)
	}
	ts := w.o.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(TimestampHeader, strconv.FormatInt(ts, 10))
	req.Header.Set(SignatureHeader, Sign(w.o.Secret, ts, body))
	resp, err := w.o.Client.Do(req)
	if err != nil {
		return withoutURL(err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("answer %d", resp.StatusCode)
	}
	return nil
}

// withoutURL drops the URL a *url.Error quotes: the failure is logged, and
// a receiver's URL often carries its own credential in the path or query
// (net/http removes only a password).
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// Close stops the worker: a delivery in flight is abandoned and what is
// queued is counted as dropped (all of it stays in the event log).
func (w *Webhook) Close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.stop()
	<-w.done
}
