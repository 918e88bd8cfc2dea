package authz

import (
	"context"
	"strings"
	"testing"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// FuzzSelfServicePath drives Check with arbitrary methods and paths on a
// server with the self-service routes on and a valid session. Whatever is
// sent, a path that reads (in any case, or folded) as a self-service path
// never reaches an upstream, and a route is only ever taken for exactly one
// of the route shapes: anything else is refused.
func FuzzSelfServicePath(f *testing.F) {
	for _, p := range []string{
		"/auth/sessions", "/auth/sessions/", "/auth/sessions/revoke-others", "/auth/devices", "/auth/devices/",
		"/auth/sessions/0123456789abcdef0123456789abcdef", "/auth/sessions/0123456789abcdef0123456789abcdef/revoke",
		"/AUTH/SESSIONS", "/auth/%C5%BFessions", "/auth/sessions?x=1", "/auth/sessions#x", "/auth/sessions/a/b",
		"/auth/sessions/..", "/auth/sessions%2f", "/auth//sessions", "/auth/sessionsx", "/auth/devices?a",
	} {
		for _, m := range []string{"GET", "DELETE", "POST", "delete", "PUT"} {
			f.Add(m, p)
		}
	}
	store := session.NewMemoryStore(nil)
	srv := newFixture(f, store, func(o *Options) {
		o.SelfService = SelfService{PathPrefix: "/auth/sessions", PagePath: "/auth/devices", Sessions: store}
	})
	id := srv.login(f, "alice", nil, nil)
	f.Fuzz(func(t *testing.T, method, path string) {
		clean, ok, nonASCII := cleanPath(path)
		self := ok && (srv.srv.selfServicePath(clean) || nonASCII && srv.srv.foldsToSelfService(clean))
		resp, v := srv.srv.Decide(context.Background(), request(method, path, withHeader("authorization", "Bearer "+id)))
		if self && resp.GetOkResponse() != nil {
			t.Fatalf("%s %q went upstream (%v)", method, path, v)
		}
		if !ok || !srv.srv.selfServicePath(clean) {
			return
		}
		rt, ref, status, _ := srv.srv.route(path, method, clean)
		if status != 0 {
			return
		}
		var want string
		switch rt {
		case selfList:
			want = "/auth/sessions"
		case selfPage:
			want = "/auth/devices"
		case selfRevokeOthers:
			want = "/auth/sessions/revoke-others"
		case selfRevoke:
			want = "/auth/sessions/" + ref
		case selfRevokeForm:
			want = "/auth/sessions/" + ref + "/revoke"
		}
		if path != want || strings.Contains(ref, "/") {
			t.Fatalf("%s %q taken as route %d (ref %q)", method, path, rt, ref)
		}
	})
}
