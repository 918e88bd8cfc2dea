package token

import (
	"context"
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
	"fmt"
	"math/big"
	"os"
	"strings"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Supported JWS algorithms. Each maps to exactly one key type so the alg in a
// token header can never be used to reinterpret a key (alg confusion).
const (
	AlgES256 = "ES256"
	AlgEdDSA = "EdDSA"
	AlgRS256 = "RS256"
)

// MinRSABits is the smallest RSA modulus accepted for signing or verification.
const MinRSABits = 2048

// generatedRSABits is larger than MinRSABits so freshly generated keys keep a
// margin for the years they may stay in service.
const generatedRSABits = 3072

// GenerateKey creates a new signing key for alg: "ES256" (P-256), "EdDSA"
// (Ed25519) or "RS256" (3072-bit RSA).
func GenerateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case AlgES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate %s key: %w", alg, err)
		}
		return k, nil
	case AlgEdDSA:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate %s key: %w", alg, err)
		}
		return k, nil
	case AlgRS256:
		k, err := rsa.GenerateKey(rand.Reader, generatedRSABits)
		if err != nil {
			return nil, fmt.Errorf("generate %s key: %w", alg, err)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("generate key: unsupported algorithm %q (want ES256, EdDSA or RS256)", alg)
	}
}

// EncodePrivateKeyPEM encodes k as a PKCS#8 "PRIVATE KEY" PEM block, the one
// format LoadKeySet accepts for every key type.
func EncodePrivateKeyPEM(k crypto.Signer) ([]byte, error) {
	nk, err := normalizeSigner(k)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(nk)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// publicKey is one verification key as published in the JWKS.
type publicKey struct {
	kid string
	alg string
	pub crypto.PublicKey
}

// KeySet is an immutable set of keys: exactly one active signing key plus any
// number of verification-only public keys (e.g. the previous signing key
// during a rotation). It is safe for concurrent use because nothing in it
// ever changes after construction; rotation means building a new KeySet.
type KeySet struct {
	method  jwt.SigningMethod
	signKey crypto.Signer // concrete type expected by method.Sign
	// header is the base64url-encoded JOSE header. It is identical for every
	// token signed with this set, so it is encoded once here instead of per
	// Sign call.
	header string
	// serviceHeader is the same with typ service+jwt (see Claims.Kind).
	serviceHeader string
	keys          []publicKey // keys[0] is the active key
	jwks          []byte
	etag          string
}

// NewKeySet builds a KeySet whose active signing key is active. An empty
// activeKID means the RFC 7638 thumbprint of the public key, which gives
// stable kids across restarts and replicas without coordination.
// Verification-only keys always get their thumbprint as kid; keys equal to
// one already in the set are dropped.
func NewKeySet(active crypto.Signer, activeKID string, verifyOnly ...crypto.PublicKey) (*KeySet, error) {
	return newKeySet(active, activeKID, verifyOnly, nil)
}

// newKeySet is NewKeySet with optional kids for the verification keys
// (verifyKIDs[i] names verifyOnly[i]; "" or a short slice = thumbprint).
func newKeySet(active crypto.Signer, activeKID string, verifyOnly []crypto.PublicKey, verifyKIDs []string) (*KeySet, error) {
	signKey, err := normalizeSigner(active)
	if err != nil {
		return nil, fmt.Errorf("active key: %w", err)
	}
	alg, err := algorithmFor(signKey.Public())
	if err != nil {
		return nil, fmt.Errorf("active key: %w", err)
	}
	if activeKID == "" {
		activeKID, err = Thumbprint(signKey.Public())
		if err != nil {
			return nil, fmt.Errorf("active key: %w", err)
		}
	}
	ks := &KeySet{
		method:  jwt.GetSigningMethod(alg),
		signKey: signKey,
		keys:    []publicKey{{kid: activeKID, alg: alg, pub: signKey.Public()}},
	}
	for i, vk := range verifyOnly {
		pub, err := normalizePublic(vk)
		if err != nil {
			return nil, fmt.Errorf("verification key %d: %w", i, err)
		}
		valg, err := algorithmFor(pub)
		if err != nil {
			return nil, fmt.Errorf("verification key %d: %w", i, err)
		}
		kid := ""
		if i < len(verifyKIDs) {
			kid = verifyKIDs[i]
		}
		if kid == "" {
			if kid, err = Thumbprint(pub); err != nil {
				return nil, fmt.Errorf("verification key %d: %w", i, err)
			}
		}
		if err := ks.add(publicKey{kid: kid, alg: valg, pub: pub}); err != nil {
			return nil, fmt.Errorf("verification key %d: %w", i, err)
		}
	}

	if ks.header, err = joseHeader(alg, activeKID, TypUser); err != nil {
		return nil, err
	}
	if ks.serviceHeader, err = joseHeader(alg, activeKID, TypService); err != nil {
		return nil, err
	}

	if ks.jwks, err = buildJWKS(ks.keys); err != nil {
		return nil, err
	}
	ks.etag = strongETag(ks.jwks)
	return ks, nil
}

// add appends k unless an equal key is already present. A kid collision with
// a different key is an error: it would make verification ambiguous.
func (ks *KeySet) add(k publicKey) error {
	for _, have := range ks.keys {
		same := publicEqual(have.pub, k.pub)
		if same {
			return nil
		}
		if have.kid == k.kid {
			return fmt.Errorf("kid %q already used by a different key", k.kid)
		}
	}
	ks.keys = append(ks.keys, k)
	return nil
}

// ActiveKID is the kid placed in the header of every token signed with ks.
func (ks *KeySet) ActiveKID() string { return ks.keys[0].kid }

// Algorithm is the JWS alg of the active key: "ES256", "EdDSA" or "RS256".
func (ks *KeySet) Algorithm() string { return ks.keys[0].alg }

// KIDs lists the kids of every key in the set, active key first.
func (ks *KeySet) KIDs() []string {
	out := make([]string, len(ks.keys))
	for i, k := range ks.keys {
		out[i] = k.kid
	}
	return out
}

// PublicKey returns the public key for kid, for in-process verification
// (tests, health checks) without going through the JWKS.
func (ks *KeySet) PublicKey(kid string) (crypto.PublicKey, bool) {
	for _, k := range ks.keys {
		if k.kid == kid {
			return k.pub, true
		}
	}
	return nil, false
}

// JWKS returns the public JWK Set JSON of every key in the set. The returned
// slice is shared; callers must not modify it.
func (ks *KeySet) JWKS() []byte { return ks.jwks }

// ETag is the strong HTTP entity tag of JWKS().
func (ks *KeySet) ETag() string { return ks.etag }

func buildJWKS(keys []publicKey) ([]byte, error) {
	store := jwkset.NewMemoryStorage()
	ctx := context.Background()
	for _, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.pub, jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{
				ALG: jwkset.ALG(k.alg),
				KID: k.kid,
				USE: jwkset.UseSig,
			},
		})
		if err != nil {
			return nil, fmt.Errorf("build JWK for kid %q: %w", k.kid, err)
		}
		if err := store.KeyWrite(ctx, jwk); err != nil {
			return nil, fmt.Errorf("build JWK set: %w", err)
		}
	}
	raw, err := store.JSONPublic(ctx)
	if err != nil {
		return nil, fmt.Errorf("marshal JWK set: %w", err)
	}
	return raw, nil
}

