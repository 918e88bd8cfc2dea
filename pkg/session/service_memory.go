package session

import (
	"context"
	"sort"
)

// memServices is the memory store's share of services: the same encoded
// records as Redis, under the same keys' meaning. Guarded by MemoryStore.mu.
type memServices struct {
	services map[string]string // name → encoded service record
	creds    map[string]string // credential ref → encoded credential record
}

func (m *MemoryStore) svcInit() {
	if m.svc.services == nil {
		m.svc.services = make(map[string]string)
		m.svc.creds = make(map[string]string)
	}
}

// CreateService implements ServiceStore.
func (m *MemoryStore) CreateService(_ context.Context, s *Service, credRef string) error {
	if err := checkNewService(s, credRef); err != nil {
		return err
	}
	rec := withCredential(s, credRef, s.CreatedAt)
	raw, err := encodeService(rec)
	if err != nil {
		return err
	}
	cred, err := encodeCredential(s, s.CreatedAt)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.svcInit()
	if _, ok := m.svc.services[s.Name]; ok {
		return ErrServiceExists
	}
	m.svc.services[s.Name] = raw
	m.svc.creds[credRef] = cred
	return nil
}

// service reads a service record. Callers hold mu.
func (m *MemoryStore) service(name string) (*Service, error) {
	raw, ok := m.svc.services[name]
	if !ok {
		return nil, ErrNotFound
	}
	return decodeService(raw)
}

// AddCredential implements ServiceStore.
func (m *MemoryStore) AddCredential(_ context.Context, name, credRef string) error {
	if !ValidRef(credRef) {
		return ErrNotFound
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.svcInit()
	s, err := m.service(name)
	if err != nil {
		return err
	}
	if len(s.Credentials) >= maxCredentials {
		return ErrTooManyCredentials
	}
	now := m.now()
	raw, err := encodeService(withCredential(s, credRef, now))
	if err != nil {
		return err
	}
	cred, err := encodeCredential(s, now)
	if err != nil {
		return err
	}
	m.svc.services[name] = raw
	m.svc.creds[credRef] = cred
	return nil
}

// RevokeCredential implements ServiceStore.
func (m *MemoryStore) RevokeCredential(_ context.Context, name, credRef string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.svcInit()
	s, err := m.service(name)
	if err != nil {
		return err
	}
	next, found := withoutCredential(s, credRef)
	if !found {
		return ErrNotFound
	}
	raw, err := encodeService(next)
	if err != nil {
		return err
	}
	delete(m.svc.creds, credRef)
	m.svc.services[name] = raw
	return nil
}

// DeleteService implements ServiceStore.
func (m *MemoryStore) DeleteService(_ context.Context, name string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.svcInit()
	s, err := m.service(name)
	if err != nil {
		return 0, err
	}
	for _, c := range s.Credentials {
		delete(m.svc.creds, c.Ref)
	}
	delete(m.svc.services, name)
	return len(s.Credentials), nil
}

// GetService implements ServiceStore.
func (m *MemoryStore) GetService(_ context.Context, name string) (*Service, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.svcInit()
	return m.service(name)
}

// ListServices implements ServiceStore.
func (m *MemoryStore) ListServices(_ context.Context) ([]*Service, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.svcInit()
	out := make([]*Service, 0, len(m.svc.services))
	for name := range m.svc.services {
		s, err := m.service(name)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ResolveCredential implements ServiceStore.
func (m *MemoryStore) ResolveCredential(_ context.Context, ref string) (ServiceEntry, error) {
	m.mu.Lock()
	raw, ok := m.svc.creds[ref]
	m.mu.Unlock()
	if !ok {
		return ServiceEntry{}, ErrNotFound
	}
	return parseServiceEntry(ref, raw)
}

// ResolveServiceName implements ServiceStore.
func (m *MemoryStore) ResolveServiceName(_ context.Context, name string) (ServiceEntry, error) {
	m.mu.Lock()
	raw, ok := m.svc.services[name]
	m.mu.Unlock()
	if !ok {
		return ServiceEntry{}, ErrNotFound
	}
	return serviceEntryOf(name, raw)
}
