package authz

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sessiongate/sessiongate/internal/logtest"
	"github.com/sessiongate/sessiongate/pkg/metrics"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// Every decision is told apart, with its reason and rule, where the answer
// alone would not tell them apart (three kinds of 403), and each is
// counted under its own label.
func TestVerdicts(t *testing.T) {
	m := metrics.New(nil)
	f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) { o.Metrics = m })
	user := f.login(t, "alice", []string{"user"}, nil)
	cookie := withCookie("__Host-sid=" + user)
	tests := []struct {
		name   string
		method string
		path   string
		opts   []reqOpt
		want   Decision
		reason string
		rule   int
		status int
	}{
		{name: "allowed", method: "GET", path: "/app/x", opts: []reqOpt{cookie}, want: DecisionOK, reason: "session valid", rule: -1, status: 200},
		{name: "public", method: "GET", path: "/public/x", want: DecisionPublic, reason: "public path", rule: 0, status: 200},
		{name: "not canonical", method: "GET", path: "/a/../b", want: DecisionBadRequest, reason: "path not canonical", rule: -1, status: 400},
		{name: "method reads as another rule", method: "post", path: "/readonly/x", opts: []reqOpt{cookie}, want: DecisionDenied, reason: "deny rule", rule: 3, status: 403},
		{name: "no credential", method: "GET", path: "/app/x", want: DecisionUnauthenticated, reason: "no credential", rule: -1, status: 401},
		{name: "two cookies", method: "GET", path: "/app/x", opts: []reqOpt{withCookie("__Host-sid=" + user + "; __Host-sid=" + user)},
			want: DecisionUnauthenticated, reason: "ambiguous or malformed credential", rule: -1, status: 401},
		{name: "unknown session", method: "GET", path: "/app/x", opts: []reqOpt{withCookie("__Host-sid=" + newID(t))},
			want: DecisionUnauthenticated, reason: "session not found", rule: -1, status: 401},
		{name: "role missing", method: "GET", path: "/admin/x", opts: []reqOpt{cookie}, want: DecisionForbidden, reason: "missing role", rule: 2, status: 403},
		{name: "deny rule", method: "GET", path: "/blocked/x", opts: []reqOpt{cookie}, want: DecisionDenied, reason: "deny rule", rule: 1, status: 403},
		{name: "csrf", method: "POST", path: "/app/x", opts: []reqOpt{cookie, withHeader("origin", "https://evil.example")},
			want: DecisionCSRF, reason: "unsafe cookie request from an origin not allowed", rule: -1, status: 403},
		{name: "bad context_extensions", method: "GET", path: "/app/x", opts: []reqOpt{withExt("access", "bogus")},
			want: DecisionDenied, reason: "bad context_extensions access", rule: -1, status: 403},
		{name: "logout", method: "GET", path: "/auth/logout", want: DecisionLogout, reason: "logout", rule: -1, status: 204},
	}
	for _, tt := range tests {
		before := testutil.ToFloat64(m.Decisions.WithLabelValues(tt.want.String()))
		resp, v := f.srv.Decide(context.Background(), request(tt.method, tt.path, tt.opts...))
		if v.Decision != tt.want || v.Reason != tt.reason || v.Rule != tt.rule {
			t.Errorf("%s: verdict %v %q rule %d, want %v %q rule %d", tt.name, v.Decision, v.Reason, v.Rule, tt.want, tt.reason, tt.rule)
		}
		if got := status(resp); got != tt.status {
			t.Errorf("%s: status %d, want %d", tt.name, got, tt.status)
		}
		if got := testutil.ToFloat64(m.Decisions.WithLabelValues(tt.want.String())) - before; got != 1 {
			t.Errorf("%s: %s counted %v times, want 1", tt.name, tt.want, got)
		}
	}
	// Every label exists from the start, each a distinct name.
	seen := map[string]bool{}
	for _, d := range Decisions() {
		name := d.String()
		if name == "unknown" || seen[name] {
			t.Errorf("decision %d has label %q", d, name)
		}
		seen[name] = true
	}
	if got := testutil.CollectAndCount(m.Decisions); got != len(Decisions()) {
		t.Errorf("%d result labels exported, want %d", got, len(Decisions()))
	}
}

// blockingStore answers Touch only when its context ends.
type blockingStore struct{ session.Store }

func (blockingStore) Touch(ctx context.Context, _ string) (session.Entry, error) {
	<-ctx.Done()
	return session.Entry{}, ctx.Err()
}

// A Check whose caller went away (Envoy cancels in-flight Checks when a
// client hangs up) is neither a store failure nor a warning; a store that
// times out still is both.
func TestCanceledCheckIsNotAStoreFailure(t *testing.T) {
	m := metrics.New(nil)
	logs := &logtest.Buffer{}
	f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) {
		o.Metrics = m
		o.Sessions = m.Store(blockingStore{session.NewMemoryStore(nil)})
		o.Log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		o.StoreTimeout = 2 * time.Second
	})
	req := request("GET", "/app/x", withCookie("__Host-sid="+newID(t)))

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	resp, v := f.srv.Decide(ctx, req)
	if v.Decision != DecisionCanceled || status(resp) != 503 {
		t.Fatalf("cancelled Check: %v, status %d; want canceled, 503", v.Decision, status(resp))
	}
	if got := testutil.ToFloat64(m.StoreErrors.WithLabelValues("touch")); got != 0 {
		t.Errorf("store errors %v after a cancellation, want 0", got)
	}
	if got := testutil.ToFloat64(m.StoreCanceled.WithLabelValues("touch")); got != 1 {
		t.Errorf("store cancellations %v, want 1", got)
	}
	if strings.Contains(logs.String(), "unavailable") {
		t.Errorf("cancellation logged as an outage: %s", logs.String())
	}

	// The control: the store's own timeout is an outage.
	f.srv.o.StoreTimeout = 20 * time.Millisecond
	resp, v = f.srv.Decide(context.Background(), req)
	if v.Decision != DecisionUnavailable || status(resp) != 503 {
		t.Fatalf("timed-out Check: %v, status %d; want unavailable, 503", v.Decision, status(resp))
	}
	if got := testutil.ToFloat64(m.StoreErrors.WithLabelValues("touch")); got != 1 {
		t.Errorf("store errors %v after a timeout, want 1", got)
	}
	if !strings.Contains(logs.String(), "session store unavailable") {
		t.Errorf("timeout not logged: %s", logs.String())
	}
}
