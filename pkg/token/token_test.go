package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

var allAlgs = []string{AlgES256, AlgEdDSA, AlgRS256}

// Key generation (RSA-3072 in particular) is slow under -race, so each test
// binary generates one key per alg and shares it.
var (
	keyCacheMu sync.Mutex
	keyCache   = map[string]crypto.Signer{}
)

func testKey(t testing.TB, alg string) crypto.Signer {
	t.Helper()
	keyCacheMu.Lock()
	defer keyCacheMu.Unlock()
	if k, ok := keyCache[alg]; ok {
		return k
	}
	k, err := GenerateKey(alg)
	if err != nil {
		t.Fatalf("GenerateKey(%s): %v", alg, err)
	}
	keyCache[alg] = k
	return k
}

func mustKeySet(t testing.TB, active crypto.Signer, verify ...crypto.PublicKey) *KeySet {
	t.Helper()
	ks, err := NewKeySet(active, "", verify...)
	if err != nil {
		t.Fatalf("NewKeySet: %v", err)
	}
	return ks
}

// keyfuncFromJWKS verifies through the published JWKS, exactly as a
// downstream service would, rather than with the in-memory key.
func keyfuncFromJWKS(t *testing.T, ks *KeySet) jwt.Keyfunc {
	t.Helper()
	kf, err := keyfunc.NewJWKSetJSON(ks.JWKS())
	if err != nil {
		t.Fatalf("keyfunc from JWKS: %v", err)
	}
	return kf.Keyfunc
}

func parse(t *testing.T, tok string, kf jwt.Keyfunc, iss, aud string) (*jwt.Token, jwt.MapClaims, error) {
	t.Helper()
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(tok, claims, kf,
		jwt.WithValidMethods([]string{AlgES256, AlgEdDSA, AlgRS256}),
		jwt.WithIssuer(iss),
		jwt.WithAudience(aud),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)
	return parsed, claims, err
}

func TestGenerateKey(t *testing.T) {
	for _, alg := range allAlgs {
		k := testKey(t, alg)
		got, err := algorithmFor(k.Public())
		if err != nil || got != alg {
			t.Errorf("GenerateKey(%s) produced alg %q, err %v", alg, got, err)
		}
	}
	if rk := testKey(t, AlgRS256).(*rsa.PrivateKey); rk.N.BitLen() != 3072 {
		t.Errorf("RSA key has %d bits, want 3072", rk.N.BitLen())
	}
	if _, err := GenerateKey("HS256"); err == nil {
		t.Error("GenerateKey(HS256) succeeded, want error")
	}
}

func TestSignRoundTrip(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(alg, func(t *testing.T) {
			ks := mustKeySet(t, testKey(t, alg))
			if ks.Algorithm() != alg {
				t.Fatalf("Algorithm() = %q, want %q", ks.Algorithm(), alg)
			}
			s := NewSigner(ks, "https://sessiongate.internal")
			now := time.Now().Truncate(time.Second)
			tok, err := s.Sign(Claims{
				Subject:    "user-42",
				Tenant:     "acme",
				SessionRef: "sref-1",
				Audience:   "internal",
				ID:         "jti-1",
				Roles:      []string{"admin", "dev"},
				Custom:     map[string]string{"email": "a@example.com"},
				IssuedAt:   now,
				ExpiresAt:  now.Add(5 * time.Minute),
			})
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			parsed, c, err := parse(t, tok, keyfuncFromJWKS(t, ks), "https://sessiongate.internal", "internal")
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if parsed.Header["alg"] != alg || parsed.Header["kid"] != ks.ActiveKID() || parsed.Header["typ"] != "JWT" {
				t.Errorf("header = %v", parsed.Header)
			}
			want := map[string]any{
				"iss": "https://sessiongate.internal", "sub": "user-42", "aud": "internal",
				"jti": "jti-1", "sid": "sref-1", "tenant": "acme", "email": "a@example.com",
				"exp": float64(now.Add(5 * time.Minute).Unix()), "iat": float64(now.Unix()), "nbf": float64(now.Unix()),
			}
			for k, v := range want {
				if c[k] != v {
					t.Errorf("claim %s = %#v, want %#v", k, c[k], v)
				}
			}
			roles, _ := c["roles"].([]any)
			if len(roles) != 2 || roles[0] != "admin" || roles[1] != "dev" {
				t.Errorf("roles = %#v", c["roles"])
			}
		})
	}
}

