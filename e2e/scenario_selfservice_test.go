package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/sessiongate/sessiongate/e2e/harness"
)

// The self-service routes through the real Envoy: sessiongate's local
// replies reach the client as they are (status, body, headers), never the
// upstream; another subject's ref and a ref of no one get one and the same
// 404; signing out one of my sessions ends it at the edge.
func TestSelfServiceThroughEnvoy(t *testing.T) {
	s := harness.Start(t, harness.Options{})
	laptop := s.Login("alice", alicePW, "laptop")
	phone := s.Login("alice", alicePW, "phone")
	bob := s.Login("bob", bobPW, "desktop")
	bearer := func(sess *harness.Session) harness.ReqOpt {
		return harness.WithHeader("Authorization", "Bearer "+sess.ID)
	}

	p := probe(t, "selfservice-list")
	r := s.Get("/auth/sessions", bearer(laptop))
	if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("list: %v", r)
	}
	var list struct {
		Sessions []struct {
			Ref     string `json:"session_ref"`
			Current bool   `json:"current"`
			Label   string `json:"device_label"`
		} `json:"sessions"`
	}
	if err := json.Unmarshal(r.Body, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Sessions) != 2 || list.Sessions[0].Ref != laptop.SessionRef || !list.Sessions[0].Current ||
		list.Sessions[1].Ref != phone.SessionRef || list.Sessions[1].Label != "phone" {
		t.Fatalf("list: %s", r.Body)
	}
	if strings.Contains(string(r.Body), bob.SessionRef) {
		t.Fatal("alice's list shows bob's session")
	}
	assertNotReachedUpstream(t, s, p)

	page := s.Get("/auth/devices", harness.WithSession(laptop), harness.WithHeader("Accept", "text/html"))
	for k, want := range map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "no-referrer",
	} {
		if got := page.Header.Get(k); got != want {
			t.Errorf("page %s = %q, want %q", k, got, want)
		}
	}
	if csp := page.Header.Get("Content-Security-Policy"); page.Status != http.StatusOK || !strings.HasPrefix(csp, "default-src 'none'; style-src 'sha256-") ||
		!strings.Contains(string(page.Body), "Sign out all other devices") {
		t.Fatalf("page: %v (CSP %q)", page, csp)
	}

	unknown := s.Do(http.MethodDelete, s.EdgeURL("/auth/sessions/0123456789abcdef0123456789abcdef"), nil, bearer(laptop))
	notMine := s.Do(http.MethodDelete, s.EdgeURL("/auth/sessions/"+bob.SessionRef), nil, bearer(laptop))
	if unknown.Status != http.StatusNotFound || notMine.Status != unknown.Status || string(notMine.Body) != string(unknown.Body) ||
		notMine.Header.Get("Content-Type") != unknown.Header.Get("Content-Type") || notMine.Header.Get("Content-Length") != unknown.Header.Get("Content-Length") {
		t.Fatalf("another's ref: %v; unknown ref: %v", notMine, unknown)
	}
	if r := s.Get("/api/x", harness.WithSession(bob)); r.Status != http.StatusOK {
		t.Fatalf("bob after alice tried his ref: %v", r)
	}

	if r := s.Get("/auth/sessions?subject=bob", bearer(laptop)); r.Status != http.StatusBadRequest {
		t.Fatalf("query string: %v", r)
	}
	if r := s.Do(http.MethodPost, s.EdgeURL("/auth/sessions/revoke-others"), nil, harness.WithSession(laptop),
		harness.WithHeader("Origin", "https://evil.example")); r.Status != http.StatusForbidden {
		t.Fatalf("cross-site revoke-others: %v", r)
	}

	if r := s.Do(http.MethodDelete, s.EdgeURL("/auth/sessions/"+phone.SessionRef), nil, bearer(laptop)); r.Status != http.StatusNoContent {
		t.Fatalf("delete my phone: %v", r)
	}
	if r := s.Get("/api/x", harness.WithSession(phone), acceptJSON()); r.Status != http.StatusUnauthorized {
		t.Fatalf("the signed-out phone: %v", r)
	}
	if r := s.Get("/api/x", harness.WithSession(laptop)); r.Status != http.StatusOK {
		t.Fatalf("the laptop after signing out the phone: %v", r)
	}
}
