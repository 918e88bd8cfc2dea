package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
)

// maxJWKSBytes bounds a JWKS response; sessiongate's is well under 4 KiB.
const maxJWKSBytes = 1 << 20

// privateMembers are JWK members that carry secret key material: the
// private parts of EC, OKP and RSA keys (RFC 7518 §6.2.2, §6.3.2, RFC 8037)
// and the key of a symmetric one (§6.4.1). A published key holding one is a
// leak upstream; jwkset would parse it and keyfunc would verify with its
// public half, so it is cut out before either sees it.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// jwksFilter is the JWKS client's transport: each successful response has
// every key holding private material removed, and one Error line per such
// key is logged, so a leak is reported once per fetch, not per request.
type jwksFilter struct {
	base http.RoundTripper
	log  *slog.Logger
}

func (f *jwksFilter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := f.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read JWKS: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("JWKS larger than %d bytes", maxJWKSBytes)
	}
	kept, refused, err := filterJWKS(body)
	if err != nil {
		// Refusing the whole response keeps the keys from the last good
		// fetch; jwkset reports the error through RefreshErrorHandler.
		return nil, fmt.Errorf("JWKS from %s: %w", req.URL.Redacted(), err)
	}
	for _, kid := range refused {
		f.log.ErrorContext(req.Context(), "JWKS key carries private key material; refused, and the key must be rotated",
			"url", req.URL.Redacted(), "kid", kid)
	}
	resp.Body = io.NopCloser(bytes.NewReader(kept))
	resp.ContentLength = int64(len(kept))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// filterJWKS returns the JWK Set without the keys that hold private
// material, and the kids (or positions) of those it removed. Member names
// are compared case-insensitively, as jwkset's struct decoding would match
// them.
func filterJWKS(body []byte) (kept []byte, refused []string, err error) {
	var set map[string]json.RawMessage
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	var keys []json.RawMessage
	if err := json.Unmarshal(set["keys"], &keys); err != nil || keys == nil {
		return nil, nil, errors.New(`not a JWK Set: no "keys" array`)
	}
	out := make([]json.RawMessage, 0, len(keys))
	for i, k := range keys {
		var members map[string]json.RawMessage
		if err := json.Unmarshal(k, &members); err != nil {
			return nil, nil, fmt.Errorf("key %d: %w", i, err)
		}
		if private(members) {
			var kid string
			if json.Unmarshal(members["kid"], &kid) != nil || kid == "" {
				kid = "#" + strconv.Itoa(i)
			}
			refused = append(refused, kid)
			continue
		}
		out = append(out, k)
	}
	kept, err = json.Marshal(map[string][]json.RawMessage{"keys": out})
	return kept, refused, err
}

func private(members map[string]json.RawMessage) bool {
	for name := range members {
		for _, p := range privateMembers {
			if strings.EqualFold(name, p) {
				return true
			}
		}
	}
	return false
}
