// Package exchange is sessiongate's OAuth 2.0 token endpoint for services,
// POST /oauth2/token on http_addr:
//
//   - token exchange (RFC 8693): a service that received a user's internal
//     token, and must call another service on the user's behalf, exchanges
//     it for a token addressed to that service, naming itself as the actor,
//     instead of forwarding a token minted for its own audience;
//   - client credentials (RFC 6749 §4.4): a service obtains a service token
//     for itself, for calls that have no user.
//
// Every caller authenticates with its service credential. Every doubt is a
// refusal with an RFC 6749 §5.2 error, and nothing is signed for it; a
// store that cannot answer is a 503, never a token.
package exchange

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
	"github.com/sessiongate/sessiongate/pkg/verify"
)

// Grant and token type URIs (RFC 8693 §2.1, §3).
const (
	GrantTokenExchange     = "urn:ietf:params:oauth:grant-type:token-exchange"
	GrantClientCredentials = "client_credentials"
	TokenTypeJWT           = "urn:ietf:params:oauth:token-type:jwt"
)

// MaxBodyBytes bounds a token request's form. A valid one is a few hundred
// bytes plus one internal token (well under 4 KiB); larger is refused
// before it is parsed.
const MaxBodyBytes = 16 << 10

// Sessions is what the endpoint needs from the session store: whether the
// session behind a subject token still stands, without sliding it.
// session.ErrNotFound means revoked or expired; session.ErrCorrupt a record
// that cannot be trusted; any other error a store that could not answer.
type Sessions interface {
	Peek(ctx context.Context, ref string) (session.Entry, error)
}

// Services is what the endpoint needs from the service store.
type Services interface {
	ResolveCredential(ctx context.Context, ref string) (session.ServiceEntry, error)
	GetService(ctx context.Context, name string) (*session.Service, error)
}

// Interface guards.
var (
	_ Sessions = (*session.RedisStore)(nil)
	_ Sessions = (*session.MemoryStore)(nil)
	_ Services = (*session.RedisStore)(nil)
	_ Services = (*session.MemoryStore)(nil)
)

// Options configure a Handler.
type Options struct {
	Sessions Sessions
	Services Services
	Signer   *token.Signer
	// Policy says which audiences each service may obtain for a user by
	// token exchange: {"billing": ["inventory", "shipping"]}. A service it
	// does not name may obtain none.
	Policy map[string][]string
	// DefaultAudience is what client_credentials may request for a service
	// registered without audiences (token.audience).
	DefaultAudience string
	// TTL bounds an issued token's lifetime (token.exchange_ttl); a user's
	// token never outlives the session's absolute end.
	TTL time.Duration
	// StoreTimeout bounds each store call.
	StoreTimeout time.Duration
	// RateLimit is the token requests per second each authenticated client
	// may make, with bursts of RateBurst; 0 disables it.
	RateLimit float64
	RateBurst int
	// Count, if set, is told the grant ("token_exchange",
	// "client_credentials", or "other" before one is known) and the result
	// ("ok" or the error code) of every answer, for metrics.
	Count func(grant, result string)
	Log   *slog.Logger
	Now   func() time.Time
}

// Grants and results as Count reports them: the label values of
// sessiongate_token_requests_total.
var (
	CountedGrants  = []string{"token_exchange", "client_credentials", "other"}
	CountedResults = []string{"ok", "invalid_request", "invalid_client", "invalid_grant", "invalid_target",
		"unsupported_grant_type", "slow_down", "temporarily_unavailable", "server_error"}
)

// Handler serves POST /oauth2/token.
type Handler struct {
	o Options

	mu       sync.Mutex
	limiters map[string]*rate.Limiter // by service name
}

// maxLimiters bounds the per-client limiters kept; clients are registered
// services, so this is only reached after many deletions, and then the
// map starts afresh.
const maxLimiters = 10_000

