package exchange

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// FuzzTokenRequest sends arbitrary form bodies and Authorization values to
// the token endpoint. Whatever arrives, the answer is one of the statuses
// the endpoint documents, a JSON error unless it is 200, and a token only
// on 200.
func FuzzTokenRequest(f *testing.F) {
	st := session.NewMemoryStore(nil)
	fx := newFixture(f, st)
	h := fx.srv.Config.Handler
	good := fx.userToken(f, "billing")
	for _, body := range []string{
		exchangeForm(good, "inventory"),
		exchangeForm(good, "shipping"),
		exchangeForm(good, "inventory", "actor_token", good),
		"grant_type=client_credentials&audience=internal",
		"grant_type=password", "grant_type=%zz", "", "a=1&a=2",
		url.Values{"grant_type": {GrantTokenExchange}, "subject_token": {"x"}, "subject_token_type": {TokenTypeJWT}, "audience": {"inventory"}}.Encode(),
	} {
		for _, auth := range []string{"Bearer " + fx.billing, basic("billing", fx.billing), "Bearer sgsvc_x", "", "Basic Og=="} {
			f.Add(auth, body)
		}
	}
	f.Fuzz(func(t *testing.T, auth, body string) {
		req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(body))
		req.Header.Set("Content-Type", form)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer %q is not JSON", rec.Body)
		}
		switch rec.Code {
		case http.StatusOK:
			if out["access_token"] == nil {
				t.Fatal("200 without a token")
			}
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusTooManyRequests:
			if out["access_token"] != nil || out["error"] == nil {
				t.Fatalf("%d: %v", rec.Code, out)
			}
		default:
			t.Fatalf("status %d: %v", rec.Code, out)
		}
	})
}
