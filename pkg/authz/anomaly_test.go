package authz

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/pkg/events"
	"github.com/sessiongate/sessiongate/pkg/geoip"
	"github.com/sessiongate/sessiongate/pkg/geoip/geoiptest"
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

func testGeoIP(t testing.TB) *geoip.DB {
	t.Helper()
	db, err := geoip.Open(geoiptest.WriteTestDB(t, map[string]string{
		"198.51.100.0/24": "DE", "203.0.113.0/24": "FR", "192.0.2.0/24": "US", "2001:db8:aa::/48": "DE",
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// The country check with each action, against a MaxMind-format database
// written for the test: same country passes, another applies the action,
// an unknown one is no change.
func TestCountryChange(t *testing.T) {
	db := testGeoIP(t)
	for _, action := range []PolicyAction{PolicyLog, PolicyDeny, PolicyRevoke} {
		t.Run(action.String(), func(t *testing.T) {
			rec := &recorded{}
			f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) {
				o.Anomaly = Anomaly{CountryChange: true, CountryAction: action}
				o.GeoIP, o.Events = db, rec
			})
			id := f.loginFrom(t, session.Device{IP: "198.51.100.23"})
			noCountry := f.loginFrom(t, session.Device{IP: "10.1.2.3"})
			from := func(id, src string) int {
				t.Helper()
				return status(f.check(t, request("GET", "/app/x", withHeader("authorization", "Bearer "+id), withSource(src))))
			}
			for _, src := range []string{"198.51.100.200", "2001:db8:aa::9", "10.0.0.1", "2001:db8:ff::1"} {
				if got := from(id, src); got != 200 {
					t.Errorf("from %s (same or unknown country): %d", src, got)
				}
			}
			if got := from(noCountry, "203.0.113.9"); got != 200 {
				t.Errorf("a session without a known country: %d, want 200", got)
			}
			if len(rec.e) != 0 {
				t.Fatalf("events without a change: %+v", rec.e)
			}
			want := map[PolicyAction]int{PolicyLog: 200, PolicyDeny: 401, PolicyRevoke: 401}[action]
			resp, v := f.srv.Decide(context.Background(), request("GET", "/app/x", withHeader("authorization", "Bearer "+id), withSource("203.0.113.9")))
			if got := status(resp); got != want {
				t.Fatalf("from FR: %d, want %d", got, want)
			}
			if action != PolicyLog && (v.Decision != DecisionCountryChange || v.Reason != reasonCountryChange) {
				t.Errorf("verdict %v %q", v.Decision, v.Reason)
			}
			e := rec.e[0]
			if e.Type != events.CountryChange || e.Details["session_country"] != "DE" || e.Details["client_country"] != "FR" || e.Details["action"] != action.String() {
				t.Errorf("event %+v", e)
			}
			if action == PolicyRevoke {
				if _, err := f.store.Touch(context.Background(), session.RefOf(id)); !errors.Is(err, session.ErrNotFound) {
					t.Errorf("session after a revoking country change: %v", err)
				}
				if len(rec.e) != 2 || rec.e[1].Type != events.Revoke || rec.e[1].Details["by"] != "country_change" {
					t.Errorf("events %+v, want a revoke by country_change", rec.e)
				}
				return
			}
			from(id, "203.0.113.10") // FR again
			from(id, "192.0.2.1")    // US
			n := map[PolicyAction]int{PolicyLog: 2, PolicyDeny: 3}[action]
			if len(rec.e) != n {
				t.Errorf("%d events, want %d (log: once per new country; deny: every refusal): %+v", len(rec.e), n, rec.e)
			}
		})
	}
}

// Events carry the countries with GeoIP on.
func TestNetworkChangeCarriesCountries(t *testing.T) {
	rec := &recorded{}
	f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) {
		o.Binding = Binding{IPv4Bits: 24, Action: PolicyLog}
		o.GeoIP, o.Events = testGeoIP(t), rec
	})
	id := f.loginFrom(t, session.Device{IP: "198.51.100.23"})
	f.check(t, request("GET", "/app/x", withHeader("authorization", "Bearer "+id), withSource("203.0.113.9")))
	if len(rec.e) != 1 || rec.e[0].Details["session_country"] != "DE" || rec.e[0].Details["client_country"] != "FR" {
		t.Errorf("events %+v", rec.e)
	}
}

// A replica with no room left to remember sessions still checks the
// country of a new one, and still records its log-mode network changes.
func TestPoliciesWithoutRoomToRemember(t *testing.T) {
	rec := &recorded{}
	f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) {
		o.Anomaly = Anomaly{CountryChange: true, CountryAction: PolicyDeny}
		o.Binding = Binding{IPv4Bits: 24, Action: PolicyLog}
		o.GeoIP, o.Events = testGeoIP(t), rec
	})
	now := time.Now()
	for i := range seenShards * seenPerShard * 2 {
		f.srv.seen.with(strconv.Itoa(i), now, func(*seen, int64) {})
	}
	id := f.loginFrom(t, session.Device{IP: "198.51.100.23"})
	if f.srv.seen.with(session.RefOf(id), now, func(*seen, int64) {}) {
		t.Fatal("setup: the session is remembered")
	}
	if got := status(f.check(t, request("GET", "/app/x", withHeader("authorization", "Bearer "+id), withSource("203.0.113.9")))); got != 401 {
		t.Errorf("from another country, untracked: %d, want 401", got)
	}
	var types []string
	for _, e := range rec.e {
		types = append(types, string(e.Type))
	}
	if strings.Join(types, " ") != "network_change country_change" {
		t.Errorf("events %v, want a network change and a country change", types)
	}
}
