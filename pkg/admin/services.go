package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// Services: registered machine callers and their credentials. A credential
// is shown once, in the answer that created it; afterwards it is named by
// its credential_ref, as sessions are by session_ref.

// ServiceRequest is the body of POST /v1/services.
type ServiceRequest struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles,omitempty"`
	// Audiences are the audiences the service may obtain for itself with
	// client_credentials; empty = token.audience.
	Audiences []string `json:"audiences,omitempty"`
}

// CredentialResponse answers POST /v1/services and POST
// /v1/services/{name}/credentials.
type CredentialResponse struct {
	Name          string `json:"name"`
	Credential    string `json:"credential"`
	CredentialRef string `json:"credential_ref"`
}

// ServiceInfo describes one service in a listing; never a credential.
type ServiceInfo struct {
	Name        string           `json:"name"`
	Roles       []string         `json:"roles"`
	Audiences   []string         `json:"audiences"`
	CreatedAt   time.Time        `json:"created_at"`
	Credentials []CredentialInfo `json:"credentials"`
}

// CredentialInfo names one credential of a service.
type CredentialInfo struct {
	CredentialRef string    `json:"credential_ref"`
	CreatedAt     time.Time `json:"created_at"`
}

// ServiceList answers GET /v1/services.
type ServiceList struct {
	Services []ServiceInfo `json:"services"`
}

func (h *Handler) serviceRoutes() map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		"POST /v1/services":                            h.handle(h.createService),
		"GET /v1/services":                             h.handle(h.listServices),
		"DELETE /v1/services/{name}":                   h.handle(h.deleteService),
		"POST /v1/services/{name}/credentials":         h.handle(h.addCredential),
		"DELETE /v1/services/{name}/credentials/{ref}": h.handle(h.revokeCredential),
	}
}

const serviceNameRule = "name: must be 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'"

// nameParam returns the {name} of the request path.
func nameParam(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if !session.ValidServiceName(name) {
		return "", errStatus(http.StatusBadRequest, serviceNameRule)
	}
	return name, nil
}

// newCredential makes a credential; crypto/rand failing is a 500.
func newCredential() (string, error) {
	cred, err := session.NewCredential()
	if err != nil {
		return "", internalError("admin: generate service credential", err)
	}
	return cred, nil
}

func (h *Handler) createService(w http.ResponseWriter, r *http.Request) error {
	var req ServiceRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	var err error
	if !session.ValidServiceName(req.Name) {
		err = errors.New(serviceNameRule)
	}
	if err == nil {
		err = validRoles(req.Roles)
	}
	if err == nil {
		err = validAudiences(req.Audiences)
	}
	if err == nil {
		err = checkPermissionsSize(append(append([]string(nil), req.Roles...), req.Audiences...), nil)
	}
	if err != nil {
		return badRequest(err)
	}
	cred, err := newCredential()
	if err != nil {
		return err
	}
	ref := session.CredentialRefOf(cred)
	s := &session.Service{Name: req.Name, Roles: req.Roles, Audiences: req.Audiences, CreatedAt: h.o.Now().Truncate(time.Millisecond)}
	ctx, cancel := h.ctx(r)
	defer cancel()
	err = h.o.Services.CreateService(ctx, s, ref)
	if errors.Is(err, session.ErrServiceExists) {
		return errStatus(http.StatusConflict, "service already exists")
	}
	if err != nil {
		return storeError("create_service", err)
	}
	h.auditService(r, "create_service", req.Name, ref)
	writeJSON(w, http.StatusCreated, CredentialResponse{Name: req.Name, Credential: cred, CredentialRef: ref})
	return nil
}

