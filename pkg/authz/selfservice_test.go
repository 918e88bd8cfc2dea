package authz

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/sessiongate/sessiongate/pkg/selfservice"
	"github.com/sessiongate/sessiongate/pkg/session"
)

const (
	ssFirefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
	ssXSS     = `<script>alert(1)</script>"><img src=x onerror=alert(1)>`
	sameSite  = "https://app.example.com"
)

// refRecorder records every ref the self-service code asks the store about
// by ref, so a test can tell that a ref not the caller's was never looked up.
type refRecorder struct {
	session.Store
	mu   sync.Mutex
	refs []string
}

func (r *refRecorder) Touch(ctx context.Context, ref string) (session.Entry, error) {
	r.note(ref)
	return r.Store.Touch(ctx, ref)
}

func (r *refRecorder) Delete(ctx context.Context, ref string) error {
	r.note(ref)
	return r.Store.Delete(ctx, ref)
}

func (r *refRecorder) note(ref string) {
	r.mu.Lock()
	r.refs = append(r.refs, ref)
	r.mu.Unlock()
}

func (r *refRecorder) asked(ref string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.refs, ref)
}

type ssFixture struct {
	*fixture
	rec *refRecorder
}

func newSelfService(t *testing.T, store session.Store, mutate ...func(*Options)) *ssFixture {
	t.Helper()
	rec := &refRecorder{Store: store}
	f := newFixture(t, store, append([]func(*Options){func(o *Options) {
		o.Sessions = rec
		o.SelfService = SelfService{PathPrefix: "/auth/sessions", PagePath: "/auth/devices", Sessions: store}
	}}, mutate...)...)
	return &ssFixture{fixture: f, rec: rec}
}

// loginAs creates a session of subject from device d, created ago.
func (f *ssFixture) loginAs(t *testing.T, subject string, d session.Device, ago time.Duration) string {
	t.Helper()
	id := newIDTB(t)
	now := time.Now().Add(-ago).Truncate(time.Millisecond)
	s := &session.Session{Ref: session.RefOf(id), Subject: subject, Roles: []string{"user"}, Device: d,
		CreatedAt: now, ExpiresAt: now.Add(12 * time.Hour), IdleTimeout: 30 * time.Minute}
	if _, err := f.store.Create(context.Background(), s, session.Limit{}); err != nil {
		t.Fatal(err)
	}
	return id
}

func bearer(id string) reqOpt { return withHeader("authorization", "Bearer "+id) }

// alive reports whether id still opens an ordinary route.
func (f *ssFixture) alive(t *testing.T, id string) bool {
	t.Helper()
	switch s := status(f.check(t, request("GET", "/app/x", bearer(id)))); s {
	case 200:
		return true
	case 401:
		return false
	default:
		t.Fatalf("probe answered %d", s)
		return false
	}
}

func body(resp *authv3.CheckResponse) string { return resp.GetDeniedResponse().GetBody() }

type listed struct {
	Sessions []struct {
		Ref     string `json:"session_ref"`
		Current bool   `json:"current"`
		Device  struct {
			Name      string `json:"name"`
			UserAgent string `json:"user_agent"`
			IP        string `json:"ip"`
		} `json:"device"`
		Label     string     `json:"device_label"`
		CreatedAt time.Time  `json:"created_at"`
		LastSeen  *time.Time `json:"last_seen_at"`
		ExpiresAt time.Time  `json:"expires_at"`
	} `json:"sessions"`
}

