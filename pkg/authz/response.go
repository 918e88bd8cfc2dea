package authz

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
)

// responses are the answers that do not depend on the request. They are
// built once and shared: a denial costs no allocation, and gRPC only reads
// them while marshalling.
type responses struct {
	public          *authv3.CheckResponse
	badRequest      *authv3.CheckResponse
	unauthenticated *authv3.CheckResponse
	forbidden       *authv3.CheckResponse
	csrf            *authv3.CheckResponse
	tokenTooLarge   *authv3.CheckResponse
	unavailable     *authv3.CheckResponse
	logout          *authv3.CheckResponse
	tokenHeader     string
	// publicRemove are the headers a public answer removes: the token
	// header, with the cookie, the authorization header, or both.
	publicRemove [4][]string
}

func newResponses(o Options) responses {
	t := o.TokenHeader
	r := responses{tokenHeader: t}
	r.publicRemove = [4][]string{{t}, {t, "cookie"}, {t, "authorization"}, {t, "cookie", "authorization"}}
	// A public request still loses any client-sent token header: an upstream
	// must never see a token sessiongate did not just sign.
	r.public = &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			HeadersToRemove: r.publicRemove[0],
		}},
	}
	r.badRequest = denied(codes.InvalidArgument, typev3.StatusCode_BadRequest, `{"error":"bad_request"}`)
	r.unauthenticated = denied(codes.Unauthenticated, typev3.StatusCode_Unauthorized, `{"error":"unauthenticated"}`)
	r.forbidden = denied(codes.PermissionDenied, typev3.StatusCode_Forbidden, `{"error":"forbidden"}`)
	r.csrf = denied(codes.PermissionDenied, typev3.StatusCode_Forbidden, `{"error":"csrf"}`)
	r.tokenTooLarge = denied(codes.PermissionDenied, typev3.StatusCode_Forbidden, `{"error":"token_too_large"}`)
	r.unavailable = denied(codes.Unavailable, typev3.StatusCode_ServiceUnavailable, `{"error":"unavailable"}`,
		header("retry-after", "1"))
	clear := header("set-cookie", o.Cookie.Clear())
	if o.LogoutURL != "" {
		r.logout = denied(codes.Unauthenticated, typev3.StatusCode_Found, "", clear, header("location", o.LogoutURL))
	} else {
		r.logout = denied(codes.Unauthenticated, typev3.StatusCode_NoContent, "", clear)
	}
	return r
}

// denial is the prebuilt answer for a decision that refuses without
// looking at the request any further.
func (r *responses) denial(d Decision) *authv3.CheckResponse {
	switch d {
	case DecisionBadRequest:
		return r.badRequest
	case DecisionUnauthenticated:
		return r.unauthenticated
	case DecisionForbidden, DecisionDenied, DecisionInternal:
		return r.forbidden
	case DecisionCSRF:
		return r.csrf
	case DecisionTokenTooLarge:
		return r.tokenTooLarge
	}
	// Unavailable, canceled, and anything not meant to reach here: never
	// an allow.
	return r.unavailable
}

// header builds a header option. AppendAction is always explicit: Envoy's
// default for an unset action has changed between releases.
func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// denied builds a denial that Envoy sends to the client as it is.
func denied(rpc codes.Code, status typev3.StatusCode, body string, extra ...*corev3.HeaderValueOption) *authv3.CheckResponse {
	hs := []*corev3.HeaderValueOption{header("cache-control", "no-store")}
	if body != "" {
		hs = append(hs, header("content-type", "application/json"))
	}
	hs = append(hs, extra...)
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(rpc)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: status},
			Headers: hs,
			Body:    body,
		}},
	}
}

func redirect(location string) *authv3.CheckResponse {
	return denied(codes.Unauthenticated, typev3.StatusCode_Found, "", header("location", location))
}

// ok builds the allow answer: the signed token in the token header, every
// copy of the session credential taken out of what the upstream receives,
// and the subject and ref as dynamic metadata for Envoy's access log
// (unless Options.NoDynamicMetadata).
//
// It costs one allocation. The parts that depend only on the signed token
// (the token header, the metadata) are built once, when it is signed, and
// shared read-only by every answer that carries it, as the prebuilt denials
// are; the rest (the answer itself, the header list and the rewritten
// cookie header) is one block, fresh for every request, so callers may
// still add to an answer. Never mutate the shared parts: the token header
// option and DynamicMetadata are seen by concurrent Checks.
func (s *Server) ok(c cached, p presented) *authv3.CheckResponse {
	a := new(okAnswer)
	a.hs[0] = c.parts.token
	a.http.Headers, a.http.HeadersToRemove = a.scrub(p, 1)
	a.allow.OkResponse = &a.http
	a.resp.Status = okStatus
	a.resp.HttpResponse = &a.allow
	a.resp.DynamicMetadata = c.parts.metadata
	return &a.resp
}

