package verify

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiongate/sessiongate/pkg/token"
)

// The token is read exactly, with a token-level JSON decoder, instead of
// through encoding/json struct decoding. Struct decoding matches member
// names case-insensitively (with Unicode folding: "\u017fub" is sub) and
// keeps the last of two, so a token naming "sub" twice, or "SUB" next to
// "sub", means one thing to this package and another to the next parser on
// the path. Here a member name means exactly itself, a name given twice is
// refused, and a name that folds onto a claim sessiongate owns without
// being it is refused too: sessiongate never signs one.

// errMalformed wraps every refusal of the exact read, so callers can match
// jwt.ErrTokenMalformed as they could before.
func errMalformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", jwt.ErrTokenMalformed, fmt.Sprintf(format, args...))
}

// headerNames are the header parameters this package reads or that carry
// meaning to any JOSE implementation; a member that folds onto one but is
// not it can only be an attempt to be read differently elsewhere.
var headerNames = []string{"alg", "kid", "typ", "crit", "cty", "jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "b64", "zip", "enc"}

// checkHeader reads the JOSE header exactly: one object, no member twice at
// any depth, no member folding onto a known parameter, and no crit. RFC 7515
// §4.1.11 requires a verifier to refuse a token whose crit lists a parameter
// it does not understand; this package understands no extension, so any
// crit is refused, and a crit that is not a non-empty array of strings is
// malformed.
func checkHeader(segment string) error {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(segment)
	if err != nil {
		return errMalformed("header: %v", err)
	}
	return eachMember(raw, "header", func(dec *json.Decoder, name string) error {
		for _, h := range headerNames {
			if name != h && strings.EqualFold(name, h) {
				return errMalformed("header: member %q folds onto %q", name, h)
			}
		}
		if name == "crit" {
			crit, err := readStrings(dec)
			if err != nil || len(crit) == 0 {
				return errMalformed("header: crit must be a non-empty array of names")
			}
			return fmt.Errorf("%w: header: critical parameters %q not understood", jwt.ErrTokenUnverifiable, crit)
		}
		if _, _, err := readValue(dec); err != nil {
			return errMalformed("header: %s: %v", name, err)
		}
		return nil
	})
}

// owned are the claims sessiongate sets, by exact name.
var owned = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range token.OwnedClaims() {
		m[c] = true
	}
	return m
}()

// exactClaims is what golang-jwt decodes the payload into: UnmarshalJSON
// does the exact read, and the jwt.Claims methods golang-jwt validates
// (exp, nbf, iat, iss, aud) answer from it, so what is checked and what is
// returned are one reading of the signed bytes.
type exactClaims struct {
	c             Claims
	exp, nbf, iat *jwt.NumericDate
	audience      jwt.ClaimStrings
}

var _ jwt.Claims = (*exactClaims)(nil)

func (e *exactClaims) GetExpirationTime() (*jwt.NumericDate, error) { return e.exp, nil }
func (e *exactClaims) GetNotBefore() (*jwt.NumericDate, error)      { return e.nbf, nil }
func (e *exactClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return e.iat, nil }
func (e *exactClaims) GetAudience() (jwt.ClaimStrings, error)       { return e.audience, nil }
func (e *exactClaims) GetIssuer() (string, error)                   { return e.c.Issuer, nil }
func (e *exactClaims) GetSubject() (string, error)                  { return e.c.Subject, nil }

// UnmarshalJSON reads the payload exactly. golang-jwt calls it through
// json.Unmarshal, which has already refused invalid JSON and trailing data.
func (e *exactClaims) UnmarshalJSON(b []byte) error {
	*e = exactClaims{}
	err := eachMember(b, "claims", func(dec *json.Decoder, name string) error {
		if err := e.member(dec, name); err != nil {
			return errMalformed("claims: %s: %v", name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.c.Audience = []string(e.audience)
	e.c.IssuedAt, e.c.NotBefore, e.c.ExpiresAt = timeOf(e.iat), timeOf(e.nbf), timeOf(e.exp)
	return nil
}

// member reads one claim's value into e.
func (e *exactClaims) member(dec *json.Decoder, name string) error {
	var err error
	switch name {
	case "iss":
		e.c.Issuer, err = readString(dec)
	case "sub":
		e.c.Subject, err = readString(dec)
	case "jti":
		e.c.ID, err = readString(dec)
	case "sid":
		e.c.SessionRef, err = readString(dec)
	case "tenant":
		e.c.Tenant, err = readString(dec)
	case "roles":
		e.c.Roles, err = readStrings(dec)
	case "kind":
		e.c.Kind, err = readString(dec)
	case "act":
		e.c.Actor, err = readActor(dec, 1)
	case "aud":
		e.audience, err = readAudience(dec)
	case "exp":
		e.exp, err = readNumericDate(dec)
	case "nbf":
		e.nbf, err = readNumericDate(dec)
	case "iat":
		e.iat, err = readNumericDate(dec)
	default:
		if owned[name] {
			// A claim a newer sessiongate sets that this version does not
			// read: neither refused nor passed off as a custom claim.
			_, _, err = readValue(dec)
			return err
		}
		if token.IsReservedClaim(name) {
			return errors.New("name folds onto a claim sessiongate sets")
		}
		s, isString, err := readValue(dec)
		if err != nil {
			return err
		}
		if isString { // sessiongate only emits string custom claims
			if e.c.Custom == nil {
				e.c.Custom = map[string]string{}
			}
			e.c.Custom[name] = s
		}
	}
	return err
}

// eachMember reads raw as exactly one JSON object whose member names are
// all different, calling member with the decoder at each member's value.
// What member returns is returned as it is; a structural fault is malformed
// and named after what (header, claims).
func eachMember(raw []byte, what string, member func(dec *json.Decoder, name string) error) error {
	dec := newDecoder(raw)
	if err := expectDelim(dec, '{'); err != nil {
		return errMalformed("%s: %v", what, err)
	}
	seen := map[string]bool{}
	for dec.More() {
		name, err := readKey(dec, seen)
		if err != nil {
			return errMalformed("%s: %v", what, err)
		}
		if err := member(dec, name); err != nil {
			return err
		}
	}
	if err := expectEnd(dec); err != nil {
		return errMalformed("%s: %v", what, err)
	}
	return nil
}

func newDecoder(b []byte) *json.Decoder {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec
}

func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != d {
		return fmt.Errorf("want %v, got %v", d, tok)
	}
	return nil
}

// expectEnd consumes the closing brace of the top-level object and requires
// nothing after it.
func expectEnd(dec *json.Decoder) error {
	if err := expectDelim(dec, '}'); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the object")
	}
	return nil
}

// readKey reads an object member's name and refuses one already seen.
func readKey(dec *json.Decoder, seen map[string]bool) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", err
	}
	name, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("want a member name, got %v", tok)
	}
	if seen[name] {
		return "", fmt.Errorf("member %q given twice", name)
	}
	seen[name] = true
	return name, nil
}

