package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// TestDecodeStrictRegression pins the two holes FuzzAdminJSON found in the
// request decoder (inputs kept in testdata/fuzz/FuzzAdminJSON): a stray "]"
// or "}" after the object passed the trailing-data check, and field names
// that encoding/json folds to a known field ("SUBJECT", "\u017fubject")
// slipped past both the unknown-field and the duplicate-key checks, so
// {"subject":"alice","Subject":"mallory"} created a session for mallory.
func TestDecodeStrictRegression(t *testing.T) {
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		want   int
	}{
		{"trailing bracket", "POST", "/v1/sessions", `{"subject":"alice"}]`, http.StatusBadRequest},
		{"trailing brace", "POST", "/v1/sessions", `{"subject":"alice"}}`, http.StatusBadRequest},
		{"trailing object", "POST", "/v1/sessions", `{"subject":"alice"}{}`, http.StatusBadRequest},
		{"trailing whitespace is fine", "POST", "/v1/sessions", "{\"subject\":\"alice\"}\r\n\t ", http.StatusCreated},
		{"case variant of a field", "POST", "/v1/sessions", `{"subject":"alice","Subject":"mallory"}`, http.StatusBadRequest},
		{"upper-case field alone", "POST", "/v1/sessions", `{"SUBJECT":"mallory"}`, http.StatusBadRequest},
		{"long s folds to s", "POST", "/v1/sessions", `{"\u017fubject":"mallory"}`, http.StatusBadRequest},
		{"case variant in device", "POST", "/v1/sessions", `{"subject":"a","device":{"name":"x","Name":"y"}}`, http.StatusBadRequest},
		{"claims keep any key", "POST", "/v1/sessions", `{"subject":"a","claims":{"Org":"x","org":"y"}}`, http.StatusCreated},
		{"update trailing bracket", "PATCH", "/v1/users/alice/sessions", `{"roles":["a"]}]`, http.StatusBadRequest},
		{"update case variant", "PATCH", "/v1/users/alice/sessions", `{"Roles":["admin"]}`, http.StatusBadRequest},
		{"update exact", "PATCH", "/v1/users/alice/sessions", `{"roles":["admin"]}`, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHandler(Options{
				Store:           session.NewMemoryStore(nil),
				Cookie:          session.Cookie{Name: "__Host-sid", SameSite: "Lax"},
				IdleTimeout:     30 * time.Minute,
				AbsoluteTimeout: 12 * time.Hour,
				Open:            true,
				Log:             discardLog(),
			})
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("%s %s %q: status %d (%s), want %d", tc.method, tc.path, tc.body, rec.Code, strings.TrimSpace(rec.Body.String()), tc.want)
			}
		})
	}
}
