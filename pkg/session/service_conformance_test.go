package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConformanceServices holds both stores, and Redis standalone, Cluster,
// Sentinel and TLS with the documented ACL, to the ServiceStore contract with the
// same cases. Cluster cases share one cluster, so each case uses service
// names no other case uses.
func TestConformanceServices(t *testing.T) {
	for name, setup := range map[string]func(*testing.T) func(*testing.T) storeFixture{
		"memory":         perCase(memoryFixture),
		"redis":          perCase(redisFixture),
		"redis-cluster":  uncached(clusterFixtures),
		"redis-sentinel": uncached(sentinelFixtures),
		"redis-tls-acl":  uncached(tlsACLFixtures),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			newFixture := setup(t)
			for _, c := range serviceCases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					f := newFixture(t)
					c.run(t, f.store.(ServiceStore))
				})
			}
		})
	}
}

var svcSeq atomic.Int64

// newService returns a service with a name unique in this test process and
// a fresh credential.
func newService(t *testing.T, prefix string, roles ...string) (*Service, string) {
	t.Helper()
	cred, err := NewCredential()
	if err != nil {
		t.Fatal(err)
	}
	return &Service{Name: fmt.Sprintf("%s-%d", prefix, svcSeq.Add(1)), Roles: roles, Audiences: []string{"inventory"},
		CreatedAt: time.Now().Truncate(time.Millisecond)}, cred
}

func mustCreateService(t *testing.T, st ServiceStore, s *Service, cred string) {
	t.Helper()
	if err := st.CreateService(context.Background(), s, CredentialRefOf(cred)); err != nil {
		t.Fatal(err)
	}
}

func wantResolve(t *testing.T, st ServiceStore, cred, name string) {
	t.Helper()
	e, err := st.ResolveCredential(context.Background(), CredentialRefOf(cred))
	if name == "" {
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("ResolveCredential = %+v, %v; want ErrNotFound", e, err)
		}
		return
	}
	if err != nil || e.Name != name {
		t.Fatalf("ResolveCredential = %+v, %v; want service %s", e, err, name)
	}
}

func listed(t *testing.T, st ServiceStore, name string) *Service {
	t.Helper()
	all, err := st.ListServices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.Name == name {
			return s
		}
	}
	return nil
}

