package authz

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/sessiongate/sessiongate/internal/logtest"
	"github.com/sessiongate/sessiongate/internal/testenv"
	"github.com/sessiongate/sessiongate/pkg/events"
	"github.com/sessiongate/sessiongate/pkg/metrics"
	"github.com/sessiongate/sessiongate/pkg/session"
)

const refreshPath = "/auth/token"

// refreshFixture is a Check server with the token endpoint on over store,
// its metrics, events and logs kept for the test to read.
type refreshFixture struct {
	*fixture
	m    *metrics.Metrics
	rec  *recorded
	logs *logtest.Buffer
}

func newRefreshFixture(t testing.TB, store session.Store, mutate ...func(*Options)) *refreshFixture {
	t.Helper()
	rf := &refreshFixture{m: metrics.New(nil), rec: &recorded{}, logs: &logtest.Buffer{}}
	rf.fixture = newFixture(t, store, append([]func(*Options){func(o *Options) {
		o.Refresh, o.RefreshPath = store.(Refresher), refreshPath
		o.Metrics, o.Events = rf.m, rf.rec
		o.Log = slog.New(slog.NewTextHandler(rf.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.StoreTimeout = time.Second
	}}, mutate...)...)
	return rf
}

// family starts a refresh family the way the admin API does.
func (f *refreshFixture) family(t testing.TB, subject string, grace time.Duration) session.Refreshed {
	t.Helper()
	now := time.Now().Truncate(time.Millisecond)
	s := &session.Session{Subject: subject, Tenant: "acme", Roles: []string{"user"}, CreatedAt: now}
	r, _, err := f.store.CreateFamily(context.Background(), s, session.Limit{},
		session.RefreshPolicy{AccessIdle: 10 * time.Minute, AccessAbsolute: 15 * time.Minute, TTL: 24 * time.Hour, Idle: time.Hour, Grace: grace})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// refreshReq is a token request as Envoy sends it with pack_as_bytes.
func refreshReq(body string, opts ...reqOpt) *authv3.CheckRequest {
	r := request("POST", refreshPath, append([]reqOpt{withHeader("content-type", "application/x-www-form-urlencoded")}, opts...)...)
	r.Attributes.Request.Http.RawBody = []byte(body)
	return r
}

func refreshBody(tok string) string {
	return "grant_type=refresh_token&refresh_token=" + tok
}

// tokenResponse is the RFC 6749 §5.1 answer, decoded with every field
// checked for presence.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

// granted checks a token answer: a local reply (never an allow), status
// 200, no-store, JSON with exactly the four fields.
func granted(t testing.TB, resp *authv3.CheckResponse) tokenResponse {
	t.Helper()
	d := resp.GetDeniedResponse()
	if d == nil || resp.GetOkResponse() != nil || resp.GetStatus().GetCode() == int32(codes.OK) {
		t.Fatalf("token answer is not a local reply: %v", resp)
	}
	if got := d.GetStatus().GetCode(); got != 200 {
		t.Fatalf("token answer status %d: %s", got, d.GetBody())
	}
	want := map[string]string{"cache-control": "no-store", "pragma": "no-cache", "content-type": "application/json"}
	for _, h := range d.GetHeaders() {
		if v, ok := want[h.GetHeader().GetKey()]; ok && v == h.GetHeader().GetValue() {
			delete(want, h.GetHeader().GetKey())
		}
	}
	if len(want) > 0 {
		t.Fatalf("token answer lacks headers %v: %v", want, d.GetHeaders())
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(d.GetBody()), &raw); err != nil || len(raw) != 4 {
		t.Fatalf("token answer body %q (%v)", d.GetBody(), err)
	}
	var tr tokenResponse
	if err := json.Unmarshal([]byte(d.GetBody()), &tr); err != nil {
		t.Fatal(err)
	}
	if !session.ValidID(tr.AccessToken) || !session.ValidRefreshToken(tr.RefreshToken) || tr.TokenType != "Bearer" || tr.ExpiresIn <= 0 {
		t.Fatalf("token answer %+v", tr)
	}
	return tr
}

// refused checks an RFC 6749 §5.2 answer and returns its error code.
func refused(t testing.TB, resp *authv3.CheckResponse, status int) string {
	t.Helper()
	d := resp.GetDeniedResponse()
	if d == nil || resp.GetOkResponse() != nil {
		t.Fatalf("refusal is not a local reply: %v", resp)
	}
	if got := int(d.GetStatus().GetCode()); got != status {
		t.Fatalf("status %d (%s), want %d", got, d.GetBody(), status)
	}
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal([]byte(d.GetBody()), &e); err != nil || e.Error == "" || e.Description == "" {
		t.Fatalf("error body %q (%v)", d.GetBody(), err)
	}
	if strings.Contains(d.GetBody(), "access_token") {
		t.Fatalf("a refusal carries a token: %s", d.GetBody())
	}
	return e.Error
}

// bearerStatus is what a bearer gets on an API route.
func (f *refreshFixture) bearerStatus(t testing.TB, id string) int {
	t.Helper()
	return status(f.check(t, request("GET", "/app/x", withHeader("authorization", "Bearer "+id))))
}

func (f *refreshFixture) count(result string) float64 {
	return testutil.ToFloat64(f.m.Refresh.WithLabelValues(result))
}

// TestRefresh: over the memory store and real Redis, a refresh returns a
// new pair whose access token works and whose predecessor no longer does;
// a concurrent double refresh within the grace gets the same pair; a
// retired token after it revokes the family, with a refresh_reuse event;
// nothing of it reaches a log.
func TestRefresh(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			f := newRefreshFixture(t, newStore(t))
			var secrets []string
			r0 := f.family(t, "alice", 30*time.Second)
			secrets = append(secrets, r0.ID, r0.RefreshToken)
			if got := f.bearerStatus(t, r0.ID); got != 200 {
				t.Fatalf("first access token: %d", got)
			}

			// Rotation: each new access token works, the previous one is gone,
			// and the old refresh token is no longer the current one.
			prev, tok := r0.ID, r0.RefreshToken
			for i := range 5 {
				resp, v := f.srv.Decide(context.Background(), refreshReq(refreshBody(tok)))
				tr := granted(t, resp)
				secrets = append(secrets, tr.AccessToken, tr.RefreshToken)
				if v.Decision != DecisionRefresh {
					t.Fatalf("verdict %v", v.Decision)
				}
				if tr.AccessToken == prev || tr.RefreshToken == tok {
					t.Fatalf("refresh %d returned the old pair", i)
				}
				if tr.ExpiresIn > 15*60 || tr.ExpiresIn < 15*60-5 {
					t.Fatalf("expires_in %d, want the access session's 15 minutes", tr.ExpiresIn)
				}
				if got := f.bearerStatus(t, tr.AccessToken); got != 200 {
					t.Fatalf("refresh %d: new access token answered %d", i, got)
				}
				if got := f.bearerStatus(t, prev); got != 401 {
					t.Fatalf("refresh %d: previous access token answered %d", i, got)
				}
				prev, tok = tr.AccessToken, tr.RefreshToken
			}
			if got := f.count("ok"); got != 5 {
				t.Errorf("ok counted %v, want 5", got)
			}

			// Body as a string (Envoy without pack_as_bytes) reads the same.
			r := refreshReq("")
			r.Attributes.Request.Http.Body = refreshBody(tok)
			tr := granted(t, f.check(t, r))
			secrets = append(secrets, tr.AccessToken, tr.RefreshToken)
			old, tok := tok, tr.RefreshToken

			// Grace: two refreshes racing with the same token get the same pair.
			var wg sync.WaitGroup
			pairs := make([]tokenResponse, 2)
			for i := range pairs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					pairs[i] = granted(t, f.check(t, refreshReq(refreshBody(tok))))
				}()
			}
			wg.Wait()
			if pairs[0] != pairs[1] {
				t.Fatalf("concurrent refreshes got different pairs")
			}
			secrets = append(secrets, pairs[0].AccessToken, pairs[0].RefreshToken)
			if got := f.bearerStatus(t, pairs[0].AccessToken); got != 200 {
				t.Fatalf("access token after the double refresh answered %d", got)
			}

			// Reuse: a token retired before the last rotation, past its grace
			// (it was retired two rotations ago, so it is not the one in grace),
			// revokes the family.
			resp, v := f.srv.Decide(context.Background(), refreshReq(refreshBody(old)))
			if code := refused(t, resp, 400); code != "invalid_grant" {
				t.Fatalf("reused token: %s", code)
			}
			if v.Decision != DecisionRefresh {
				t.Fatalf("reuse verdict %v", v.Decision)
			}
			if f.count("reused") != 1 {
				t.Errorf("reused counted %v", f.count("reused"))
			}
			if got := f.bearerStatus(t, pairs[0].AccessToken); got != 401 {
				t.Errorf("current access token after reuse answered %d", got)
			}
			if code := refused(t, f.check(t, refreshReq(refreshBody(pairs[0].RefreshToken))), 400); code != "invalid_grant" {
				t.Errorf("current refresh token after reuse: %s", code)
			}
			var reuse []events.Event
			for _, e := range f.rec.snapshot() {
				if e.Type == events.RefreshReuse {
					reuse = append(reuse, e)
				}
			}
			if len(reuse) != 1 {
				t.Fatalf("refresh_reuse events %+v, want one", reuse)
			}
			if fr := reuse[0].Details["family_ref"]; fr != "" && fr != r0.FamilyRef {
				t.Errorf("refresh_reuse family_ref %q, want %q", fr, r0.FamilyRef)
			}
			if s := reuse[0].Subject; s != "" && s != "alice" {
				t.Errorf("refresh_reuse subject %q", s)
			}
			for _, e := range f.rec.snapshot() {
				b, _ := json.Marshal(e)
				for _, s := range secrets {
					if strings.Contains(string(b), s) {
						t.Fatalf("event %s holds a token", b)
					}
				}
			}
			logs := f.logs.String()
			if logs == "" {
				t.Fatal("no logs captured; the check below would prove nothing")
			}
			for _, s := range secrets {
				if strings.Contains(logs, s) {
					t.Fatal("logs hold a token or session ID")
				}
			}
		})
	}
}

