package admin

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// reservedClaimCases are custom claim names the admin API must refuse: each
// either case-folds onto a claim sessiongate sets (so a Go verifier decoding
// into a struct would read it as that claim), or is a name a person or
// another parser could not tell from one. They also seed the differential
// test and its fuzz target.
var reservedClaimCases = []struct{ name, claim string }{
	{"exact sub", "sub"},
	{"upper SUB", "SUB"},
	{"title Aud", "Aud"},
	{"upper EXP", "EXP"},
	{"title Tenant", "Tenant"},
	{"long s \u017fub", "\u017fub"},
	{"upper ROLES", "ROLES"},
	{"title Sid", "Sid"},
	{"upper JTI", "JTI"},
	{"title Iss", "Iss"},
	{"long s i\u017f\u017f", "i\u017f\u017f"},
	{"mixed nBf", "nBf"},
	{"mixed iAT", "iAT"},
	{"mixed tEnAnT", "tEnAnT"},
	{"mixed rOlEs", "rOlEs"},
	{"long s role\u017f", "role\u017f"},
	// No owned claim holds a k; the Kelvin sign folds to k all the same,
	// and the charset refuses it before folding is even asked.
	{"kelvin sign \u212aey", "\u212aey"},
	{"zero width space su\u200bb", "su\u200bb"},
	{"soft hyphen s\u00adub", "s\u00adub"},
	{"BOM \ufeffsub", "\ufeffsub"},
	{"word joiner sub\u2060", "sub\u2060"},
	{"fullwidth \uff53\uff55\uff42", "\uff53\uff55\uff42"},
	{"trailing space", "sub "},
	{"leading space", " sub"},
	{"dotless i \u0131ss", "\u0131ss"},
	{"combining acute", "sub\u0301"},
	{"empty", ""},
	{"too long", string(make([]byte, 129))},
}

func TestClaimNamesRefused(t *testing.T) {
	for _, tc := range reservedClaimCases {
		t.Run(tc.name, func(t *testing.T) {
			store := session.NewMemoryStore(nil)
			srv, _ := newServer(t, store)
			body := `{"subject":"alice","claims":{` + strconv.Quote(tc.claim) + `:"root"}}`
			if code, out := call(t, srv, "POST", "/v1/sessions", body, testToken); code != http.StatusBadRequest {
				t.Errorf("create with claim %q = %d %v, want 400", tc.claim, code, out)
			}
			if code, out := call(t, srv, "POST", "/v1/sessions", `{"subject":"alice"}`, testToken); code != http.StatusCreated {
				t.Fatalf("create = %d %v", code, out)
			}
			update := `{"claims":{` + strconv.Quote(tc.claim) + `:"root"}}`
			if code, out := call(t, srv, "PATCH", "/v1/users/alice/sessions", update, testToken); code != http.StatusBadRequest {
				t.Errorf("update with claim %q = %d %v, want 400", tc.claim, code, out)
			}
		})
	}
}

func TestClaimNamesAccepted(t *testing.T) {
	for _, name := range []string{"email", "org", "Org", "team_id", "x-tenant-region", "app.plan", "urn:example:level",
		"https://example.com/claims/group", "subject", "issuer", "roles2", "tenant_id", "k"} {
		t.Run(name, func(t *testing.T) {
			srv, _ := newServer(t, session.NewMemoryStore(nil))
			body := `{"subject":"alice","claims":{` + strconv.Quote(name) + `:"v"}}`
			if code, out := call(t, srv, "POST", "/v1/sessions", body, testToken); code != http.StatusCreated {
				t.Errorf("create with claim %q = %d %v, want 201", name, code, out)
			}
		})
	}
}
