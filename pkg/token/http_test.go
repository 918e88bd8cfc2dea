package token

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestJWKSHandler(t *testing.T) {
	ks1 := mustKeySet(t, testKey(t, AlgES256))
	s := NewSigner(ks1, "iss")
	h := s.JWKSHandler(5 * time.Minute)

	do := func(method string, hdr map[string]string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "/.well-known/jwks.json", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}

	rec := do(http.MethodGet, nil)
	if rec.Code != http.StatusOK || rec.Body.String() != string(ks1.JWKS()) {
		t.Fatalf("GET: %d %s", rec.Code, rec.Body)
	}
	if got := rec.Header().Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := rec.Header().Get("Cache-Control"); got != "public, max-age=300" {
		t.Errorf("Cache-Control = %q", got)
	}
	etag := rec.Header().Get("ETag")
	if etag == "" || etag[0] != '"' || etag != ks1.ETag() {
		t.Errorf("ETag = %q", etag)
	}

	if rec := do(http.MethodHead, nil); rec.Code != http.StatusOK || rec.Body.Len() != 0 || rec.Header().Get("ETag") != etag {
		t.Errorf("HEAD: %d body %d bytes", rec.Code, rec.Body.Len())
	}
	for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
		if rec := do(http.MethodGet, map[string]string{"If-None-Match": inm}); rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
			t.Errorf("If-None-Match %s: %d", inm, rec.Code)
		}
	}
	if rec := do(http.MethodGet, map[string]string{"If-None-Match": `"stale"`}); rec.Code != http.StatusOK {
		t.Errorf("stale If-None-Match: %d", rec.Code)
	}
	if rec := do(http.MethodPost, nil); rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") == "" {
		t.Errorf("POST: %d", rec.Code)
	}

	// Key swap is served live, with a new ETag.
	ks2 := mustKeySet(t, testKey(t, AlgEdDSA), testKey(t, AlgES256).Public())
	s.SetKeys(ks2)
	rec = do(http.MethodGet, map[string]string{"If-None-Match": etag})
	if rec.Code != http.StatusOK || rec.Body.String() != string(ks2.JWKS()) || rec.Header().Get("ETag") == etag {
		t.Errorf("after swap: %d etag %s", rec.Code, rec.Header().Get("ETag"))
	}
}

func TestDiscoveryHandler(t *testing.T) {
	h := DiscoveryHandler("https://sg.internal", "https://sg.internal/.well-known/jwks.json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/openid-configuration", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	var doc struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Issuer != "https://sg.internal" || doc.JWKSURI != "https://sg.internal/.well-known/jwks.json" || len(doc.Algs) != 3 {
		t.Errorf("doc = %+v", doc)
	}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("If-None-Match", rec.Header().Get("ETag"))
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Errorf("revalidation: %d", rec.Code)
	}
}
