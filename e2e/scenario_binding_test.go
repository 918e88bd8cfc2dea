package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/e2e/harness"
)

// getFrom sends GET path to Envoy's edge listener from the loopback address
// local (any of 127.0.0.0/8 on Linux): a second client network without a
// second machine.
func getFrom(t *testing.T, s *harness.Stack, local, path string, opts ...harness.ReqOpt) *harness.Result {
	t.Helper()
	return doFrom(t, s, local, http.MethodGet, path, nil, opts...)
}

// loginFrom logs in like Stack.Login, from the loopback address local.
func loginFrom(t *testing.T, s *harness.Stack, local, username, password, device string) *harness.Session {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": username, "password": password, "device": device})
	r := doFrom(t, s, local, http.MethodPost, harness.LoginPath, body,
		harness.WithHeader("Content-Type", "application/json"), harness.WithHeader("User-Agent", "e2e-"+device))
	expectStatus(t, r, http.StatusOK)
	c, err := http.ParseSetCookie(r.Header.Get("Set-Cookie"))
	if err != nil || c.Name != harness.CookieName {
		t.Fatalf("login from %s: bad Set-Cookie: %v", local, r)
	}
	return &harness.Session{Subject: username, ID: c.Value}
}

func doFrom(t *testing.T, s *harness.Stack, local, method, path string, body []byte, opts ...harness.ReqOpt) *harness.Result {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.EdgeURL(path), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s from %s: %v", method, path, local, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return &harness.Result{Method: method, URL: s.EdgeURL(path), Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Session binding through the real Envoy. The login service records the
// last X-Forwarded-For entry as the client address and the User-Agent
// "e2e-laptop". Other loopback addresses play other networks, another
// User-Agent another browser. (For a peer of exactly 127.0.0.1 Envoy appends
// its own local address to X-Forwarded-For, not 127.0.0.1; source.address
// stays 127.0.0.1. Clients here use 127.0.0.2 and 127.0.0.3, which Envoy
// appends as they are.)
func TestSessionBindingThroughEnvoy(t *testing.T) {
	s := harness.Start(t, harness.Options{Configure: func(c *harness.SGConfig) {
		c.Session.Binding = &harness.SGBinding{UserAgent: true, IPPrefix: harness.SGIPPrefix{IPv4: 32, IPv6: 64}, Action: "deny"}
		// Entry 1 from the right: the peer address Envoy
		// (use_remote_address: true) appends itself.
		c.ClientIP = &harness.SGClientIP{XFFTrustedHops: 1}
	}})
	sess := loginFrom(t, s, "127.0.0.2", "alice", alicePW, "laptop")
	home := []harness.ReqOpt{harness.WithSession(sess), harness.WithHeader("User-Agent", "e2e-laptop"), acceptJSON()}

	s.Echo(getFrom(t, s, "127.0.0.2", "/api/me", home...))

	p := probe(t, "binding-other-network")
	expectStatus(t, getFrom(t, s, "127.0.0.3", "/api/me?"+p, home...), http.StatusUnauthorized)
	assertNotReachedUpstream(t, s, p)

	// A client naming the session's address in X-Forwarded-For is not
	// believed: Envoy appends the real peer, and only that entry counts.
	p = probe(t, "binding-spoofed-xff")
	expectStatus(t, getFrom(t, s, "127.0.0.3", "/api/me?"+p, append(home, harness.WithHeader("X-Forwarded-For", "127.0.0.2"))...), http.StatusUnauthorized)
	assertNotReachedUpstream(t, s, p)

	p = probe(t, "binding-other-browser")
	expectStatus(t, getFrom(t, s, "127.0.0.2", "/api/me?"+p, harness.WithSession(sess), harness.WithHeader("User-Agent", "curl/8.5.0"), acceptJSON()), http.StatusUnauthorized)
	assertNotReachedUpstream(t, s, p)
	if !s.Sessiongate.LogContains("session binding mismatch") {
		t.Error("no mismatch in sessiongate's log")
	}

	// deny keeps the session for its owner.
	s.Echo(getFrom(t, s, "127.0.0.2", "/api/me", home...))

	// revoke, with the client address from source.address this time.
	s.RestartSessiongate(func(c *harness.SGConfig) {
		c.Session.Binding.Action = "revoke"
		c.ClientIP = nil
	})
	s.Echo(getFrom(t, s, "127.0.0.2", "/api/me", home...))
	expectStatus(t, getFrom(t, s, "127.0.0.3", "/api/me", home...), http.StatusUnauthorized)
	p = probe(t, "binding-revoked")
	expectStatus(t, getFrom(t, s, "127.0.0.2", "/api/me?"+p, home...), http.StatusUnauthorized)
	assertNotReachedUpstream(t, s, p)
	if list, err := s.Admin().ListSessions(tctx(t), "alice"); err != nil || len(list) != 0 {
		t.Errorf("alice's sessions after the revoking mismatch: %v (%v), want none", list, err)
	}

	// The security event log in Redis, read through the admin API: the
	// login, each mismatch with the networks, and the revocation it caused.
	var ref string
	s.Eventually(5*time.Second, "security events stored", func() error {
		page, err := s.Admin().Events(tctx(t), "", 1000)
		if err != nil {
			return err
		}
		var got []string
		for _, e := range page.Events {
			switch {
			case e.Type == "login" && e.Subject == "alice":
				ref = e.SessionRef
				got = append(got, "login")
			case e.Type == "binding_mismatch" && e.SessionRef == ref:
				got = append(got, "mismatch/"+e.Details["action"]+"/"+e.Details["client_network"])
			case e.Type == "revoke" && e.SessionRef == ref:
				got = append(got, "revoke/"+e.Details["by"])
			}
		}
		want := "login mismatch/deny/127.0.0.3/32 mismatch/deny/127.0.0.3/32 mismatch/deny/ mismatch/revoke/127.0.0.3/32 revoke/binding"
		if strings.Join(got, " ") != want {
			return fmt.Errorf("events %v, want %s", got, want)
		}
		return nil
	})
}

// A session used faster than session.anomaly.max_rate is revoked, through
// the real Envoy, and the event log says why.
func TestRateAnomalyRevokesThroughEnvoy(t *testing.T) {
	s := harness.Start(t, harness.Options{Configure: func(c *harness.SGConfig) {
		c.Session.Anomaly = &harness.SGAnomaly{MaxRate: 5, Action: "revoke"}
	}})
	sess := s.Login("alice", alicePW, "laptop")
	for range 5 {
		s.Echo(s.Get("/api/me", harness.WithSession(sess)))
	}
	p := probe(t, "rate-anomaly")
	expectStatus(t, s.Get("/api/me?"+p, harness.WithSession(sess), acceptJSON()), http.StatusUnauthorized)
	assertNotReachedUpstream(t, s, p)
	expectStatus(t, s.Get("/api/me", harness.WithSession(sess), acceptJSON()), http.StatusUnauthorized)
	if list, err := s.Admin().ListSessions(tctx(t), "alice"); err != nil || len(list) != 0 {
		t.Errorf("alice's sessions after the rate anomaly: %v (%v), want none", list, err)
	}
	s.Eventually(5*time.Second, "rate anomaly events stored", func() error {
		page, err := s.Admin().Events(tctx(t), "", 1000)
		if err != nil {
			return err
		}
		var got []string
		for _, e := range page.Events {
			if e.Type == "rate_anomaly" || e.Type == "revoke" {
				got = append(got, string(e.Type)+"/"+e.Details["by"]+e.Details["action"])
			}
		}
		if strings.Join(got, " ") != "rate_anomaly/revoke revoke/rate_anomaly" {
			return fmt.Errorf("events %v", got)
		}
		return nil
	})
}