func (r *recorded) snapshot() []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]events.Event(nil), r.e...)
}

// TestRefreshRefusals: every malformed request is refused before the
// store, with the RFC 6749 §5.2 error and status the endpoint documents,
// and counted under its result.
func TestRefreshRefusals(t *testing.T) {
	f := newRefreshFixture(t, session.NewMemoryStore(nil))
	r := f.family(t, "alice", time.Second)
	good := refreshBody(r.RefreshToken)
	form := "application/x-www-form-urlencoded"
	tests := []struct {
		name   string
		req    *authv3.CheckRequest
		status int
		code   string
		result string
	}{
		{"GET", request("GET", refreshPath), 405, "invalid_request", "invalid_request"},
		{"lower-case post", func() *authv3.CheckRequest {
			q := refreshReq(good)
			q.Attributes.Request.Http.Method = "post"
			return q
		}(), 405, "invalid_request", "invalid_request"},
		{"query string", func() *authv3.CheckRequest {
			q := refreshReq(good)
			q.Attributes.Request.Http.Path = refreshPath + "?refresh_token=" + r.RefreshToken
			return q
		}(), 400, "invalid_request", "invalid_request"},
		{"no content type", func() *authv3.CheckRequest {
			q := refreshReq(good)
			delete(q.Attributes.Request.Http.Headers, "content-type")
			return q
		}(), 400, "invalid_request", "invalid_request"},
		{"JSON content type", refreshReq(`{"grant_type":"refresh_token","refresh_token":"`+r.RefreshToken+`"}`, withHeader("content-type", "application/json")), 400, "invalid_request", "invalid_request"},
		{"JSON body as a form", refreshReq(`{"grant_type":"refresh_token","refresh_token":"` + r.RefreshToken + `"}`), 400, "invalid_request", "invalid_request"},
		{"no body (with_request_body not configured)", refreshReq(""), 400, "invalid_request", "invalid_request"},
		{"duplicate refresh_token", refreshReq(good + "&refresh_token=" + r.RefreshToken), 400, "invalid_request", "invalid_request"},
		{"duplicate grant_type", refreshReq(good + "&grant_type=refresh_token"), 400, "invalid_request", "invalid_request"},
		{"grant_type in another case", refreshReq("Grant_Type=refresh_token&refresh_token=" + r.RefreshToken), 400, "invalid_request", "invalid_request"},
		{"no grant_type", refreshReq("refresh_token=" + r.RefreshToken), 400, "invalid_request", "invalid_request"},
		{"empty refresh_token", refreshReq("grant_type=refresh_token&refresh_token="), 400, "invalid_request", "invalid_request"},
		{"password grant", refreshReq("grant_type=password&username=a&password=b"), 400, "unsupported_grant_type", "unsupported_grant_type"},
		{"grant type in another case", refreshReq("grant_type=Refresh_Token&refresh_token=" + r.RefreshToken), 400, "unsupported_grant_type", "unsupported_grant_type"},
		{"scope", refreshReq(good + "&scope=admin"), 400, "invalid_scope", "invalid_scope"},
		{"session ID as refresh token", refreshReq(refreshBody(r.ID)), 400, "invalid_grant", "invalid_grant"},
		{"truncated refresh token", refreshReq(refreshBody(r.RefreshToken[:len(r.RefreshToken)-1])), 400, "invalid_grant", "invalid_grant"},
		{"unknown refresh token", refreshReq(refreshBody(testRefreshShape)), 400, "invalid_grant", "invalid_grant"},
		{"body over 1 KiB", refreshReq(good + "&client_id=" + strings.Repeat("a", maxFormBody)), 400, "invalid_request", "invalid_request"},
		{"semicolon separator", refreshReq("grant_type=refresh_token;refresh_token=" + r.RefreshToken), 400, "invalid_request", "invalid_request"},
		{"charset latin-1", refreshReq(good, withHeader("content-type", form+"; charset=iso-8859-1")), 400, "invalid_request", "invalid_request"},
	}
	for _, tt := range tests {
		before := f.count(tt.result)
		resp, v := f.srv.Decide(context.Background(), tt.req)
		if code := refused(t, resp, tt.status); code != tt.code {
			t.Errorf("%s: error %s, want %s", tt.name, code, tt.code)
		}
		if v.Decision != DecisionRefresh {
			t.Errorf("%s: verdict %v", tt.name, v.Decision)
		}
		if got := f.count(tt.result) - before; got != 1 {
			t.Errorf("%s: %s counted %v times", tt.name, tt.result, got)
		}
		if tt.status == 405 && !deniedHas(resp, "allow", "POST") {
			t.Errorf("%s: 405 without Allow: POST", tt.name)
		}
	}
	// None of that touched the family: its token still refreshes.
	granted(t, f.check(t, refreshReq(good, withHeader("content-type", form+"; charset=UTF-8"))))
	if n := len(f.rec.snapshot()); n != 0 {
		t.Errorf("%d events for refusals that are no reuse", n)
	}
}

