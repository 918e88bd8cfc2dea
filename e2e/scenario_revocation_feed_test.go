package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/e2e/harness"
)

// A token already handed to an upstream outlives its session only until
// the revocation feed says otherwise: the upstream follows sessiongate's
// feed (pkg/verify's FollowRevocations); the token Envoy forwarded for a
// session is replayed straight to the upstream (as a token leaked inside
// the network would be) and accepted; the session is revoked through the
// admin API, then logged out on another device; within a second the
// upstream refuses each same, unexpired token; another session's token is
// untouched.
func TestRevocationFeedStopsIssuedTokens(t *testing.T) {
	s := harness.Start(t, harness.Options{UpstreamFollowsRevocations: true})
	alice := s.Login("alice", alicePW, "laptop")
	phone := s.Login("alice", alicePW, "phone")
	bob := s.Login("bob", bobPW, "phone")
	tokenOf := func(sess *harness.Session) string {
		t.Helper()
		tok := s.Echo(s.Get("/api/me", harness.WithSession(sess))).Header(t, "x-internal-jwt")
		if tok == "" {
			t.Fatal("the upstream saw no token")
		}
		return tok
	}
	aliceTok, phoneTok, bobTok := tokenOf(alice), tokenOf(phone), tokenOf(bob)
	replay := func(tok string) *harness.Result {
		return s.Do(http.MethodGet, s.UpstreamURL("/api/me"), nil, harness.WithHeader("x-internal-jwt", tok))
	}
	// Until the upstream has caught up with the feed it fails closed.
	s.Eventually(10*time.Second, "upstream accepts a replayed token once synced", func() error {
		if r := replay(aliceTok); r.Status != http.StatusOK {
			return fmt.Errorf("%v", r)
		}
		return nil
	})

	refused := func(tok, what string) {
		t.Helper()
		start := time.Now()
		s.Eventually(time.Second, what, func() error {
			r := replay(tok)
			if r.Status != http.StatusUnauthorized {
				return fmt.Errorf("%v", r)
			}
			if !strings.Contains(string(r.Body), "session revoked") {
				return errors.New("refused, but not as revoked: " + string(r.Body))
			}
			return nil
		})
		t.Logf("%s: refused %v after it returned", what, time.Since(start))
	}
	if err := s.Admin().RevokeSession(tctx(t), alice.SessionRef); err != nil {
		t.Fatal(err)
	}
	refused(aliceTok, "after the admin revoke")

	r := s.Get(harness.LogoutPath, harness.WithSession(phone), harness.WithBrowserAccept())
	if r.Status != http.StatusFound && r.Status != http.StatusSeeOther {
		t.Fatalf("logout: %v", r)
	}
	refused(phoneTok, "after the logout")

	s.Echo(replay(bobTok))
}
