package admin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/testenv"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// listQueryCases are queries to GET /v1/users/alice/sessions over the five
// sessions of listFixture. In a query, {cursor} is replaced by the cursor
// after alice's first two sessions and {bob} by one of bob's; want is the
// status and, for 200, how many sessions come back. FuzzListQuery starts
// from these.
var listQueryCases = []struct {
	name  string
	query string
	want  int
	n     int
	err   string // what the error message starts with
}{
	{"no parameters: default limit", "", 200, 5, ""},
	{"limit", "limit=2", 200, 2, ""},
	{"limit max", "limit=1000", 200, 5, ""},
	{"limit 1", "limit=1", 200, 1, ""},
	{"cursor", "cursor={cursor}", 200, 3, ""},
	{"cursor and limit", "limit=2&cursor={cursor}", 200, 2, ""},
	{"cursor then limit", "cursor={cursor}&limit=1", 200, 1, ""},
	{"escaped digits", "limit=%32", 200, 2, ""},

	{"limit zero", "limit=0", 400, 0, "limit:"},
	{"limit negative", "limit=-1", 400, 0, "limit:"},
	{"limit plus sign", "limit=%2B5", 400, 0, "limit:"},
	{"limit plus is a space", "limit=+5", 400, 0, "limit:"},
	{"limit leading space", "limit=%205", 400, 0, "limit:"},
	{"limit trailing space", "limit=5%20", 400, 0, "limit:"},
	{"limit leading zero", "limit=05", 400, 0, "limit:"},
	{"limit exponent", "limit=1e2", 400, 0, "limit:"},
	{"limit hex", "limit=0x10", 400, 0, "limit:"},
	{"limit fraction", "limit=2.0", 400, 0, "limit:"},
	{"limit over max", "limit=1001", 400, 0, "limit:"},
	{"limit huge", "limit=99999999999999999999999999", 400, 0, "limit:"},
	{"limit empty", "limit=", 400, 0, "limit:"},
	{"limit no value", "limit", 400, 0, "limit:"},
	{"limit repeated", "limit=2&limit=3", 400, 0, "limit:"},
	{"limit repeated same", "limit=2&limit=2", 400, 0, "limit:"},
	{"limit full-width digit", "limit=%EF%BC%95", 400, 0, "limit:"},
	{"limit NUL", "limit=5%00", 400, 0, "limit:"},
	{"unknown parameter", "limit=2&offset=2", 400, 0, "query:"},
	{"parameter case", "LIMIT=2", 400, 0, "query:"},
	{"semicolon separator", "limit=2;cursor=x", 400, 0, "query:"},
	{"bad escape", "limit=%zz", 400, 0, "query:"},

	{"cursor empty", "cursor=", 400, 0, "cursor:"},
	{"cursor repeated", "cursor={cursor}&cursor={cursor}", 400, 0, "cursor:"},
	{"cursor garbage", "cursor=garbage", 400, 0, "cursor:"},
	{"cursor of another subject", "cursor={bob}", 400, 0, "cursor:"},
	{"cursor truncated", "cursor={truncated}", 400, 0, "cursor:"},
	{"cursor with padding", "cursor={cursor}%3D", 400, 0, "cursor:"},
	{"cursor with newline", "cursor={cursor}%0A", 400, 0, "cursor:"},
	{"cursor with inner newline", "cursor={newline}", 400, 0, "cursor:"},
	{"cursor one char changed", "cursor={flipped}", 400, 0, "cursor:"},
	{"cursor non-canonical last char", "cursor={noncanonical}", 400, 0, "cursor:"},
	{"cursor std alphabet +", "cursor={plus}", 400, 0, "cursor:"},
	{"cursor std alphabet /", "cursor={slash}", 400, 0, "cursor:"},
	{"cursor version 2", "cursor={v2}", 400, 0, "cursor:"},
	{"cursor position 0", "cursor={zero}", 400, 0, "cursor:"},
	{"cursor very long", "cursor=" + strings.Repeat("A", 4096), 400, 0, "cursor:"},
}

