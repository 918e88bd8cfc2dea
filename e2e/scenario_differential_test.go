package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/sessiongate/sessiongate/e2e/harness"
)

// Parser differentials, tried from outside through the real Envoy: where
// sessiongate and a browser, an upstream framework or a path decoder could
// read one input two ways, the request gets the restrictive reading, and
// no copy of the session credential reaches any upstream.
func TestParserDifferentialsThroughEnvoy(t *testing.T) {
	s := harness.Start(t, harness.Options{Configure: func(c *harness.SGConfig) {
		c.Routes = append([]harness.SGRoute{{PathPrefix: "/reports/", Methods: []string{"POST", "DELETE"}, Access: "deny"}}, c.Routes...)
	}})
	alice := s.Login("alice", alicePW, "laptop")

	// noCredential fails when anything the upstream received holds alice's
	// session ID or a cookie named like the session cookie.
	noCredential := func(t *testing.T, e *harness.Echo) {
		t.Helper()
		for k, vs := range e.Headers {
			for _, v := range vs {
				if strings.Contains(v, alice.ID) {
					t.Errorf("upstream header %s carries the session ID", k)
				}
			}
		}
		for _, c := range e.Cookies {
			if strings.EqualFold(c.Name, harness.CookieName) || strings.Contains(c.Value, alice.ID) {
				t.Errorf("upstream cookie %s carries the session credential", c.Name)
			}
		}
	}

	t.Run("the session ID in cookie and bearer reaches no upstream", func(t *testing.T) {
		e := s.Echo(s.Get("/api/me", harness.WithCookieHeader("theme=dark; "+alice.Cookie()),
			harness.WithHeader("Authorization", "Bearer "+alice.ID)))
		if !e.Verified || claimString(t, e.Token.Claims, "sub") != "alice" {
			t.Fatalf("not authenticated as alice: %+v", e)
		}
		noCredential(t, e)
		if len(e.Cookies) != 1 || e.Cookies[0].Name != "theme" {
			t.Errorf("other cookies not passed on unchanged: %+v", e.Cookies)
		}
	})

	t.Run("a public path gets neither the session cookie nor the bearer", func(t *testing.T) {
		for _, path := range []string{"/public/page", "/docs/page"} {
			e := s.Echo(s.Get(path, harness.WithCookieHeader("theme=dark; "+alice.Cookie()),
				harness.WithHeader("Authorization", "Bearer "+alice.ID)))
			if e.Verified {
				t.Errorf("%s: a public request carried a token", path)
			}
			noCredential(t, e)
		}
	})

	t.Run("a lower-case method over HTTP/2 dodges no deny rule", func(t *testing.T) {
		for _, m := range []string{"delete", "Delete", "post"} {
			p := probe(t, "method-"+strings.ToLower(m))
			status := h2cDo(t, s, m, "/reports/1?"+p, "Bearer "+alice.ID)
			if status != http.StatusForbidden {
				t.Errorf("%s /reports/1 over HTTP/2: %d, want 403", m, status)
			}
			assertNotReachedUpstream(t, s, p)
		}
		// The control: the same client and rule let GET through.
		if status := h2cDo(t, s, "GET", "/reports/1", "Bearer "+alice.ID); status != http.StatusOK {
			t.Errorf("GET /reports/1 over HTTP/2: %d, want 200", status)
		}
	})

	t.Run("an ignorable code point beside a dot segment is refused", func(t *testing.T) {
		for _, path := range []string{"/public/%C2%AD../api/me", "/api/%E2%80%8B../admin/x", "/public/..%EF%BB%BF/admin/x", "/public/..%20/admin/x"} {
			p := probe(t, "fold")
			r := s.Get(path+"?"+p, harness.WithSession(alice), acceptJSON())
			expectStatus(t, r, http.StatusBadRequest)
			assertNotReachedUpstream(t, s, p)
		}
	})

	t.Run("a Unicode space before the cookie name makes another cookie", func(t *testing.T) {
		for _, sp := range []string{"\u2000", "\u00a0", "\u3000"} {
			p := probe(t, "cookie-space")
			r := s.Get("/api/me?"+p, harness.WithCookieHeader(sp+harness.CookieName+"="+alice.ID), acceptJSON())
			expectStatus(t, r, http.StatusUnauthorized)
			assertNotReachedUpstream(t, s, p)
		}
	})
}

// h2cDo sends one request over cleartext HTTP/2 (prior knowledge), with the
// method exactly as given: Envoy forwards an HTTP/2 method as sent.
func h2cDo(t *testing.T, s *harness.Stack, method, path, authorization string) int {
	t.Helper()
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.EdgeURL(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", authorization)
	req.Header.Set("Accept", "application/json")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s over h2c: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode == http.StatusOK {
		// The upstream saw the request: make sure it saw the method as sent.
		var e struct {
			Method string `json:"method"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Method != method {
			t.Fatalf("%s %s: upstream saw method %q (%v)", method, path, e.Method, err)
		}
	}
	return resp.StatusCode
}
