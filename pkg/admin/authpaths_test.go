package admin

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/logtest"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// TestAuthEveryPathAndMethod: the credential is checked before routing, so
// no method, path spelling or near-miss Authorization header reaches a
// route, and a refused request's log line holds nothing of what it sent.
func TestAuthEveryPathAndMethod(t *testing.T) {
	var logs logtest.Buffer
	store := session.NewMemoryStore(nil)
	h := NewHandler(Options{Store: store, Services: store, IdleTimeout: time.Minute, AbsoluteTimeout: time.Hour,
		Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	h.SetTokens([]string{testToken})
	paths := []string{"/", "/v1/sessions", "//v1/sessions", "/v1/sessions/", "/V1/sessions", "/v1/Sessions",
		"/v1/sessions%2F0123", "/v1/./sessions", "/v1/x/../sessions", "/v1/openapi.yaml", "/v1/events", "/v1/services",
		"/v1/users/alice/sessions", "/v1/users/alice%2Fsessions", "/nope", "*"}
	methods := []string{"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "TRACE", "CONNECT", "get", "FOO"}
	auths := []string{"", "Bearer", "Bearer ", "Bearer  " + testToken, "Bearer " + testToken + " ", "Bearer\t" + testToken,
		"Basic " + testToken, "Bearer " + testToken[:len(testToken)-1], "Bearer " + testToken + "x", testToken,
		"Bearer " + strings.ToUpper(testToken)}
	for _, m := range methods {
		for _, p := range paths {
			for _, a := range auths {
				req := httptest.NewRequest("GET", "/", strings.NewReader(`{"subject":"mallory"}`))
				req.Method, req.URL.Path, req.URL.RawPath, req.RequestURI = m, p, "", p
				if a != "" {
					req.Header.Set("Authorization", a)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusUnauthorized {
					t.Errorf("%s %s Authorization %q: %d, want 401", m, p, a, rec.Code)
				}
			}
		}
	}
	// Two Authorization headers, the valid one second: the first is the
	// one read, so this is refused too.
	req := httptest.NewRequest("POST", "/v1/sessions", strings.NewReader(`{"subject":"mallory"}`))
	req.Header.Add("Authorization", "Bearer wrong-token-0123456789")
	req.Header.Add("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("two Authorization headers: %d, want 401", rec.Code)
	}
	if s := logs.String(); strings.Contains(s, testToken[:8]) || strings.Contains(s, "mallory") {
		t.Fatalf("a refused request's log repeats what it sent:\n%s", s)
	}
}
