package metrics

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// failingServices fails every call as an unreachable store would.
type failingServices struct{ session.ServiceStore }

func (failingServices) ResolveCredential(context.Context, string) (session.ServiceEntry, error) {
	return session.ServiceEntry{}, errors.New("dial tcp: connection refused")
}

func TestInstrumentedServicesCounts(t *testing.T) {
	m := New(prometheus.NewRegistry())
	st := m.ServiceStore(session.NewMemoryStore(nil))
	ctx := context.Background()
	cred, _ := session.NewCredential()
	svc := &session.Service{Name: "billing", CreatedAt: time.Now()}
	if err := st.CreateService(ctx, svc, session.CredentialRefOf(cred)); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateService(ctx, svc, session.CredentialRefOf(cred)); !errors.Is(err, session.ErrServiceExists) {
		t.Fatal(err)
	}
	if _, err := st.ResolveCredential(ctx, session.CredentialRefOf(cred)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ResolveCredential(ctx, session.RefOf("unknown")); !errors.Is(err, session.ErrNotFound) {
		t.Fatal(err)
	}
	for op, want := range map[string]float64{"create_service": 0, "resolve_credential": 0} {
		if got := testutil.ToFloat64(m.StoreErrors.WithLabelValues(op)); got != want {
			t.Errorf("%s errors = %v, want %v", op, got, want)
		}
	}
	if _, err := st.ResolveServiceName(ctx, "billing"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.CollectAndCount(m.StoreDuration); got != 3 {
		t.Errorf("store duration series = %d, want 3 (create_service, resolve_credential, resolve_service)", got)
	}
	broken := m.ServiceStore(failingServices{})
	if _, err := broken.ResolveCredential(ctx, session.RefOf("x")); err == nil {
		t.Fatal("no error")
	}
	if got := testutil.ToFloat64(m.StoreErrors.WithLabelValues("resolve_credential")); got != 1 {
		t.Errorf("resolve_credential errors = %v, want 1", got)
	}
}