// listFixture is an open admin handler over a memory store holding five
// sessions of alice and three of bob.
func listFixture(t testing.TB) (*Handler, session.Store) {
	t.Helper()
	store := session.NewMemoryStore(nil)
	now := time.Now().Truncate(time.Millisecond)
	for i, subject := range []string{"alice", "alice", "alice", "alice", "alice", "bob", "bob", "bob"} {
		s := &session.Session{Ref: strings.Repeat(string("abcdef01"[i]), session.RefLen), Subject: subject,
			CreatedAt: now.Add(time.Duration(i) * time.Millisecond), ExpiresAt: now.Add(time.Hour), IdleTimeout: time.Hour}
		if _, err := store.Create(context.Background(), s, session.Limit{}); err != nil {
			t.Fatal(err)
		}
	}
	return NewHandler(Options{Store: store, Open: true, Log: discardLog(), IdleTimeout: time.Hour, AbsoluteTimeout: time.Hour}), store
}

// cursorQuery fills the placeholders of a listQueryCases query.
func cursorQuery(t testing.TB, h *Handler, q string) string {
	t.Helper()
	first := func(subject string) string {
		rec := serveList(t, h, subject, "limit=2")
		var out ListResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.NextCursor == "" {
			t.Fatalf("first page of %s: %d %s", subject, rec.Code, rec.Body)
		}
		return out.NextCursor
	}
	c := first("alice")
	flip := func(i int) string { b := []byte(c); b[i] ^= 1; return string(b) }
	// 17 bytes fill 23 characters but for 2 bits, which Strict requires
	// to be 0: the last character's value is a multiple of 4.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	nonCanonical := c[:len(c)-1] + string(alphabet[strings.IndexByte(alphabet, c[len(c)-1])+1])
	r := strings.NewReplacer(
		"{cursor}", c,
		"{truncated}", c[:len(c)-1],
		"{bob}", first("bob"),
		"{newline}", c[:10]+"%0A"+c[10:len(c)-1],
		"{flipped}", flip(12),
		"{noncanonical}", nonCanonical,
		"{plus}", "%2B"+c[1:],
		"{slash}", c[:5]+"%2F"+c[6:],
		"{v2}", encodeCursorHead("alice", 2, 2),
		"{zero}", encodeCursorHead("alice", cursorVersion, 0),
	)
	return r.Replace(q)
}

// encodeCursorHead is encodeCursor with any version byte.
func encodeCursorHead(subject string, version byte, pos uint64) string {
	c, _ := base64.RawURLEncoding.DecodeString(encodeCursor(subject, pos))
	c[0] = version
	copy(c[9:], cursorCheck(subject, c[:9]))
	return base64.RawURLEncoding.EncodeToString(c)
}

func serveList(t testing.TB, h http.Handler, subject, rawQuery string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/v1/users/"+subject+"/sessions", nil)
	req.URL.RawQuery = rawQuery
	rec := httptest.NewRecorder()
	contractHandler(t, h).ServeHTTP(rec, req)
	return rec
}

func TestListQueryValidation(t *testing.T) {
	for _, tc := range listQueryCases {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := listFixture(t)
			q := cursorQuery(t, h, tc.query)
			rec := serveList(t, h, "alice", q)
			if rec.Code != tc.want {
				t.Fatalf("?%s: status %d (%s), want %d", q, rec.Code, strings.TrimSpace(rec.Body.String()), tc.want)
			}
			if tc.want != http.StatusOK {
				var e ErrorResponse
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !strings.HasPrefix(e.Error, tc.err) {
					t.Fatalf("error body %q: not the API's error JSON, or not about %s", rec.Body, tc.err)
				}
				return
			}
			var out ListResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatal(err)
			}
			if len(out.Sessions) != tc.n {
				t.Fatalf("?%s: %d sessions, want %d", q, len(out.Sessions), tc.n)
			}
		})
	}
}

