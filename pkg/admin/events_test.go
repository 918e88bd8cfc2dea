package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/sessiongate/sessiongate/pkg/events"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// syncRecorder stores events at once, so a test reads them right after
// the request.
type syncRecorder struct{ st events.Store }

func (r syncRecorder) Record(e events.Event) {
	if e.Details == nil {
		e.Details = map[string]string{}
	}
	if _, err := r.st.Append(context.Background(), e); err != nil {
		panic(err)
	}
}

// Logins, revocations by ref and by subject, and evictions are events
// that say who caused them; GET /v1/events pages through them.
func TestEvents(t *testing.T) {
	ctx := context.Background()
	log := events.NewMemoryStore(100)
	_, cl := newServer(t, session.NewMemoryStore(nil), func(o *Options) {
		o.Events, o.EventStore = syncRecorder{log}, log
		o.Limit = session.Limit{MaxPerUser: 2}
	})
	var refs []string
	for _, d := range []string{"phone", "laptop", "tablet"} {
		resp, err := cl.CreateSession(ctx, CreateRequest{Subject: "alice", Device: &Device{Name: d, IP: "198.51.100.7", UserAgent: "UA/1"}})
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, resp.SessionRef)
	}
	if err := cl.RevokeSession(ctx, refs[2]); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.RevokeUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := cl.RevokeSession(ctx, refs[2]); err == nil {
		t.Fatal("revoking a revoked session succeeded")
	}

	var got []events.Event
	after := ""
	for range 10 {
		page, err := cl.Events(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Events) == 0 {
			if page.Next != after {
				t.Errorf("empty page: next %q, want the after given (%q)", page.Next, after)
			}
			break
		}
		got = append(got, page.Events...)
		after = page.Next
	}
	want := []struct {
		typ           events.Type
		subject, ref  string
		key, val, not string
	}{
		{events.Login, "alice", refs[0], "device", "phone", "user_agent"},
		{events.Login, "alice", refs[1], "ip", "198.51.100.7", ""},
		{events.Login, "alice", refs[2], "device", "tablet", ""},
		{events.Revoke, "alice", refs[0], "by", "eviction", ""},
		{events.Revoke, "", refs[2], "by", "token#1", ""},
		{events.Revoke, "alice", "", "sessions", "1", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		e := got[i]
		if e.Type != w.typ || e.Subject != w.subject || e.SessionRef != w.ref || e.Details[w.key] != w.val {
			t.Errorf("event %d = %+v, want %s subject %q ref %q %s=%q", i, e, w.typ, w.subject, w.ref, w.key, w.val)
		}
		if _, ok := e.Details[w.not]; w.not != "" && ok {
			t.Errorf("event %d carries %s", i, w.not)
		}
	}
	if got[5].Details["by"] != "token#1" {
		t.Errorf("revoke-user by %q, want the credential", got[5].Details["by"])
	}
}

func TestEventsQuery(t *testing.T) {
	log := events.NewMemoryStore(100)
	for range 3 {
		if _, err := log.Append(context.Background(), events.Event{Type: events.Logout, Details: map[string]string{}}); err != nil {
			t.Fatal(err)
		}
	}
	srv, _ := newServer(t, session.NewMemoryStore(nil), func(o *Options) { o.EventStore = log })
	for _, tc := range []struct {
		query string
		want  int
		n     int
		err   string
	}{
		{"", 200, 3, ""},
		{"limit=2", 200, 2, ""},
		{"after=0-0", 200, 3, ""},
		{"after=99999999999999-0", 200, 0, ""},
		{"limit=0", 400, 0, "limit:"},
		{"limit=05", 400, 0, "limit:"},
		{"limit=1001", 400, 0, "limit:"},
		{"after=", 400, 0, "after:"},
		{"after=1", 400, 0, "after:"},
		{"after=01-0", 400, 0, "after:"},
		{"after=1-0&after=2-0", 400, 0, "after:"},
		{"after=%2B1-0", 400, 0, "after:"},
		{"after=1-0%0A", 400, 0, "after:"},
		{"after=-", 400, 0, "after:"},
		{"after=%24", 400, 0, "after:"},
		{"after=99999999999999999999-0", 400, 0, "after:"},
		{"cursor=1-0", 400, 0, "query:"},
		{"AFTER=1-0", 400, 0, "query:"},
		{"after=1-0;limit=2", 400, 0, "query:"},
	} {
		status, body := call(t, srv, http.MethodGet, "/v1/events?"+tc.query, "", testToken)
		if status != tc.want {
			t.Errorf("%q: status %d, want %d (%v)", tc.query, status, tc.want, body)
			continue
		}
		if tc.want == 200 {
			if evs, _ := body["events"].([]any); len(evs) != tc.n {
				t.Errorf("%q: %d events, want %d", tc.query, len(evs), tc.n)
			}
		} else if msg, _ := body["error"].(string); !strings.HasPrefix(msg, tc.err) {
			t.Errorf("%q: error %q, want one starting %q", tc.query, msg, tc.err)
		}
	}
	if status, _ := call(t, srv, http.MethodGet, "/v1/events", "", ""); status != 401 {
		t.Errorf("without a token: %d, want 401", status)
	}
}

type downEvents struct{}

func (downEvents) Append(context.Context, events.Event) (string, error) {
	return "", errors.New("down")
}
func (downEvents) Page(context.Context, string, int) ([]events.Event, error) {
	return nil, errors.New("dial tcp: connection refused")
}

func TestEventsUnavailable(t *testing.T) {
	srv, _ := newServer(t, session.NewMemoryStore(nil), func(o *Options) { o.EventStore = downEvents{} })
	if status, body := call(t, srv, http.MethodGet, "/v1/events", "", testToken); status != 503 || body["error"] != "event log unavailable" {
		t.Errorf("store down: %d %v, want 503", status, body)
	}
	srv, _ = newServer(t, session.NewMemoryStore(nil))
	if status, _ := call(t, srv, http.MethodGet, "/v1/events", "", testToken); status != 404 {
		t.Errorf("no event log: %d, want 404", status)
	}
}
