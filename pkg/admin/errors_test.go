package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/logtest"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// failingStore answers every call with err; with a nil err it waits for
// the call's context to end and returns why it ended.
type failingStore struct{ err error }

func (f failingStore) fail(ctx context.Context) error {
	if f.err != nil {
		return f.err
	}
	<-ctx.Done()
	return ctx.Err()
}

func (f failingStore) Create(ctx context.Context, _ *session.Session, _ session.Limit) ([]string, error) {
	return nil, f.fail(ctx)
}
func (f failingStore) CreateFamily(ctx context.Context, _ *session.Session, _ session.Limit, _ session.RefreshPolicy) (session.Refreshed, []string, error) {
	return session.Refreshed{}, nil, f.fail(ctx)
}
func (f failingStore) Delete(ctx context.Context, _ string) error       { return f.fail(ctx) }
func (f failingStore) RevokeFamily(ctx context.Context, _ string) error { return f.fail(ctx) }
func (f failingStore) ListPage(ctx context.Context, _ string, _ uint64, _ int) (session.Page, error) {
	return session.Page{}, f.fail(ctx)
}
func (f failingStore) DeleteUser(ctx context.Context, _ string) (int, error) { return 0, f.fail(ctx) }
func (f failingStore) UpdateUser(ctx context.Context, _ string, _ session.Update) (int, error) {
	return 0, f.fail(ctx)
}

var storeCalls = []struct{ op, method, path, body string }{
	{"create", "POST", "/v1/sessions", `{"subject":"a"}`},
	{"list", "GET", "/v1/users/a/sessions", ""},
	{"revoke", "DELETE", "/v1/sessions/" + strings.Repeat("b", 32), ""},
	{"revoke_user", "DELETE", "/v1/users/a/sessions", ""},
	{"update_user", "PATCH", "/v1/users/a/sessions", `{"roles":["x"]}`},
}

// TestStoreErrorsClassified: only a store that failed is a 503 "session
// store unavailable" with Retry-After; a record that does not decode and a
// caller that went away are something else, on every endpoint.
func TestStoreErrorsClassified(t *testing.T) {
	corrupt := fmt.Errorf("session %s: %w", strings.Repeat("c", 32), fmt.Errorf("%w: bad header", session.ErrCorrupt))
	for _, tc := range []struct {
		name     string
		err      error // nil: the client hangs up while the store call waits
		code     int
		msg      string
		retry    string
		logLevel string // "" = nothing logged
		logMsg   string
	}{
		{"store down", errors.New("redis read session: dial tcp: connection refused"),
			503, "session store unavailable", "1", "ERROR", "admin: store"},
		{"store timeout", fmt.Errorf("redis list: %w", context.DeadlineExceeded),
			503, "session store unavailable", "1", "ERROR", "admin: store"},
		{"corrupt record", corrupt,
			500, "session record corrupt", "", "ERROR", "admin: corrupt session record"},
		{"client went away", nil,
			503, "request canceled", "", "INFO", "admin: request canceled by the client"},
	} {
		for _, c := range storeCalls {
			t.Run(tc.name+"/"+c.op, func(t *testing.T) {
				var logs logtest.Buffer
				h := NewHandler(Options{Store: failingStore{tc.err}, IdleTimeout: time.Minute, AbsoluteTimeout: time.Hour,
					Open: true, StoreTimeout: time.Minute, Log: slog.New(slog.NewJSONHandler(&logs, nil))})
				req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
				if tc.err == nil {
					ctx, cancel := context.WithCancel(req.Context())
					time.AfterFunc(10*time.Millisecond, cancel)
					req = req.WithContext(ctx)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				var body ErrorResponse
				_ = json.Unmarshal(rec.Body.Bytes(), &body)
				if rec.Code != tc.code || body.Error != tc.msg {
					t.Errorf("%d %q, want %d %q", rec.Code, body.Error, tc.code, tc.msg)
				}
				if got := rec.Header().Get("Retry-After"); got != tc.retry {
					t.Errorf("Retry-After %q, want %q", got, tc.retry)
				}
				var line map[string]any
				if err := json.Unmarshal([]byte(logs.String()), &line); err != nil {
					t.Fatalf("want one log line, got %q", logs.String())
				}
				if line["level"] != tc.logLevel || line["msg"] != tc.logMsg || line["op"] != c.op {
					t.Errorf("log %v, want level %s msg %q op %s", line, tc.logLevel, tc.logMsg, c.op)
				}
			})
		}
	}
}

// TestStoreSentinels: the store's sentinel errors keep their meaning.
func TestStoreSentinels(t *testing.T) {
	for _, tc := range []struct {
		err  error
		call int // index into storeCalls
		code int
	}{
		{session.ErrNotFound, 2, http.StatusNotFound},
		{session.ErrLimit, 0, http.StatusConflict},
	} {
		var logs logtest.Buffer
		h := NewHandler(Options{Store: failingStore{tc.err}, IdleTimeout: time.Minute, AbsoluteTimeout: time.Hour,
			Open: true, Log: slog.New(slog.NewJSONHandler(&logs, nil))})
		c := storeCalls[tc.call]
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, strings.NewReader(c.body)))
		if rec.Code != tc.code || rec.Header().Get("Retry-After") != "" {
			t.Errorf("%v on %s: %d Retry-After %q, want %d", tc.err, c.op, rec.Code, rec.Header().Get("Retry-After"), tc.code)
		}
		if strings.Contains(logs.String(), `"level":"ERROR"`) {
			t.Errorf("%v on %s logged as an error: %s", tc.err, c.op, logs.String())
		}
	}
}

// TestUnclassifiedErrorIs500: an error a handler did not classify fails
// closed, as a 500 that says nothing of its cause.
func TestUnclassifiedErrorIs500(t *testing.T) {
	var logs logtest.Buffer
	h := NewHandler(Options{Store: session.NewMemoryStore(nil), Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	rec := httptest.NewRecorder()
	h.handle(func(http.ResponseWriter, *http.Request) error { return errors.New("secret detail") })(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "secret") {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
	if !strings.Contains(logs.String(), "secret detail") {
		t.Errorf("cause not logged: %s", logs.String())
	}
}