// TestListCursorIsStableAndOpaque checks what a client may rely on: the
// cursor is URL-safe as is, and the last page carries none (the field is
// absent, not empty).
func TestListCursorIsStableAndOpaque(t *testing.T) {
	h, _ := listFixture(t)
	rec := serveList(t, h, "alice", "limit=4")
	var out map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	var c string
	if err := json.Unmarshal(out["next_cursor"], &c); err != nil || c == "" || strings.ContainsAny(c, "+/=%&? ") {
		t.Fatalf("next_cursor %s", out["next_cursor"])
	}
	rec = serveList(t, h, "alice", "limit=4&cursor="+c)
	out = nil
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if _, ok := out["next_cursor"]; ok || string(out["sessions"]) == "" {
		t.Fatalf("last page: %s", rec.Body)
	}
}

// TestListPagesOverRedis walks 2 500 sessions of one subject in real Redis
// through the HTTP API at three page sizes: each session exactly once.
func TestListPagesOverRedis(t *testing.T) {
	st, _, _ := testenv.RedisStore(t, 2*time.Second)
	const n = 2500
	want := make(map[string]bool, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				id, err := session.NewID()
				if err != nil {
					errs <- err
					return
				}
				now := time.Now().Truncate(time.Millisecond)
				s := &session.Session{Ref: session.RefOf(id), Subject: "walker", CreatedAt: now, ExpiresAt: now.Add(time.Hour), IdleTimeout: time.Hour}
				if _, err := st.Create(context.Background(), s, session.Limit{}); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				want[s.Ref] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	_, c := newServer(t, st, func(o *Options) { o.StoreTimeout = 2 * time.Second })
	ctx := context.Background()
	for _, limit := range []int{1000, 100, 7} {
		seen := make(map[string]bool, n)
		pages, cursor := 0, ""
		for {
			p, err := c.ListSessionsPage(ctx, "walker", limit, cursor)
			if err != nil {
				t.Fatalf("limit %d, page %d: %v", limit, pages, err)
			}
			pages++
			if len(p.Sessions) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(p.Sessions))
			}
			for _, s := range p.Sessions {
				if seen[s.SessionRef] || !want[s.SessionRef] {
					t.Fatalf("limit %d: %s listed twice or never created", limit, s.SessionRef)
				}
				seen[s.SessionRef] = true
			}
			if p.NextCursor == "" {
				break
			}
			cursor = p.NextCursor
		}
		if len(seen) != n || pages != (n+limit-1)/limit {
			t.Fatalf("limit %d: %d sessions in %d pages, want %d in %d", limit, len(seen), pages, n, (n+limit-1)/limit)
		}
	}
	all, err := c.ListSessions(ctx, "walker")
	if err != nil || len(all) != n {
		t.Fatalf("ListSessions: %d, %v", len(all), err)
	}
}

// TestClientRefusesAStuckCursor: a server that answers a cursor with the
// same cursor would have the client loop forever.
func TestClientRefusesAStuckCursor(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, ListResponse{Sessions: []SessionInfo{}, NextCursor: "same"})
	}))
	t.Cleanup(srv.Close)
	_, err := NewClient(srv.URL, "", srv.Client()).ListSessions(context.Background(), "alice")
	if err == nil || !strings.Contains(err.Error(), "did not advance") {
		t.Fatalf("err = %v", err)
	}
}

// TestClientReportsAnOversizedAnswer: a cut-off body must not surface as a
// JSON syntax error.
func TestClientReportsAnOversizedAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK) // not the 204 revoke wants: the size check comes first
		_, _ = w.Write([]byte(strings.Repeat(" ", 2<<20)))
	}))
	t.Cleanup(srv.Close)
	err := NewClient(srv.URL, "", srv.Client()).RevokeSession(context.Background(), strings.Repeat("a", session.RefLen))
	var apiErr *APIError
	if err == nil || errors.As(err, &apiErr) || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("err = %v", err)
	}
}
