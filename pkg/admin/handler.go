package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sessiongate/sessiongate/api"
	"github.com/sessiongate/sessiongate/pkg/events"
	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
)

// Sessions is what the admin API needs from a session store.
type Sessions interface {
	Create(ctx context.Context, s *session.Session, limit session.Limit) ([]string, error)
	CreateFamily(ctx context.Context, s *session.Session, limit session.Limit, p session.RefreshPolicy) (session.Refreshed, []string, error)
	Delete(ctx context.Context, ref string) error
	RevokeFamily(ctx context.Context, familyRef string) error
	ListPage(ctx context.Context, subject string, after uint64, limit int) (session.Page, error)
	DeleteUser(ctx context.Context, subject string) (int, error)
	UpdateUser(ctx context.Context, subject string, u session.Update) (int, error)
}

// Options configure the admin handler.
type Options struct {
	Store Sessions
	// Services, when set, serves /v1/services (services.go).
	Services session.ServiceStore
	Cookie   session.Cookie
	// IdleTimeout and AbsoluteTimeout are the defaults and the maxima of a
	// new session's timeouts.
	IdleTimeout     time.Duration
	AbsoluteTimeout time.Duration
	Limit           session.Limit
	// Refresh, when set, lets a login ask for a refresh token
	// ("refresh": true) with these lifetimes; nil refuses it.
	Refresh *session.RefreshPolicy
	// Open disables token authentication; only for --dev on loopback.
	Open bool
	// StoreTimeout bounds each store call.
	StoreTimeout time.Duration
	// RateLimit is the requests per second each source address may make,
	// with bursts of RateBurst; 0 disables the limit. It applies before the
	// token check, so guessing tokens is throttled too.
	RateLimit float64
	RateBurst int
	// ClientCertAuthOnly accepts a request whose connection presented a
	// verified client certificate without a bearer token. It only makes
	// sense with TLS (TLSFiles) and a client CA; without one no request has a
	// verified certificate and tokens stay required.
	ClientCertAuthOnly bool
	Log                *slog.Logger
	Now                func() time.Time

	// Events receives logins and revocations (events.go); EventStore
	// serves GET /v1/events. Nil: nothing recorded, and 404.
	Events     events.Recorder
	EventStore events.Store
}

// MaxBodyBytes bounds a request body: 64 KiB is far more than any valid
// request (the record it becomes is capped at session.MaxRecordSize) and
// small enough that a flood of bodies costs little memory. Larger is 413.
const MaxBodyBytes = 64 << 10

// Limits on what a request may carry. They keep a record under
// session.MaxRecordSize and turn absurd input into a 400 instead of a
// stored oddity.
const (
	maxSubject    = 256
	maxRoles      = 64
	maxClaims     = 64
	maxValue      = 1024
	minTimeout    = time.Second
	maxDeviceText = 512

	// A record is a ~70-byte header plus the JSON of the session. The part
	// a login sets once (subject, tenant, device) and the part an update
	// may replace (roles, claims) each get a budget of encoded JSON, so a
	// create cannot produce a record the store refuses, and no update can
	// later grow a valid session past it. JSON escaping can make a value
	// up to six times its length ("<" is "\u003c"), so the per-field
	// limits above do not bound this alone.
	maxIdentityJSON    = 6 << 10
	maxPermissionsJSON = 9 << 10
)

// Handler serves the admin API.
type Handler struct {
	o       Options
	tokens  atomic.Pointer[[][sha256.Size]byte]
	mux     *http.ServeMux
	limiter *sourceLimiter // nil: no rate limit
}

// NewHandler returns the admin API handler.
func NewHandler(o Options) *Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.StoreTimeout == 0 {
		o.StoreTimeout = 2 * time.Second
	}
	h := &Handler{o: o, mux: http.NewServeMux()}
	if o.RateLimit > 0 {
		h.limiter = newSourceLimiter(o.RateLimit, o.RateBurst)
	}
	h.SetTokens(nil)
	for pattern, f := range h.routes() {
		h.mux.HandleFunc(pattern, f)
	}
	return h
}

