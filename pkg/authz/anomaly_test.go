package authz

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/pkg/events"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// The per-session rate, with each action, over both stores: within the
// rate nothing happens; over it the action applies and one rate_anomaly
// event per minute is recorded; the sliding window forgets the past.
func TestRateAnomaly(t *testing.T) {
	// The start of a minute, so the window arithmetic below is exact.
	start := time.Now().Truncate(time.Minute).Add(time.Minute)
	for name, mk := range stores(t) {
		for _, action := range []PolicyAction{PolicyLog, PolicyDeny, PolicyRevoke} {
			t.Run(name+"/"+action.String(), func(t *testing.T) {
				clock := &fakeClock{t: start}
				rec := &recorded{}
				f := newFixture(t, mk(t), func(o *Options) {
					o.Anomaly = Anomaly{MaxRate: 10, Action: action}
					o.Events, o.Now = rec, clock.now
				})
				id := f.loginFrom(t, session.Device{})
				other := f.loginFrom(t, session.Device{})
				check := func(id string) int {
					t.Helper()
					return status(f.check(t, request("GET", "/app/x", withHeader("authorization", "Bearer "+id))))
				}
				for i := range 10 {
					if got := check(id); got != 200 {
						t.Fatalf("Check %d within the rate: %d", i+1, got)
					}
				}
				wantOver := map[PolicyAction]int{PolicyLog: 200, PolicyDeny: 429, PolicyRevoke: 401}[action]
				resp, v := f.srv.Decide(context.Background(), request("GET", "/app/x", withHeader("authorization", "Bearer "+id)))
				if got := status(resp); got != wantOver {
					t.Fatalf("11th Check: %d, want %d", got, wantOver)
				}
				if action != PolicyLog && (v.Decision != DecisionRateAnomaly || v.Reason != reasonRateAnomaly) {
					t.Errorf("verdict %v %q", v.Decision, v.Reason)
				}
				if action == PolicyDeny && deniedHeader(resp, "retry-after") != "60" {
					t.Errorf("429 without Retry-After: 60")
				}
				check(id) // still over: no second event this minute
				if got := check(other); got != 200 {
					t.Errorf("another session: %d, want 200", got)
				}
				_, err := f.store.Touch(context.Background(), session.RefOf(id))
				if kept := err == nil; kept != (action != PolicyRevoke) {
					t.Errorf("session kept = %v (%v)", kept, err)
				}
				types := []string{}
				for _, e := range rec.e {
					types = append(types, string(e.Type)+"/"+e.Details["by"])
				}
				want := "rate_anomaly/"
				if action == PolicyRevoke {
					want += " revoke/rate_anomaly"
				}
				if strings.Join(types, " ") != want {
					t.Errorf("events %v, want %s", types, want)
				}
				if action == PolicyRevoke {
					return
				}
				// 90 s later half of the busy minute still counts: 12 × 0.5
				// = 6, so four more Checks are within the rate, the fifth
				// is not, and it is a new minute's event.
				clock.add(90 * time.Second)
				for i := range 4 {
					if got := check(id); got != 200 {
						t.Fatalf("Check %d after the window slid: %d", i+1, got)
					}
				}
				if got := check(id); got != wantOver {
					t.Errorf("over again: %d, want %d", got, wantOver)
				}
				if n := len(rec.e); n != 2 || rec.e[1].Type != events.RateAnomaly || rec.e[1].Details["rate_per_minute"] != "11" {
					t.Errorf("events %+v, want a second rate_anomaly at 11 per minute", rec.e)
				}
				// Two quiet minutes later the session starts from zero.
				clock.add(150 * time.Second)
				for i := range 10 {
					if got := check(id); got != 200 {
						t.Fatalf("Check %d after a quiet spell: %d", i+1, got)
					}
				}
			})
		}
	}
}

func TestRateAnomalyRevokeStoreDown(t *testing.T) {
	st := &failingDelete{Store: session.NewMemoryStore(nil)}
	f := newFixture(t, st, func(o *Options) { o.Anomaly = Anomaly{MaxRate: 1, Action: PolicyRevoke} })
	id := f.loginFrom(t, session.Device{})
	req := request("GET", "/app/x", withHeader("authorization", "Bearer "+id))
	f.check(t, req)
	resp, v := f.srv.Decide(context.Background(), req)
	if status(resp) != 503 || v.Decision != DecisionUnavailable {
		t.Errorf("status %d verdict %v, want 503 unavailable", status(resp), v.Decision)
	}
}

// The memory of sessions is bounded: a full shard forgets sessions idle
// for two minutes, and beyond the bound new sessions go untracked (never
// refused for it).
func TestSeenSessionsBounded(t *testing.T) {
	s := newSeenSessions()
	now := time.Now()
	tracked := 0
	for i := range seenShards * seenPerShard * 2 {
		s.with(session.RefOf(strconv.Itoa(i)), now, func(*seen, int64) { tracked++ })
	}
	if tracked > seenShards*seenPerShard || tracked < seenShards*seenPerShard/2 {
		t.Errorf("%d sessions tracked, want at most %d", tracked, seenShards*seenPerShard)
	}
	later := now.Add(3 * time.Minute)
	ok := false
	s.with("new-session", later, func(*seen, int64) { ok = true })
	if !ok {
		t.Error("a full shard did not make room for a session once the old ones aged out")
	}
}