var serviceCases = []struct {
	name string
	run  func(t *testing.T, st ServiceStore)
}{
	{"create then resolve returns the service and its roles", func(t *testing.T, st ServiceStore) {
		s, cred := newService(t, "create", "reader", "writer")
		mustCreateService(t, st, s, cred)
		wantResolve(t, st, cred, s.Name)
		e, _ := st.ResolveCredential(context.Background(), CredentialRefOf(cred))
		roles, err := e.Roles()
		if err != nil || !slices.Equal(roles, []string{"reader", "writer"}) {
			t.Fatalf("roles = %v, %v", roles, err)
		}
		got, err := st.GetService(context.Background(), s.Name)
		if err != nil || !slices.Equal(got.Audiences, []string{"inventory"}) || len(got.Credentials) != 1 ||
			got.Credentials[0].Ref != CredentialRefOf(cred) || !got.CreatedAt.Equal(s.CreatedAt) {
			t.Fatalf("GetService = %+v, %v", got, err)
		}
		if l := listed(t, st, s.Name); l == nil {
			t.Fatal("not listed")
		}
	}},
	{"a second service of the same name is refused and changes nothing", func(t *testing.T, st ServiceStore) {
		s, cred := newService(t, "dup")
		mustCreateService(t, st, s, cred)
		other, cred2 := newService(t, "dup")
		other.Name = s.Name
		if err := st.CreateService(context.Background(), other, CredentialRefOf(cred2)); !errors.Is(err, ErrServiceExists) {
			t.Fatalf("second create: %v, want ErrServiceExists", err)
		}
		wantResolve(t, st, cred, s.Name)
		wantResolve(t, st, cred2, "")
	}},
	{"a service resolves by name, with a version that follows its record", func(t *testing.T, st ServiceStore) {
		ctx := context.Background()
		s, cred := newService(t, "byname", "reader")
		if _, err := st.ResolveServiceName(ctx, s.Name); !errors.Is(err, ErrNotFound) {
			t.Fatalf("before create: %v", err)
		}
		mustCreateService(t, st, s, cred)
		e, err := st.ResolveServiceName(ctx, s.Name)
		if err != nil || e.Name != s.Name || e.Ref != "" {
			t.Fatalf("ResolveServiceName = %+v, %v", e, err)
		}
		roles, err := e.Roles()
		if err != nil || !slices.Equal(roles, []string{"reader"}) {
			t.Fatalf("roles = %v, %v", roles, err)
		}
		again, _ := st.ResolveServiceName(ctx, s.Name)
		if again.Version != e.Version {
			t.Fatal("version changed without a change")
		}
		c2, _ := NewCredential()
		if err := st.AddCredential(ctx, s.Name, CredentialRefOf(c2)); err != nil {
			t.Fatal(err)
		}
		if after, _ := st.ResolveServiceName(ctx, s.Name); after.Version == e.Version {
			t.Fatal("version unchanged after the record changed")
		}
		if _, err := st.DeleteService(ctx, s.Name); err != nil {
			t.Fatal(err)
		}
		if _, err := st.ResolveServiceName(ctx, s.Name); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after delete: %v", err)
		}
	}},
	{"an unknown credential is not found", func(t *testing.T, st ServiceStore) {
		cred, _ := NewCredential()
		wantResolve(t, st, cred, "")
		if _, err := st.GetService(context.Background(), "nobody-here"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetService: %v", err)
		}
	}},
	{"a second credential works beside the first until one is revoked", func(t *testing.T, st ServiceStore) {
		ctx := context.Background()
		s, cred := newService(t, "rotate", "r")
		mustCreateService(t, st, s, cred)
		second, _ := NewCredential()
		if err := st.AddCredential(ctx, s.Name, CredentialRefOf(second)); err != nil {
			t.Fatal(err)
		}
		wantResolve(t, st, cred, s.Name)
		wantResolve(t, st, second, s.Name)
		if err := st.RevokeCredential(ctx, s.Name, CredentialRefOf(cred)); err != nil {
			t.Fatal(err)
		}
		wantResolve(t, st, cred, "")
		wantResolve(t, st, second, s.Name)
		got, err := st.GetService(ctx, s.Name)
		if err != nil || len(got.Credentials) != 1 || got.Credentials[0].Ref != CredentialRefOf(second) {
			t.Fatalf("after revoke: %+v, %v", got, err)
		}
		if err := st.RevokeCredential(ctx, s.Name, CredentialRefOf(cred)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second revoke: %v, want ErrNotFound", err)
		}
	}},
	{"a credential cannot be revoked through another service", func(t *testing.T, st ServiceStore) {
		a, credA := newService(t, "own-a")
		b, credB := newService(t, "own-b")
		mustCreateService(t, st, a, credA)
		mustCreateService(t, st, b, credB)
		if err := st.RevokeCredential(context.Background(), b.Name, CredentialRefOf(credA)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("revoke through b: %v", err)
		}
		wantResolve(t, st, credA, a.Name)
	}},
	{"adding a credential to an unknown service fails and leaves nothing", func(t *testing.T, st ServiceStore) {
		cred, _ := NewCredential()
		if err := st.AddCredential(context.Background(), "ghost-service", CredentialRefOf(cred)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("AddCredential: %v", err)
		}
		wantResolve(t, st, cred, "")
	}},
	{"credentials per service are bounded", func(t *testing.T, st ServiceStore) {
		s, cred := newService(t, "bounded")
		mustCreateService(t, st, s, cred)
		for i := 1; i < maxCredentials; i++ {
			c, _ := NewCredential()
			if err := st.AddCredential(context.Background(), s.Name, CredentialRefOf(c)); err != nil {
				t.Fatal(err)
			}
		}
		c, _ := NewCredential()
		if err := st.AddCredential(context.Background(), s.Name, CredentialRefOf(c)); !errors.Is(err, ErrTooManyCredentials) {
			t.Fatalf("credential %d: %v", maxCredentials+1, err)
		}
		wantResolve(t, st, c, "")
	}},
	{"deleting a service kills every credential", func(t *testing.T, st ServiceStore) {
		ctx := context.Background()
		s, cred := newService(t, "delete")
		mustCreateService(t, st, s, cred)
		second, _ := NewCredential()
		if err := st.AddCredential(ctx, s.Name, CredentialRefOf(second)); err != nil {
			t.Fatal(err)
		}
		n, err := st.DeleteService(ctx, s.Name)
		if err != nil || n != 2 {
			t.Fatalf("DeleteService = %d, %v", n, err)
		}
		wantResolve(t, st, cred, "")
		wantResolve(t, st, second, "")
		if listed(t, st, s.Name) != nil {
			t.Fatal("still listed")
		}
		if _, err := st.DeleteService(ctx, s.Name); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
		// The name is free again, and an old credential stays dead.
		s2, cred3 := newService(t, "delete")
		s2.Name = s.Name
		mustCreateService(t, st, s2, cred3)
		wantResolve(t, st, cred3, s.Name)
		wantResolve(t, st, cred, "")
	}},
	{"racing credential adds and a delete leave no live credential", func(t *testing.T, st ServiceStore) {
		ctx := context.Background()
		s, cred := newService(t, "race")
		mustCreateService(t, st, s, cred)
		var wg sync.WaitGroup
		creds := make([]string, 4)
		for i := range creds {
			creds[i], _ = NewCredential()
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Either outcome is fine; only what survives matters.
				_ = st.AddCredential(ctx, s.Name, CredentialRefOf(creds[i]))
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := st.DeleteService(ctx, s.Name); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		wantResolve(t, st, cred, "")
		for _, c := range creds {
			wantResolve(t, st, c, "")
		}
	}},
	{"a create racing a delete leaves a credential only with its service", func(t *testing.T, st ServiceStore) {
		ctx := context.Background()
		for range 8 {
			s, cred := newService(t, "create-race")
			var wg sync.WaitGroup
			wg.Add(2)
			go func() {
				defer wg.Done()
				_ = st.CreateService(ctx, s, CredentialRefOf(cred)) // either outcome
			}()
			go func() {
				defer wg.Done()
				_, _ = st.DeleteService(ctx, s.Name) // ErrNotFound when it ran first
			}()
			wg.Wait()
			if _, err := st.GetService(ctx, s.Name); err == nil {
				wantResolve(t, st, cred, s.Name)
			} else {
				wantResolve(t, st, cred, "")
			}
		}
	}},
	{"a service record sessiongate would not write is corrupt", func(t *testing.T, st ServiceStore) {
		// Both stores decode through the same codec; the memory store's
		// record is reachable from here.
		m, ok := st.(*MemoryStore)
		if !ok {
			r := st.(*RedisStore)
			if err := r.rdb.Set(context.Background(), credentialKey(RefOf("x")), "1:1:Bad Name:{}", time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
		} else {
			m.mu.Lock()
			m.svcInit()
			m.svc.creds[RefOf("x")] = "1:1:Bad Name:{}"
			m.mu.Unlock()
		}
		if _, err := st.ResolveCredential(context.Background(), RefOf("x")); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("ResolveCredential: %v, want ErrCorrupt", err)
		}
	}},
}