func (h *Handler) listServices(w http.ResponseWriter, r *http.Request) error {
	if r.URL.RawQuery != "" {
		return errStatus(http.StatusBadRequest, "no query parameters")
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	ss, err := h.o.Services.ListServices(ctx)
	if err != nil {
		return storeError("list_services", err)
	}
	out := ServiceList{Services: make([]ServiceInfo, 0, len(ss))}
	for _, s := range ss {
		info := ServiceInfo{Name: s.Name, Roles: s.Roles, Audiences: s.Audiences, CreatedAt: s.CreatedAt.UTC(), Credentials: []CredentialInfo{}}
		if info.Roles == nil {
			info.Roles = []string{}
		}
		if info.Audiences == nil {
			info.Audiences = []string{}
		}
		for _, c := range s.Credentials {
			info.Credentials = append(info.Credentials, CredentialInfo{CredentialRef: c.Ref, CreatedAt: c.CreatedAt.UTC()})
		}
		out.Services = append(out.Services, info)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) addCredential(w http.ResponseWriter, r *http.Request) error {
	name, err := nameParam(r)
	if err != nil {
		return err
	}
	if err := emptyBody(r); err != nil {
		return err
	}
	cred, err := newCredential()
	if err != nil {
		return err
	}
	ref := session.CredentialRefOf(cred)
	ctx, cancel := h.ctx(r)
	defer cancel()
	err = h.o.Services.AddCredential(ctx, name, ref)
	switch {
	case errors.Is(err, session.ErrNotFound):
		return errStatus(http.StatusNotFound, "service not found")
	case errors.Is(err, session.ErrTooManyCredentials):
		return errStatus(http.StatusConflict, err.Error())
	case err != nil:
		return storeError("add_credential", err)
	}
	h.auditService(r, "add_credential", name, ref)
	writeJSON(w, http.StatusCreated, CredentialResponse{Name: name, Credential: cred, CredentialRef: ref})
	return nil
}

func (h *Handler) revokeCredential(w http.ResponseWriter, r *http.Request) error {
	name, err := nameParam(r)
	if err != nil {
		return err
	}
	ref := r.PathValue("ref")
	if !session.ValidRef(ref) {
		return errStatus(http.StatusBadRequest, "credential_ref: malformed")
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	err = h.o.Services.RevokeCredential(ctx, name, ref)
	if errors.Is(err, session.ErrNotFound) {
		return errStatus(http.StatusNotFound, "credential not found")
	}
	if err != nil {
		return storeError("revoke_credential", err)
	}
	h.auditService(r, "revoke_credential", name, ref)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) deleteService(w http.ResponseWriter, r *http.Request) error {
	name, err := nameParam(r)
	if err != nil {
		return err
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	n, err := h.o.Services.DeleteService(ctx, name)
	if errors.Is(err, session.ErrNotFound) {
		return errStatus(http.StatusNotFound, "service not found")
	}
	if err != nil {
		return storeError("delete_service", err)
	}
	h.auditService(r, "delete_service", name, "", "revoked", n)
	writeJSON(w, http.StatusOK, RevokeResponse{Revoked: n})
	return nil
}

// maxAudiences bounds a service's audiences.
const maxAudiences = 16

// validAudiences refuses an empty audience, control characters and more
// than maxAudiences; each becomes a token's aud.
func validAudiences(auds []string) error {
	if len(auds) > maxAudiences {
		return fmt.Errorf("audiences: at most %d", maxAudiences)
	}
	for _, a := range auds {
		if a == "" {
			return errors.New("audiences: empty audience")
		}
		if err := validText("audiences", a, maxValue); err != nil {
			return err
		}
	}
	return nil
}

// emptyBody refuses a body on a request that takes none, so nothing a
// caller sends is silently ignored.
func emptyBody(r *http.Request) error {
	var b [1]byte
	if n, _ := r.Body.Read(b[:]); n > 0 {
		return errStatus(http.StatusBadRequest, "this request takes no body")
	}
	return nil
}

// auditService logs a service mutation: who, what, which service and
// which credential by ref, never the credential.
func (h *Handler) auditService(r *http.Request, action, name, ref string, extra ...any) {
	args := append([]any{"service", name}, extra...)
	if ref != "" {
		args = append(args, "credential_ref", ref)
	}
	h.audit(r, action, "", "", args...)
}

// CreateService registers a service and returns its first credential.
func (c *Client) CreateService(ctx context.Context, req ServiceRequest) (CredentialResponse, error) {
	var out CredentialResponse
	err := c.do(ctx, http.MethodPost, "/v1/services", req, &out, http.StatusCreated)
	return out, err
}

// ListServices lists every registered service and its credential refs.
func (c *Client) ListServices(ctx context.Context) ([]ServiceInfo, error) {
	var out ServiceList
	err := c.doMax(ctx, http.MethodGet, "/v1/services", nil, &out, http.StatusOK, maxListResponse)
	return out.Services, err
}

// AddCredential adds a credential to a service, for a rotation.
func (c *Client) AddCredential(ctx context.Context, name string) (CredentialResponse, error) {
	var out CredentialResponse
	err := c.do(ctx, http.MethodPost, servicePath(name)+"/credentials", nil, &out, http.StatusCreated)
	return out, err
}

// RevokeCredential deletes one credential of a service by ref.
func (c *Client) RevokeCredential(ctx context.Context, name, ref string) error {
	return c.do(ctx, http.MethodDelete, servicePath(name)+"/credentials/"+url.PathEscape(ref), nil, nil, http.StatusNoContent)
}

// DeleteService deletes a service and every credential; it returns how many
// credentials died.
func (c *Client) DeleteService(ctx context.Context, name string) (int, error) {
	var out RevokeResponse
	err := c.do(ctx, http.MethodDelete, servicePath(name), nil, &out, http.StatusOK)
	return out.Revoked, err
}

func servicePath(name string) string { return "/v1/services/" + url.PathEscape(name) }
