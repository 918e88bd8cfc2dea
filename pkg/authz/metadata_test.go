package authz

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// Options.NoDynamicMetadata: the allow answer, for a session and for a
// service, carries no dynamic_metadata at all, and everything else of it
// (the token, the scrubbed credential) is unchanged.
func TestNoDynamicMetadata(t *testing.T) {
	for _, off := range []bool{false, true} {
		store := session.NewMemoryStore(nil)
		var lookups atomic.Int64
		f := newFixture(t, store, func(o *Options) {
			o.Services = countingServices{store, &lookups}
			o.Routes = serviceRoutes
			o.NoDynamicMetadata = off
		})
		id := f.login(t, "alice", nil, nil)
		cred := register(t, store, "billing", "payments")
		for _, tc := range []struct {
			name string
			opts []reqOpt
			want map[string]string
			gone []string // credentials that must not reach the upstream
		}{
			{"session cookie beside another cookie", []reqOpt{withCookie("theme=dark; __Host-sid=" + id)},
				map[string]string{"subject": "alice", "session_ref": session.RefOf(id)}, []string{id}},
			{"session cookie alone", []reqOpt{withCookie("__Host-sid=" + id)},
				map[string]string{"subject": "alice", "session_ref": session.RefOf(id)}, []string{id}},
			{"service credential", []reqOpt{withHeader("authorization", "Bearer "+cred)},
				map[string]string{"subject": "billing", "kind": "service", "credential_ref": session.CredentialRefOf(cred)}, []string{cred}},
		} {
			req := request("GET", "/partners/items", tc.opts...)
			// Twice: the first answer signs, the second comes from the
			// token cache, which holds the metadata with the token.
			for range 2 {
				resp := f.check(t, req)
				if status(resp) != 200 {
					t.Fatalf("off=%v %s: status %d", off, tc.name, status(resp))
				}
				if _, ok := okHeader(t, resp, tokenHeader); !ok {
					t.Fatalf("off=%v %s: no token", off, tc.name)
				}
				up := upstream(req.Attributes.Request.Http.Headers, resp)
				for _, c := range tc.gone {
					for k, v := range up {
						if strings.Contains(v, c) {
							t.Fatalf("off=%v %s: the credential reaches the upstream in %s", off, tc.name, k)
						}
					}
				}
				md := resp.GetDynamicMetadata()
				if off {
					if md != nil {
						t.Fatalf("%s: dynamic metadata %v with NoDynamicMetadata", tc.name, md)
					}
					continue
				}
				got := md.GetFields()
				if len(got) != len(tc.want) {
					t.Fatalf("%s: metadata %v, want %v", tc.name, got, tc.want)
				}
				for k, v := range tc.want {
					if got[k].GetStringValue() != v {
						t.Fatalf("%s: metadata %s = %v, want %q", tc.name, k, got[k], v)
					}
				}
			}
		}
	}
}

// With the metadata off a warm Check costs no more than with it on (the
// metadata is built once per signed token, so the count stays at six).
func TestNoDynamicMetadataAllocations(t *testing.T) {
	ctx := context.Background()
	allocs := map[bool]float64{}
	for _, off := range []bool{false, true} {
		f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) { o.NoDynamicMetadata = off })
		id := f.login(t, "alice", nil, nil)
		req := request("GET", "/api/items?page=2", withCookie("theme=dark; __Host-sid="+id))
		if status(f.check(t, req)) != 200 {
			t.Fatalf("off=%v: setup Check not allowed", off)
		}
		allocs[off] = testing.AllocsPerRun(100, func() { f.srv.Check(ctx, req) })
	}
	if allocs[true] > allocs[false] || allocs[true] > 6 {
		t.Errorf("warm Check: %.1f allocations with dynamic metadata off, %.1f with it on; want at most the latter and at most 6", allocs[true], allocs[false])
	}
}