// normalizeSigner returns the concrete private key type golang-jwt expects
// for signing. Opaque signers (HSM/KMS) are rejected because jwt's ECDSA and
// RSA methods type-assert concrete keys.
func normalizeSigner(s crypto.Signer) (crypto.Signer, error) {
	switch k := s.(type) {
	case nil:
		return nil, errors.New("no key")
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return nil, errors.New("malformed Ed25519 private key")
		}
		return k, nil
	case *ed25519.PrivateKey:
		if k == nil || len(*k) != ed25519.PrivateKeySize {
			return nil, errors.New("malformed Ed25519 private key")
		}
		return *k, nil
	case *rsa.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("unsupported private key type %T", s)
	}
}

func normalizePublic(p crypto.PublicKey) (crypto.PublicKey, error) {
	// A private key passed here is reduced to its public half, so the
	// private part can never reach the JWKS.
	if s, ok := p.(crypto.Signer); ok {
		p = s.Public()
	}
	switch k := p.(type) {
	case nil:
		return nil, errors.New("no key")
	case *ecdsa.PublicKey, *rsa.PublicKey:
		return k, nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("malformed Ed25519 public key")
		}
		return k, nil
	case *ed25519.PublicKey:
		if k == nil || len(*k) != ed25519.PublicKeySize {
			return nil, errors.New("malformed Ed25519 public key")
		}
		return *k, nil
	default:
		return nil, fmt.Errorf("unsupported public key type %T", p)
	}
}