func readString(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", err
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("want a string, got %T", tok)
	}
	return s, nil
}

// readActor reads an act claim exactly (RFC 8693 §4.1): an object with a
// string sub and, optionally, a nested act, nothing else, at most
// token.MaxActorDepth deep. A name given twice, an unknown member or a
// missing sub is malformed: an actor is who a verifier holds to account,
// and it must read the same to every parser.
func readActor(dec *json.Decoder, depth int) (*Actor, error) {
	if depth > token.MaxActorDepth {
		return nil, fmt.Errorf("act chain deeper than %d", token.MaxActorDepth)
	}
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	a := &Actor{}
	seen := map[string]bool{}
	for dec.More() {
		name, err := readKey(dec, seen)
		if err != nil {
			return nil, err
		}
		switch name {
		case "sub":
			a.Subject, err = readString(dec)
		case "act":
			a.Actor, err = readActor(dec, depth+1)
		default:
			err = fmt.Errorf("unknown member %q", name)
		}
		if err != nil {
			return nil, err
		}
	}
	if a.Subject == "" {
		return nil, errors.New("act without sub")
	}
	return a, expectDelim(dec, '}')
}

// readStrings reads an array of strings (never null).
func readStrings(dec *json.Decoder) ([]string, error) {
	if err := expectDelim(dec, '['); err != nil {
		return nil, err
	}
	out := []string{}
	for dec.More() {
		s, err := readString(dec)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, expectDelim(dec, ']')
}

// readAudience reads aud as RFC 7519 §4.1.3 allows it: a string or an array
// of strings.
func readAudience(dec *json.Decoder) (jwt.ClaimStrings, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch v := tok.(type) {
	case string:
		return jwt.ClaimStrings{v}, nil
	case json.Delim:
		if v != '[' {
			break
		}
		out := jwt.ClaimStrings{}
		for dec.More() {
			s, err := readString(dec)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, expectDelim(dec, ']')
	}
	return nil, fmt.Errorf("want a string or an array of strings, got %v", tok)
}

// maxNumericDate is the start of year 10000: anything later is no date a
// signer meant.
const maxNumericDate = 253402300800

// readNumericDate reads a JSON number of seconds (RFC 7519 §2 NumericDate).
// A string, however numeric it looks, is refused.
func readNumericDate(dec *json.Decoder) (*jwt.NumericDate, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	n, ok := tok.(json.Number)
	if !ok {
		return nil, fmt.Errorf("want a number, got %T", tok)
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsNaN(f) || f < 0 || f >= maxNumericDate {
		return nil, fmt.Errorf("number %s out of range", n)
	}
	sec, frac := math.Modf(f)
	t := time.Unix(int64(sec), int64(frac*1e9)).Truncate(jwt.TimePrecision)
	return jwt.NewNumericDate(t), nil
}

// readValue reads any JSON value, refusing a member given twice in any
// object inside it, and returns it when it is a string.
func readValue(dec *json.Decoder) (s string, isString bool, err error) {
	type frame struct {
		seen   map[string]bool
		object bool
	}
	var stack []frame
	for {
		// Inside an object, a member name comes before each value.
		if n := len(stack); n > 0 && stack[n-1].object && dec.More() {
			if _, err := readKey(dec, stack[n-1].seen); err != nil {
				return "", false, err
			}
		}
		tok, err := dec.Token()
		if err != nil {
			return "", false, err
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, frame{seen: map[string]bool{}, object: true})
			case '[':
				stack = append(stack, frame{})
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			if len(stack) == 0 {
				return v, true, nil
			}
		}
		if len(stack) == 0 {
			return "", false, nil
		}
	}
}

func timeOf(d *jwt.NumericDate) time.Time {
	if d == nil {
		return time.Time{}
	}
	return d.Time
}
