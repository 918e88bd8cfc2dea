package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/testenv"
	"github.com/sessiongate/sessiongate/pkg/session"
)

const testToken = "test-token-0123456789"

func newServer(t *testing.T, store Sessions, mutate ...func(*Options)) (*httptest.Server, *Client) {
	t.Helper()
	o := Options{
		Store:           store,
		Cookie:          session.Cookie{Name: "__Host-sid", SameSite: "Lax"},
		IdleTimeout:     30 * time.Minute,
		AbsoluteTimeout: 12 * time.Hour,
		StoreTimeout:    200 * time.Millisecond,
	}
	for _, m := range mutate {
		m(&o)
	}
	h := NewHandler(o)
	h.SetTokens([]string{"old-token-0123456789", testToken})
	srv := httptest.NewServer(contractHandler(t, h))
	t.Cleanup(srv.Close)
	return srv, NewClient(srv.URL, testToken, srv.Client())
}

func call(t *testing.T, srv *httptest.Server, method, path, body, tok string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(data, &out)
	return resp.StatusCode, out
}

func TestCreateListRevokeUpdate(t *testing.T) {
	store := session.NewMemoryStore(nil)
	_, c := newServer(t, store)
	ctx := context.Background()

	resp, err := c.CreateSession(ctx, CreateRequest{
		Subject: "alice", Tenant: "acme", Roles: []string{"dev"}, Claims: map[string]string{"email": "a@example.com"},
		IdleTimeout: "10m", Device: &Device{UserAgent: "Firefox", IP: "192.0.2.7", Name: "laptop"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !session.ValidID(resp.SessionID) || resp.SessionRef != session.RefOf(resp.SessionID) {
		t.Fatalf("bad id/ref: %+v", resp)
	}
	for _, want := range []string{"__Host-sid=" + resp.SessionID, "Path=/", "Secure", "HttpOnly", "SameSite=Lax", "Max-Age=43200"} {
		if !strings.Contains(resp.SetCookie, want) {
			t.Errorf("set_cookie %q lacks %q", resp.SetCookie, want)
		}
	}
	if d := time.Until(resp.ExpiresAt); d < 11*time.Hour || d > 12*time.Hour {
		t.Fatalf("expires_at %v", resp.ExpiresAt)
	}
	e, err := store.Touch(ctx, resp.SessionRef)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := e.Session()
	if s.IdleTimeout != 10*time.Minute || s.Device.Name != "laptop" || s.Claims["email"] != "a@example.com" {
		t.Fatalf("stored %+v", s)
	}

	second, _ := c.CreateSession(ctx, CreateRequest{Subject: "alice"})
	list, err := c.ListSessions(ctx, "alice")
	if err != nil || len(list) != 2 || list[0].SessionRef != resp.SessionRef || list[0].Device.UserAgent != "Firefox" {
		t.Fatalf("list = %+v, %v", list, err)
	}

	roles := []string{"admin"}
	n, err := c.UpdateUser(ctx, "alice", UpdateRequest{Roles: &roles})
	if err != nil || n != 2 {
		t.Fatalf("update = %d, %v", n, err)
	}
	e, _ = store.Touch(ctx, resp.SessionRef)
	if s, _ := e.Session(); len(s.Roles) != 1 || s.Roles[0] != "admin" || s.Claims["email"] != "a@example.com" {
		t.Fatalf("after update %+v", s)
	}

	if err := c.RevokeSession(ctx, second.SessionRef); err != nil {
		t.Fatal(err)
	}
	var apiErr *APIError
	if err := c.RevokeSession(ctx, second.SessionRef); !errors.As(err, &apiErr) || apiErr.Status != 404 {
		t.Fatalf("second revoke: %v", err)
	}
	n, err = c.RevokeUser(ctx, "alice")
	if err != nil || n != 1 {
		t.Fatalf("revoke user = %d, %v", n, err)
	}
	if list, _ := c.ListSessions(ctx, "alice"); len(list) != 0 {
		t.Fatalf("after revoke-user: %+v", list)
	}
	// Subjects with reserved URL characters round-trip.
	if _, err := c.CreateSession(ctx, CreateRequest{Subject: "user/with spaces?"}); err != nil {
		t.Fatal(err)
	}
	if list, err := c.ListSessions(ctx, "user/with spaces?"); err != nil || len(list) != 1 {
		t.Fatalf("odd subject: %+v %v", list, err)
	}
}

func TestMaxPerUser(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limit  session.Limit
		status int
	}{
		{"evict oldest", session.Limit{MaxPerUser: 1}, 201},
		{"reject", session.Limit{MaxPerUser: 1, Reject: true}, 409},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := session.NewMemoryStore(nil)
			srv, c := newServer(t, store, func(o *Options) { o.Limit = tc.limit })
			first, err := c.CreateSession(context.Background(), CreateRequest{Subject: "bob"})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := call(t, srv, "POST", "/v1/sessions", `{"subject":"bob"}`, testToken)
			if got != tc.status {
				t.Fatalf("second login: %d, want %d", got, tc.status)
			}
			list, _ := c.ListSessions(context.Background(), "bob")
			if len(list) != 1 {
				t.Fatalf("%d sessions", len(list))
			}
			if kept := list[0].SessionRef == first.SessionRef; kept != tc.limit.Reject {
				t.Fatalf("first session kept = %v", kept)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	srv, _ := newServer(t, session.NewMemoryStore(nil))
	long := strings.Repeat("x", 300)
	tests := []struct {
		name, method, path, body, token string
		want                            int
	}{
		{"no token", "POST", "/v1/sessions", `{"subject":"a"}`, "", 401},
		{"wrong token", "POST", "/v1/sessions", `{"subject":"a"}`, "nope-nope-nope-nope", 401},
		{"rotated-in old token works", "POST", "/v1/sessions", `{"subject":"a"}`, "old-token-0123456789", 201},
		{"bad json", "POST", "/v1/sessions", `{"subject":`, testToken, 400},
		{"unknown field", "POST", "/v1/sessions", `{"subject":"a","admin":true}`, testToken, 400},
		{"trailing data", "POST", "/v1/sessions", `{"subject":"a"}{}`, testToken, 400},
		{"empty subject", "POST", "/v1/sessions", `{"subject":""}`, testToken, 400},
		{"long subject", "POST", "/v1/sessions", `{"subject":"` + long + `"}`, testToken, 400},
		{"control char in subject", "POST", "/v1/sessions", `{"subject":"a\r\nb"}`, testToken, 400},
		{"CRLF in device name", "POST", "/v1/sessions", `{"subject":"a","device":{"name":"x\r\nSet-Cookie: y"}}`, testToken, 400},
		{"reserved claim", "POST", "/v1/sessions", `{"subject":"a","claims":{"sub":"root"}}`, testToken, 400},
		{"empty role", "POST", "/v1/sessions", `{"subject":"a","roles":[""]}`, testToken, 400},
		{"negative idle", "POST", "/v1/sessions", `{"subject":"a","idle_timeout":"-5m"}`, testToken, 400},
		{"absurd absolute", "POST", "/v1/sessions", `{"subject":"a","absolute_timeout":"10000h"}`, testToken, 400},
		{"unparsable timeout", "POST", "/v1/sessions", `{"subject":"a","idle_timeout":"soon"}`, testToken, 400},
		{"huge body", "POST", "/v1/sessions", `{"subject":"a","tenant":"` + strings.Repeat("x", 70<<10) + `"}`, testToken, 413},
		{"revoke malformed ref", "DELETE", "/v1/sessions/not-a-ref", "", testToken, 400},
		{"revoke unknown ref", "DELETE", "/v1/sessions/" + strings.Repeat("a", 32), "", testToken, 404},
		{"update nothing", "PATCH", "/v1/users/a/sessions", `{}`, testToken, 400},
		{"update reserved claim", "PATCH", "/v1/users/a/sessions", `{"claims":{"exp":"1"}}`, testToken, 400},
		{"update unknown field", "PATCH", "/v1/users/a/sessions", `{"role":["x"]}`, testToken, 400},
		{"update ok", "PATCH", "/v1/users/a/sessions", `{"roles":[]}`, testToken, 200},
		{"list ok", "GET", "/v1/users/a/sessions", "", testToken, 200},
		{"revoke user ok", "DELETE", "/v1/users/a/sessions", "", testToken, 200},
		{"wrong method", "PUT", "/v1/sessions", `{}`, testToken, 405},
		{"unknown path", "GET", "/v1/nothing", "", testToken, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, body := call(t, srv, tt.method, tt.path, tt.body, tt.token)
			if got != tt.want {
				t.Fatalf("%s %s: %d %v, want %d", tt.method, tt.path, got, body, tt.want)
			}
			if got >= 400 && got != 405 && tt.name != "unknown path" { // the router's own answers are plain text
				if msg, _ := body["error"].(string); msg == "" {
					t.Fatalf("error answer without error message: %v", body)
				}
			}
		})
	}
}

func TestStoreDownIs503(t *testing.T) {
	st, r, _ := testenv.RedisStore(t, 100*time.Millisecond)
	srv, _ := newServer(t, st)
	r.Stop()
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/sessions", `{"subject":"a"}`},
		{"GET", "/v1/users/a/sessions", ""},
		{"DELETE", "/v1/users/a/sessions", ""},
		{"PATCH", "/v1/users/a/sessions", `{"roles":["x"]}`},
		{"DELETE", "/v1/sessions/" + strings.Repeat("b", 32), ""},
	} {
		if got, _ := call(t, srv, c.method, c.path, c.body, testToken); got != 503 {
			t.Errorf("%s %s with redis down: %d, want 503", c.method, c.path, got)
		}
	}
}

func TestOpenModeNeedsNoToken(t *testing.T) {
	srv, _ := newServer(t, session.NewMemoryStore(nil), func(o *Options) { o.Open = true })
	if got, _ := call(t, srv, "POST", "/v1/sessions", `{"subject":"a"}`, ""); got != 201 {
		t.Fatalf("%d", got)
	}
}

func TestParseTokenFile(t *testing.T) {
	toks, err := ParseTokenFile([]byte("# admin tokens\n\nfirst-token-0123456789\n  second-token-0123456789  \n"))
	if err != nil || len(toks) != 2 || toks[1] != "second-token-0123456789" {
		t.Fatalf("%v %v", toks, err)
	}
	for _, bad := range []string{"", "# only a comment\n", "short\n"} {
		if _, err := ParseTokenFile([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