// routes is every endpoint, as ServeMux patterns; api/openapi.yaml must
// describe exactly these (TestOpenAPIRoutes).
func (h *Handler) routes() map[string]http.HandlerFunc {
	routes := map[string]http.HandlerFunc{
		"POST /v1/sessions":                   h.handle(h.create),
		"GET /v1/users/{subject}/sessions":    h.handle(h.list),
		"DELETE /v1/sessions/{ref}":           h.handle(h.revoke),
		"DELETE /v1/users/{subject}/sessions": h.handle(h.revokeUser),
		"PATCH /v1/users/{subject}/sessions":  h.handle(h.updateUser),
		"GET /v1/openapi.yaml":                serveOpenAPI,
		"GET /v1/events":                      h.handle(h.events),
	}
	if h.o.Services != nil {
		maps.Copy(routes, h.serviceRoutes())
	}
	return routes
}

// serveOpenAPI answers with the embedded contract. It sits behind the same
// credential as every other endpoint: the document is public in the
// repository, so nothing is gained by opening it, and the admin port then
// answers nothing at all to a caller without a credential.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(api.OpenAPI)
}

// SetTokens replaces the accepted bearer tokens; several may be valid at once
// so a token can be rotated without downtime. Tokens are kept as SHA-256
// digests and compared in constant time.
func (h *Handler) SetTokens(tokens []string) {
	ds := make([][sha256.Size]byte, 0, len(tokens))
	for _, t := range tokens {
		ds = append(ds, sha256.Sum256([]byte(t)))
	}
	h.tokens.Store(&ds)
}

// ParseTokenFile reads bearer tokens, one per line; blank lines and lines
// starting with # are ignored.
func ParseTokenFile(data []byte) ([]string, error) {
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) < 16 {
			return nil, errors.New("admin token shorter than 16 characters")
		}
		out = append(out, line)
	}
	if len(out) == 0 {
		return nil, errors.New("no admin token in file")
	}
	return out, nil
}

// principalKey carries, in a request's context, how the caller proved who
// it is; the audit log records it.
type principalKey struct{}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if h.limiter != nil {
		if ok, wait := h.limiter.allow(r.RemoteAddr, time.Now()); !ok {
			h.serveError(w, r, &httpError{code: http.StatusTooManyRequests, msg: "rate limited", retry: wait})
			return
		}
	}
	who := "open"
	if !h.o.Open {
		var ok bool
		if who, ok = h.authenticate(r); !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sessiongate-admin"`)
			h.serveError(w, r, &httpError{code: http.StatusUnauthorized, msg: "unauthorized",
				logMsg: "admin: unauthorized request", level: slog.LevelWarn})
			return
		}
	}
	if (who == "open" || who == "client_cert") && fromBrowserPage(r) {
		h.serveError(w, r, &httpError{code: http.StatusForbidden, msg: "request from a web page refused",
			logMsg: "admin: request from a web page refused", level: slog.LevelWarn})
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), principalKey{}, who))
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	h.mux.ServeHTTP(w, r)
}

// fromBrowserPage reports a request a browser made on behalf of a web page:
// it carries an Origin, or Fetch Metadata other than a navigation the user
// typed. A client certificate (and --dev's open port) is an ambient
// credential the browser presents on any request to the admin origin, so a
// hostile page could otherwise POST a body without a Content-Type (a
// "simple" request, no preflight) and create sessions or service
// credentials, evicting a user's real sessions at the session limit. No
// admin client is a web page; a bearer token is never attached by a browser
// on its own, so token requests are not judged by these headers.
func fromBrowserPage(r *http.Request) bool {
	if len(r.Header.Values("Origin")) > 0 {
		return true
	}
	site := r.Header.Values("Sec-Fetch-Site")
	return len(site) > 0 && (len(site) != 1 || site[0] != "none")
}