func deniedHas(resp *authv3.CheckResponse, k, v string) bool {
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == k && h.GetHeader().GetValue() == v {
			return true
		}
	}
	return false
}

// TestRefreshStoreDown: a store that cannot answer is a 503, never a
// grant and never invalid_grant (which would make the client drop its
// refresh token).
func TestRefreshStoreDown(t *testing.T) {
	store, srv, _ := testenv.RedisStore(t, 200*time.Millisecond)
	f := newRefreshFixture(t, store, func(o *Options) { o.StoreTimeout = 200 * time.Millisecond })
	srv.Stop()
	resp, v := f.srv.Decide(context.Background(), refreshReq(refreshBody(testRefreshShape)))
	if code := refused(t, resp, 503); code != "temporarily_unavailable" {
		t.Fatalf("store down: %s", code)
	}
	if v.Decision != DecisionUnavailable || f.count("error") != 1 {
		t.Fatalf("store down: verdict %v, error counted %v", v.Decision, f.count("error"))
	}
	if !deniedHas(resp, "retry-after", "1") {
		t.Error("503 without Retry-After")
	}
}

// TestRefreshOff: without a Refresher the path is an ordinary route, and
// with one, every other path is answered as before.
func TestRefreshOff(t *testing.T) {
	f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) { o.RefreshPath = refreshPath })
	if got := status(f.check(t, refreshReq(refreshBody(testRefreshShape)))); got != 401 {
		t.Fatalf("token path with the endpoint off answered %d, want 401 (an ordinary route)", got)
	}
	on := newRefreshFixture(t, session.NewMemoryStore(nil))
	id := on.login(t, "alice", nil, nil)
	if got := on.bearerStatus(t, id); got != 200 {
		t.Fatalf("ordinary session with the endpoint on answered %d", got)
	}
	if got := status(on.check(t, request("POST", refreshPath+"/x", withHeader("authorization", "Bearer "+id)))); got != 200 {
		t.Fatalf("a path under the token path answered %d", got)
	}
}

