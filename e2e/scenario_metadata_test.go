package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/e2e/harness"
)

// envoy.dynamic_metadata: false, through the real Envoy: the request is
// allowed exactly as with the default (a verified token, the session
// cookie gone, the other cookies kept), and the access log's subject and
// session_ref, which read the ext_authz filter's dynamic metadata, are
// empty: the documented price of the switch.
func TestDynamicMetadataOffThroughEnvoy(t *testing.T) {
	s := harness.Start(t, harness.Options{Configure: func(c *harness.SGConfig) {
		c.Envoy = &harness.SGEnvoy{DynamicMetadata: false}
	}})
	sess := s.Login("alice", alicePW, "laptop")
	path := "/api/profile?" + probe(t, "nometadata")

	e := s.Echo(s.Get(path, harness.WithCookieHeader("theme=dark; "+sess.Cookie()+"; lang=en")))
	if !e.Verified || e.Token == nil {
		t.Fatalf("upstream did not verify a token: %+v", e)
	}
	if got := claimString(t, e.Token.Claims, "sub"); got != "alice" {
		t.Errorf("sub = %q", got)
	}
	if want := []harness.EchoCookie{{Name: "theme", Value: "dark"}, {Name: "lang", Value: "en"}}; !slices.Equal(e.Cookies, want) {
		t.Errorf("upstream cookies %v, want %v", e.Cookies, want)
	}
	assertNoSessionID(t, e, sess)

	// The session cookie alone: the whole cookie header goes.
	e = s.Echo(s.Get(path+"&alone", harness.WithSession(sess)))
	if !e.Verified || len(e.Cookies) != 0 {
		t.Errorf("session cookie alone: verified %v, upstream cookies %v", e.Verified, e.Cookies)
	}
	assertNoSessionID(t, e, sess)

	s.Eventually(5*time.Second, "access log line for "+path, func() error {
		for _, l := range s.AccessLog() {
			if l["path"] != path {
				continue
			}
			if l["status"] != float64(200) && l["status"] != "200" {
				return fmt.Errorf("status %v", l["status"])
			}
			// A missing metadata key is JSON null in Envoy's json_format.
			for _, k := range []string{"subject", "session_ref"} {
				if v, ok := l[k]; ok && v != nil && v != "" && v != "-" {
					return fmt.Errorf("access log %s = %v with dynamic metadata off; line %v", k, v, l)
				}
			}
			return nil
		}
		return fmt.Errorf("no access log line for %s", path)
	})
}
