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

func (h *Handler) serviceRoutes() {
	h.mux.HandleFunc("POST /v1/services", h.createService)
	h.mux.HandleFunc("GET /v1/services", h.listServices)
	h.mux.HandleFunc("DELETE /v1/services/{name}", h.deleteService)
	h.mux.HandleFunc("POST /v1/services/{name}/credentials", h.addCredential)
	h.mux.HandleFunc("DELETE /v1/services/{name}/credentials/{ref}", h.revokeCredential)
}

// nameParam returns the {name} of the request path, or answers 400.
func nameParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if !session.ValidServiceName(name) {
		writeError(w, http.StatusBadRequest, "name: must be 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'")
		return "", false
	}
	return name, true
}

// newCredential makes a credential, answering 500 when crypto/rand fails.
func (h *Handler) newCredential(w http.ResponseWriter) (string, bool) {
	cred, err := session.NewCredential()
	if err != nil {
		h.o.Log.Error("admin: generate service credential", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
		return "", false
	}
	return cred, true
}

func (h *Handler) createService(w http.ResponseWriter, r *http.Request) {
	var req ServiceRequest
	if !decode(w, r, &req) {
		return
	}
	var err error
	if !session.ValidServiceName(req.Name) {
		err = errors.New("name: must be 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'")
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
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	cred, ok := h.newCredential(w)
	if !ok {
		return
	}
	ref := session.CredentialRefOf(cred)
	s := &session.Service{Name: req.Name, Roles: req.Roles, Audiences: req.Audiences, CreatedAt: h.o.Now().Truncate(time.Millisecond)}
	ctx, cancel := h.ctx(r)
	defer cancel()
	err = h.o.Services.CreateService(ctx, s, ref)
	if errors.Is(err, session.ErrServiceExists) {
		writeError(w, http.StatusConflict, "service already exists")
		return
	}
	if err != nil {
		h.storeError(w, "create_service", err)
		return
	}
	h.auditService(r, "create_service", req.Name, ref)
	writeJSON(w, http.StatusCreated, CredentialResponse{Name: req.Name, Credential: cred, CredentialRef: ref})
}

func (h *Handler) listServices(w http.ResponseWriter, r *http.Request) {
	if r.URL.RawQuery != "" {
		writeError(w, http.StatusBadRequest, "no query parameters")
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	ss, err := h.o.Services.ListServices(ctx)
	if err != nil {
		h.storeError(w, "list_services", err)
		return
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
}

func (h *Handler) addCredential(w http.ResponseWriter, r *http.Request) {
	name, ok := nameParam(w, r)
	if !ok {
		return
	}
	if !emptyBody(w, r) {
		return
	}
	cred, ok := h.newCredential(w)
	if !ok {
		return
	}
	ref := session.CredentialRefOf(cred)
	ctx, cancel := h.ctx(r)
	defer cancel()
	err := h.o.Services.AddCredential(ctx, name, ref)
	switch {
	case errors.Is(err, session.ErrNotFound):
		writeError(w, http.StatusNotFound, "service not found")
		return
	case errors.Is(err, session.ErrTooManyCredentials):
		writeError(w, http.StatusConflict, err.Error())
		return
	case err != nil:
		h.storeError(w, "add_credential", err)
		return
	}
	h.auditService(r, "add_credential", name, ref)
	writeJSON(w, http.StatusCreated, CredentialResponse{Name: name, Credential: cred, CredentialRef: ref})
}

func (h *Handler) revokeCredential(w http.ResponseWriter, r *http.Request) {
	name, ok := nameParam(w, r)
	if !ok {
		return
	}
	ref := r.PathValue("ref")
	if !session.ValidRef(ref) {
		writeError(w, http.StatusBadRequest, "credential_ref: malformed")
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	err := h.o.Services.RevokeCredential(ctx, name, ref)
	if errors.Is(err, session.ErrNotFound) {
		writeError(w, http.StatusNotFound, "credential not found")
		return
	}
	if err != nil {
		h.storeError(w, "revoke_credential", err)
		return
	}
	h.auditService(r, "revoke_credential", name, ref)
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) deleteService(w http.ResponseWriter, r *http.Request) {
	name, ok := nameParam(w, r)
	if !ok {
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	n, err := h.o.Services.DeleteService(ctx, name)
	if errors.Is(err, session.ErrNotFound) {
		writeError(w, http.StatusNotFound, "service not found")
		return
	}
	if err != nil {
		h.storeError(w, "delete_service", err)
		return
	}
	h.auditService(r, "delete_service", name, "", "revoked", n)
	writeJSON(w, http.StatusOK, RevokeResponse{Revoked: n})
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
func emptyBody(w http.ResponseWriter, r *http.Request) bool {
	var b [1]byte
	if n, _ := r.Body.Read(b[:]); n > 0 {
		writeError(w, http.StatusBadRequest, "this request takes no body")
		return false
	}
	return true
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
