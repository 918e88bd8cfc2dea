package token

import (
	"errors"
	"fmt"
	"strings"
)

// ownedClaims are the claim names the Signer writes itself (wireClaims; a
// test keeps the two in step). It is the one list the admin API, the
// session record decoder and pkg/verify consult, so a claim added to the
// token is protected everywhere at once.
var ownedClaims = [...]string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "sid", "tenant", "roles", "kind", "act"}

// Token kinds, the value of the kind claim. A user token speaks for a
// session, a service token for a registered service. The two must never be
// taken for one another (RFC 8725 §3.11), so each is typed twice: by the
// kind claim, and by the JOSE header's typ, which a verifier can check
// before reading any claim. User tokens keep typ JWT, as before the kinds
// existed, so verifiers that pin it keep working; a token without kind is
// a user token.
const (
	KindUser    = "user"
	KindService = "service"

	TypUser    = "JWT"
	TypService = "service+jwt"
)

// MaxCustomClaimName bounds the length of a custom claim name.
const MaxCustomClaimName = 128

// ErrInvalidClaimName is returned (wrapped) for a custom claim name that
// CheckCustomClaim refuses.
var ErrInvalidClaimName = errors.New("invalid custom claim name")

// OwnedClaims returns the claim names the Signer owns.
func OwnedClaims() []string { return append([]string(nil), ownedClaims[:]...) }

// IsReservedClaim reports whether name is, or case-folds onto, a claim the
// Signer owns. Folding matters because encoding/json matches object keys to
// struct fields with strings.EqualFold and keeps the last of two matches:
// a custom "SUB" or "\u017Fub" written after the real "sub" is what every
// Go service decoding claims into a struct (golang-jwt's RegisteredClaims
// included) reads as the subject.
func IsReservedClaim(name string) bool {
	for _, o := range ownedClaims {
		if strings.EqualFold(name, o) {
			return true
		}
	}
	return false
}

// CheckCustomClaim returns an error wrapping ErrInvalidClaimName unless name
// may be used as a custom claim: 1 to MaxCustomClaimName characters from
// A-Z a-z 0-9 _ - . : / and not reserved (IsReservedClaim).
//
// The charset is deliberately ASCII. Case folding is only agreed on for
// ASCII: Go folds U+017F to s and U+212A to k, Python's casefold maps ß to
// ss, NFKC maps fullwidth ｓｕｂ to sub, and default-ignorable code points
// (U+200B, U+00AD, U+FEFF) make two names look identical in logs and
// dashboards while comparing different. Refusing every non-ASCII name ends
// all of that at once, where a list of dangerous code points would always
// be one short. The punctuation kept covers dotted, namespaced and
// URI-style (RFC 7519 §4.2) names.
func CheckCustomClaim(name string) error {
	if name == "" || len(name) > MaxCustomClaimName {
		return fmt.Errorf("%w: %q must be 1 to %d characters", ErrInvalidClaimName, name, MaxCustomClaimName)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '-' || c == '.' || c == ':' || c == '/') {
			return fmt.Errorf("%w: %q may only hold A-Z a-z 0-9 _ - . : /", ErrInvalidClaimName, name)
		}
	}
	if IsReservedClaim(name) {
		return fmt.Errorf("%w: %q is, or case-folds onto, a claim sessiongate sets", ErrInvalidClaimName, name)
	}
	return nil
}
