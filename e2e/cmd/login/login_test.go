package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/pkg/admin"
)

func TestSafeReturnTo(t *testing.T) {
	req := httptest.NewRequest("GET", "/login", nil)
	req.Host = "app.example:8080"
	req.Header.Set("X-Forwarded-Proto", "https")
	for raw, want := range map[string]string{
		"":                                       "/",
		"/":                                      "/",
		"/orders/7?tab=2":                        "/orders/7?tab=2",
		"/a/b#frag":                              "/a/b#frag",
		"https://app.example:8080/orders/7?x=1":  "/orders/7?x=1",
		"https://APP.example:8080/x#f":           "/x#f",
		"https://app.example:8080":               "/",
		"http://app.example:8080/x":              "/", // scheme differs from X-Forwarded-Proto
		"https://app.example/x":                  "/", // port differs
		"https://evil.example/":                  "/",
		"https://app.example:8080@evil.example/": "/",
		"https://u:p@app.example:8080/x":         "/",
		"//evil.example/x":                       "/",
		"/\\evil.example":                        "/",
		"\\\\evil.example":                       "/",
		"/\t/evil.example":                       "/",
		"javascript:alert(1)":                    "/",
		"evil.example":                           "/",
		"relative/path":                          "/",
		"/" + strings.Repeat("a", 3000):          "/",
	} {
		got, _ := SafeReturnTo(raw, req)
		if got != want {
			t.Errorf("SafeReturnTo(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestFixtureLoadsAndDemoPasswordsWork(t *testing.T) {
	users, err := LoadUsers(filepath.Join("..", "..", "fixtures", "users.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The demo passwords are documented in the README walk-through.
	for name, pw := range map[string]string{"alice": "alice-password", "bob": "bob-password", "carol": "carol-password"} {
		if _, ok := Authenticate(users, name, pw); !ok {
			t.Errorf("%s: demo password rejected", name)
		}
		if _, ok := Authenticate(users, name, pw+"x"); ok {
			t.Errorf("%s: wrong password accepted", name)
		}
	}
	if _, ok := Authenticate(users, "mallory", "alice-password"); ok {
		t.Error("unknown user accepted")
	}
}

func TestHashRoundTrip(t *testing.T) {
	h, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if !CheckPassword(h, "s3cret") || CheckPassword(h, "s3cret ") {
		t.Fatal("hash does not round-trip")
	}
	if CheckPassword("plain", "plain") {
		t.Fatal("a non-hash must never match")
	}
}

type fakeAdmin struct {
	got admin.CreateRequest
	err error
}

func (f *fakeAdmin) CreateSession(_ context.Context, req admin.CreateRequest) (admin.CreateResponse, error) {
	f.got = req
	if f.err != nil {
		return admin.CreateResponse{}, f.err
	}
	return admin.CreateResponse{
		SessionID:  "sid",
		SessionRef: "ref123",
		SetCookie:  "__Host-sid=sid; Path=/; Secure; HttpOnly; SameSite=Lax",
		ExpiresAt:  time.Unix(1_900_000_000, 0).UTC(),
	}, nil
}

func newTestHandler(t *testing.T, fa *fakeAdmin) http.Handler {
	t.Helper()
	users, err := LoadUsers(filepath.Join("..", "..", "fixtures", "users.json"))
	if err != nil {
		t.Fatal(err)
	}
	return (&Handler{Users: users, Admin: fa, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}).Routes()
}

func TestFormLoginForwardsCookieAndRedirectsSafely(t *testing.T) {
	fa := &fakeAdmin{}
	h := newTestHandler(t, fa)
	form := url.Values{"username": {"carol"}, "password": {"carol-password"}, "device": {"laptop"}, "return_to": {"/admin/panel?x=1"}}
	req := httptest.NewRequest("POST", "/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "test-agent")
	req.Header.Set("X-Forwarded-For", "203.0.113.9, 198.51.100.7")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)

	if rec.Code != http.StatusSeeOther {
		t.Fatalf("status %d, body %s", rec.Code, rec.Body)
	}
	if got := rec.Header().Get("Location"); got != "/admin/panel?x=1" {
		t.Errorf("Location = %q", got)
	}
	if got := rec.Header().Get("Set-Cookie"); !strings.HasPrefix(got, "__Host-sid=sid;") {
		t.Errorf("Set-Cookie = %q, want sessiongate's value verbatim", got)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Error("missing Cache-Control: no-store")
	}
	g := fa.got
	if g.Subject != "carol" || g.Tenant != "globex" || strings.Join(g.Roles, ",") != "user,admin" {
		t.Errorf("create request = %+v", g)
	}
	if g.Device == nil || g.Device.UserAgent != "test-agent" || g.Device.IP != "198.51.100.7" || g.Device.Name != "laptop" {
		t.Errorf("device = %+v (want the last X-Forwarded-For entry as IP)", g.Device)
	}
}

func TestFormLoginRejectsOpenRedirect(t *testing.T) {
	h := newTestHandler(t, &fakeAdmin{})
	form := url.Values{"username": {"alice"}, "password": {"alice-password"}, "return_to": {"//evil.example/"}}
	req := httptest.NewRequest("POST", "/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther || rec.Header().Get("Location") != "/" {
		t.Fatalf("status %d Location %q, want 303 to /", rec.Code, rec.Header().Get("Location"))
	}
}

func TestJSONLogin(t *testing.T) {
	for _, tc := range []struct {
		name       string
		body       string
		adminErr   error
		wantStatus int
		wantCookie bool
	}{
		{"ok", `{"username":"alice","password":"alice-password"}`, nil, 200, true},
		{"wrong password", `{"username":"alice","password":"nope"}`, nil, 401, false},
		{"unknown field", `{"username":"alice","password":"alice-password","admin":true}`, nil, 400, false},
		{"admin down", `{"username":"alice","password":"alice-password"}`, errors.New("boom"), 502, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, &fakeAdmin{err: tc.adminErr})
			req := httptest.NewRequest("POST", "/login", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %s)", rec.Code, tc.wantStatus, rec.Body)
			}
			if got := rec.Header().Get("Set-Cookie") != ""; got != tc.wantCookie {
				t.Fatalf("Set-Cookie present = %v, want %v", got, tc.wantCookie)
			}
			if tc.wantStatus == 200 {
				var lr loginResponse
				if err := json.Unmarshal(rec.Body.Bytes(), &lr); err != nil || lr.Subject != "alice" || lr.SessionRef != "ref123" {
					t.Fatalf("body %s (%v)", rec.Body, err)
				}
			}
		})
	}
}

func TestFormPageEscapesReturnTo(t *testing.T) {
	h := newTestHandler(t, &fakeAdmin{})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/login?return_to="+url.QueryEscape(`/x"><script>`), nil))
	if rec.Code != 200 || strings.Contains(rec.Body.String(), "<script>") {
		t.Fatalf("status %d body %s", rec.Code, rec.Body)
	}
}
