package events

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sessiongate/sessiongate/internal/logtest"
)

// TestWebhookFailureLogsNoURLSecret: many receivers carry their own
// credential in the URL's path or query (a per-hook token). A failed
// delivery is logged; the line says why, never the URL, nor the HMAC key.
func TestWebhookFailureLogsNoURLSecret(t *testing.T) {
	const urlToken, hmacKey = "PathTok3nXYZ", "hmac-key-0123456789"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct{ name, url string }{
		{"token in the path, connection refused", "http://" + closed + "/hooks/" + urlToken},
		{"token in the query, connection refused", "http://" + closed + "/hook?token=" + urlToken},
		{"token in the path, does not parse", "http://" + closed + "/hooks/" + urlToken + "/%zz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs logtest.Buffer
			d := deliveries()
			w := NewWebhook(WebhookOptions{URL: tc.url, Secret: []byte(hmacKey), Attempts: 1, Timeout: 2 * time.Second,
				Deliveries: d, Log: slog.New(slog.NewJSONHandler(&logs, nil))})
			t.Cleanup(w.Close)
			w.Send(Event{Type: Login, ID: "1-0", Subject: "alice"})
			waitFor(t, "the failure", func() bool { return testutil.ToFloat64(d.WithLabelValues("failed")) == 1 })
			waitFor(t, "the log line", func() bool { return strings.Contains(logs.String(), "webhook delivery failed") })
			if s := logs.String(); strings.Contains(s, urlToken) || strings.Contains(s, hmacKey) {
				t.Fatalf("the log repeats a secret:\n%s", s)
			}
		})
	}
}

// TestWebhookRedirectNotFollowed: a receiver that redirects (to another
// host, or to itself) gets a failure; the signed body and its signature
// never reach the redirect's target.
func TestWebhookRedirectNotFollowed(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
	}))
	t.Cleanup(other.Close)
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, other.URL+"/steal", code)
			}))
			t.Cleanup(src.Close)
			d := deliveries()
			w := NewWebhook(WebhookOptions{URL: src.URL + "/hook", Secret: []byte("hmac-key-0123456789"), Attempts: 1,
				Deliveries: d, Log: slog.New(slog.DiscardHandler)})
			t.Cleanup(w.Close)
			w.Send(Event{Type: Login, ID: "1-0", Subject: "alice"})
			waitFor(t, "the failure", func() bool { return testutil.ToFloat64(d.WithLabelValues("failed")) == 1 })
			if n := elsewhere.Load(); n != 0 {
				t.Fatalf("the redirect's target got %d requests", n)
			}
		})
	}
}
