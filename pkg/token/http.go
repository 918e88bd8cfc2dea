package token

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SupportedAlgorithms lists every alg a sessiongate token may carry.
var SupportedAlgorithms = []string{AlgES256, AlgEdDSA, AlgRS256}

// JWKSHandler serves the current public JWK Set. It reads the signer's key
// set on every request, so a key swap is visible immediately; the strong ETag
// lets verifiers revalidate cheaply instead of refetching the body.
func (s *Signer) JWKSHandler(maxAge time.Duration) http.Handler {
	cacheControl := cacheControlFor(maxAge)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ks := s.Keys()
		if ks == nil {
			http.Error(w, "no keys", http.StatusServiceUnavailable)
			return
		}
		serveStatic(w, r, ks.jwks, ks.etag, cacheControl)
	})
}

// DiscoveryHandler serves a minimal OpenID Provider metadata document
// (/.well-known/openid-configuration) so that generic JWT libraries can find
// the JWKS from the issuer alone. sessiongate is not an OAuth server, so only
// the fields relevant to verification are published.
func DiscoveryHandler(issuer, jwksURL string) http.Handler {
	body, err := json.Marshal(struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}{issuer, jwksURL, SupportedAlgorithms})
	if err != nil {
		// Only strings are marshalled; this cannot fail.
		panic("token: encode discovery document: " + err.Error())
	}
	etag := strongETag(body)
	cacheControl := cacheControlFor(time.Hour)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveStatic(w, r, body, etag, cacheControl)
	})
}

func cacheControlFor(maxAge time.Duration) string {
	return "public, max-age=" + strconv.FormatInt(int64(max(maxAge, 0)/time.Second), 10)
}

func strongETag(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
}

func serveStatic(w http.ResponseWriter, r *http.Request, body []byte, etag, cacheControl string) {
	h := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h.Set("Cache-Control", cacheControl)
	h.Set("ETag", etag)
	if etagMatches(r.Header.Values("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// etagMatches implements If-None-Match, which uses the weak comparison
// (RFC 9110 §13.1.2): W/"x" matches "x", and "*" matches any entity.
func etagMatches(headers []string, etag string) bool {
	for _, hv := range headers {
		for tag := range strings.SplitSeq(hv, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
				return true
			}
		}
	}
	return false
}
