package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/logtest"
	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// TestServicesLifecycle walks the service endpoints through the Go client
// over memory and real Redis: create, list, rotate, revoke, delete, with
// the credential resolving exactly while it should.
func TestServicesLifecycle(t *testing.T) {
	for name, newStore := range map[string]func(*testing.T) interface {
		Sessions
		session.ServiceStore
	}{
		"memory": func(*testing.T) interface {
			Sessions
			session.ServiceStore
		} {
			return session.NewMemoryStore(nil)
		},
		"redis": func(t *testing.T) interface {
			Sessions
			session.ServiceStore
		} {
			srv := redistest.Start(t)
			rdb, err := session.NewRedisClient(srv.URL(), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			st := session.NewRedisStore(rdb)
			t.Cleanup(func() { st.Close() })
			return st
		},
	} {
		t.Run(name, func(t *testing.T) {
			store := newStore(t)
			logs := &logtest.Buffer{}
			_, c := newServer(t, store, func(o *Options) {
				o.Services = store
				o.Log = slog.New(slog.NewTextHandler(logs, nil))
			})
			ctx := context.Background()
			resolves := func(cred string) bool {
				t.Helper()
				_, err := store.ResolveCredential(ctx, session.CredentialRefOf(cred))
				if err != nil && !errors.Is(err, session.ErrNotFound) {
					t.Fatal(err)
				}
				return err == nil
			}

			first, err := c.CreateService(ctx, ServiceRequest{Name: "billing", Roles: []string{"payments"}, Audiences: []string{"ledger"}})
			if err != nil {
				t.Fatal(err)
			}
			if first.Name != "billing" || !session.ValidCredential(first.Credential) || first.CredentialRef != session.CredentialRefOf(first.Credential) {
				t.Fatalf("create answer %+v", first)
			}
			if !resolves(first.Credential) {
				t.Fatal("new credential does not resolve")
			}
			if _, err := c.CreateService(ctx, ServiceRequest{Name: "billing"}); !isStatus(err, http.StatusConflict) {
				t.Fatalf("second create: %v, want 409", err)
			}
			second, err := c.AddCredential(ctx, "billing")
			if err != nil {
				t.Fatal(err)
			}
			if !resolves(first.Credential) || !resolves(second.Credential) {
				t.Fatal("both credentials must work during a rotation")
			}
			list, err := c.ListServices(ctx)
			if err != nil || len(list) != 1 || list[0].Name != "billing" || !slices.Equal(list[0].Roles, []string{"payments"}) ||
				!slices.Equal(list[0].Audiences, []string{"ledger"}) || len(list[0].Credentials) != 2 {
				t.Fatalf("list = %+v, %v", list, err)
			}
			if err := c.RevokeCredential(ctx, "billing", first.CredentialRef); err != nil {
				t.Fatal(err)
			}
			if resolves(first.Credential) || !resolves(second.Credential) {
				t.Fatal("revoke: the first must die, the second live")
			}
			if err := c.RevokeCredential(ctx, "billing", first.CredentialRef); !isStatus(err, http.StatusNotFound) {
				t.Fatalf("second revoke: %v, want 404", err)
			}
			if _, err := c.AddCredential(ctx, "nobody"); !isStatus(err, http.StatusNotFound) {
				t.Fatalf("credential for an unknown service: %v, want 404", err)
			}
			n, err := c.DeleteService(ctx, "billing")
			if err != nil || n != 1 {
				t.Fatalf("delete = %d, %v", n, err)
			}
			if resolves(second.Credential) {
				t.Fatal("a credential of a deleted service resolves")
			}
			if _, err := c.DeleteService(ctx, "billing"); !isStatus(err, http.StatusNotFound) {
				t.Fatalf("second delete: %v, want 404", err)
			}
			list, err = c.ListServices(ctx)
			if err != nil || len(list) != 0 {
				t.Fatalf("list after delete = %+v, %v", list, err)
			}
			// The audit log names services and refs, never a credential.
			out := logs.String()
			for _, want := range []string{"create_service", "add_credential", "revoke_credential", "delete_service", first.CredentialRef} {
				if !strings.Contains(out, want) {
					t.Errorf("audit log lacks %q", want)
				}
			}
			for _, secret := range []string{first.Credential, second.Credential, session.CredentialPrefix} {
				if strings.Contains(out, secret) {
					t.Errorf("log holds a credential: %q", secret)
				}
			}
		})
	}
}

func isStatus(err error, status int) bool {
	var e *APIError
	return errors.As(err, &e) && e.Status == status
}

// TestServiceRequestsRefused: each malformed request is a 400 (or the
// status named), and nothing is stored.
func TestServiceRequestsRefused(t *testing.T) {
	store := session.NewMemoryStore(nil)
	srv, c := newServer(t, store, func(o *Options) { o.Services = store })
	if _, err := c.CreateService(context.Background(), ServiceRequest{Name: "billing"}); err != nil {
		t.Fatal(err)
	}
	ref := strings.Repeat("a", session.RefLen)
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"no name", "POST", "/v1/services", `{}`, 400},
		{"upper-case name", "POST", "/v1/services", `{"name":"Billing"}`, 400},
		{"name with a dot", "POST", "/v1/services", `{"name":"bill.ing"}`, 400},
		{"name too long", "POST", "/v1/services", `{"name":"` + strings.Repeat("a", 64) + `"}`, 400},
		{"name with a newline", "POST", "/v1/services", `{"name":"billing\n"}`, 400},
		{"unknown field", "POST", "/v1/services", `{"name":"x","audience":"y"}`, 400},
		{"field in another case", "POST", "/v1/services", `{"name":"x","NAME":"y"}`, 400},
		{"duplicate key", "POST", "/v1/services", `{"name":"x","name":"y"}`, 400},
		{"empty role", "POST", "/v1/services", `{"name":"x","roles":[""]}`, 400},
		{"empty audience", "POST", "/v1/services", `{"name":"x","audiences":[""]}`, 400},
		{"audience with a control character", "POST", "/v1/services", `{"name":"x","audiences":["a\u0000"]}`, 400},
		{"17 audiences", "POST", "/v1/services", `{"name":"x","audiences":[` + strings.TrimSuffix(strings.Repeat(`"a",`, 17), ",") + `]}`, 400},
		{"control character in a role", "POST", "/v1/services", `{"name":"x","roles":["a\u0007"]}`, 400},
		{"roles over the record budget", "POST", "/v1/services", `{"name":"x","roles":[` + strings.TrimSuffix(strings.Repeat(`"`+strings.Repeat("r", 1000)+`",`, 20), ",") + `]}`, 400},
		{"bad name in the path", "POST", "/v1/services/Billing/credentials", ``, 400},
		{"a body on add-credential", "POST", "/v1/services/billing/credentials", `{"name":"x"}`, 400},
		{"malformed credential_ref", "DELETE", "/v1/services/billing/credentials/xyz", ``, 400},
		{"unknown credential_ref", "DELETE", "/v1/services/billing/credentials/" + ref, ``, 404},
		{"a query on list", "GET", "/v1/services?limit=1", ``, 400},
		{"no token", "GET", "/v1/services", ``, 401},
	} {
		tok := testToken
		if tc.name == "no token" {
			tok = ""
		}
		if got, _ := call(t, srv, tc.method, tc.path, tc.body, tok); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	list, err := c.ListServices(context.Background())
	if err != nil || len(list) != 1 || len(list[0].Credentials) != 1 {
		t.Fatalf("refused requests changed the store: %+v, %v", list, err)
	}
}

// TestServicesNotServedWithoutAStore: a handler without a service store
// has no service endpoints.
func TestServicesNotServedWithoutAStore(t *testing.T) {
	// Not through the contract check: the document describes the service
	// endpoints, which this handler, without a service store, does not serve.
	h := NewHandler(Options{Store: session.NewMemoryStore(nil)})
	h.SetTokens([]string{testToken})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if got, _ := call(t, srv, "GET", "/v1/services", "", testToken); got != http.StatusNotFound {
		t.Fatalf("GET /v1/services: %d, want 404", got)
	}
}
