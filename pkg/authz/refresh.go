package authz

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessiongate/sessiongate/pkg/events"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// The token endpoint for refresh tokens: POST {refresh.path} with
// grant_type=refresh_token&refresh_token=… (RFC 6749 §6) is answered by
// Check itself, as a local reply Envoy sends to the client: a denied
// response whose status is 200 and whose body is the RFC 6749 §5.1 token
// answer, or an RFC 6749 §5.2 error. The request never reaches an
// upstream, so no upstream ever sees a refresh token, and the new access
// session's ID appears only in that body.
//
// Envoy sends the body only where the route asks for it
// (check_settings.with_request_body, pack_as_bytes); the token route is
// the only one that does.
//
// The endpoint needs no session and looks at no cookie or Authorization
// header: the refresh token alone authenticates the request.

// Refresher is what the token endpoint needs from the session store.
// Refresh rotates a refresh token: it returns a new access session and the
// token's successor. session.ErrRefreshInvalid (unknown, expired, revoked)
// and session.ErrRefreshReused (a retired token presented again: the
// family is revoked by the same call) are refusals of the grant; any other
// error is a store that could not answer.
type Refresher interface {
	Refresh(ctx context.Context, refreshToken string) (session.Refreshed, error)
}

// Interface guards: the implementations serve wires in.
var (
	_ Refresher = (*session.RedisStore)(nil)
	_ Refresher = (*session.MemoryStore)(nil)
)

// refreshResult is the result label of sessiongate_refresh_total.
type refreshResult uint8

// Refresh results. Their String values are product API: never rename one.
const (
	refreshOK                   refreshResult = iota // a new pair issued
	refreshInvalidRequest                            // a malformed request (400 invalid_request, or 405)
	refreshUnsupportedGrantType                      // a grant_type other than refresh_token (400)
	refreshInvalidScope                              // a scope was asked for (400 invalid_scope)
	refreshInvalidGrant                              // malformed, unknown, expired or revoked token (400 invalid_grant)
	refreshReused                                    // a retired token presented again: the family is revoked (400 invalid_grant)
	refreshError                                     // the store failed or timed out (503)
	refreshCanceled                                  // the caller went away during the store call

	numRefreshResults
)

var refreshResultNames = [numRefreshResults]string{
	refreshOK:                   "ok",
	refreshInvalidRequest:       "invalid_request",
	refreshUnsupportedGrantType: "unsupported_grant_type",
	refreshInvalidScope:         "invalid_scope",
	refreshInvalidGrant:         "invalid_grant",
	refreshReused:               "reused",
	refreshError:                "error",
	refreshCanceled:             "canceled",
}

// RefreshResults lists the result labels of sessiongate_refresh_total.
func RefreshResults() []string {
	return refreshResultNames[:]
}

// refreshEndpoint is the token endpoint's part of a Server.
type refreshEndpoint struct {
	// path is Options.RefreshPath, or "" when the endpoint is off: Check
	// compares every canonical path with it, and none is "".
	path        string
	results     [numRefreshResults]prometheus.Counter
	unavailable *authv3.CheckResponse
}

func newRefreshEndpoint(o Options) refreshEndpoint {
	var e refreshEndpoint
	if o.Refresh != nil {
		e.path = o.RefreshPath
	}
	// Every label exported at zero from the start, so rate() works before
	// the first refresh.
	for r, name := range refreshResultNames {
		e.results[r] = o.Metrics.Refresh.WithLabelValues(name)
	}
	e.unavailable = denied(codes.Unavailable, typev3.StatusCode_ServiceUnavailable,
		`{"error":"temporarily_unavailable","error_description":"session store unavailable; retry"}`,
		header("pragma", "no-cache"), header("retry-after", "1"))
	return e
}

// Parameters of a refresh request (RFC 6749 §6). client_id, which public
// clients may send (§2.3.1), is accepted and ignored, as are other
// parameters (§3.2: unrecognized parameters MUST be ignored) whose names
// are plainly other names.
const (
	paramGrantType    = "grant_type"
	paramRefreshToken = "refresh_token"
	paramScope        = "scope"
	grantRefreshToken = "refresh_token"
)

