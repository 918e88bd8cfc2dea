package authz

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
)

// countingSigner counts the tokens actually signed.
type countingSigner struct {
	Signer
	n atomic.Int64
}

func (c *countingSigner) Sign(cl token.Claims) (string, error) {
	c.n.Add(1)
	return c.Signer.Sign(cl)
}

// TestSignOncePerVersionAudienceLifetime proves the signing promise: a
// session's token is signed at most once per (session version, audience,
// signing key, token shape) and token lifetime, however many Checks,
// concurrent or not, present the session; and that each of those changing
// does cause a fresh signature, so the cache never serves a token the store
// would not back.
func TestSignOncePerVersionAudienceLifetime(t *testing.T) {
	const ttl = 5 * time.Minute
	cases := []struct {
		name string
		// run drives Checks against one logged-in session (cookie value id)
		// and returns how many signatures it must have cost.
		run func(t *testing.T, f *fixture, id string, clock *fakeClock) int64
	}{
		{"many sequential Checks", func(t *testing.T, f *fixture, id string, _ *fakeClock) int64 {
			for range 200 {
				mustAllow(t, f, request("GET", "/api/items", withCookie("__Host-sid="+id)))
			}
			return 1
		}},
		{"64 concurrent first Checks", func(t *testing.T, f *fixture, id string, _ *fakeClock) int64 {
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range 64 {
				wg.Go(func() {
					<-start
					for range 10 {
						mustAllow(t, f, request("GET", "/api/items", withCookie("__Host-sid="+id)))
					}
				})
			}
			close(start)
			wg.Wait()
			return 1
		}},
		{"one signature per audience", func(t *testing.T, f *fixture, id string, _ *fakeClock) int64 {
			for range 20 {
				for _, aud := range []string{"", "billing", "search"} {
					r := request("GET", "/api/items", withCookie("__Host-sid="+id))
					if aud != "" {
						withExt("audience", aud)(r)
					}
					mustAllow(t, f, r)
				}
			}
			return 3
		}},
		{"one signature per token shape, 32 concurrent callers", func(t *testing.T, f *fixture, id string, _ *fakeClock) int64 {
			f.srv.SetRoutes(append(slices.Clone(testRoutes), shapeRoutes...))
			reqs := []*authv3.CheckRequest{
				request("GET", "/api/items", withCookie("__Host-sid="+id)),                             // every claim
				request("GET", "/lean/items", withCookie("__Host-sid="+id)),                            // claims: []
				request("GET", "/api/items", withCookie("__Host-sid="+id), withExt("claims", "")),      // the same, by extension
				request("GET", "/api/items", withCookie("__Host-sid="+id), withExt("claims", "email")), // email only
			}
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range 32 {
				wg.Go(func() {
					<-start
					for range 5 {
						for _, r := range reqs {
							mustAllow(t, f, r)
						}
					}
				})
			}
			close(start)
			wg.Wait()
			return 3
		}},
		{"a new session version is signed again", func(t *testing.T, f *fixture, id string, _ *fakeClock) int64 {
			r := request("GET", "/api/items", withCookie("__Host-sid="+id))
			mustAllow(t, f, r)
			roles := []string{"dev", "billing"}
			if _, err := f.store.UpdateUser(context.Background(), "alice", session.Update{Roles: &roles}); err != nil {
				t.Fatal(err)
			}
			for range 20 {
				tok, _ := okHeader(t, mustAllow(t, f, r), tokenHeader)
				if got := f.claims(t, tok, "internal")["roles"]; len(got.([]any)) != 2 {
					t.Fatalf("roles after update: %v", got)
				}
			}
			return 2
		}},
		{"re-signed after half the token lifetime", func(t *testing.T, f *fixture, id string, clock *fakeClock) int64 {
			r := request("GET", "/api/items", withCookie("__Host-sid="+id))
			mustAllow(t, f, r)
			clock.add(ttl/2 - time.Second)
			mustAllow(t, f, r) // still cached
			clock.add(2 * time.Second)
			for range 20 {
				mustAllow(t, f, r)
			}
			return 2
		}},
		{"a new signing key signs again", func(t *testing.T, f *fixture, id string, _ *fakeClock) int64 {
			r := request("GET", "/api/items", withCookie("__Host-sid="+id))
			mustAllow(t, f, r)
			key, err := token.GenerateKey(token.AlgES256)
			if err != nil {
				t.Fatal(err)
			}
			ks, err := token.NewKeySet(key, "")
			if err != nil {
				t.Fatal(err)
			}
			f.signer.SetKeys(ks)
			for range 20 {
				mustAllow(t, f, r)
			}
			return 2
		}},
	}
	for storeName, newStore := range stores(t) {
		for _, tc := range cases {
			t.Run(storeName+"/"+tc.name, func(t *testing.T) {
				clock := &fakeClock{t: time.Now()}
				var cs *countingSigner
				f := newFixture(t, newStore(t), func(o *Options) {
					cs = &countingSigner{Signer: o.Signer}
					o.Signer = cs
					o.Now = clock.now
					o.TokenTTL = ttl
					// 64 racing Checks under -race on a shared 2-core
					// machine can take longer than the production 100 ms
					// to reach Redis; a 503 here would not be about signing.
					o.StoreTimeout = 5 * time.Second
				})
				id := f.login(t, "alice", []string{"dev"}, nil)
				want := tc.run(t, f, id, clock)
				if got := cs.n.Load(); got != want {
					t.Fatalf("signed %d tokens, want %d", got, want)
				}
			})
		}
	}
}

func mustAllow(t *testing.T, f *fixture, r *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	resp := f.check(t, r)
	if status(resp) != 200 {
		t.Errorf("status %d, want 200", status(resp))
	}
	return resp
}

// fakeClock is a settable Options.Now, safe for concurrent Checks.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
