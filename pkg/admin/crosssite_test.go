package admin

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/logtest"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// TestAmbientCredentialCrossSite: a client certificate is an ambient
// credential, which a browser presents on any request to the admin origin,
// including a cross-site "simple" POST a hostile page makes with
// fetch(..., {mode: "no-cors", body: new Blob([json])}) (no Content-Type, no
// preflight). Such a request must not create sessions or credentials (nor,
// by creating them, evict a user's real sessions at the session limit). A
// bearer token is never attached by a browser on its own, so a token
// request is judged by the token alone.
func TestAmbientCredentialCrossSite(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "sessiongate test CA")
	ca.issue(t, dir, "server", "127.0.0.1", true)
	ca.issue(t, dir, "login", "login-service", false)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.der)
	files := TLSFiles{CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"), ClientCAFile: filepath.Join(dir, "ca.pem")}
	cfg, err := files.Load()
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	kp, err := tls.LoadX509KeyPair(filepath.Join(dir, "login.crt"), filepath.Join(dir, "login.key"))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{kp}}}, Timeout: 5 * time.Second}
	store := session.NewMemoryStore(nil)
	var logs logtest.Buffer
	h := NewHandler(Options{Store: store, IdleTimeout: time.Minute, AbsoluteTimeout: time.Hour,
		ClientCertAuthOnly: true, Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	h.SetTokens([]string{testToken})
	base := serveTLS(t, h, cfg)

	for _, tc := range []struct {
		name    string
		headers map[string]string
		token   string
		want    int
	}{
		{"no browser headers", nil, "", 201},
		{"cross-site origin", map[string]string{"Origin": "https://evil.example"}, "", 403},
		{"opaque origin", map[string]string{"Origin": "null"}, "", 403},
		{"sec-fetch-site cross-site", map[string]string{"Sec-Fetch-Site": "cross-site"}, "", 403},
		{"sec-fetch-site same-site", map[string]string{"Sec-Fetch-Site": "same-site"}, "", 403},
		{"sec-fetch-site same-origin", map[string]string{"Sec-Fetch-Site": "same-origin"}, "", 403},
		{"sec-fetch-site unknown", map[string]string{"Sec-Fetch-Site": "bogus"}, "", 403},
		{"origin and fetch metadata", map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}, "", 403},
		{"user typed the url", map[string]string{"Sec-Fetch-Site": "none"}, "", 201},
		{"bearer token with an origin", map[string]string{"Origin": "https://console.example"}, testToken, 201},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", base+"/v1/sessions", strings.NewReader(`{"subject":"victim"}`))
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("POST /v1/sessions = %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

// TestOpenPortCrossSite: the open admin port of --dev on loopback is
// reachable by any page the developer's browser shows.
func TestOpenPortCrossSite(t *testing.T) {
	h := NewHandler(Options{Store: session.NewMemoryStore(nil), IdleTimeout: time.Minute, AbsoluteTimeout: time.Hour,
		Open: true, Log: slog.New(slog.DiscardHandler)})
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    int
	}{
		{"no browser headers", nil, 201},
		{"cross-site origin", map[string]string{"Origin": "https://evil.example"}, 403},
		{"sec-fetch-site cross-site", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"two sec-fetch-site values", map[string]string{"Sec-Fetch-Site": "none, cross-site"}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/v1/sessions", strings.NewReader(`{"subject":"victim"}`))
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("POST /v1/sessions = %d %s, want %d", rec.Code, rec.Body, tc.want)
			}
		})
	}
}
