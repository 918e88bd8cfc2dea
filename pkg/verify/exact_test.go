package verify_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiongate/sessiongate/pkg/token"
	"github.com/sessiongate/sessiongate/pkg/verify"
)

// signRaw signs header and payload exactly as given, with the env's real
// key, so the signature is valid and only the JSON is under test.
func (e *env) signRaw(t *testing.T, header, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	sig, err := jwt.SigningMethodES256.Sign(input, e.priv)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + enc.EncodeToString(sig)
}

// TestVerifyExactRead: tokens with a valid signature whose JSON another
// parser would read differently are refused — repeated members, names that
// fold onto an owned claim, dates as strings, unknown crit — and ordinary
// tokens, including ones no sessiongate signer writes but RFC 7519 allows
// (aud as an array, fractional dates), still verify.
func TestVerifyExactRead(t *testing.T) {
	e := newEnv(t, token.AlgES256, verify.Options{})
	kid := e.signer.Keys().ActiveKID()
	now := time.Now().Unix()
	hdr := fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"JWT"}`, kid)
	// claims renders a payload: the standard claims, then extra members.
	claims := func(extra string) string {
		p := fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":%q,"exp":%d,"nbf":%d,"iat":%d,"jti":"j","sid":"s","tenant":"acme","roles":["user"]`,
			issuer, audience, now+300, now, now)
		return p + extra + "}"
	}
	// replace renders a payload with one standard claim's value swapped.
	replace := func(old, new string) string { return strings.Replace(claims(""), old, new, 1) }

	refused := []struct{ name, header, payload string }{
		{"duplicate sub", hdr, claims(`,"sub":"root"`)},
		{"SUB alongside sub", hdr, claims(`,"SUB":"root"`)},
		{"long s alongside sub", hdr, claims(`,"\u017fub":"root"`)},
		{"escaped duplicate sub", hdr, claims(`,"s\u0075b":"root"`)},
		{"Tenant alongside tenant", hdr, claims(`,"Tenant":"othercorp"`)},
		{"AUD alongside aud", hdr, claims(`,"AUD":"billing"`)},
		{"EXP alongside exp", hdr, claims(`,"EXP":9999999999`)},
		{"Roles alongside roles", hdr, claims(`,"Roles":["admin"]`)},
		{"duplicate custom", hdr, claims(`,"email":"a@x","email":"b@x"`)},
		{"duplicate inside a custom object", hdr, claims(`,"ext":{"a":1,"a":2}`)},
		{"duplicate deep inside a custom array", hdr, claims(`,"ext":[{"b":{"c":1,"c":2}}]`)},
		{"exp as string", hdr, replace(fmt.Sprintf(`"exp":%d`, now+300), fmt.Sprintf(`"exp":"%d"`, now+300))},
		{"nbf as string", hdr, replace(fmt.Sprintf(`"nbf":%d`, now), fmt.Sprintf(`"nbf":"%d"`, now))},
		{"iat as string", hdr, replace(fmt.Sprintf(`"iat":%d`, now), fmt.Sprintf(`"iat":"%d"`, now))},
		{"exp null", hdr, replace(fmt.Sprintf(`"exp":%d`, now+300), `"exp":null`)},
		{"exp negative", hdr, replace(fmt.Sprintf(`"exp":%d`, now+300), `"exp":-1`)},
		{"exp beyond year 9999", hdr, replace(fmt.Sprintf(`"exp":%d`, now+300), `"exp":1e300`)},
		{"aud number", hdr, replace(fmt.Sprintf(`"aud":%q`, audience), `"aud":7`)},
		{"aud array with a number", hdr, replace(fmt.Sprintf(`"aud":%q`, audience), fmt.Sprintf(`"aud":[%q,7]`, audience))},
		{"aud object", hdr, replace(fmt.Sprintf(`"aud":%q`, audience), fmt.Sprintf(`"aud":{"x":%q}`, audience))},
		{"sub number", hdr, replace(`"sub":"alice"`, `"sub":1`)},
		{"tenant null", hdr, replace(`"tenant":"acme"`, `"tenant":null`)},
		{"roles string", hdr, replace(`"roles":["user"]`, `"roles":"admin"`)},
		{"roles null", hdr, replace(`"roles":["user"]`, `"roles":null`)},
		{"payload not an object", hdr, `["sub"]`},
		{"trailing data", hdr, claims("") + `{"sub":"root"}`},
		{"crit unknown", fmt.Sprintf(`{"alg":"ES256","kid":%q,"typ":"JWT","crit":["foo"],"foo":1}`, kid), claims("")},
		{"crit unknown, parameter absent", fmt.Sprintf(`{"alg":"ES256","kid":%q,"crit":["exp"]}`, kid), claims("")},
		{"crit string", fmt.Sprintf(`{"alg":"ES256","kid":%q,"crit":"foo"}`, kid), claims("")},
		{"crit empty", fmt.Sprintf(`{"alg":"ES256","kid":%q,"crit":[]}`, kid), claims("")},
		{"crit with a number", fmt.Sprintf(`{"alg":"ES256","kid":%q,"crit":[1]}`, kid), claims("")},
		{"crit null", fmt.Sprintf(`{"alg":"ES256","kid":%q,"crit":null}`, kid), claims("")},
		{"duplicate header alg", fmt.Sprintf(`{"alg":"HS256","kid":%q,"typ":"JWT","alg":"ES256"}`, kid), claims("")},
		{"duplicate header kid", fmt.Sprintf(`{"alg":"ES256","kid":"other","kid":%q}`, kid), claims("")},
		{"header ALG alongside alg", fmt.Sprintf(`{"alg":"ES256","ALG":"none","kid":%q}`, kid), claims("")},
		{"header KID alongside kid", fmt.Sprintf(`{"alg":"ES256","kid":%q,"KID":"other"}`, kid), claims("")},
		{"duplicate inside a header object", fmt.Sprintf(`{"alg":"ES256","kid":%q,"x":{"a":1,"a":2}}`, kid), claims("")},
		{"header trailing data", hdr + `{}`, claims("")},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			c, err := e.v.Verify(e.signRaw(t, tc.header, tc.payload))
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			if !errors.Is(err, verify.ErrInvalidToken) {
				t.Errorf("error %v is not ErrInvalidToken", err)
			}
		})
	}

	accepted := []struct {
		name, header, payload string
		check                 func(*verify.Claims) bool
	}{
		{"plain", hdr, claims(`,"email":"a@example.com"`), func(c *verify.Claims) bool {
			return c.Subject == "alice" && c.Tenant == "acme" && c.SessionRef == "s" && c.ID == "j" &&
				c.HasRole("user") && c.Custom["email"] == "a@example.com" && len(c.Custom) == 1 && c.ExpiresAt.Unix() == now+300
		}},
		{"aud array", hdr, replace(fmt.Sprintf(`"aud":%q`, audience), fmt.Sprintf(`"aud":["billing",%q]`, audience)), func(c *verify.Claims) bool {
			return len(c.Audience) == 2 && c.Audience[1] == audience
		}},
		{"fractional dates", hdr, replace(fmt.Sprintf(`"exp":%d`, now+300), fmt.Sprintf(`"exp":%d.5`, now+300)), func(c *verify.Claims) bool {
			return c.ExpiresAt.Unix() == now+300
		}},
		{"case-distinct custom claims", hdr, claims(`,"org":"a","Org":"b"`), func(c *verify.Claims) bool {
			return c.Custom["org"] == "a" && c.Custom["Org"] == "b"
		}},
		{"non-string custom claims are not exposed", hdr, claims(`,"n":1,"o":{"a":[1,{"b":2}]},"s":"x"`), func(c *verify.Claims) bool {
			return len(c.Custom) == 1 && c.Custom["s"] == "x"
		}},
		{"same name in sibling objects", hdr, claims(`,"x":{"a":1},"y":{"a":2}`), func(c *verify.Claims) bool { return c.Subject == "alice" }},
		{"no roles", hdr, replace(`,"roles":["user"]`, ``), func(c *verify.Claims) bool { return len(c.Roles) == 0 }},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			c, err := e.v.Verify(e.signRaw(t, tc.header, tc.payload))
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.check(c) {
				t.Errorf("claims = %+v", c)
			}
		})
	}
}
