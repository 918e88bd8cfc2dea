package token

import (
	"strings"
	"testing"
	"time"
)

// TestSignTypesTokens: a user token keeps typ JWT and gains kind user; a
// service token has typ service+jwt and kind service, with the same key; an
// unknown kind signs nothing.
func TestSignTypesTokens(t *testing.T) {
	ks := mustKeySet(t, testKey(t, AlgES256))
	s := NewSigner(ks, "sessiongate")
	now := time.Now().Truncate(time.Second)
	for _, tc := range []struct {
		kind, wantTyp, wantKind string
	}{
		{"", TypUser, KindUser},
		{KindUser, TypUser, KindUser},
		{KindService, TypService, KindService},
	} {
		tok, err := s.Sign(Claims{Subject: "billing", Audience: "inventory", Kind: tc.kind, IssuedAt: now, ExpiresAt: now.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		parsed, c, err := parse(t, tok, keyfuncFromJWKS(t, ks), "sessiongate", "inventory")
		if err != nil {
			t.Fatalf("kind %q: %v", tc.kind, err)
		}
		if parsed.Header["typ"] != tc.wantTyp || c["kind"] != tc.wantKind {
			t.Errorf("kind %q: typ %v, kind claim %v; want %s, %s", tc.kind, parsed.Header["typ"], c["kind"], tc.wantTyp, tc.wantKind)
		}
	}
	for _, bad := range []string{"Service", "admin", "user "} {
		if tok, err := s.Sign(Claims{Subject: "x", Kind: bad, IssuedAt: now, ExpiresAt: now.Add(time.Minute)}); err == nil {
			t.Errorf("kind %q signed %s", bad, tok)
		}
	}
}

// TestKindIsNotACustomClaim: a session custom claim could otherwise make a
// user token read as a service token to a verifier that looks at kind.
func TestKindIsNotACustomClaim(t *testing.T) {
	for _, name := range []string{"kind", "KIND", "Kind", "\u212aind"} {
		if err := CheckCustomClaim(name); err == nil {
			t.Errorf("custom claim %q accepted", name)
		}
	}
	ks := mustKeySet(t, testKey(t, AlgES256))
	now := time.Now()
	_, err := NewSigner(ks, "sessiongate").Sign(Claims{Subject: "alice", Custom: map[string]string{"kind": "service"}, IssuedAt: now, ExpiresAt: now.Add(time.Minute)})
	if err == nil || !strings.Contains(err.Error(), "kind") {
		t.Fatalf("Sign with custom kind: %v", err)
	}
}