// TestConformancePeek: Peek reads a live session without extending it, and
// finds nothing once it is revoked.
func TestConformancePeek(t *testing.T) {
	for name, newFixture := range map[string]func(*testing.T) storeFixture{"memory": memoryFixture, "redis": redisFixture} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			s := newSession(t, "peek", time.Minute, time.Hour)
			if _, err := f.store.Create(ctx, s, Limit{}); err != nil {
				t.Fatal(err)
			}
			p := f.store.(interface {
				Peek(context.Context, string) (Entry, error)
			})
			e, err := p.Peek(ctx, s.Ref)
			if err != nil || e.Ref != s.Ref || !e.ExpiresAt.Equal(s.ExpiresAt) {
				t.Fatalf("Peek = %+v, %v", e, err)
			}
			if r, ok := f.store.(*RedisStore); ok {
				ttl, err := r.rdb.PTTL(ctx, sessionKey(s.Ref)).Result()
				if err != nil || ttl > time.Minute {
					t.Fatalf("TTL %v after Peek, %v", ttl, err)
				}
			}
			if err := f.store.Delete(ctx, s.Ref); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Peek(ctx, s.Ref); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Peek after revoke: %v", err)
			}
		})
	}
}

// TestRedisServiceDeleteInterleavings stops a credential write and
// DeleteService between their steps in the order that once left a live
// credential behind a deleted service: the delete reads the record and
// deletes the keys it lists after the write listed its credential but before
// it wrote the key, and removes the record only after the write has
// re-read it.
func TestRedisServiceDeleteInterleavings(t *testing.T) {
	for _, write := range []string{"add credential", "create service"} {
		t.Run(write, func(t *testing.T) {
			r := redisFixture(t).store.(*RedisStore)
			ctx := context.Background()
			s, cred := newService(t, "interleave")
			added, _ := NewCredential()
			do := func() error { return r.AddCredential(ctx, s.Name, CredentialRefOf(added)) }
			if write == "create service" {
				cred, added = added, cred
				do = func() error { return r.CreateService(ctx, s, CredentialRefOf(added)) }
			} else {
				mustCreateService(t, r, s, cred)
			}

			keysGone, release := make(chan struct{}), make(chan struct{})
			deleted := make(chan error, 1)
			r.hooks.credentialsDeleted = func() {
				close(keysGone)
				<-release
			}
			r.hooks.credentialListed = func() {
				go func() {
					_, err := r.DeleteService(ctx, s.Name)
					deleted <- err
				}()
				<-keysGone
			}
			err := do()
			close(release)
			r.hooks.credentialListed, r.hooks.credentialsDeleted = nil, nil
			if derr := <-deleted; derr != nil {
				t.Fatalf("DeleteService: %v", derr)
			}
			if err == nil {
				t.Errorf("%s racing a delete succeeded; the service was going", write)
			}
			wantResolve(t, r, cred, "")
			wantResolve(t, r, added, "")
			if _, err := r.GetService(ctx, s.Name); !errors.Is(err, ErrNotFound) {
				t.Errorf("GetService after delete: %v, want ErrNotFound", err)
			}
		})
	}
}