// refreshErr is one refusal: the result for the metric and the answer's
// parts.
type refreshErr struct {
	result refreshResult
	status typev3.StatusCode
	code   string // RFC 6749 §5.2 error
	desc   string // error_description: a fixed string, never request data
}

func invalidRequest(desc string) *refreshErr {
	return &refreshErr{refreshInvalidRequest, typev3.StatusCode_BadRequest, "invalid_request", desc}
}

func invalidGrant(result refreshResult, desc string) *refreshErr {
	return &refreshErr{result, typev3.StatusCode_BadRequest, "invalid_grant", desc}
}

// refresh answers a request to the refresh path.
func (s *Server) refresh(ctx context.Context, r *authv3.AttributeContext_HttpRequest, h headers) (*authv3.CheckResponse, Verdict) {
	tok, rerr := readRefreshRequest(r, h)
	if rerr != nil {
		return s.refreshRefused(rerr), verdict(DecisionRefresh, rerr.desc, -1)
	}
	sctx, cancel := context.WithTimeout(ctx, s.o.StoreTimeout)
	out, err := s.o.Refresh.Refresh(sctx, tok)
	cancel()
	switch {
	case err == nil:
	case errors.Is(err, session.ErrRefreshReused):
		s.o.Log.Warn("refresh: a retired refresh token was presented again; its family is revoked",
			"family_ref", out.FamilyRef, "subject", out.Subject)
		details := map[string]string{}
		if out.FamilyRef != "" {
			details["family_ref"] = out.FamilyRef
		}
		s.record(h, events.Event{Type: events.RefreshReuse, Subject: out.Subject, Details: details})
		return s.refreshRefused(invalidGrant(refreshReused, "refresh token reused; every token of its family is revoked")),
			verdict(DecisionRefresh, "refresh token reused", -1)
	case errors.Is(err, session.ErrRefreshInvalid):
		return s.refreshRefused(invalidGrant(refreshInvalidGrant, "refresh token unknown, expired or revoked")),
			verdict(DecisionRefresh, "refresh token unknown, expired or revoked", -1)
	case ctx.Err() == context.Canceled:
		s.refreshEP.results[refreshCanceled].Inc()
		return s.resp.unavailable, verdict(DecisionCanceled, "caller canceled", -1)
	default:
		s.o.Log.Warn("refresh: session store unavailable", "err", err)
		s.refreshEP.results[refreshError].Inc()
		return s.refreshEP.unavailable, verdict(DecisionUnavailable, "session store unavailable", -1)
	}
	now := s.o.Now()
	expiresIn := int64(out.ExpiresAt.Sub(now) / time.Second)
	if !session.ValidID(out.ID) || !session.ValidRefreshToken(out.RefreshToken) {
		// Not what a store hands out: nothing of it goes to the client.
		s.o.Log.Error("refresh: the store returned a malformed pair", "family_ref", out.FamilyRef)
		s.refreshEP.results[refreshError].Inc()
		return s.refreshEP.unavailable, verdict(DecisionUnavailable, "store returned a malformed pair", -1)
	}
	if expiresIn <= 0 {
		return s.refreshRefused(invalidGrant(refreshInvalidGrant, "refresh token expired")),
			verdict(DecisionRefresh, "new session past its end", -1)
	}
	s.refreshEP.results[refreshOK].Inc()
	s.o.Log.Debug("refresh: rotated", "family_ref", out.FamilyRef, "session_ref", out.Ref, "subject", out.Subject)
	return tokenAnswer(out.ID, out.RefreshToken, expiresIn), verdict(DecisionRefresh, "refreshed", -1)
}