// algorithmFor enforces the key policy (P-256 only, RSA >= 2048 bits,
// Ed25519) and returns the single alg allowed for the key.
func algorithmFor(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("unsupported EC curve %s: only P-256 (ES256) is allowed", k.Curve.Params().Name)
		}
		return AlgES256, nil
	case ed25519.PublicKey:
		return AlgEdDSA, nil
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < MinRSABits {
			return "", fmt.Errorf("RSA key of %d bits is too weak: at least %d bits required", bits, MinRSABits)
		}
		return AlgRS256, nil
	default:
		return "", fmt.Errorf("unsupported key type %T", pub)
	}
}

func publicEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}

// Thumbprint computes the RFC 7638 JWK thumbprint (SHA-256, base64url without
// padding) of pub. The canonical JSON holds only the required members in
// lexicographic order with no whitespace; all values are base64url or fixed
// ASCII names, so no JSON escaping is ever needed.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	var canon string
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("thumbprint: unsupported EC curve %s", k.Curve.Params().Name)
		}
		raw, err := k.Bytes() // 0x04 || X || Y, coordinates fixed-width
		if err != nil {
			return "", fmt.Errorf("thumbprint: %w", err)
		}
		n := (len(raw) - 1) / 2
		canon = `{"crv":"P-256","kty":"EC","x":"` + b64(raw[1:1+n]) + `","y":"` + b64(raw[1+n:]) + `"}`
	case ed25519.PublicKey:
		canon = `{"crv":"Ed25519","kty":"OKP","x":"` + b64(k) + `"}`
	case *rsa.PublicKey:
		// RFC 7518 encodes n and e as minimal big-endian octets.
		canon = `{"e":"` + b64(big.NewInt(int64(k.E)).Bytes()) + `","kty":"RSA","n":"` + b64(k.N.Bytes()) + `"}`
	default:
		return "", fmt.Errorf("thumbprint: unsupported key type %T", pub)
	}
	sum := sha256.Sum256([]byte(canon))
	return b64(sum[:]), nil
}

// LoadKeySet reads PEM key files. signingFiles[0] becomes the active signing
// key; further signing files and all verification files are published for
// verification only, which is how a rotation overlaps old and new keys.
//
// Private keys may be PKCS#8 ("PRIVATE KEY"), SEC1 ("EC PRIVATE KEY") or
// PKCS#1 ("RSA PRIVATE KEY"); verification files may additionally hold PKIX
// ("PUBLIC KEY") or PKCS#1 ("RSA PUBLIC KEY") public keys. Every kid is the
// RFC 7638 thumbprint (KeyFiles.KIDs can name others). Errors name the offending file but never include key
// material.
func LoadKeySet(signingFiles, verificationFiles []string) (*KeySet, error) {
	return KeyFiles{Signing: signingFiles, Verification: verificationFiles}.Load()
}