// TestRefreshTokenIsNoAccessCredential: a refresh token as a bearer is
// refused on an API route and taken out of the request on a public one,
// in the Authorization header and in any cookie.
func TestRefreshTokenIsNoAccessCredential(t *testing.T) {
	f := newRefreshFixture(t, session.NewMemoryStore(nil))
	r := f.family(t, "alice", time.Second)
	for _, authz := range []string{"Bearer " + r.RefreshToken, "bearer " + r.RefreshToken} {
		if got := status(f.check(t, request("GET", "/app/x", withHeader("authorization", authz)))); got != 401 {
			t.Errorf("%q on an API route answered %d, want 401", authz, got)
		}
	}
	for _, authz := range []string{"Bearer " + r.RefreshToken, "Token " + r.RefreshToken, "Bearer SGR_x", "Bearer sgr_"} {
		req := request("GET", "/public/x", withHeader("authorization", authz), withHeader("cookie", "a=1; rt="+r.RefreshToken+"; b=2"))
		resp := f.check(t, req)
		up := upstream(req.Attributes.Request.Http.Headers, resp)
		if status(resp) != 200 || strings.Contains(up["authorization"], "gr_") || strings.Contains(up["cookie"], "sgr_") {
			t.Errorf("public route passes on %q / cookie %q", up["authorization"], up["cookie"])
		}
	}
	// With a valid session cookie, a refresh token under another scheme
	// does not travel upstream either.
	id := f.login(t, "bob", nil, nil)
	req := request("GET", "/app/x", withCookie("__Host-sid="+id), withHeader("authorization", "Token "+r.RefreshToken))
	resp := f.check(t, req)
	if status(resp) != 200 || strings.Contains(upstream(req.Attributes.Request.Http.Headers, resp)["authorization"], r.RefreshToken) {
		t.Fatalf("refresh token under another scheme beside a session cookie: status %d", status(resp))
	}
}

