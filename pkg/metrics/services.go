package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// ServiceStore wraps a service store so every call is timed and failures
// counted under sessiongate_store_*{op}, next to the session store's ops.
func (m *Metrics) ServiceStore(s session.ServiceStore) session.ServiceStore {
	return &instrumentedServices{ServiceStore: s, m: m, resolve: m.storeOp("resolve_credential"), resolveName: m.storeOp("resolve_service")}
}

type instrumentedServices struct {
	session.ServiceStore
	m *Metrics
	// Resolved once: both are on the Check path.
	resolve, resolveName storeOp
}

// serviceDone records a service store call; "already exists" and "too many
// credentials" are answers, not failures.
func (s *instrumentedServices) serviceDone(op string, start time.Time, err error) {
	if errors.Is(err, session.ErrServiceExists) || errors.Is(err, session.ErrTooManyCredentials) {
		err = nil
	}
	s.m.storeOp(op).done(start, err)
}

func (s *instrumentedServices) ResolveCredential(ctx context.Context, ref string) (session.ServiceEntry, error) {
	start := time.Now()
	e, err := s.ServiceStore.ResolveCredential(ctx, ref)
	s.resolve.done(start, err)
	return e, err
}

func (s *instrumentedServices) CreateService(ctx context.Context, in *session.Service, credRef string) error {
	start := time.Now()
	err := s.ServiceStore.CreateService(ctx, in, credRef)
	s.serviceDone("create_service", start, err)
	return err
}

func (s *instrumentedServices) AddCredential(ctx context.Context, name, credRef string) error {
	start := time.Now()
	err := s.ServiceStore.AddCredential(ctx, name, credRef)
	s.serviceDone("add_credential", start, err)
	return err
}

func (s *instrumentedServices) RevokeCredential(ctx context.Context, name, credRef string) error {
	start := time.Now()
	err := s.ServiceStore.RevokeCredential(ctx, name, credRef)
	s.serviceDone("revoke_credential", start, err)
	return err
}

func (s *instrumentedServices) DeleteService(ctx context.Context, name string) (int, error) {
	start := time.Now()
	n, err := s.ServiceStore.DeleteService(ctx, name)
	s.serviceDone("delete_service", start, err)
	return n, err
}

func (s *instrumentedServices) GetService(ctx context.Context, name string) (*session.Service, error) {
	start := time.Now()
	svc, err := s.ServiceStore.GetService(ctx, name)
	s.serviceDone("get_service", start, err)
	return svc, err
}

func (s *instrumentedServices) ListServices(ctx context.Context) ([]*session.Service, error) {
	start := time.Now()
	ss, err := s.ServiceStore.ListServices(ctx)
	s.serviceDone("list_services", start, err)
	return ss, err
}

func (s *instrumentedServices) ResolveServiceName(ctx context.Context, name string) (session.ServiceEntry, error) {
	start := time.Now()
	e, err := s.ServiceStore.ResolveServiceName(ctx, name)
	s.resolveName.done(start, err)
	return e, err
}