// readRefreshRequest checks a token request and returns its refresh
// token, checked for form: POST exactly, no query string, one form
// Content-Type, a strictly read form body, grant_type refresh_token, no
// scope, a refresh token shaped like one. A session ID is not.
func readRefreshRequest(r *authv3.AttributeContext_HttpRequest, h headers) (string, *refreshErr) {
	if r.GetMethod() != "POST" {
		return "", &refreshErr{refreshInvalidRequest, typev3.StatusCode_MethodNotAllowed, "invalid_request", "the token endpoint takes POST"}
	}
	if strings.ContainsAny(r.GetPath(), "?#") {
		return "", invalidRequest("parameters go in the request body, not the URL")
	}
	ct, n := h.get("content-type")
	switch {
	case n == 0:
		return "", invalidRequest("content type must be application/x-www-form-urlencoded")
	case n > 1:
		return "", invalidRequest("more than one content type")
	case !formContentType(ct):
		return "", invalidRequest("content type must be application/x-www-form-urlencoded")
	}
	body := r.GetBody()
	if raw := r.GetRawBody(); len(raw) > 0 {
		body = string(raw)
	}
	if body == "" {
		// Also what arrives when Envoy was not told to buffer this route's
		// body (check_settings.with_request_body).
		return "", invalidRequest("no request body")
	}
	if body[0] == '{' || body[0] == '[' {
		return "", invalidRequest("request body is JSON; send application/x-www-form-urlencoded")
	}
	params, desc := parseForm(body)
	if desc != "" {
		return "", invalidRequest(desc)
	}
	var grant, tok string
	for _, p := range params {
		switch p.name {
		case paramGrantType:
			grant = p.value
		case paramRefreshToken:
			tok = p.value
		case paramScope:
			if p.value != "" {
				return "", &refreshErr{refreshInvalidScope, typev3.StatusCode_BadRequest, "invalid_scope", "scope cannot be changed by a refresh"}
			}
		default:
			if !otherParamName(p.name) {
				return "", invalidRequest("a form parameter name that reads as another")
			}
		}
	}
	// An empty value is an omitted parameter (RFC 6749 §3.2).
	switch {
	case grant == "":
		return "", invalidRequest("grant_type is required")
	case grant != grantRefreshToken:
		return "", &refreshErr{refreshUnsupportedGrantType, typev3.StatusCode_BadRequest, "unsupported_grant_type", "grant_type must be refresh_token"}
	case tok == "":
		return "", invalidRequest("refresh_token is required")
	case !session.ValidRefreshToken(tok):
		return "", invalidGrant(refreshInvalidGrant, "refresh_token is not a refresh token")
	}
	return tok, nil
}

// otherParamName reports whether a parameter this endpoint ignores is
// plainly not one it reads: letters, digits, '_', '-' and '.', and not one
// of its parameters in another case.
func otherParamName(name string) bool {
	for i := 0; i < len(name); i++ {
		if c := name[i]; !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return !strings.EqualFold(name, paramGrantType) && !strings.EqualFold(name, paramRefreshToken) &&
		!strings.EqualFold(name, paramScope)
}

// refreshRefused counts and answers a refusal.
func (s *Server) refreshRefused(e *refreshErr) *authv3.CheckResponse {
	s.refreshEP.results[e.result].Inc()
	body := `{"error":"` + e.code + `","error_description":"` + e.desc + `"}`
	extra := []*corev3.HeaderValueOption{header("pragma", "no-cache")}
	if e.status == typev3.StatusCode_MethodNotAllowed {
		extra = append(extra, header("allow", "POST"))
	}
	return denied(codes.InvalidArgument, e.status, body, extra...)
}

// tokenAnswer is the RFC 6749 §5.1 answer. Both tokens were checked for
// form, so they need no JSON escaping. The gRPC status is not OK: this is
// a local reply, and an OK would send the request upstream.
func tokenAnswer(accessToken, refreshToken string, expiresIn int64) *authv3.CheckResponse {
	body := `{"access_token":"` + accessToken + `","token_type":"Bearer","expires_in":` +
		strconv.FormatInt(expiresIn, 10) + `,"refresh_token":"` + refreshToken + `"}`
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.Unauthenticated)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_OK},
			Headers: []*corev3.HeaderValueOption{
				header("cache-control", "no-store"),
				header("pragma", "no-cache"),
				header("content-type", "application/json"),
			},
			Body: body,
		}},
	}
}