// TestRefreshAllocationPromise: with the endpoint on, a warm Check of any
// other path costs what it did.
func TestRefreshAllocationPromise(t *testing.T) {
	f := newRefreshFixture(t, session.NewMemoryStore(nil), func(o *Options) { o.Log = slog.New(slog.DiscardHandler) })
	id := f.login(t, "alice", []string{"dev"}, nil)
	warm := request("GET", "/api/items?page=2", withCookie("theme=dark; __Host-sid="+id))
	if status(f.check(t, warm)) != 200 {
		t.Fatal("setup: warm Check not allowed")
	}
	if got := testing.AllocsPerRun(100, func() { f.srv.Check(context.Background(), warm) }); got > 6 {
		t.Errorf("a warm Check with the token endpoint on costs %.1f allocations, want at most 6", got)
	}
}

// FuzzRefreshRequest: whatever body and content type arrive on the token
// path, the answer is a local reply (never an allow), a 200 only with a
// well-formed token pair, else an RFC 6749 error without one.
func FuzzRefreshRequest(f *testing.F) {
	rf := newRefreshFixture(f, session.NewMemoryStore(nil), func(o *Options) { o.Log = slog.New(slog.DiscardHandler) })
	r := rf.family(f, "alice", time.Hour)
	for _, b := range []string{
		refreshBody(r.RefreshToken), refreshBody(r.ID), refreshBody(testRefreshShape), refreshBody(r.RefreshToken) + "&client_id=app",
		"grant_type=password", "", "a=1&a=2", "grant_type=refresh_token;refresh_token=x", `{"grant_type":"refresh_token"}`,
		"grant_type=refresh_token&refresh_token=" + strings.ToUpper(r.RefreshToken), "grant_type=refresh_token&scope=x",
	} {
		for _, ct := range []string{"application/x-www-form-urlencoded", "application/json", "", "application/x-www-form-urlencoded; charset=utf-8"} {
			f.Add("POST", ct, b)
		}
	}
	f.Add("GET", "", "")
	f.Fuzz(func(t *testing.T, method, ct, body string) {
		req := request(method, refreshPath, withHeader("content-type", ct))
		req.Attributes.Request.Http.RawBody = []byte(body)
		resp, err := rf.srv.Check(context.Background(), req)
		if err != nil {
			t.Fatalf("gRPC error: %v", err)
		}
		d := resp.GetDeniedResponse()
		if d == nil || resp.GetOkResponse() != nil || resp.GetStatus().GetCode() == int32(codes.OK) {
			t.Fatalf("not a local reply: %v", resp)
		}
		var out map[string]any
		if err := json.Unmarshal([]byte(d.GetBody()), &out); err != nil {
			t.Fatalf("body %q is not JSON", d.GetBody())
		}
		switch d.GetStatus().GetCode() {
		case 200:
			granted(t, resp)
		case 400, 405:
			if out["error"] == nil || out["access_token"] != nil || out["refresh_token"] != nil {
				t.Fatalf("refusal %v", out)
			}
		default:
			t.Fatalf("status %d: %v", d.GetStatus().GetCode(), out)
		}
	})
}
