package events

import (
	"crypto/hmac"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// receiver checks each delivery's signature as a receiver would and keeps
// the events; the first failFirst attempts are answered 503.
type receiver struct {
	secret    []byte
	failFirst int32
	attempts  atomic.Int32
	mu        sync.Mutex
	got       []Event
	bad       []string
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	n := r.attempts.Add(1)
	body, _ := io.ReadAll(req.Body)
	ts, err := strconv.ParseInt(req.Header.Get(TimestampHeader), 10, 64)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil || !hmac.Equal([]byte(req.Header.Get(SignatureHeader)), []byte(Sign(r.secret, ts, body))) ||
		req.Header.Get("Content-Type") != "application/json" || time.Since(time.Unix(ts, 0)) > time.Minute {
		r.bad = append(r.bad, string(body))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if n <= r.failFirst {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var e Event
	if err := json.Unmarshal(body, &e); err != nil {
		r.bad = append(r.bad, string(body))
	}
	r.got = append(r.got, e)
}

func deliveries() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "w"}, []string{"result"})
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Events stored in the log reach the webhook signed, with their IDs, in
// order, after retries of a receiver that fails at first.
func TestWebhookDelivers(t *testing.T) {
	rcv := &receiver{secret: []byte("webhook-secret-0123456789"), failFirst: 2}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	m := deliveries()
	wh := NewWebhook(WebhookOptions{URL: srv.URL, Secret: rcv.secret, Backoff: time.Millisecond, Deliveries: m})
	st := NewMemoryStore(100)
	l := NewLog(Options{Store: st, Webhook: wh})
	l.Record(Event{Type: Login, Subject: "alice", SessionRef: "r1"})
	l.Record(Event{Type: Revoke, SessionRef: "r1", Details: map[string]string{"by": "token#0"}})
	waitFor(t, "two deliveries", func() bool { return testutil.ToFloat64(m.WithLabelValues("delivered")) == 2 })
	l.Close()
	wh.Close()
	stored, _ := st.Page(t.Context(), "", 10)
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.bad) > 0 {
		t.Fatalf("badly signed or malformed deliveries: %v", rcv.bad)
	}
	if len(rcv.got) != 2 || rcv.got[0].Type != Login || rcv.got[1].Details["by"] != "token#0" ||
		rcv.got[0].ID != stored[0].ID || rcv.got[1].ID != stored[1].ID || rcv.got[0].ID == "" {
		t.Errorf("delivered %+v, stored %+v", rcv.got, stored)
	}
	if got := rcv.attempts.Load(); got != 4 {
		t.Errorf("%d attempts, want 4 (two refused, then two delivered)", got)
	}
}

// A receiver that never accepts costs each event its attempts, then the
// failure is counted; a full queue drops and counts; neither blocks Send.
func TestWebhookFailuresAreCounted(t *testing.T) {
	rcv := &receiver{secret: []byte("webhook-secret-0123456789"), failFirst: 1 << 30}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	m := deliveries()
	wh := NewWebhook(WebhookOptions{URL: srv.URL, Secret: rcv.secret, Attempts: 3, Backoff: time.Millisecond, Deliveries: m, Log: slog.New(slog.DiscardHandler)})
	wh.Send(Event{Type: Logout})
	waitFor(t, "a failed delivery", func() bool { return testutil.ToFloat64(m.WithLabelValues("failed")) == 1 })
	if got := rcv.attempts.Load(); got != 3 {
		t.Errorf("%d attempts, want 3", got)
	}
	wh.Close()

	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(block) })
	m = deliveries()
	wh = NewWebhook(WebhookOptions{URL: slow.URL, Secret: []byte("x"), Queue: 2, Deliveries: m, Log: slog.New(slog.DiscardHandler)})
	start := time.Now()
	for range 10 {
		wh.Send(Event{Type: Logout})
	}
	if time.Since(start) > time.Second {
		t.Error("Send blocked")
	}
	wh.Close()
	if got := testutil.ToFloat64(m.WithLabelValues("dropped")); got != 10 {
		t.Errorf("dropped %v, want 10 (7 or 8 for a full queue, the rest at Close)", got)
	}
}