// New returns a Handler.
func New(o Options) *Handler {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.StoreTimeout == 0 {
		o.StoreTimeout = time.Second
	}
	return &Handler{o: o, limiters: map[string]*rate.Limiter{}}
}

// tokenResponse is RFC 8693 §2.2.1's answer (RFC 6749 §5.1 for
// client_credentials). token_type is N_A: the token is not an OAuth access
// token for a resource server's Authorization header but the internal JWT
// the calling service sends on in token.header.
type tokenResponse struct {
	AccessToken     string `json:"access_token"`
	IssuedTokenType string `json:"issued_token_type"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
}

// oauthError is an RFC 6749 §5.2 error answer.
type oauthError struct {
	status      int
	code        string
	description string
	retryAfter  time.Duration
}

func (e *oauthError) Error() string { return e.code + ": " + e.description }

func refuse(status int, code, format string, args ...any) *oauthError {
	return &oauthError{status: status, code: code, description: fmt.Sprintf(format, args...)}
}

func invalidRequest(format string, args ...any) *oauthError {
	return refuse(http.StatusBadRequest, "invalid_request", format, args...)
}

func invalidGrant(format string, args ...any) *oauthError {
	return refuse(http.StatusBadRequest, "invalid_grant", format, args...)
}

// unavailable is the answer when a store cannot answer: closed, and worth
// a retry.
func unavailable() *oauthError {
	e := refuse(http.StatusServiceUnavailable, "temporarily_unavailable", "store unavailable; retry")
	e.retryAfter = time.Second
	return e
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	resp, grant, err := h.serve(r)
	if h.o.Count != nil {
		result := "ok"
		if err != nil {
			result = err.code
		}
		h.o.Count(grant, result)
	}
	if err != nil {
		h.writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(resp)
}

func (h *Handler) writeError(w http.ResponseWriter, e *oauthError) {
	switch e.status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Basic realm="sessiongate"`)
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(max(e.retryAfter, time.Second).Seconds()))))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.code, e.description})
}

// serve authenticates the client, applies its rate limit, reads the form
// and runs the grant, which it also returns as Count names it.
func (h *Handler) serve(r *http.Request) (*tokenResponse, string, *oauthError) {
	client, roles, err := h.authenticate(r)
	if err != nil {
		h.o.Log.Debug("token endpoint: client refused", "remote", r.RemoteAddr, "error", err.code)
		return nil, "other", err
	}
	if err := h.allow(client); err != nil {
		return nil, "other", err
	}
	form, err := readForm(r)
	if err != nil {
		h.audit(r, "refused", client, "", "", "", err.code)
		return nil, "other", err
	}
	switch form["grant_type"] {
	case GrantTokenExchange:
		resp, err := h.tokenExchange(r, client, form)
		return resp, "token_exchange", err
	case GrantClientCredentials:
		resp, err := h.clientCredentials(r, client, roles, form)
		return resp, "client_credentials", err
	case "":
		return nil, "other", invalidRequest("grant_type is required")
	}
	return nil, "other", refuse(http.StatusBadRequest, "unsupported_grant_type", "want %s or %s", GrantTokenExchange, GrantClientCredentials)
}

