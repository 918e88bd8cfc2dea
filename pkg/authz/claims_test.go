package authz

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/sessiongate/sessiongate/internal/logtest"
)

// TestCheckRefusesRecordsWithFoldedClaims: a record in the store whose
// custom claims are, or fold onto, claims sessiongate owns (written by an
// older version, or by hand) is corrupt, and Check answers 401 rather than
// signing "SUB":"root" after the real sub for a Go verifier to pick up.
func TestCheckRefusesRecordsWithFoldedClaims(t *testing.T) {
	hostile := map[string]map[string]string{
		"SUB AUD EXP Tenant": {"SUB": "root", "AUD": "billing", "EXP": "9999999999", "Tenant": "othercorp"},
		"long s":             {"\u017fub": "root"},
		"ROLES":              {"ROLES": "admin"},
		"exact sid":          {"sid": "0123"},
		"zero width":         {"s\u200bub": "root"},
		"one bad among good": {"email": "a@example.com", "Iss": "https://evil.example"},
	}
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			for cname, claims := range hostile {
				t.Run(cname, func(t *testing.T) {
					var logs logtest.Buffer
					f := newFixture(t, newStore(t), func(o *Options) { o.Log = slog.New(slog.NewTextHandler(&logs, nil)) })
					id := f.login(t, "alice", []string{"user"}, claims)
					resp := f.check(t, request("GET", "/api/x", withCookie("__Host-sid="+id)))
					if got := status(resp); got != 401 {
						t.Fatalf("status %d, want 401", got)
					}
					if _, set := okHeader(t, resp, tokenHeader); set {
						t.Fatal("a token was issued")
					}
					if !strings.Contains(logs.String(), "corrupt session record") {
						t.Errorf("no corrupt-record warning in the log: %s", logs.String())
					}
				})
			}
			t.Run("ordinary claims still sign", func(t *testing.T) {
				f := newFixture(t, newStore(t))
				id := f.login(t, "alice", []string{"user"}, map[string]string{"email": "a@example.com", "Org": "acme"})
				resp := f.check(t, request("GET", "/api/x", withCookie("__Host-sid="+id)))
				tok, set := okHeader(t, resp, tokenHeader)
				if status(resp) != 200 || !set {
					t.Fatalf("status %d, token set %v", status(resp), set)
				}
				if c := f.claims(t, tok, "internal"); c["sub"] != "alice" || c["email"] != "a@example.com" || c["Org"] != "acme" {
					t.Fatalf("claims = %v", c)
				}
			})
		})
	}
}