// KeyFiles names the key files of a KeySet, and optionally the kid of some
// of them. A named kid replaces the thumbprint, for operators whose
// verifiers or runbooks refer to keys by a name of their own (a date, a
// KMS alias).
type KeyFiles struct {
	Signing      []string          // first is active; the rest stay published
	Verification []string          // published, never used to sign
	KIDs         map[string]string // file path → kid; files not listed get their thumbprint
}

// Load reads and checks every file and builds the KeySet.
func (f KeyFiles) Load() (*KeySet, error) {
	if len(f.Signing) == 0 {
		return nil, errors.New("load key set: no signing key file configured")
	}
	var active crypto.Signer
	var verify []crypto.PublicKey
	var verifyKIDs []string
	for i, path := range f.Signing {
		k, err := readKeyFile(path, false)
		if err != nil {
			return nil, fmt.Errorf("load signing key %s: %w", path, err)
		}
		s := k.(crypto.Signer) // private-only parsing guarantees a Signer
		if i == 0 {
			active = s
		} else {
			verify = append(verify, s.Public())
			verifyKIDs = append(verifyKIDs, f.KIDs[path])
		}
	}
	for _, path := range f.Verification {
		k, err := readKeyFile(path, true)
		if err != nil {
			return nil, fmt.Errorf("load verification key %s: %w", path, err)
		}
		verify = append(verify, k)
		verifyKIDs = append(verifyKIDs, f.KIDs[path])
	}
	ks, err := newKeySet(active, f.KIDs[f.Signing[0]], verify, verifyKIDs)
	if err != nil {
		return nil, fmt.Errorf("load key set: %w", err)
	}
	return ks, nil
}

// readKeyFile parses exactly one key from a PEM file and checks it against
// the key policy, so that the caller can attribute any problem to the file.
func readKeyFile(path string, allowPublic bool) (crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := parsePEMKey(data, allowPublic)
	if err != nil {
		return nil, err
	}
	pub := key
	if s, ok := key.(crypto.Signer); ok {
		if _, err := normalizeSigner(s); err != nil {
			return nil, err
		}
		pub = s.Public()
	}
	if pub, err = normalizePublic(pub); err != nil {
		return nil, err
	}
	if _, err := algorithmFor(pub); err != nil {
		return nil, err
	}
	if allowPublic {
		return pub, nil
	}
	return key, nil
}

// parsePEMKey returns the single key in data. Non-key blocks such as
// "EC PARAMETERS" (emitted by `openssl ecparam -genkey`) are skipped; more
// than one key is refused because which one is meant would be a guess.
func parsePEMKey(data []byte, allowPublic bool) (crypto.PublicKey, error) {
	var (
		found crypto.PublicKey
		seen  []string
	)
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		seen = append(seen, block.Type)
		if strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("encrypted PEM keys are not supported")
		}
		var (
			k   crypto.PublicKey
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "PUBLIC KEY":
			if !allowPublic {
				return nil, errors.New("found a public key where a private signing key is required")
			}
			k, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			if !allowPublic {
				return nil, errors.New("found a public key where a private signing key is required")
			}
			k, err = x509.ParsePKCS1PublicKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %q PEM block: %w", block.Type, err)
		}
		if found != nil {
			return nil, errors.New("more than one key in file")
		}
		found = k
	}
	if found == nil {
		if len(seen) == 0 {
			return nil, errors.New("no PEM data found")
		}
		return nil, fmt.Errorf("no supported key found (PEM blocks: %s)", strings.Join(seen, ", "))
	}
	return found, nil
}

// joseHeader encodes the JOSE header of every token of one type signed with
// one key.
func joseHeader(alg, kid, typ string) (string, error) {
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{alg, kid, typ})
	if err != nil {
		return "", fmt.Errorf("encode JOSE header: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(hdr), nil
}