func TestSelfServiceList(t *testing.T) {
	for name, mk := range stores(t) {
		t.Run(name, func(t *testing.T) {
			f := newSelfService(t, mk(t))
			stored := time.Now().Truncate(time.Millisecond)
			phone := f.loginAs(t, "alice", session.Device{Name: "Alice's phone", IP: "198.51.100.7"}, 2*time.Hour)
			laptop := f.loginAs(t, "alice", session.Device{UserAgent: ssFirefox, IP: "192.0.2.1"}, time.Hour)
			bob := f.loginAs(t, "bob", session.Device{Name: "bob's"}, 0)
			time.Sleep(1100 * time.Millisecond) // the stores keep milliseconds; make the two uses distinct

			before := time.Now().Truncate(time.Millisecond)
			resp := f.check(t, request("GET", "/auth/sessions", withCookie("__Host-sid="+laptop)))
			if status(resp) != 200 || deniedHeader(resp, "content-type") != "application/json" || deniedHeader(resp, "cache-control") != "no-store" {
				t.Fatalf("list: %d %q %q", status(resp), deniedHeader(resp, "content-type"), deniedHeader(resp, "cache-control"))
			}
			if resp.GetOkResponse() != nil {
				t.Fatal("the list went upstream")
			}
			var got listed
			if err := json.Unmarshal([]byte(body(resp)), &got); err != nil {
				t.Fatal(err)
			}
			if len(got.Sessions) != 2 {
				t.Fatalf("listed %d sessions: %s", len(got.Sessions), body(resp))
			}
			cur, other := got.Sessions[0], got.Sessions[1]
			if cur.Ref != session.RefOf(laptop) || !cur.Current || other.Ref != session.RefOf(phone) || other.Current {
				t.Fatalf("rows: %s", body(resp))
			}
			if cur.Label != "Firefox on Windows" || cur.Device.UserAgent != ssFirefox || cur.Device.IP != "192.0.2.1" || other.Label != "Alice's phone" {
				t.Fatalf("devices: %s", body(resp))
			}
			// The request itself slid the current session: last seen now.
			// The phone was last used when it was stored, before the sleep.
			if cur.LastSeen == nil || cur.LastSeen.Before(before.Add(-50*time.Millisecond)) || cur.LastSeen.After(time.Now().Add(50*time.Millisecond)) {
				t.Fatalf("current last seen %v, want about %v", cur.LastSeen, before)
			}
			if other.LastSeen == nil || other.LastSeen.Before(stored.Add(-50*time.Millisecond)) || other.LastSeen.After(before.Add(-time.Second)) {
				t.Fatalf("phone last seen %v, want about %v", other.LastSeen, stored)
			}
			if !cur.ExpiresAt.Equal(cur.CreatedAt.Add(12 * time.Hour)) {
				t.Fatalf("absolute end %v, created %v", cur.ExpiresAt, cur.CreatedAt)
			}
			if strings.Contains(body(resp), session.RefOf(bob)) || strings.Contains(body(resp), laptop) {
				t.Fatal("the list shows another subject's session or a session ID")
			}
		})
	}
}

func TestSelfServiceRevokeOne(t *testing.T) {
	for name, mk := range stores(t) {
		t.Run(name, func(t *testing.T) {
			f := newSelfService(t, mk(t))
			me := f.loginAs(t, "alice", session.Device{}, 0)
			mine := f.loginAs(t, "alice", session.Device{}, 0)
			bob := f.loginAs(t, "bob", session.Device{}, 0)
			unknown := session.RefOf(newIDTB(t))

			del := func(ref string, opts ...reqOpt) *authv3.CheckResponse {
				return f.check(t, request("DELETE", "/auth/sessions/"+ref, append([]reqOpt{withCookie("__Host-sid=" + me), withHeader("origin", sameSite)}, opts...)...))
			}
			// Another subject's ref and a ref of no one: one answer, and the
			// store is never asked about either ref.
			notMine, none := del(session.RefOf(bob)), del(unknown)
			if status(notMine) != 404 || !proto.Equal(notMine, none) {
				t.Fatalf("another's ref: %d %v; unknown ref: %d %v", status(notMine), notMine, status(none), none)
			}
			if f.rec.asked(session.RefOf(bob)) || f.rec.asked(unknown) {
				t.Fatal("the store was asked about a ref that is not the caller's")
			}
			if !f.alive(t, bob) {
				t.Fatal("bob's session was ended by alice")
			}
			for _, bad := range []string{"nothex", strings.ToUpper(session.RefOf(mine)), session.RefOf(mine) + "0"} {
				if r := del(bad); !proto.Equal(r, none) {
					t.Fatalf("ref %q: %d, want the same 404", bad, status(r))
				}
			}

			resp := del(session.RefOf(mine))
			if status(resp) != 204 || deniedHeader(resp, "set-cookie") != "" {
				t.Fatalf("delete mine: %d, set-cookie %q", status(resp), deniedHeader(resp, "set-cookie"))
			}
			if f.alive(t, mine) {
				t.Fatal("a signed-out session still works")
			}
			if !f.alive(t, me) {
				t.Fatal("signing out another device ended this one")
			}
			if r := del(session.RefOf(mine)); !proto.Equal(r, none) {
				t.Fatalf("second delete: %d, want the same 404", status(r))
			}

			// Signing out this very session is a logout: the cookie goes too.
			resp = del(session.RefOf(me))
			if status(resp) != 204 || !strings.Contains(deniedHeader(resp, "set-cookie"), "Max-Age=0") {
				t.Fatalf("delete current: %d, set-cookie %q", status(resp), deniedHeader(resp, "set-cookie"))
			}
			if f.alive(t, me) {
				t.Fatal("the current session survived its own sign-out")
			}
		})
	}
}