// authenticate reads the client's service credential, from Authorization:
// Bearer <credential> or Basic <name:credential>, and returns the service
// and its roles. The credential's form is checked before any store round
// trip.
func (h *Handler) authenticate(r *http.Request) (string, []string, *oauthError) {
	values := r.Header.Values("Authorization")
	if len(values) != 1 {
		return "", nil, refuse(http.StatusUnauthorized, "invalid_client", "one Authorization header with the service credential is required")
	}
	scheme, rest, _ := strings.Cut(values[0], " ")
	var name, cred string
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		cred = rest
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.Strict().DecodeString(rest)
		if err != nil {
			return "", nil, refuse(http.StatusUnauthorized, "invalid_client", "malformed Basic credentials")
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok || !session.ValidServiceName(user) {
			return "", nil, refuse(http.StatusUnauthorized, "invalid_client", "malformed Basic credentials")
		}
		name, cred = user, pass
	default:
		return "", nil, refuse(http.StatusUnauthorized, "invalid_client", "Bearer or Basic client authentication is required")
	}
	if !session.ValidCredential(cred) {
		return "", nil, refuse(http.StatusUnauthorized, "invalid_client", "not a service credential")
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.o.StoreTimeout)
	e, err := h.o.Services.ResolveCredential(ctx, session.CredentialRefOf(cred))
	cancel()
	switch {
	case errors.Is(err, session.ErrNotFound), errors.Is(err, session.ErrCorrupt):
		return "", nil, refuse(http.StatusUnauthorized, "invalid_client", "unknown or revoked credential")
	case err != nil:
		h.o.Log.Warn("token endpoint: service store unavailable", "err", err)
		return "", nil, unavailable()
	}
	if name != "" && name != e.Name {
		return "", nil, refuse(http.StatusUnauthorized, "invalid_client", "credential of another service")
	}
	roles, err := e.Roles()
	if err != nil {
		return "", nil, refuse(http.StatusUnauthorized, "invalid_client", "unknown or revoked credential")
	}
	return e.Name, roles, nil
}

// allow applies the client's rate limit.
func (h *Handler) allow(client string) *oauthError {
	if h.o.RateLimit <= 0 {
		return nil
	}
	h.mu.Lock()
	lim, ok := h.limiters[client]
	if !ok {
		if len(h.limiters) >= maxLimiters {
			clear(h.limiters)
		}
		lim = rate.NewLimiter(rate.Limit(h.o.RateLimit), max(h.o.RateBurst, 1))
		h.limiters[client] = lim
	}
	h.mu.Unlock()
	now := time.Now()
	res := lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		e := refuse(http.StatusTooManyRequests, "slow_down", "rate limited; retry after the Retry-After delay")
		e.retryAfter = d
		return e
	}
	return nil
}

// params are the form parameters each grant takes; anything else is
// refused rather than ignored, so a caller relying on one (resource,
// scope, actor_token, client_id) learns that it has no effect here.
var params = map[string][]string{
	GrantTokenExchange:     {"grant_type", "subject_token", "subject_token_type", "audience", "requested_token_type"},
	GrantClientCredentials: {"grant_type", "audience"},
}

// readForm reads the request's form strictly: no query string, the form
// content type, a bounded body, every parameter at most once and known to
// its grant, no empty value.
func readForm(r *http.Request) (map[string]string, *oauthError) {
	if r.URL.RawQuery != "" {
		return nil, invalidRequest("parameters go in the body, not the query string")
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, invalidRequest("content type must be application/x-www-form-urlencoded")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, invalidRequest("read body")
	}
	if len(body) > MaxBodyBytes {
		return nil, invalidRequest("body larger than %d bytes", MaxBodyBytes)
	}
	values, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, invalidRequest("malformed form body")
	}
	form := make(map[string]string, len(values))
	for k, vs := range values {
		if len(vs) != 1 {
			return nil, invalidRequest("parameter %q given more than once", k)
		}
		if vs[0] == "" {
			return nil, invalidRequest("parameter %q is empty", k)
		}
		form[k] = vs[0]
	}
	if allowed, ok := params[form["grant_type"]]; ok {
		for k := range form {
			if !slices.Contains(allowed, k) {
				return nil, invalidRequest("parameter %q is not supported with this grant", k)
			}
		}
	}
	return form, nil
}