// public answers a request to a public path. It carries no token, and the
// upstream gets neither a client-sent token header nor the session
// credential: a public page has no business with either, and a copy of the
// session ID in a public upstream's logs is a copy an attacker may read. A
// request without cookies or Authorization, the common case for assets,
// gets the shared answer.
func (s *Server) public(h headers) *authv3.CheckResponse {
	p := scrubbed(h, s.o.Cookie.Name)
	if !p.cookieChanged && !p.dropAuthorization {
		return s.resp.public
	}
	a := new(okAnswer)
	var remove []string
	a.http.Headers, remove = a.scrub(p, 0)
	// The token header is always removed too.
	switch len(remove) {
	case 0:
		remove = s.resp.publicRemove[0]
	case 1:
		if remove[0] == "cookie" {
			remove = s.resp.publicRemove[1]
		} else {
			remove = s.resp.publicRemove[2]
		}
	default:
		remove = s.resp.publicRemove[3]
	}
	a.http.HeadersToRemove = remove
	a.allow.OkResponse = &a.http
	a.resp.Status = okStatus
	a.resp.HttpResponse = &a.allow
	return &a.resp
}

// scrub fills in, after the first n headers already in a.hs, the rewritten
// cookie header, and returns the headers to set and the ones to remove
// that take every copy of the session credential out of the request.
func (a *okAnswer) scrub(p presented, n int) ([]*corev3.HeaderValueOption, []string) {
	var remove []string
	switch {
	case p.cookieChanged && p.cookie != "":
		a.cookieValue = corev3.HeaderValue{Key: "cookie", Value: p.cookie}
		a.cookie = corev3.HeaderValueOption{Header: &a.cookieValue, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
		a.hs[n] = &a.cookie
		n++
		if p.dropAuthorization {
			remove = removeAuthorization
		}
	case p.cookieChanged && p.dropAuthorization:
		remove = removeCookieAndAuthorization
	case p.cookieChanged:
		remove = removeCookie
	case p.dropAuthorization:
		remove = removeAuthorization
	}
	if n == 0 {
		return nil, remove
	}
	return a.hs[:n], remove
}

// okAnswer is everything an allow answer needs that differs per request,
// allocated as one block.
type okAnswer struct {
	resp        authv3.CheckResponse
	allow       authv3.CheckResponse_OkResponse
	http        authv3.OkHttpResponse
	hs          [2]*corev3.HeaderValueOption
	cookie      corev3.HeaderValueOption
	cookieValue corev3.HeaderValue
}

// okParts are the parts of an allow answer fixed by one signed token.
type okParts struct {
	token    *corev3.HeaderValueOption
	metadata *structpb.Struct
}

// newOKParts builds the parts of the allow answer that a signed token fixes.
func (s *Server) newOKParts(tok, subject, ref string) *okParts {
	return &okParts{
		token:    header(s.resp.tokenHeader, tok),
		metadata: s.okMetadata("subject", subject, "session_ref", ref),
	}
}

// okMetadata is the dynamic metadata of an allow answer, from key, value
// pairs; an empty value is left out. With Options.NoDynamicMetadata it is
// nil: a nil Struct is absent from the wire, not an empty one, and Envoy
// then has nothing to decode or merge into the request's metadata.
func (s *Server) okMetadata(kv ...string) *structpb.Struct {
	if s.o.NoDynamicMetadata {
		return nil
	}
	md := make(map[string]*structpb.Value, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			md[kv[i]] = structpb.NewStringValue(kv[i+1])
		}
	}
	return &structpb.Struct{Fields: md}
}

var (
	okStatus                     = &rpcstatus.Status{Code: int32(codes.OK)}
	removeCookie                 = []string{"cookie"}
	removeAuthorization          = []string{"authorization"}
	removeCookieAndAuthorization = []string{"cookie", "authorization"}
)