// authenticate returns how the request proved itself: "token#N" for the
// N-th configured token (0-based, the line order of the token file), so the
// audit log shows which token is still in use during a rotation without
// showing anything of the token, or else "client_cert" for a verified client
// certificate (with ClientCertAuthOnly). A valid token is named even when a
// certificate would do: the token is the credential a browser cannot
// attach on its own (fromBrowserPage).
func (h *Handler) authenticate(r *http.Request) (string, bool) {
	if who, ok := h.tokenAuth(r); ok {
		return who, true
	}
	if h.o.ClientCertAuthOnly && clientCN(r) != "" {
		return "client_cert", true
	}
	return "", false
}

// tokenAuth checks the bearer token.
func (h *Handler) tokenAuth(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	got := sha256.Sum256([]byte(tok))
	// Every token is compared, matched or not, and the index is picked
	// without a branch: the time taken says nothing about which matched.
	match, index := 0, 0
	for i, want := range *h.tokens.Load() {
		eq := subtle.ConstantTimeCompare(got[:], want[:])
		index = subtle.ConstantTimeSelect(eq, i, index)
		match |= eq
	}
	if match != 1 {
		return "", false
	}
	return "token#" + strconv.Itoa(index), true
}

func (h *Handler) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.o.StoreTimeout)
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) error {
	var req CreateRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	idle, abs, err := h.timeouts(req)
	if err == nil {
		err = validateSession(req)
	}
	if err == nil {
		err = checkSize(req)
	}
	if err == nil && req.Refresh {
		err = h.checkRefresh(req)
	}
	if err != nil {
		return badRequest(err)
	}
	now := h.o.Now().Truncate(time.Millisecond)
	s := &session.Session{
		Subject:   req.Subject,
		Tenant:    req.Tenant,
		Roles:     req.Roles,
		Claims:    req.Claims,
		CreatedAt: now,
	}
	if req.Device != nil {
		s.Device = session.Device(*req.Device)
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	var (
		resp    CreateResponse
		evicted []string
	)
	if req.Refresh {
		var fam session.Refreshed
		fam, evicted, err = h.o.Store.CreateFamily(ctx, s, h.o.Limit, *h.o.Refresh)
		end := fam.RefreshExpiresAt.UTC()
		resp = CreateResponse{SessionID: fam.ID, RefreshToken: fam.RefreshToken, RefreshExpiresAt: &end, FamilyRef: fam.FamilyRef}
		abs = h.o.Refresh.AccessAbsolute
	} else {
		id, idErr := session.NewID()
		if idErr != nil {
			return internalError("admin: generate session id", idErr)
		}
		s.Ref, s.ExpiresAt, s.IdleTimeout = session.RefOf(id), now.Add(abs), idle
		evicted, err = h.o.Store.Create(ctx, s, h.o.Limit)
		resp = CreateResponse{SessionID: id}
	}
	if errors.Is(err, session.ErrLimit) {
		h.audit(r, "create_rejected", req.Subject, "")
	}
	if err != nil {
		return storeError("create", err)
	}
	if req.Refresh {
		h.audit(r, "create", req.Subject, s.Ref, "family_ref", s.FamilyRef)
	} else {
		h.audit(r, "create", req.Subject, s.Ref)
	}
	details := loginDetails(s.Device)
	if s.FamilyRef != "" {
		details["family_ref"] = s.FamilyRef
	}
	h.record(r, events.Event{Type: events.Login, Subject: req.Subject, SessionRef: s.Ref, Details: details})
	for _, ref := range evicted {
		h.audit(r, "evict", req.Subject, ref)
		h.record(r, events.Event{Type: events.Revoke, Subject: req.Subject, SessionRef: ref, Details: map[string]string{"by": "eviction"}})
	}
	resp.SessionRef = s.Ref
	resp.SetCookie = h.o.Cookie.Set(resp.SessionID, abs)
	resp.ExpiresAt = s.ExpiresAt.UTC()
	writeJSON(w, http.StatusCreated, resp)
	return nil
}

// checkRefresh refuses a refresh request the configuration does not allow.
func (h *Handler) checkRefresh(req CreateRequest) error {
	if h.o.Refresh == nil {
		return errors.New("refresh: refresh tokens are not enabled (refresh.enabled)")
	}
	if req.IdleTimeout != "" || req.AbsoluteTimeout != "" {
		return errors.New("refresh: idle_timeout and absolute_timeout do not apply; a refresh family's access sessions use refresh.access_idle_timeout and refresh.access_absolute_timeout")
	}
	return nil
}

// timeouts resolves a request's timeouts against the configured ones, which
// are both defaults and caps.
func (h *Handler) timeouts(req CreateRequest) (idle, abs time.Duration, err error) {
	idle, abs = h.o.IdleTimeout, h.o.AbsoluteTimeout
	parse := func(name, v string, limit time.Duration) (time.Duration, error) {
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("%s: %v", name, err)
		}
		if d < minTimeout || d > limit {
			return 0, fmt.Errorf("%s: must be between %v and %v", name, minTimeout, limit)
		}
		return d, nil
	}
	if req.AbsoluteTimeout != "" {
		if abs, err = parse("absolute_timeout", req.AbsoluteTimeout, h.o.AbsoluteTimeout); err != nil {
			return 0, 0, err
		}
	}
	if req.IdleTimeout != "" {
		if idle, err = parse("idle_timeout", req.IdleTimeout, h.o.IdleTimeout); err != nil {
			return 0, 0, err
		}
	}
	return min(idle, abs), abs, nil
}