// TestRedisStoppedServiceDeleteIsFinished: a delete that stopped after
// marking the record leaves a service no reader sees, whose credentials the
// next DeleteService or CreateService of that name deletes.
func TestRedisStoppedServiceDeleteIsFinished(t *testing.T) {
	for _, finish := range []string{"delete", "create"} {
		t.Run(finish, func(t *testing.T) {
			r := redisFixture(t).store.(*RedisStore)
			ctx := context.Background()
			s, cred := newService(t, "stopped")
			mustCreateService(t, r, s, cred)
			sk := serviceKey(s.Name)
			raw, err := r.rdb.Get(ctx, sk).Result()
			if err != nil {
				t.Fatal(err)
			}
			if err := r.rdb.Set(ctx, sk, deletingMark+raw, 0).Err(); err != nil {
				t.Fatal(err)
			}
			if _, err := r.GetService(ctx, s.Name); !errors.Is(err, ErrNotFound) {
				t.Errorf("GetService of a service being deleted: %v, want ErrNotFound", err)
			}
			if _, err := r.ResolveServiceName(ctx, s.Name); !errors.Is(err, ErrNotFound) {
				t.Errorf("ResolveServiceName of a service being deleted: %v, want ErrNotFound", err)
			}
			if l := listed(t, r, s.Name); l != nil {
				t.Errorf("ListServices shows a service being deleted: %+v", l)
			}
			other, _ := NewCredential()
			if err := r.AddCredential(ctx, s.Name, CredentialRefOf(other)); !errors.Is(err, ErrNotFound) {
				t.Errorf("AddCredential to a service being deleted: %v, want ErrNotFound", err)
			}
			switch finish {
			case "delete":
				if n, err := r.DeleteService(ctx, s.Name); err != nil || n != 1 {
					t.Fatalf("DeleteService = %d, %v; want 1 credential", n, err)
				}
				wantResolve(t, r, cred, "")
			case "create":
				fresh, _ := NewCredential()
				mustCreateService(t, r, s, fresh)
				wantResolve(t, r, cred, "")
				wantResolve(t, r, fresh, s.Name)
			}
			wantResolve(t, r, other, "")
		})
	}
}

// TestRedisServiceRecreatedDuringDeleteStaysListed: a CreateService of the
// same name that lands between a delete's removal of the record and its
// removal of the index entry is a live service, and stays listed.
func TestRedisServiceRecreatedDuringDeleteStaysListed(t *testing.T) {
	r := redisFixture(t).store.(*RedisStore)
	ctx := context.Background()
	s, cred := newService(t, "recreated")
	mustCreateService(t, r, s, cred)
	fresh, _ := NewCredential()
	r.hooks.recordDeleted = func() {
		r.hooks.recordDeleted = nil
		mustCreateService(t, r, s, fresh)
	}
	if _, err := r.DeleteService(ctx, s.Name); err != nil {
		t.Fatalf("DeleteService: %v", err)
	}
	if listed(t, r, s.Name) == nil {
		t.Errorf("the recreated service %s is missing from ListServices", s.Name)
	}
	wantResolve(t, r, cred, "")
	wantResolve(t, r, fresh, s.Name)
}
