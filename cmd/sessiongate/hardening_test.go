package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"

	"github.com/sessiongate/sessiongate/internal/logtest"
	"github.com/sessiongate/sessiongate/internal/redistest"
)

const hardeningAdminToken = "hardening-admin-token-0123456789"

// TestServeSecurityDefaults checks the CSRF and admin hardening as
// serve wires them from config, not as the packages do in isolation: with a
// config that says nothing about them, CSRF is on for cookie sessions and
// off for bearer ones, the admin API rate-limits per source before it
// authenticates, limits bodies and audits mutations by ref; and
// csrf.enabled: false really turns the check off.
func TestServeSecurityDefaults(t *testing.T) {
	tests := []struct {
		name  string
		extra string // appended to the config
		// HTTP status of a cookie POST: without Origin, cross-site, same-origin.
		noOrigin, crossSite, sameOrigin int
		allowedOrigin                   string // an Origin that must pass, if any
	}{
		{name: "defaults", noOrigin: 403, crossSite: 403, sameOrigin: 200},
		// A configured list replaces the request's own origin; config
		// spelling is normalised to what browsers send.
		{name: "allowed origins", extra: "csrf:\n  allowed_origins: [\"https://WWW.Example.com:443/\"]\n",
			noOrigin: 403, crossSite: 403, sameOrigin: 403, allowedOrigin: "https://www.example.com"},
		{name: "disabled", extra: "csrf:\n  enabled: false\n", noOrigin: 200, crossSite: 200, sameOrigin: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startServe(t, tc.extra)
			id := s.login(t, "alice")
			check := func(method, credential, origin string) int {
				t.Helper()
				h := map[string]string{}
				if credential == "cookie" {
					h["cookie"] = "__Host-sid=" + id
				} else {
					h["authorization"] = "Bearer " + id
				}
				if origin != "" {
					h["origin"] = origin
				}
				return s.check(t, method, h)
			}
			for _, c := range []struct {
				what            string
				method, cred, o string
				want            int
			}{
				{"cookie GET without Origin", "GET", "cookie", "", 200},
				{"cookie POST without Origin", "POST", "cookie", "", tc.noOrigin},
				{"cookie DELETE from another site", "DELETE", "cookie", "https://evil.example", tc.crossSite},
				{"cookie PATCH from the same origin", "PATCH", "cookie", "https://app.example.com", tc.sameOrigin},
				{"bearer POST without Origin", "POST", "bearer", "", 200},
				{"bearer PUT from another site", "PUT", "bearer", "https://evil.example", 200},
			} {
				if got := check(c.method, c.cred, c.o); got != c.want {
					t.Errorf("%s: %d, want %d", c.what, got, c.want)
				}
			}
			if tc.allowedOrigin != "" {
				if got := check("POST", "cookie", tc.allowedOrigin); got != 200 {
					t.Errorf("cookie POST from the configured origin: %d, want 200", got)
				}
			}
			if strings.Contains(s.logs.String(), id) {
				t.Fatal("the server log contains a session ID")
			}
		})
	}

	t.Run("admin API", func(t *testing.T) {
		s := startServe(t, "")
		id := s.login(t, "bob")

		// Body limit: 64 KiB, 413.
		big := `{"subject":"x","tenant":"` + strings.Repeat("t", 70<<10) + `"}`
		if got := s.admin(t, "POST", "/v1/sessions", big, hardeningAdminToken); got != http.StatusRequestEntityTooLarge {
			t.Errorf("70 KiB body: %d, want 413", got)
		}
		// Audit: the create above, by ref, with the token index, never the ID.
		audit := ""
		for line := range strings.SplitSeq(s.logs.String(), "\n") {
			if strings.Contains(line, `"admin audit"`) && strings.Contains(line, `"action":"create"`) {
				audit = line
			}
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(audit), &rec); err != nil {
			t.Fatalf("no create audit line (%v) in:\n%s", err, s.logs.String())
		}
		if rec["auth"] != "token#0" || rec["remote"] == "" || rec["subject"] != "bob" || rec["session_ref"] == "" {
			t.Errorf("audit line lacks who/what: %s", audit)
		}
		if strings.Contains(s.logs.String(), id) || strings.Contains(s.logs.String(), hardeningAdminToken) {
			t.Fatal("the server log contains a session ID or the admin token")
		}

		// Default rate limit (100/s, burst 200) per source, before the
		// token check: wrong tokens from one source run into 429. Four
		// senders keep the rate well above the refill even on a loaded
		// machine; they stop at the first 429 or after 4000 requests.
		var sent, limited atomic.Int64
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for limited.Load() == 0 && sent.Add(1) <= 4000 {
					if s.admin(t, "GET", "/v1/users/bob/sessions", "", "wrong-token-0123456789") == http.StatusTooManyRequests {
						limited.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if limited.Load() == 0 {
			t.Fatal("4000 rapid requests from one source were never rate limited")
		}
		t.Logf("rate limit: first 429 after about %d rapid unauthenticated requests", sent.Load())
	})
}

type serveFixture struct {
	grpcAddr, adminAddr, cfgPath string
	conn                         *grpc.ClientConn
	logs                         *logtest.Buffer
}

// startServe runs serve over a real Redis with a minimal config plus extra.
func startServe(t *testing.T, extra string) *serveFixture {
	t.Helper()
	r := redistest.Start(t)
	dir := t.TempDir()
	keyPath := writeKey(t, dir, "key.pem", "ES256")
	tokenPath := filepath.Join(dir, "admin-token")
	writeFile(t, tokenPath, hardeningAdminToken+"\n")
	s := &serveFixture{grpcAddr: freeAddr(t), adminAddr: freeAddr(t), cfgPath: filepath.Join(dir, "config.yaml")}
	writeFile(t, s.cfgPath, fmt.Sprintf("grpc_addr: %q\nhttp_addr: %q\nadmin_addr: %q\nadmin_token_file: %q\nredis:\n  url: %q\ntoken:\n  signing_keys: [%q]\n",
		s.grpcAddr, freeAddr(t), s.adminAddr, tokenPath, r.URL(), keyPath)+extra)
	s.logs = runServe(t, s.cfgPath)
	s.conn = dialServing(t, s.grpcAddr, 10*time.Second)
	return s
}

// login creates a session through the admin API, as a login service does.
func (s *serveFixture) login(t *testing.T, subject string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+s.adminAddr+"/v1/sessions", strings.NewReader(`{"subject":"`+subject+`"}`))
	req.Header.Set("Authorization", "Bearer "+hardeningAdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		SessionID string `json:"session_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create session: %d %v", resp.StatusCode, err)
	}
	return out.SessionID
}

func (s *serveFixture) check(t *testing.T, method string, headers map[string]string) int {
	t.Helper()
	resp, err := authv3.NewAuthorizationClient(s.conn).Check(context.Background(), &authv3.CheckRequest{
		Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: "/api/orders", Host: "app.example.com", Scheme: "https", Headers: headers,
		}}}})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if d := resp.GetDeniedResponse(); d != nil {
		return int(d.GetStatus().GetCode())
	}
	if resp.GetOkResponse() == nil {
		t.Fatalf("Check answered neither OK nor denied: %v", resp)
	}
	return 200
}

func (s *serveFixture) admin(t *testing.T, method, path, body, token string) int {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+s.adminAddr+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// Errorf, not Fatal: the rate-limit test calls this from goroutines.
		t.Errorf("admin %s %s: %v", method, path, err)
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