func validateSession(req CreateRequest) error {
	if err := validSubject(req.Subject); err != nil {
		return err
	}
	if err := validText("tenant", req.Tenant, maxValue); err != nil {
		return err
	}
	if err := validRoles(req.Roles); err != nil {
		return err
	}
	if err := validClaims(req.Claims); err != nil {
		return err
	}
	if d := req.Device; d != nil {
		for name, v := range map[string]string{"device.user_agent": d.UserAgent, "device.ip": d.IP, "device.name": d.Name} {
			if err := validText(name, v, maxDeviceText); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkSize holds a new session to the record budgets (maxIdentityJSON,
// maxPermissionsJSON).
func checkSize(req CreateRequest) error {
	n := jsonLen(req.Subject) + jsonLen(req.Tenant)
	if req.Device != nil {
		n += jsonLen(req.Device)
	}
	if n > maxIdentityJSON {
		return fmt.Errorf("subject, tenant and device encode to %d bytes; the limit is %d", n, maxIdentityJSON)
	}
	return checkPermissionsSize(req.Roles, req.Claims)
}

func checkPermissionsSize(roles []string, claims map[string]string) error {
	if n := jsonLen(roles) + jsonLen(claims); n > maxPermissionsJSON {
		return fmt.Errorf("roles and claims encode to %d bytes; the limit is %d", n, maxPermissionsJSON)
	}
	return nil
}

// jsonLen is the length of v as the session record encodes it
// (encoding/json, HTML-safe escaping).
func jsonLen(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return math.MaxInt32 // only strings, slices and maps of strings get here
	}
	return len(b)
}

func validSubject(s string) error {
	if s == "" {
		return errors.New("subject: required")
	}
	return validText("subject", s, maxSubject)
}

func validRoles(roles []string) error {
	if len(roles) > maxRoles {
		return fmt.Errorf("roles: at most %d", maxRoles)
	}
	for _, r := range roles {
		if r == "" {
			return errors.New("roles: empty role")
		}
		if err := validText("roles", r, maxValue); err != nil {
			return err
		}
	}
	return nil
}

func validClaims(claims map[string]string) error {
	if len(claims) > maxClaims {
		return fmt.Errorf("claims: at most %d", maxClaims)
	}
	for k, v := range claims {
		// The one rule the signer and the record decoder apply too: names
		// sessiongate sets, or that fold onto one, are refused, and so is
		// anything outside a small ASCII charset (token.CheckCustomClaim).
		if err := token.CheckCustomClaim(k); err != nil {
			return fmt.Errorf("claims: %w", err)
		}
		if err := validText("claims."+k, v, maxValue); err != nil {
			return err
		}
	}
	return nil
}

// validText refuses control characters (session.ControlRune, which the
// record decoder applies too) and invalid UTF-8 in anything stored:
// such values end up in JWT claims, logs and admin listings, and there is no
// legitimate use for them.
func validText(name, v string, limit int) error {
	if len(v) > limit {
		return fmt.Errorf("%s: longer than %d bytes", name, limit)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("%s: not valid UTF-8", name)
	}
	for _, r := range v {
		if session.ControlRune(r) {
			return fmt.Errorf("%s: control character", name)
		}
	}
	return nil
}

// subjectParam returns the {subject} of the request path, or a 400 when it
// is not a valid subject.
func subjectParam(r *http.Request) (string, error) {
	subject := r.PathValue("subject")
	if err := validSubject(subject); err != nil {
		return "", badRequest(err)
	}
	return subject, nil
}

func (h *Handler) revoke(w http.ResponseWriter, r *http.Request) error {
	ref := r.PathValue("ref")
	ctx, cancel := h.ctx(r)
	defer cancel()
	// A family ref and a session ref differ in shape ("fam_" + 32 hex vs
	// 32 hex), so one path takes both without a lookup.
	switch {
	case session.ValidFamilyRef(ref):
		if err := h.o.Store.RevokeFamily(ctx, ref); err != nil {
			return storeError("revoke", err)
		}
		h.audit(r, "revoke_family", "", "", "family_ref", ref)
		h.record(r, events.Event{Type: events.Revoke, Details: map[string]string{"family_ref": ref}})
	case session.ValidRef(ref):
		if err := h.o.Store.Delete(ctx, ref); err != nil {
			return storeError("revoke", err)
		}
		h.audit(r, "revoke", "", ref)
		h.record(r, events.Event{Type: events.Revoke, SessionRef: ref})
	default:
		return errStatus(http.StatusBadRequest, "session_ref: malformed (a session_ref or a family_ref)")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) revokeUser(w http.ResponseWriter, r *http.Request) error {
	subject, err := subjectParam(r)
	if err != nil {
		return err
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	n, err := h.o.Store.DeleteUser(ctx, subject)
	if err != nil {
		return storeError("revoke_user", err)
	}
	h.audit(r, "revoke_user", subject, "", "revoked", n)
	h.record(r, events.Event{Type: events.Revoke, Subject: subject, Details: map[string]string{"sessions": strconv.Itoa(n)}})
	writeJSON(w, http.StatusOK, RevokeResponse{Revoked: n})
	return nil
}

func (h *Handler) updateUser(w http.ResponseWriter, r *http.Request) error {
	subject, err := subjectParam(r)
	if err != nil {
		return err
	}
	var req UpdateRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Roles == nil && req.Claims == nil {
		return errStatus(http.StatusBadRequest, "nothing to update: give roles and/or claims")
	}
	if req.Roles != nil {
		err = validRoles(*req.Roles)
	}
	if err == nil {
		err = validClaims(req.Claims)
	}
	if err == nil {
		// Whichever part is absent keeps each session's current value,
		// which a create already held to its share of the budget.
		var roles []string
		if req.Roles != nil {
			roles = *req.Roles
		}
		err = checkPermissionsSize(roles, req.Claims)
	}
	if err != nil {
		return badRequest(err)
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	n, err := h.o.Store.UpdateUser(ctx, subject, session.Update{Roles: req.Roles, Claims: req.Claims})
	if err != nil {
		return storeError("update_user", err)
	}
	h.audit(r, "update_user", subject, "", "updated", n)
	writeJSON(w, http.StatusOK, UpdateResponse{Updated: n})
	return nil
}

// audit logs every mutation: who (remote address, the credential that
// authenticated it, the client certificate's CN under mTLS), what, and which
// session by ref, never by ID.
func (h *Handler) audit(r *http.Request, action, subject, ref string, extra ...any) {
	who, _ := r.Context().Value(principalKey{}).(string)
	args := append([]any{"action", action, "remote", r.RemoteAddr, "auth", who}, extra...)
	if cn := clientCN(r); cn != "" {
		args = append(args, "client_cn", cn)
	}
	if subject != "" {
		args = append(args, "subject", subject)
	}
	if ref != "" {
		args = append(args, "session_ref", ref)
	}
	h.o.Log.Info("admin audit", args...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
