package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/pkg/admin"
	"github.com/sessiongate/sessiongate/pkg/config"
	"github.com/sessiongate/sessiongate/pkg/events"
	"github.com/sessiongate/sessiongate/pkg/metrics"
	"github.com/sessiongate/sessiongate/pkg/session"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func eventsServer(t *testing.T) (*httptest.Server, events.Store, string) {
	t.Helper()
	st := events.NewMemoryStore(10_000)
	h := admin.NewHandler(admin.Options{Store: session.NewMemoryStore(nil), EventStore: st})
	h.SetTokens([]string{"events-test-token-0123"})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tf := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tf, []byte("events-test-token-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, st, tf
}

// events tail prints every event once, in order, across pages and polls,
// starting where it is told.
func TestEventsTail(t *testing.T) {
	srv, st, tf := eventsServer(t)
	ctx := context.Background()
	appendN := func(n int, subject string) {
		for range n {
			if _, err := st.Append(ctx, events.Event{Type: events.Login, Subject: subject, Details: map[string]string{}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(1500, "old") // more than a page
	for _, tc := range []struct {
		name string
		args []string
		old  int
	}{
		{"all", []string{"--all"}, 1500},
		{"from now", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut := &lockedBuffer{}, &lockedBuffer{}
			tctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			args := append([]string{"events", "--url", srv.URL, "--token-file", tf, "tail", "--interval", "20ms"}, tc.args...)
			go func() { done <- run(tctx, args, out, errOut) }()
			time.Sleep(100 * time.Millisecond)
			appendN(3, "new-"+tc.name)
			deadline := time.Now().Add(10 * time.Second)
			for strings.Count(out.String(), "new-"+tc.name) < 3 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("tail: %v (%s)", err, errOut)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != tc.old+3 {
				t.Fatalf("%d lines, want %d", len(lines), tc.old+3)
			}
			last := ""
			for _, l := range lines {
				var e events.Event
				if err := json.Unmarshal([]byte(l), &e); err != nil {
					t.Fatalf("line %q: %v", l, err)
				}
				if last != "" && !idBefore(last, e.ID) {
					t.Fatalf("event %s after %s: out of order or repeated", e.ID, last)
				}
				last = e.ID
			}
		})
	}
}

func TestEventsTailRefusals(t *testing.T) {
	srv, _, tf := eventsServer(t)
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("wrong-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"events", "--url", srv.URL, "--token-file", tf}, "the command is tail"},
		{[]string{"events", "--url", srv.URL, "--token-file", tf, "follow"}, "the command is tail"},
		{[]string{"events", "--url", srv.URL, "--token-file", tf, "tail", "--after", "x"}, "not an event ID"},
		{[]string{"events", "--url", srv.URL, "--token-file", tf, "tail", "--after", "1-0", "--all"}, "exclude each other"},
		{[]string{"events", "--url", srv.URL, "--token-file", tf, "tail", "extra"}, "unexpected argument"},
		{[]string{"events", "--url", srv.URL, "--token-file", tf, "tail", "--interval", "1ms"}, "at least 10ms"},
		{[]string{"events", "--url", srv.URL, "--token-file", bad, "tail"}, "401"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := run(ctx, tc.args, &bytes.Buffer{}, &bytes.Buffer{})
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

// idBefore orders event IDs: "<ms>-<seq>", numerically.
func idBefore(a, b string) bool {
	num := func(s string) (int64, int64) {
		ms, seq, _ := strings.Cut(s, "-")
		m, _ := strconv.ParseInt(ms, 10, 64)
		q, _ := strconv.ParseInt(seq, 10, 64)
		return m, q
	}
	am, as := num(a)
	bm, bs := num(b)
	return am < bm || am == bm && as < bs
}

// The webhook is started only with a URL, and only with a secret worth the
// name; its deliveries are signed with it.
func TestNewWebhook(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(short, []byte("tooshort\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, []byte("  webhook-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := metrics.New(nil)
	log := slog.New(slog.DiscardHandler)
	if wh, err := newWebhook(config.EventsWebhook{}, m, log); wh != nil || err != nil {
		t.Errorf("no URL: %v %v, want nothing", wh, err)
	}
	for _, file := range []string{short, filepath.Join(dir, "missing")} {
		if _, err := newWebhook(config.EventsWebhook{URL: "https://x", SecretFile: file}, m, log); err == nil || !strings.Contains(err.Error(), "events.webhook.secret_file") {
			t.Errorf("%s: %v, want an error naming the key", file, err)
		}
	}
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts, _ := strconv.ParseInt(r.Header.Get(events.TimestampHeader), 10, 64)
		if r.Header.Get(events.SignatureHeader) == events.Sign([]byte("webhook-secret-0123456789"), ts, body) {
			got <- string(body)
		}
	}))
	t.Cleanup(srv.Close)
	wh, err := newWebhook(config.EventsWebhook{URL: srv.URL, SecretFile: good}, m, log)
	if err != nil {
		t.Fatal(err)
	}
	defer wh.Close()
	wh.Send(events.Event{Type: events.Login, Subject: "alice"})
	select {
	case body := <-got:
		if !strings.Contains(body, `"subject":"alice"`) {
			t.Errorf("delivered %s", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery signed with the file's secret")
	}
}