func TestSignDefaults(t *testing.T) {
	s := NewSigner(mustKeySet(t, testKey(t, AlgEdDSA)), "iss")
	tok, err := s.Sign(Claims{Subject: "u", Audience: "a", ExpiresAt: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	c := decodePayload(t, tok)
	if string(c["roles"]) != "[]" {
		t.Errorf("roles = %s, want []", c["roles"])
	}
	if len(c["jti"]) < 20 {
		t.Errorf("jti = %s, want a random id", c["jti"])
	}
	if string(c["nbf"]) != string(c["iat"]) {
		t.Errorf("nbf %s != iat %s", c["nbf"], c["iat"])
	}
	if _, err := s.Sign(Claims{Subject: "u"}); err == nil {
		t.Error("Sign without ExpiresAt succeeded")
	}
	if _, err := s.Sign(Claims{Subject: "u", IssuedAt: time.Now(), ExpiresAt: time.Now().Add(-time.Second)}); err == nil {
		t.Error("Sign with exp before iat succeeded")
	}
}

func decodePayload(t *testing.T, tok string) map[string]json.RawMessage {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSignRefusesReservedCustomClaims: a custom claim that is, or folds
// onto, an owned claim fails the token instead of being dropped, so a record
// the admin API would have refused is never signed around.
func TestSignRefusesReservedCustomClaims(t *testing.T) {
	ks := mustKeySet(t, testKey(t, AlgES256))
	s := NewSigner(ks, "real-issuer")
	exp := time.Now().Add(time.Minute)
	for _, name := range []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "tenant", "roles",
		"SUB", "Aud", "EXP", "Tenant", "\u017fub", "ROLES", "Sid", "JTI", "Iss", "su\u200bb", "", "a b"} {
		t.Run(name, func(t *testing.T) {
			tok, err := s.Sign(Claims{Subject: "alice", Audience: "svc", Custom: map[string]string{"team": "blue", name: "evil"}, ExpiresAt: exp})
			if !errors.Is(err, ErrInvalidClaimName) {
				t.Fatalf("Sign = %q, %v; want ErrInvalidClaimName", tok, err)
			}
		})
	}
	tok, err := s.Sign(Claims{Subject: "alice", Audience: "svc", Custom: map[string]string{"team": "blue", "https://example.com/x": "y"}, ExpiresAt: exp})
	if err != nil {
		t.Fatal(err)
	}
	_, c, err := parse(t, tok, keyfuncFromJWKS(t, ks), "real-issuer", "svc")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if c["team"] != "blue" || c["https://example.com/x"] != "y" || c["sub"] != "alice" {
		t.Errorf("claims = %v", c)
	}
}

// TestOwnedClaimsMatchPayload keeps the list of owned claims in step with
// what Sign writes: a claim added to the payload is protected from custom
// claims (and refused by the admin API) only if it is in that list.
func TestOwnedClaimsMatchPayload(t *testing.T) {
	var wrote []string
	rt := reflect.TypeOf(wireClaims{})
	for i := 0; i < rt.NumField(); i++ {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		wrote = append(wrote, name)
	}
	owned := OwnedClaims()
	slices.Sort(wrote)
	slices.Sort(owned)
	if !slices.Equal(wrote, owned) {
		t.Fatalf("Sign writes %v, OwnedClaims is %v", wrote, owned)
	}
	for _, o := range owned {
		if !IsReservedClaim(o) || !IsReservedClaim(strings.ToUpper(o)) || CheckCustomClaim(o) == nil {
			t.Errorf("%q is not reserved", o)
		}
	}
}

// RFC 7638 §3.1 example key and its thumbprint.
const (
	rfc7638N     = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
	rfc7638Thumb = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
)

func TestThumbprintRFC7638Vector(t *testing.T) {
	nb, err := base64.RawURLEncoding.DecodeString(rfc7638N)
	if err != nil {
		t.Fatal(err)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(nb), E: 65537}
	got, err := Thumbprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	if got != rfc7638Thumb {
		t.Errorf("Thumbprint = %s, want %s", got, rfc7638Thumb)
	}
}

// TestThumbprintMatchesJWKS recomputes each thumbprint from the published JWK
// members, which independently checks member selection and ordering for the
// EC and OKP cases that have no RFC vector.
func TestThumbprintMatchesJWKS(t *testing.T) {
	ks := mustKeySet(t, testKey(t, AlgES256), testKey(t, AlgEdDSA).Public(), testKey(t, AlgRS256).Public())
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(ks.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 3 {
		t.Fatalf("JWKS has %d keys, want 3: %s", len(set.Keys), ks.JWKS())
	}
	required := map[string][]string{"EC": {"crv", "kty", "x", "y"}, "OKP": {"crv", "kty", "x"}, "RSA": {"e", "kty", "n"}}
	wantAlg := map[string]string{"EC": AlgES256, "OKP": AlgEdDSA, "RSA": AlgRS256}
	for _, k := range set.Keys {
		members := required[k["kty"]]
		if members == nil {
			t.Fatalf("unexpected kty in %v", k)
		}
		sub := map[string]string{}
		for _, m := range members {
			sub[m] = k[m]
		}
		canon, _ := json.Marshal(sub) // encoding/json sorts map keys
		sum := sha256Sum(canon)
		if k["kid"] != sum {
			t.Errorf("kid %s != thumbprint %s for %s", k["kid"], sum, canon)
		}
		if k["use"] != "sig" || k["alg"] != wantAlg[k["kty"]] {
			t.Errorf("use/alg wrong in %v", k)
		}
		if _, ok := k["d"]; ok {
			t.Errorf("private member leaked in JWKS: kid %s", k["kid"])
		}
	}
	if set.Keys[0]["kid"] != ks.ActiveKID() {
		t.Errorf("active key not first in JWKS")
	}
}

func TestNewKeySetDedupAndKID(t *testing.T) {
	es := testKey(t, AlgES256)
	ed := testKey(t, AlgEdDSA)
	ks, err := NewKeySet(es, "custom-kid", es.Public(), ed.Public(), ed.Public(), ed)
	if err != nil {
		t.Fatal(err)
	}
	if ks.ActiveKID() != "custom-kid" {
		t.Errorf("ActiveKID = %s", ks.ActiveKID())
	}
	if got := len(ks.KIDs()); got != 2 {
		t.Errorf("got %d keys (%v), want 2", got, ks.KIDs())
	}
	if _, err := NewKeySet(nil, ""); err == nil {
		t.Error("NewKeySet(nil) succeeded")
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := NewKeySet(p384, ""); err == nil {
		t.Error("NewKeySet(P-384) succeeded")
	}
	if _, err := NewKeySet(es, "", p384.Public()); err == nil {
		t.Error("NewKeySet with P-384 verification key succeeded")
	}
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadKeySetFormats(t *testing.T) {
	dir := t.TempDir()
	es := testKey(t, AlgES256).(*ecdsa.PrivateKey)
	ed := testKey(t, AlgEdDSA)
	rk := testKey(t, AlgRS256).(*rsa.PrivateKey)

	pkcs8 := func(k crypto.Signer) []byte {
		b, err := EncodePrivateKeyPEM(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	sec1, _ := x509.MarshalECPrivateKey(es)
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	pkix, _ := x509.MarshalPKIXPublicKey(ed.Public())
	rsaPub := x509.MarshalPKCS1PublicKey(&rk.PublicKey)

	files := map[string]string{
		"es-pkcs8": writeFile(t, dir, "es.pem", pkcs8(es)),
		"es-sec1":  writeFile(t, dir, "es-sec1.pem", append(ecParams, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...)),
		"ed-pkcs8": writeFile(t, dir, "ed.pem", pkcs8(ed)),
		"rsa-p1":   writePEM(t, dir, "rsa1.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)),
		"rsa-p8":   writeFile(t, dir, "rsa8.pem", pkcs8(rk)),
		"ed-pub":   writePEM(t, dir, "ed.pub", "PUBLIC KEY", pkix),
		"rsa-pub":  writePEM(t, dir, "rsa.pub", "RSA PUBLIC KEY", rsaPub),
	}
	for name, alg := range map[string]string{"es-pkcs8": AlgES256, "es-sec1": AlgES256, "ed-pkcs8": AlgEdDSA, "rsa-p1": AlgRS256, "rsa-p8": AlgRS256} {
		ks, err := LoadKeySet([]string{files[name]}, nil)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if ks.Algorithm() != alg {
			t.Errorf("%s: alg %s, want %s", name, ks.Algorithm(), alg)
		}
		want, _ := Thumbprint(ks.keys[0].pub)
		if ks.ActiveKID() != want {
			t.Errorf("%s: kid is not the thumbprint", name)
		}
	}

	// es-sec1 duplicates es-pkcs8 and ed-pkcs8 duplicates ed-pub: deduplicated.
	ks, err := LoadKeySet([]string{files["es-pkcs8"], files["ed-pkcs8"], files["es-sec1"]},
		[]string{files["ed-pub"], files["rsa-pub"], files["rsa-p1"]})
	if err != nil {
		t.Fatal(err)
	}
	if ks.Algorithm() != AlgES256 || len(ks.KIDs()) != 3 {
		t.Errorf("alg %s kids %v, want ES256 with 3 keys", ks.Algorithm(), ks.KIDs())
	}

	// A public key cannot be a signing key.
	if _, err := LoadKeySet([]string{files["ed-pub"]}, nil); err == nil || !strings.Contains(err.Error(), files["ed-pub"]) {
		t.Errorf("public key as signing key: err = %v", err)
	}
	if _, err := LoadKeySet(nil, []string{files["ed-pub"]}); err == nil {
		t.Error("LoadKeySet without signing files succeeded")
	}
}

func TestLoadKeySetRejects(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.pem", mustPEM(t, testKey(t, AlgEdDSA)))
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384der, _ := x509.MarshalECPrivateKey(p384)
	p384pub, _ := x509.MarshalPKIXPublicKey(p384.Public())
	weakPub, _ := x509.MarshalPKIXPublicKey(weak.Public())
	es, _ := x509.MarshalPKCS8PrivateKey(testKey(t, AlgES256))

	cases := map[string]struct {
		path       string
		verifyOnly bool
		want       string
	}{
		"weak rsa":         {writePEM(t, dir, "weak.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(weak)), false, "too weak"},
		"weak rsa pub":     {writePEM(t, dir, "weak.pub", "PUBLIC KEY", weakPub), true, "too weak"},
		"p384":             {writePEM(t, dir, "p384.pem", "EC PRIVATE KEY", p384der), false, "P-384"},
		"p384 pub":         {writePEM(t, dir, "p384.pub", "PUBLIC KEY", p384pub), true, "P-384"},
		"garbage":          {writeFile(t, dir, "garbage.pem", []byte("not a key at all\n")), false, "no PEM data"},
		"garbage verify":   {writeFile(t, dir, "garbage2.pem", []byte("\x00\x01\x02")), true, "no PEM data"},
		"bad der":          {writePEM(t, dir, "bad.pem", "PRIVATE KEY", []byte{1, 2, 3}), false, "parse"},
		"cert only":        {writePEM(t, dir, "cert.pem", "CERTIFICATE", []byte{1, 2, 3}), true, "no supported key"},
		"encrypted":        {writePEM(t, dir, "enc.pem", "ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}), false, "encrypted"},
		"missing":          {filepath.Join(dir, "nope.pem"), false, "no such file"},
		"two keys":         {writeFile(t, dir, "two.pem", append(mustPEM(t, testKey(t, AlgEdDSA)), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: es})...)), false, "more than one key"},
		"wrong label sec1": {writePEM(t, dir, "label.pem", "RSA PRIVATE KEY", p384der), false, "parse"},
	}
	for name, tc := range cases {
		var err error
		if tc.verifyOnly {
			_, err = LoadKeySet([]string{good}, []string{tc.path})
		} else {
			_, err = LoadKeySet([]string{tc.path}, nil)
		}
		if err == nil {
			t.Errorf("%s: LoadKeySet succeeded, want error", name)
			continue
		}
		if !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: error %q does not name file %s", name, err, tc.path)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not mention %q", name, err, tc.want)
		}
	}
}

func mustPEM(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	b, err := EncodePrivateKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSetKeysSwapsSigningKey(t *testing.T) {
	ks1 := mustKeySet(t, testKey(t, AlgES256))
	ks2 := mustKeySet(t, testKey(t, AlgEdDSA), testKey(t, AlgES256).Public())
	s := NewSigner(ks1, "iss")
	s.SetKeys(ks2)
	s.SetKeys(nil) // ignored
	if s.Keys() != ks2 || s.Issuer() != "iss" {
		t.Fatal("SetKeys did not install the new set")
	}
	tok, err := s.Sign(Claims{Subject: "u", Audience: "a", ExpiresAt: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	parsed, _, err := parse(t, tok, keyfuncFromJWKS(t, ks2), "iss", "a")
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Header["alg"] != AlgEdDSA {
		t.Errorf("alg = %v after swap", parsed.Header["alg"])
	}
}

func TestEd25519PointerKey(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := NewKeySet(&priv, ""); err != nil {
		t.Errorf("*ed25519.PrivateKey rejected: %v", err)
	}
}

func BenchmarkSign(b *testing.B) {
	for _, alg := range allAlgs {
		b.Run(alg, func(b *testing.B) {
			s := NewSigner(mustKeySet(b, testKey(b, alg)), "https://sessiongate.internal")
			c := Claims{
				Subject: "user-42", Tenant: "acme", SessionRef: "sref", Audience: "internal",
				Roles:     []string{"admin", "dev"},
				Custom:    map[string]string{"email": "a@example.com"},
				ExpiresAt: time.Now().Add(time.Hour),
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.Sign(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func sha256Sum(b []byte) string {
	sum := sha256.Sum256(b)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestKeyFilesNamedKIDs(t *testing.T) {
	dir := t.TempDir()
	write := func(name string) string {
		t.Helper()
		k, err := GenerateKey(AlgES256)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := EncodePrivateKeyPEM(k)
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, p, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	a, b, c := write("a.pem"), write("b.pem"), write("c.pem")
	ks, err := KeyFiles{Signing: []string{a, b}, Verification: []string{c}, KIDs: map[string]string{a: "2026-11", c: "next"}}.Load()
	if err != nil {
		t.Fatal(err)
	}
	kids := ks.KIDs()
	if ks.ActiveKID() != "2026-11" || len(kids) != 3 || kids[2] != "next" {
		t.Fatalf("kids = %q", kids)
	}
	if pub, _ := ks.PublicKey(kids[1]); pub == nil {
		t.Fatal("unnamed key lost")
	}
	if tp, _ := Thumbprint(mustPublic(t, ks, kids[1])); tp != kids[1] {
		t.Fatalf("unnamed key's kid %q is not its thumbprint %q", kids[1], tp)
	}
	if !strings.Contains(string(ks.JWKS()), `"kid":"next"`) {
		t.Fatalf("JWKS lacks named kid: %s", ks.JWKS())
	}
}

func mustPublic(t *testing.T, ks *KeySet, kid string) crypto.PublicKey {
	t.Helper()
	p, ok := ks.PublicKey(kid)
	if !ok {
		t.Fatalf("no key %q", kid)
	}
	return p
}