// tokenExchange runs RFC 8693 for client: the subject token must be a user
// token sessiongate signed, addressed to client; client must be allowed the
// audience; the session behind it must still stand. The new token speaks
// for the same user, to the requested audience, with client as the actor.
func (h *Handler) tokenExchange(r *http.Request, client string, form map[string]string) (*tokenResponse, *oauthError) {
	audience := form["audience"]
	switch {
	case form["subject_token"] == "":
		return nil, invalidRequest("subject_token is required")
	case form["subject_token_type"] != TokenTypeJWT:
		return nil, invalidRequest("subject_token_type must be %s", TokenTypeJWT)
	case form["requested_token_type"] != "" && form["requested_token_type"] != TokenTypeJWT:
		return nil, invalidRequest("requested_token_type must be %s", TokenTypeJWT)
	case audience == "":
		return nil, invalidRequest("audience is required")
	}
	subject, err := h.verifySubject(r.Context(), form["subject_token"], client)
	if err != nil {
		h.audit(r, "refused", client, "", audience, "", "invalid_grant")
		return nil, invalidGrant("subject_token: %v", err)
	}
	if !slices.Contains(h.o.Policy[client], audience) {
		h.audit(r, "refused", client, subject.Subject, audience, subject.SessionRef, "invalid_target")
		return nil, refuse(http.StatusBadRequest, "invalid_target", "%s may not obtain tokens for audience %q", client, audience)
	}
	actor := &token.Actor{Subject: client, Actor: tokenActor(subject.Actor)}
	if actor.Depth() > token.MaxActorDepth {
		return nil, invalidGrant("subject_token: act chain too deep")
	}
	sess, oerr := h.liveSession(r.Context(), subject)
	if oerr != nil {
		if oerr.code == "invalid_grant" {
			h.audit(r, "refused", client, subject.Subject, audience, subject.SessionRef, "invalid_grant")
		}
		return nil, oerr
	}
	now := h.o.Now()
	exp := now.Add(h.o.TTL)
	if exp.After(sess.ExpiresAt) {
		exp = sess.ExpiresAt
	}
	tok, serr := h.o.Signer.Sign(token.Claims{
		Subject:    sess.Subject,
		Tenant:     sess.Tenant,
		SessionRef: sess.Ref,
		Audience:   audience,
		Roles:      sess.Roles,
		Custom:     sess.Claims,
		IssuedAt:   now,
		NotBefore:  now,
		ExpiresAt:  exp,
		Actor:      actor,
	})
	if serr != nil {
		if errors.Is(serr, token.ErrInvalidClaimName) {
			return nil, invalidGrant("the session's record cannot be signed")
		}
		h.o.Log.Error("token endpoint: sign", "err", serr)
		return nil, refuse(http.StatusInternalServerError, "server_error", "signing failed")
	}
	h.audit(r, "token_exchange", client, sess.Subject, audience, sess.Ref, "")
	return &tokenResponse{AccessToken: tok, IssuedTokenType: TokenTypeJWT, TokenType: "N_A", ExpiresIn: int64(exp.Sub(now).Seconds())}, nil
}

// verifySubject checks a subject token: signed by one of sessiongate's keys,
// its issuer, not expired, a user token, addressed to client, with a
// session ref.
func (h *Handler) verifySubject(ctx context.Context, tok, client string) (*verify.Claims, error) {
	keys := h.o.Signer.Keys()
	v, err := verify.NewWithKeyfunc(func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, ok := keys.PublicKey(kid)
		if !ok {
			return nil, errors.New("not signed by a key of this issuer")
		}
		return k, nil
	}, verify.Options{
		Issuer:   h.o.Signer.Issuer(),
		Audience: client, // a service may only exchange tokens addressed to it
		Kinds:    []string{token.KindUser},
		Leeway:   -1, // no grace: an expired subject is expired
		Logger:   h.o.Log,
	})
	if err != nil {
		return nil, err
	}
	c, err := v.VerifyContext(ctx, tok)
	if err != nil {
		return nil, err
	}
	if !session.ValidRef(c.SessionRef) {
		return nil, errors.New("no session behind it")
	}
	return c, nil
}