// A device that signed in with refresh tokens is one row with its
// family_ref, and signing out by that family_ref ends the whole family: its
// access session and its refresh token.
func TestSelfServiceRevokeFamily(t *testing.T) {
	for name, mk := range stores(t) {
		t.Run(name, func(t *testing.T) {
			f := newSelfService(t, mk(t))
			me := f.loginAs(t, "alice", session.Device{}, 0)
			s := &session.Session{Subject: "alice", CreatedAt: time.Now().Truncate(time.Millisecond)}
			app, _, err := f.store.CreateFamily(context.Background(), s, session.Limit{},
				session.RefreshPolicy{AccessIdle: time.Minute, AccessAbsolute: time.Hour, TTL: 24 * time.Hour, Idle: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			list := f.check(t, request("GET", "/auth/sessions", bearer(me)))
			if status(list) != 200 || !strings.Contains(body(list), `"family_ref":"`+app.FamilyRef+`"`) {
				t.Fatalf("list: %d %s", status(list), body(list))
			}
			resp := f.check(t, request("DELETE", "/auth/sessions/"+app.FamilyRef, bearer(me)))
			if status(resp) != 204 {
				t.Fatalf("delete by family_ref: %d %s", status(resp), body(resp))
			}
			if f.alive(t, app.ID) {
				t.Fatal("the family's access session survived")
			}
			if _, err := f.store.Refresh(context.Background(), app.RefreshToken); !errors.Is(err, session.ErrRefreshInvalid) {
				t.Fatalf("the family's refresh token after sign-out: %v, want ErrRefreshInvalid", err)
			}
			if !f.alive(t, me) {
				t.Fatal("signing out the app ended this session")
			}
		})
	}
}

func TestSelfServiceRevokeOthers(t *testing.T) {
	for name, mk := range stores(t) {
		t.Run(name, func(t *testing.T) {
			f := newSelfService(t, mk(t))
			me := f.loginAs(t, "alice", session.Device{}, 0)
			others := []string{f.loginAs(t, "alice", session.Device{}, 0), f.loginAs(t, "alice", session.Device{}, time.Hour)}
			bob := f.loginAs(t, "bob", session.Device{}, 0)
			resp := f.check(t, request("POST", "/auth/sessions/revoke-others", bearer(me)))
			if status(resp) != 204 {
				t.Fatalf("revoke-others: %d %s", status(resp), body(resp))
			}
			for _, o := range others {
				if f.alive(t, o) {
					t.Fatal("another device survived revoke-others")
				}
			}
			if !f.alive(t, me) || !f.alive(t, bob) {
				t.Fatal("revoke-others ended the current session or another subject's")
			}
			// Nothing left to end: still 204.
			if s := status(f.check(t, request("POST", "/auth/sessions/revoke-others", bearer(me)))); s != 204 {
				t.Fatalf("again: %d", s)
			}
		})
	}
}

// The page's form posts go through the CSRF rule of every unsafe cookie
// request: a same-origin form passes, a cross-site one does not, and a
// post that shows neither is refused.
func TestSelfServiceFormCSRF(t *testing.T) {
	f := newSelfService(t, session.NewMemoryStore(nil))
	me := f.loginAs(t, "alice", session.Device{}, 0)
	form := func(path string, opts ...reqOpt) *authv3.CheckResponse {
		return f.check(t, request("POST", path, append([]reqOpt{withCookie("__Host-sid=" + me),
			withHeader("accept", "text/html,application/xhtml+xml"), withHeader("content-type", "application/x-www-form-urlencoded")}, opts...)...))
	}
	for _, tc := range []struct {
		name string
		opts []reqOpt
	}{
		{"cross-site origin", []reqOpt{withHeader("origin", "https://evil.example")}},
		{"sibling subdomain", []reqOpt{withHeader("origin", "https://evil.app.example.com")}},
		{"opaque origin", []reqOpt{withHeader("origin", "null")}},
		{"cross-site fetch metadata", []reqOpt{withHeader("sec-fetch-site", "cross-site")}},
		{"same-site fetch metadata", []reqOpt{withHeader("sec-fetch-site", "same-site")}},
		{"no evidence", nil},
	} {
		victim := f.loginAs(t, "alice", session.Device{}, 0)
		for _, path := range []string{"/auth/sessions/" + session.RefOf(victim) + "/revoke", "/auth/sessions/revoke-others"} {
			resp := form(path, tc.opts...)
			if status(resp) != 403 || body(resp) != `{"error":"csrf"}` {
				t.Fatalf("%s, %s: %d %s", tc.name, path, status(resp), body(resp))
			}
		}
		if !f.alive(t, victim) {
			t.Fatalf("%s: a forged form signed a device out", tc.name)
		}
	}

	other := f.loginAs(t, "alice", session.Device{}, 0)
	resp := form("/auth/sessions/"+session.RefOf(other)+"/revoke", withHeader("origin", sameSite), withHeader("sec-fetch-site", "same-origin"))
	if status(resp) != 303 || deniedHeader(resp, "location") != "/auth/devices" {
		t.Fatalf("same-origin form: %d, location %q", status(resp), deniedHeader(resp, "location"))
	}
	if f.alive(t, other) {
		t.Fatal("the form did not sign the device out")
	}
	// The page is served with Referrer-Policy: no-referrer, under which a
	// browser sends its own form posts with "Origin: null"; Sec-Fetch-Site
	// still says same-origin.
	nulled := f.loginAs(t, "alice", session.Device{}, 0)
	resp = form("/auth/sessions/"+session.RefOf(nulled)+"/revoke", withHeader("origin", "null"), withHeader("sec-fetch-site", "same-origin"))
	if status(resp) != 303 || f.alive(t, nulled) {
		t.Fatalf("same-origin form from the no-referrer page: %d", status(resp))
	}
	third := f.loginAs(t, "alice", session.Device{}, 0)
	resp = form("/auth/sessions/revoke-others", withHeader("sec-fetch-site", "same-origin"))
	if status(resp) != 303 || deniedHeader(resp, "location") != "/auth/devices" || f.alive(t, third) || !f.alive(t, me) {
		t.Fatalf("same-origin revoke-others form: %d, location %q", status(resp), deniedHeader(resp, "location"))
	}
	// A bearer is never sent by a browser on its own: no CSRF evidence needed.
	fourth := f.loginAs(t, "alice", session.Device{}, 0)
	if s := status(f.check(t, request("DELETE", "/auth/sessions/"+session.RefOf(fourth), bearer(me)))); s != 204 {
		t.Fatalf("bearer delete: %d", s)
	}
}

func TestSelfServicePage(t *testing.T) {
	for name, mk := range stores(t) {
		t.Run(name, func(t *testing.T) {
			f := newSelfService(t, mk(t))
			me := f.loginAs(t, "alice", session.Device{UserAgent: ssFirefox}, 0)
			hostile := f.loginAs(t, "alice", session.Device{UserAgent: ssXSS, Name: ssXSS, IP: ssXSS}, 3*time.Minute)
			resp := f.check(t, request("GET", "/auth/devices", withCookie("__Host-sid="+me), withHeader("accept", "text/html")))
			if status(resp) != 200 {
				t.Fatalf("page: %d", status(resp))
			}
			for k, want := range map[string]string{
				"content-type":            "text/html; charset=utf-8",
				"cache-control":           "no-store",
				"x-content-type-options":  "nosniff",
				"referrer-policy":         "no-referrer",
				"content-security-policy": selfservice.CSP,
			} {
				if got := deniedHeader(resp, k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			page := body(resp)
			if strings.Contains(page, "<script") || strings.Contains(page, "<img") || !strings.Contains(page, "&lt;script&gt;") {
				t.Fatal("the hostile device name is not escaped")
			}
			for _, want := range []string{"Firefox on Windows", "This device", "3 minutes ago",
				`action="/auth/sessions/` + session.RefOf(hostile) + `/revoke"`, "Sign out all other devices"} {
				if !strings.Contains(page, want) {
					t.Errorf("page lacks %q", want)
				}
			}
			if strings.Contains(page, me) || strings.Contains(page, hostile) {
				t.Fatal("the page shows a session ID")
			}
			// Without a session, a browser goes to the login page.
			resp = f.check(t, request("GET", "/auth/devices", withHeader("accept", "text/html")))
			if status(resp) != 302 || !strings.HasPrefix(deniedHeader(resp, "location"), "https://login.example.com/login?return_to=") {
				t.Fatalf("no session: %d %q", status(resp), deniedHeader(resp, "location"))
			}
		})
	}
}

// Route rules still refuse: a deny or internal rule covers these paths too,
// and a public one (the login pages under /auth/) does not open them.
func TestSelfServiceUnderRules(t *testing.T) {
	for _, tc := range []struct {
		rule Route
		want int
	}{
		{Route{PathPrefix: "/auth/", Access: Public}, 200},
		{Route{PathPrefix: "/auth/", Access: Deny}, 403},
		{Route{PathPrefix: "/auth/", Access: Internal}, 403},
	} {
		f := newSelfService(t, session.NewMemoryStore(nil), func(o *Options) { o.Routes = []Route{tc.rule} })
		me := f.loginAs(t, "alice", session.Device{}, 0)
		if s := status(f.check(t, request("GET", "/auth/sessions", bearer(me)))); s != tc.want {
			t.Errorf("%s: %d, want %d", tc.rule, s, tc.want)
		}
		if s := status(f.check(t, request("GET", "/auth/sessions"))); s != 401 && tc.want == 200 {
			t.Errorf("%s without a session: %d, want 401", tc.rule, s)
		}
	}
}

// A role rule on the self-service paths holds them as it holds any path:
// a caller without one of its roles can neither list nor sign out (403),
// and ends nothing; a caller with one is served.
func TestSelfServiceRoleRules(t *testing.T) {
	for _, tc := range []struct {
		name               string
		rule               Route
		list, page, writes int
	}{
		{"role the caller lacks, on a parent", Route{PathPrefix: "/auth/", Roles: []string{"staff"}}, 403, 403, 403},
		{"role the caller lacks, on the prefix", Route{PathPrefix: "/auth/sessions", Roles: []string{"staff"}}, 403, 200, 403},
		{"role the caller lacks, on the page", Route{PathPrefix: "/auth/devices", Roles: []string{"staff"}}, 200, 403, 204},
		{"role the caller lacks, for DELETE and POST", Route{PathPrefix: "/auth/", Methods: []string{"DELETE", "POST"}, Roles: []string{"staff"}}, 200, 200, 403},
		{"role the caller holds", Route{PathPrefix: "/auth/", Roles: []string{"staff", "user"}}, 200, 200, 204},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newSelfService(t, session.NewMemoryStore(nil), func(o *Options) { o.Routes = []Route{tc.rule} })
			me := f.loginAs(t, "alice", session.Device{}, 0)
			other := f.loginAs(t, "alice", session.Device{}, 0)
			third := f.loginAs(t, "alice", session.Device{}, 0)
			for _, c := range []struct {
				r    *authv3.CheckRequest
				want int
			}{
				{request("GET", "/auth/sessions", bearer(me)), tc.list},
				{request("GET", "/auth/devices", bearer(me)), tc.page},
				{request("DELETE", "/auth/sessions/"+session.RefOf(other), bearer(me)), tc.writes},
				{request("POST", "/auth/sessions/revoke-others", bearer(me)), tc.writes},
			} {
				if s := status(f.check(t, c.r)); s != c.want {
					t.Errorf("%s %s: %d, want %d", c.r.Attributes.Request.Http.Method, c.r.Attributes.Request.Http.Path, s, c.want)
				}
			}
			if tc.writes == 403 && (!f.alive(t, other) || !f.alive(t, third)) {
				t.Error("a caller without the rule's role signed a device out")
			}
		})
	}
}

// Explain runs the self-service code and says what it would answer, but
// signs no one out.
func TestSelfServiceExplainEndsNothing(t *testing.T) {
	f := newSelfService(t, session.NewMemoryStore(nil))
	me := f.loginAs(t, "alice", session.Device{}, 0)
	other := f.loginAs(t, "alice", session.Device{}, 0)
	for _, r := range []*authv3.CheckRequest{
		request("DELETE", "/auth/sessions/"+session.RefOf(other), bearer(me)),
		request("POST", "/auth/sessions/revoke-others", bearer(me)),
		request("DELETE", "/auth/sessions/"+session.RefOf(me), bearer(me)),
	} {
		if e := f.srv.Explain(context.Background(), r); e.Status != 204 || e.Decision != "self_service" {
			t.Fatalf("explain %s: %+v", r.Attributes.Request.Http.Path, e)
		}
	}
	if !f.alive(t, me) || !f.alive(t, other) {
		t.Fatal("explain signed a session out")
	}
}

type failingLister struct{}

func (failingLister) List(context.Context, string) ([]*session.Session, error) {
	return nil, errors.New("redis down")
}

func (failingLister) RevokeFamily(context.Context, string) error { return errors.New("redis down") }

func (failingLister) Families(context.Context, string) ([]string, error) {
	return nil, errors.New("redis down")
}

func TestSelfServiceStoreDown(t *testing.T) {
	f := newSelfService(t, session.NewMemoryStore(nil), func(o *Options) { o.SelfService.Sessions = failingLister{} })
	me := f.loginAs(t, "alice", session.Device{}, 0)
	other := f.loginAs(t, "alice", session.Device{}, 0)
	for _, r := range []*authv3.CheckRequest{
		request("GET", "/auth/sessions", bearer(me)),
		request("DELETE", "/auth/sessions/"+session.RefOf(other), bearer(me)),
		request("POST", "/auth/sessions/revoke-others", bearer(me)),
	} {
		if s := status(f.check(t, r)); s != 503 {
			t.Fatalf("%s with the list failing: %d, want 503", r.Attributes.Request.Http.Path, s)
		}
	}
	if !f.alive(t, other) {
		t.Fatal("a failed listing still ended a session")
	}
	off := newFixture(t, session.NewMemoryStore(nil))
	if s := status(off.check(t, request("GET", "/auth/sessions", bearer(off.login(t, "alice", nil, nil))))); s != 200 {
		t.Fatalf("self-service off: /auth/sessions is an ordinary path, got %d", s)
	}
}

// racingLister lists a subject's sessions from the real store, then runs
// between once: what another request did between the self-service route's
// read of the list and its writes.
type racingLister struct {
	session.Store
	between func()
}

func (r *racingLister) List(ctx context.Context, subject string) ([]*session.Session, error) {
	ss, err := r.Store.List(ctx, subject)
	if f := r.between; f != nil {
		r.between = nil
		f()
	}
	return ss, err
}

// TestSelfServiceRaces holds the self-service writes to what they said
// against what happens between their read of the caller's sessions and
// their deletes: a refresh that rotates a listed family to a new access
// session must not let it outlive "signed out", and a caller whose own
// session ended meanwhile acts on nothing.
func TestSelfServiceRaces(t *testing.T) {
	policy := session.RefreshPolicy{AccessIdle: time.Minute, AccessAbsolute: time.Hour, TTL: 24 * time.Hour, Idle: time.Hour}
	cases := []struct {
		name string
		// path is the route, given the device's refs.
		path   func(app session.Refreshed) string
		method string
	}{
		{"revoke-others", func(session.Refreshed) string { return "/auth/sessions/revoke-others" }, "POST"},
		{"delete by session_ref", func(app session.Refreshed) string { return "/auth/sessions/" + app.Ref }, "DELETE"},
		{"delete by family_ref", func(app session.Refreshed) string { return "/auth/sessions/" + app.FamilyRef }, "DELETE"},
		{"form by session_ref", func(app session.Refreshed) string { return "/auth/sessions/" + app.Ref + "/revoke" }, "POST"},
	}
	for name, mk := range stores(t) {
		for _, tc := range cases {
			t.Run(name+"/rotated/"+tc.name, func(t *testing.T) {
				store := mk(t)
				race := &racingLister{Store: store}
				f := newSelfService(t, store, func(o *Options) { o.SelfService.Sessions = race })
				me := f.loginAs(t, "alice", session.Device{}, 0)
				ctx := context.Background()
				app, _, err := store.CreateFamily(ctx, &session.Session{Subject: "alice", CreatedAt: time.Now().Truncate(time.Millisecond)},
					session.Limit{}, policy)
				if err != nil {
					t.Fatal(err)
				}
				var rotated session.Refreshed
				race.between = func() {
					if rotated, err = store.Refresh(ctx, app.RefreshToken); err != nil {
						t.Errorf("refresh between list and delete: %v", err)
					}
				}
				resp := f.check(t, request(tc.method, tc.path(app), bearer(me)))
				if s := status(resp); s != 204 {
					t.Errorf("answer: %d %s, want 204", s, body(resp))
				}
				if rotated.ID == "" {
					t.Fatal("the refresh did not run between the list and the delete")
				}
				if f.alive(t, rotated.ID) {
					t.Error("the device's rotated access session outlived its sign-out")
				}
				if _, err := store.Refresh(ctx, rotated.RefreshToken); !errors.Is(err, session.ErrRefreshInvalid) {
					t.Errorf("the device's refresh token after its sign-out: %v, want ErrRefreshInvalid", err)
				}
				if !f.alive(t, me) {
					t.Error("the caller's own session ended")
				}
			})
			t.Run(name+"/caller ended/"+tc.name, func(t *testing.T) {
				store := mk(t)
				// The caller's session is signed out (by the victim, an
				// operator, an eviction) after its check and before the list.
				ends := &endsBefore{Store: store}
				f := newSelfService(t, store, func(o *Options) { o.SelfService.Sessions = ends })
				me := f.loginAs(t, "alice", session.Device{}, 0)
				ends.ref = session.RefOf(me)
				app, _, err := store.CreateFamily(context.Background(), &session.Session{Subject: "alice", CreatedAt: time.Now().Truncate(time.Millisecond)},
					session.Limit{}, policy)
				if err != nil {
					t.Fatal(err)
				}
				resp := f.check(t, request(tc.method, tc.path(app), bearer(me)))
				if s := status(resp); s != 401 {
					t.Errorf("answer: %d %s, want 401", s, body(resp))
				}
				if !f.alive(t, app.ID) {
					t.Error("a caller whose session had ended signed a device out")
				}
			})
		}
	}
}

// endsBefore deletes ref before it lists: the caller's own session ends
// between its check and the self-service route's read.
type endsBefore struct {
	session.Store
	ref string
}

func (e *endsBefore) List(ctx context.Context, subject string) ([]*session.Session, error) {
	if err := e.Store.Delete(ctx, e.ref); err != nil {
		return nil, err
	}
	return e.Store.List(ctx, subject)
}

// A caller signed in through a refresh family, after a refresh, is in the
// list its own requests read, so the routes serve it: the check that the
// caller is listed refuses only a session that has ended.
func TestSelfServiceCallerOfAFamily(t *testing.T) {
	policy := session.RefreshPolicy{AccessIdle: time.Minute, AccessAbsolute: time.Hour, TTL: 24 * time.Hour, Idle: time.Hour}
	for name, mk := range stores(t) {
		t.Run(name, func(t *testing.T) {
			f := newSelfService(t, mk(t))
			ctx := context.Background()
			app, _, err := f.store.CreateFamily(ctx, &session.Session{Subject: "alice", CreatedAt: time.Now().Truncate(time.Millisecond)},
				session.Limit{}, policy)
			if err != nil {
				t.Fatal(err)
			}
			now, err := f.store.Refresh(ctx, app.RefreshToken)
			if err != nil {
				t.Fatal(err)
			}
			other := f.loginAs(t, "alice", session.Device{}, 0)
			if s := status(f.check(t, request("GET", "/auth/sessions", bearer(now.ID)))); s != 200 {
				t.Fatalf("list: %d, want 200", s)
			}
			if s := status(f.check(t, request("POST", "/auth/sessions/revoke-others", bearer(now.ID)))); s != 204 {
				t.Fatalf("revoke-others: %d, want 204", s)
			}
			if f.alive(t, other) || !f.alive(t, now.ID) {
				t.Fatal("revoke-others ended the wrong sessions")
			}
		})
	}
}

// Only a user session reaches the self-service routes: a service known by
// its mTLS certificate, a service credential, a refresh token or nothing
// at all is refused on every one of them and ends nothing, even where a
// public rule covers the paths.
func TestSelfServiceOnlyUsers(t *testing.T) {
	store := session.NewMemoryStore(nil)
	f := newSelfService(t, store, func(o *Options) {
		o.Services = store
		o.SPIFFE = testSPIFFE
		o.Routes = []Route{{PathPrefix: "/auth/", Access: Public}}
	})
	cred := register(t, store, "billing", "payments")
	victim := f.loginAs(t, "alice", session.Device{}, 0)
	fam, _, err := store.CreateFamily(context.Background(), &session.Session{Subject: "alice", CreatedAt: time.Now().Truncate(time.Millisecond)},
		session.Limit{}, session.RefreshPolicy{AccessIdle: time.Minute, AccessAbsolute: time.Hour, TTL: 24 * time.Hour, Idle: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	callers := []struct {
		name string
		opt  reqOpt
		want int
	}{
		{"mTLS service identity", withPrincipal("spiffe://partner.example/payments/worker"), 401},
		{"service credential", bearer(cred), 403},
		{"refresh token as bearer", bearer(fam.RefreshToken), 401},
		{"refresh token as cookie", withHeader("cookie", "__Host-sid="+fam.RefreshToken), 401},
	}
	routes := []struct{ method, path string }{
		{"GET", "/auth/sessions"},
		{"GET", "/auth/devices"},
		{"DELETE", "/auth/sessions/" + session.RefOf(victim)},
		{"DELETE", "/auth/sessions/" + fam.FamilyRef},
		{"POST", "/auth/sessions/" + session.RefOf(victim) + "/revoke"},
		{"POST", "/auth/sessions/revoke-others"},
	}
	for _, c := range callers {
		for _, r := range routes {
			if s := status(f.check(t, request(r.method, r.path, c.opt))); s != c.want {
				t.Errorf("%s: %s %s: %d, want %d", c.name, r.method, r.path, s, c.want)
			}
		}
	}
	if !f.alive(t, victim) || !f.alive(t, fam.ID) {
		t.Fatal("a caller without a user session ended one")
	}
}

// A device signed in through a refresh family whose access session has
// idled out (an app in the background) still holds a working refresh
// token: "sign out all other devices" must end that family too, or the
// device, a thief's included, refreshes its way back in afterwards.
// Signing it out by its family_ref works as well; another subject's
// family_ref stays 404 and ends nothing.
func TestSelfServiceIdleFamilies(t *testing.T) {
	const idle = 200 * time.Millisecond
	policy := session.RefreshPolicy{AccessIdle: idle, AccessAbsolute: time.Hour, TTL: 24 * time.Hour, Idle: time.Hour}
	for name, mk := range stores(t) {
		for _, route := range []string{"revoke-others", "family_ref"} {
			t.Run(name+"/"+route, func(t *testing.T) {
				f := newSelfService(t, mk(t))
				ctx := context.Background()
				newFamily := func(subject string) session.Refreshed {
					t.Helper()
					fam, _, err := f.store.CreateFamily(ctx, &session.Session{Subject: subject, CreatedAt: time.Now().Truncate(time.Millisecond)},
						session.Limit{}, policy)
					if err != nil {
						t.Fatal(err)
					}
					return fam
				}
				thief, bobs := newFamily("alice"), newFamily("bob")
				time.Sleep(idle + 150*time.Millisecond) // both access sessions idle out
				// The caller: a family of its own, refreshed just now.
				mine, err := f.store.Refresh(ctx, newFamily("alice").RefreshToken)
				if err != nil {
					t.Fatal(err)
				}
				if route == "revoke-others" {
					if s := status(f.check(t, request("POST", "/auth/sessions/revoke-others", bearer(mine.ID)))); s != 204 {
						t.Fatalf("revoke-others: %d", s)
					}
				} else {
					if s := status(f.check(t, request("DELETE", "/auth/sessions/"+bobs.FamilyRef, bearer(mine.ID)))); s != 404 {
						t.Errorf("another subject's idle family: %d, want 404", s)
					}
					if s := status(f.check(t, request("DELETE", "/auth/sessions/"+thief.FamilyRef, bearer(mine.ID)))); s != 204 {
						t.Errorf("my idle family by its family_ref: %d, want 204", s)
					}
				}
				if out, err := f.store.Refresh(ctx, thief.RefreshToken); !errors.Is(err, session.ErrRefreshInvalid) {
					t.Errorf("the idle device refreshed after its sign-out: %v (new session %t)", err, out.ID != "")
				}
				if _, err := f.store.Refresh(ctx, bobs.RefreshToken); err != nil {
					t.Errorf("another subject's family: %v, want it untouched", err)
				}
				if !f.alive(t, mine.ID) {
					t.Error("the caller's own session ended")
				}
				if _, err := f.store.Refresh(ctx, mine.RefreshToken); err != nil {
					t.Errorf("the caller's own family: %v, want it untouched", err)
				}
			})
		}
	}
}
