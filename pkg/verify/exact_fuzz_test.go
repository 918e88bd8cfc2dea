package verify

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzExactClaims is a differential: whenever the exact read accepts a
// payload, encoding/json decoding it into golang-jwt's RegisteredClaims,
// into a struct with sessiongate's own claims and into a map must all read
// the same values. A payload on which they could disagree (a repeated or
// case-folded member, a date as a string) must be refused.
func FuzzExactClaims(f *testing.F) {
	for _, s := range []string{
		`{"iss":"i","sub":"alice","aud":"orders","exp":1900000000,"nbf":1,"iat":1,"jti":"j","sid":"s","tenant":"t","roles":["a"],"email":"e"}`,
		`{"sub":"alice","SUB":"root"}`,
		`{"sub":"alice","sub":"root"}`,
		`{"sub":"alice","\u017fub":"root"}`,
		`{"exp":"1900000000"}`,
		`{"aud":["a","b"],"exp":1.5}`,
		`{"Tenant":"x","tenant":"y"}`,
		`{"roles":null}`,
		`{"x":{"a":1,"a":2}}`,
		`{"org":"a","Org":"b"}`,
		`{"sub":"a\ud800"}`,
		`{"sub":"alice","kind":"user","act":{"sub":"billing","act":{"sub":"gateway"}}}`,
		`{"act":{"sub":"billing","sub":"root"}}`,
		`{"act":{"sub":"billing","Sub":"root"}}`,
		`{"act":"billing","kind":"service"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var e exactClaims
		if json.Unmarshal(b, &e) != nil {
			return
		}
		var rc jwt.RegisteredClaims
		if err := json.Unmarshal(b, &rc); err != nil {
			t.Fatalf("exact read accepted %q, RegisteredClaims refused it: %v", b, err)
		}
		var own struct {
			Sid    string   `json:"sid"`
			Tenant string   `json:"tenant"`
			Roles  []string `json:"roles"`
			Kind   string   `json:"kind"`
			Act    *jsonAct `json:"act"`
		}
		if err := json.Unmarshal(b, &own); err != nil {
			t.Fatalf("exact read accepted %q, struct decoding refused it: %v", b, err)
		}
		c := e.c
		same := c.Issuer == rc.Issuer && c.Subject == rc.Subject && c.ID == rc.ID &&
			slices.Equal(c.Audience, []string(rc.Audience)) &&
			sameDate(e.exp, rc.ExpiresAt) && sameDate(e.nbf, rc.NotBefore) && sameDate(e.iat, rc.IssuedAt) &&
			c.SessionRef == own.Sid && c.Tenant == own.Tenant && slices.Equal(c.Roles, own.Roles) &&
			c.Kind == own.Kind && sameActor(c.Actor, own.Act)
		if !same {
			t.Fatalf("%q: exact read %+v, RegisteredClaims %+v, struct %+v", b, c, rc, own)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("map decoding refused %q: %v", b, err)
		}
		for k, v := range m {
			s, isString := v.(string)
			if owned[k] || !isString {
				if _, ok := c.Custom[k]; ok {
					t.Fatalf("%q: %q in Custom", b, k)
				}
				continue
			}
			if c.Custom[k] != s {
				t.Fatalf("%q: Custom[%q] = %q, map decoding %q", b, k, c.Custom[k], s)
			}
		}
		if len(c.Custom) > len(m) {
			t.Fatalf("%q: Custom %v holds more than the payload", b, c.Custom)
		}
	})
}

// jsonAct is the act claim as encoding/json reads it into a struct.
type jsonAct struct {
	Sub string   `json:"sub"`
	Act *jsonAct `json:"act"`
}

// sameActor reports whether the exact read of act and encoding/json's agree.
func sameActor(a *Actor, j *jsonAct) bool {
	for ; a != nil && j != nil; a, j = a.Actor, j.Act {
		if a.Subject != j.Sub {
			return false
		}
	}
	return a == nil && j == nil
}

func sameDate(a, b *jwt.NumericDate) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Unix() == b.Unix()
}