// liveSession reads the session behind a verified subject token: it must
// still stand (not revoked, not expired) and be the subject's.
func (h *Handler) liveSession(ctx context.Context, c *verify.Claims) (*session.Session, *oauthError) {
	sctx, cancel := context.WithTimeout(ctx, h.o.StoreTimeout)
	e, err := h.o.Sessions.Peek(sctx, c.SessionRef)
	cancel()
	switch {
	case errors.Is(err, session.ErrNotFound):
		return nil, invalidGrant("the session behind subject_token is revoked or expired")
	case errors.Is(err, session.ErrCorrupt):
		return nil, invalidGrant("the session behind subject_token cannot be read")
	case err != nil:
		h.o.Log.Warn("token endpoint: session store unavailable", "session_ref", c.SessionRef, "err", err)
		return nil, unavailable()
	}
	sess, err := e.Session()
	if err != nil {
		return nil, invalidGrant("the session behind subject_token cannot be read")
	}
	if sess.Subject != c.Subject {
		return nil, invalidGrant("subject_token names another subject than its session")
	}
	if !h.o.Now().Before(sess.ExpiresAt) {
		return nil, invalidGrant("the session behind subject_token is expired")
	}
	return sess, nil
}

// clientCredentials issues a service token for client itself, to one of
// the audiences it was registered with (or the default audience).
func (h *Handler) clientCredentials(r *http.Request, client string, roles []string, form map[string]string) (*tokenResponse, *oauthError) {
	audience := form["audience"]
	if audience == "" {
		return nil, invalidRequest("audience is required")
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.o.StoreTimeout)
	svc, err := h.o.Services.GetService(ctx, client)
	cancel()
	switch {
	case errors.Is(err, session.ErrNotFound):
		return nil, refuse(http.StatusUnauthorized, "invalid_client", "service deleted")
	case err != nil:
		h.o.Log.Warn("token endpoint: service store unavailable", "service", client, "err", err)
		return nil, unavailable()
	}
	allowed := svc.Audiences
	if len(allowed) == 0 {
		allowed = []string{h.o.DefaultAudience}
	}
	if !slices.Contains(allowed, audience) {
		h.audit(r, "refused", client, client, audience, "", "invalid_target")
		return nil, refuse(http.StatusBadRequest, "invalid_target", "%s is not registered for audience %q", client, audience)
	}
	now := h.o.Now()
	exp := now.Add(h.o.TTL)
	tok, serr := h.o.Signer.Sign(token.Claims{
		Subject: client, Audience: audience, Roles: roles, Kind: token.KindService,
		IssuedAt: now, NotBefore: now, ExpiresAt: exp,
	})
	if serr != nil {
		h.o.Log.Error("token endpoint: sign", "err", serr)
		return nil, refuse(http.StatusInternalServerError, "server_error", "signing failed")
	}
	h.audit(r, "client_credentials", client, client, audience, "", "")
	return &tokenResponse{AccessToken: tok, IssuedTokenType: TokenTypeJWT, TokenType: "N_A", ExpiresIn: int64(exp.Sub(now).Seconds())}, nil
}

// audit logs one token request by an authenticated client: which service,
// for whom, to which audience, which session by ref, and the refusal if
// any. Never a token or a credential.
func (h *Handler) audit(r *http.Request, action, client, subject, audience, ref, refusal string) {
	args := []any{"action", action, "remote", r.RemoteAddr, "service", client}
	if subject != "" {
		args = append(args, "subject", subject)
	}
	if audience != "" {
		args = append(args, "audience", audience)
	}
	if ref != "" {
		args = append(args, "session_ref", ref)
	}
	if refusal != "" {
		args = append(args, "error", refusal)
	}
	h.o.Log.Info("token endpoint audit", args...)
}

// tokenActor converts a verified act chain to the signer's.
func tokenActor(a *verify.Actor) *token.Actor {
	if a == nil {
		return nil
	}
	return &token.Actor{Subject: a.Subject, Actor: tokenActor(a.Actor)}
}
