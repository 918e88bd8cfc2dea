package verify_test

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiongate/sessiongate/pkg/token"
	"github.com/sessiongate/sessiongate/pkg/verify"
)

func TestActor(t *testing.T) {
	e := newEnv(t, token.AlgES256, verify.Options{})
	required := newEnv(t, token.AlgES256, verify.Options{Actor: verify.ActorRequired})
	forbidden := newEnv(t, token.AlgES256, verify.Options{Actor: verify.ActorForbidden})
	exchanged := e.sign(t, func(c *token.Claims) {
		c.Actor = &token.Actor{Subject: "inventory", Actor: &token.Actor{Subject: "billing"}}
	})
	direct := e.sign(t, nil)

	c, err := e.v.Verify(exchanged)
	if err != nil || !slices.Equal(c.ActorChain(), []string{"inventory", "billing"}) || c.Subject != "alice" {
		t.Fatalf("exchanged: %+v, %v", c, err)
	}
	if c, err := e.v.Verify(direct); err != nil || c.Actor != nil || len(c.ActorChain()) != 0 {
		t.Fatalf("direct: %+v, %v", c, err)
	}
	if _, err := required.v.Verify(direct); err == nil {
		t.Error("ActorRequired accepted a token without act")
	}
	if _, err := required.v.Verify(exchanged); err != nil {
		t.Errorf("ActorRequired: %v", err)
	}
	if _, err := forbidden.v.Verify(exchanged); err == nil {
		t.Error("ActorForbidden accepted a token with act")
	}
	if _, err := forbidden.v.Verify(direct); err != nil {
		t.Errorf("ActorForbidden: %v", err)
	}
	var nilClaims *verify.Claims
	if nilClaims.ActorChain() != nil {
		t.Error("ActorChain on nil claims")
	}

	deep := map[string]any{"sub": "s0"}
	for i := 1; i <= token.MaxActorDepth; i++ {
		deep = map[string]any{"sub": "s" + strings.Repeat("x", i), "act": deep}
	}
	for name, act := range map[string]any{
		"a string":          "billing",
		"no sub":            map[string]any{"act": map[string]any{"sub": "x"}},
		"an empty sub":      map[string]any{"sub": ""},
		"sub not a string":  map[string]any{"sub": 1},
		"an unknown member": map[string]any{"sub": "billing", "roles": []string{"admin"}},
		"a nested bad act":  map[string]any{"sub": "billing", "act": "x"},
		"too deep":          deep,
		"null":              nil,
	} {
		m := validMap()
		m["act"] = act
		tok := e.forgeTyped(t, "JWT", m)
		if _, err := e.v.Verify(tok); err == nil {
			t.Errorf("act %s accepted", name)
		}
	}
	// A duplicated member inside act reads differently to different
	// parsers: refused.
	raw := forgeRaw(t, e, `{"iss":"`+issuer+`","sub":"alice","aud":"`+audience+`","exp":9999999999,"iat":1,"act":{"sub":"billing","sub":"root"}}`)
	if _, err := e.v.Verify(raw); err == nil {
		t.Error("act with sub given twice accepted")
	}
}

// forgeRaw signs a raw payload with e's key, header typ JWT.
func forgeRaw(t *testing.T, e *env, payload string) string {
	t.Helper()
	hdr := `{"alg":"ES256","kid":"` + e.signer.ActiveKID() + `","typ":"JWT"}`
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	input := enc(hdr) + "." + enc(payload)
	sig, err := jwt.SigningMethodES256.Sign(input, e.priv)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}
