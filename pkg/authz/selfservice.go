package authz

import (
	"context"
	"errors"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/sessiongate/sessiongate/pkg/events"
	"github.com/sessiongate/sessiongate/pkg/selfservice"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// SelfService lets a signed-in user see and end their own sessions, on
// routes sessiongate answers itself (the request never reaches an
// upstream), authenticated by the caller's own session:
//
//	GET    {PathPrefix}                         my sessions, JSON
//	DELETE {PathPrefix}/{session_ref}           sign one out: 204
//	POST   {PathPrefix}/revoke-others           sign out all but this one: 204
//	POST   {PathPrefix}/{session_ref}/revoke    the page's form: 303 to the page
//	GET    {PagePath}                           the devices page, HTML
//
// A POST whose Accept names text/html (a browser form) is answered with a
// 303 to PagePath, anything else with 204. Paths match exactly: the same
// path in another case, with a query string, or folding to one of these
// is refused (400), any other path under PathPrefix is 404, a method other
// than the route's (lower case included) is 405. A session_ref that is not
// one of the caller's own sessions is 404, the same answer and the same
// work as a ref that does not exist: the caller's sessions are listed and
// the ref looked up among them, the store is never asked about the ref
// itself. Unsafe methods with the cookie go through the CSRF check, and the
// session binding and anomaly checks apply as to any request. A deny or
// internal route rule on these paths refuses them (403), as does a rule
// naming roles the caller holds none of; other rules (a public /auth/ for
// the login pages) do not open them.
type SelfService struct {
	PathPrefix string // "" disables the JSON routes and the page's forms
	PagePath   string // "" disables the page
	// Sessions lists a subject's sessions (session.Store.List, with
	// IdleExpiresAt); nil answers every self-service route with 503.
	Sessions SessionLister
}

// SessionLister is what the self-service routes need besides Sessions:
// the caller's sessions and refresh families (those whose access session
// lapsed are in no list), and ending a family by its ref.
type SessionLister interface {
	List(ctx context.Context, subject string) ([]*session.Session, error)
	Families(ctx context.Context, subject string) ([]string, error)
	RevokeFamily(ctx context.Context, familyRef string) error
}

var (
	_ SessionLister = (*session.RedisStore)(nil)
	_ SessionLister = (*session.MemoryStore)(nil)
)

// selfRoute is what a self-service request asks for.
type selfRoute uint8

const (
	selfList selfRoute = iota
	selfPage
	selfRevoke       // DELETE {prefix}/{ref}
	selfRevokeForm   // POST {prefix}/{ref}/revoke
	selfRevokeOthers // POST {prefix}/revoke-others
)

const revokeOthers = "revoke-others"

// selfServicePath reports whether path is, in any case, one of the
// self-service paths: the page or anything at or under the prefix. It is
// the hook's test on every Check: string compares, no allocation.
func (s *Server) selfServicePath(path string) bool {
	o := &s.o.SelfService
	if o.PagePath != "" && strings.EqualFold(path, o.PagePath) {
		return true
	}
	p := o.PathPrefix
	return p != "" && len(path) >= len(p) && strings.EqualFold(path[:len(p)], p) && (len(path) == len(p) || path[len(p)] == '/')
}

// foldsToSelfService reports a path with percent-escaped non-ASCII that a
// folding upstream reads as a self-service path (see foldPath).
func (s *Server) foldsToSelfService(path string) bool {
	if s.o.SelfService.PathPrefix == "" && s.o.SelfService.PagePath == "" {
		return false
	}
	f, ok := foldPath(path)
	return !ok || s.selfServicePath(f)
}

// route reads method and the canonical path; status is 0 for a route, else
// the refusal (400, 404, 405) and allow the methods for a 405.
func (s *Server) route(rawPath, method, path string) (rt selfRoute, ref string, status int, allow string) {
	o := &s.o.SelfService
	if strings.ContainsAny(rawPath, "?#") {
		return 0, "", 400, ""
	}
	want := func(r selfRoute, m string) (selfRoute, string, int, string) {
		if method != m {
			return 0, "", 405, m
		}
		return r, ref, 0, ""
	}
	if o.PagePath != "" && strings.EqualFold(path, o.PagePath) {
		if path != o.PagePath {
			return 0, "", 400, ""
		}
		return want(selfPage, "GET")
	}
	if !strings.HasPrefix(path, o.PathPrefix) {
		return 0, "", 400, "" // the prefix in another case
	}
	rest := path[len(o.PathPrefix):]
	switch {
	case rest == "":
		return want(selfList, "GET")
	case rest == "/"+revokeOthers:
		return want(selfRevokeOthers, "POST")
	}
	seg := rest[1:]
	if seg == "" {
		return 0, "", 404, ""
	}
	if i := strings.IndexByte(seg, '/'); i >= 0 {
		if seg[i:] != "/revoke" {
			return 0, "", 404, ""
		}
		ref = seg[:i]
		return want(selfRevokeForm, "POST")
	}
	ref = seg
	return want(selfRevoke, "DELETE")
}

// selfService answers a request to a self-service path; the hook in check
// has matched the path and nothing else.
func (s *Server) selfService(ctx context.Context, attrs *authv3.AttributeContext, r *authv3.AttributeContext_HttpRequest,
	h headers, method, path string, nonASCII bool, pol pathPolicy,
) (*authv3.CheckResponse, Verdict) {
	if nonASCII && s.foldsToSelfService(path) {
		return s.resp.badRequest, verdict(DecisionBadRequest, "path folds to a self-service path", pol.rule)
	}
	rt, ref, status, allow := s.route(r.GetPath(), method, path)
	switch status {
	case 400:
		return s.resp.badRequest, verdict(DecisionBadRequest, "self-service path not in its one form", pol.rule)
	case 404:
		return selfNotFound, verdict(DecisionBadRequest, "no such self-service route", pol.rule)
	case 405:
		return methodNotAllowed(allow), verdict(DecisionBadRequest, "method not allowed on a self-service route", pol.rule)
	}
	if pol.access == Deny || pol.access == Internal {
		return s.resp.forbidden, verdict(DecisionDenied, "route rule refuses the self-service path", pol.rule)
	}

	// Who is asking: the caller's own user session, as for any request.
	cred, ok := sessionID(h, s.o.Cookie.Name)
	switch {
	case !ok:
		return s.unauthenticated(r, h), verdict(DecisionUnauthenticated, "ambiguous or malformed credential", pol.rule)
	case cred.from == noCredential:
		return s.unauthenticated(r, h), verdict(DecisionUnauthenticated, "no credential", pol.rule)
	case cred.from == fromService:
		return s.resp.forbidden, verdict(DecisionInternal, "service credential on a self-service route", pol.rule)
	}
	if resp, v, refused := s.csrf(r, h, cred.from, method, pol.rule); refused {
		return resp, v
	}
	current := session.RefOf(cred.id)
	entry, now, d, reason := s.resolve(ctx, current)
	if d != DecisionOK {
		if d == DecisionUnauthenticated {
			return s.unauthenticated(r, h), verdict(d, reason, pol.rule)
		}
		return s.resp.denial(d), verdict(d, reason, pol.rule)
	}
	sess, err := entry.Session()
	if err != nil {
		s.o.Log.Warn("self-service: corrupt session record", "session_ref", current, "err", err)
		return s.unauthenticated(r, h), verdict(DecisionUnauthenticated, "corrupt session record", pol.rule)
	}
	// The binding, anomaly and role checks of any request; they compare
	// against what the token cache holds for the session, and the token
	// itself goes nowhere.
	if _, resp, v, refused := s.admit(ctx, attrs, h, current, entry, &pol, now); refused {
		return resp, v
	}

	if s.o.SelfService.Sessions == nil {
		return s.resp.unavailable, verdict(DecisionUnavailable, "self-service has no session list", pol.rule)
	}
	lctx, cancel := context.WithTimeout(ctx, s.o.StoreTimeout)
	mine, err := s.o.SelfService.Sessions.List(lctx, sess.Subject)
	cancel()
	if err != nil {
		return s.storeFailed(ctx, err, pol.rule)
	}
	// The list is read after the check: a caller whose session ended in
	// between (signed out by the victim, an operator, an eviction) is not
	// in it, and acts on nothing. So is a session its subject's index does
	// not list (the index write after a refresh failed): refused here
	// until its next refresh, as it could not be shown or signed out.
	if !slices.ContainsFunc(mine, func(m *session.Session) bool { return m.Ref == current }) {
		return s.unauthenticated(r, h), verdict(DecisionUnauthenticated, "session ended during the request", pol.rule)
	}
	done := verdict(DecisionSelfService, "self-service", pol.rule)
	switch rt {
	case selfList:
		body, err := selfservice.JSON(selfservice.Rows(mine, current, now))
		if err != nil {
			s.o.Log.Error("self-service: render sessions", "err", err)
			return s.resp.unavailable, verdict(DecisionUnavailable, "rendering failed", pol.rule)
		}
		return localReply(typev3.StatusCode_OK, "application/json", string(body)), done
	case selfPage:
		body, err := selfservice.HTML(selfservice.Page{Rows: selfservice.Rows(mine, current, now), Now: now, PathPrefix: s.o.SelfService.PathPrefix})
		if err != nil {
			s.o.Log.Error("self-service: render page", "err", err)
			return s.resp.unavailable, verdict(DecisionUnavailable, "rendering failed", pol.rule)
		}
		return localReply(typev3.StatusCode_OK, "text/html; charset=utf-8", string(body), pageHeaders...), done
	}

	// The sessions to end: one of mine, or all of mine but this one.
	var targets []*session.Session
	if rt == selfRevokeOthers {
		for _, m := range mine {
			if m.Ref != current {
				targets = append(targets, m)
			}
		}
	} else {
		// A family_ref names the device's current access session; ending
		// that ends the family.
		for _, m := range mine {
			if m.Ref == ref || m.FamilyRef != "" && m.FamilyRef == ref {
				ref = m.Ref
				targets = append(targets, m)
				break
			}
		}
	}
	// A family whose access session lapsed (an app in the background) is
	// in no list, yet its refresh token brings the device back: it is a
	// device to end all the same, found in the caller's own family index.
	if rt == selfRevokeOthers || len(targets) == 0 && session.ValidFamilyRef(ref) {
		fctx, cancel := context.WithTimeout(ctx, s.o.StoreTimeout)
		fams, err := s.o.SelfService.Sessions.Families(fctx, sess.Subject)
		cancel()
		if err != nil {
			return s.storeFailed(ctx, err, pol.rule)
		}
		for _, fam := range fams {
			listed := slices.ContainsFunc(mine, func(m *session.Session) bool { return m.FamilyRef == fam })
			if fam == sess.FamilyRef || listed || rt != selfRevokeOthers && fam != ref {
				continue
			}
			targets = append(targets, &session.Session{FamilyRef: fam})
		}
	}
	if len(targets) == 0 && rt != selfRevokeOthers {
		return selfNotFound, verdict(DecisionSelfService, "not one of the caller's sessions", pol.rule)
	}
	if explaining(ctx) {
		return s.revoked(r, h, ref == current), done
	}
	for _, m := range targets {
		t := m.Ref
		err := s.endDevice(ctx, m)
		switch {
		case errors.Is(err, session.ErrNotFound) && rt != selfRevokeOthers:
			// Gone since it was listed (expired, or signed out elsewhere).
			return selfNotFound, verdict(DecisionSelfService, "not one of the caller's sessions", pol.rule)
		case errors.Is(err, session.ErrNotFound):
		case err != nil:
			// Saying "signed out" while a session still works would be a
			// lie the user relies on; they can try again.
			return s.storeFailed(ctx, err, pol.rule)
		case t == current:
			s.record(h, events.Event{Type: events.Logout, Subject: sess.Subject, SessionRef: t})
		case t == "":
			s.record(h, events.Event{Type: events.Revoke, Subject: sess.Subject,
				Details: map[string]string{"by": "self_service", "by_session_ref": current, "family_ref": m.FamilyRef}})
		default:
			s.record(h, events.Event{Type: events.Revoke, Subject: sess.Subject, SessionRef: t,
				Details: map[string]string{"by": "self_service", "by_session_ref": current}})
		}
	}
	return s.revoked(r, h, ref == current), done
}

// endDevice ends a listed session and, with it, its refresh family. A
// refresh of that family since the list rotated the listed access session
// away (ErrNotFound) into a new one the list does not name: the family is
// ended by its ref, so the device does not outlive its sign-out.
// A target without a Ref is a family with no live access session.
func (s *Server) endDevice(ctx context.Context, m *session.Session) error {
	dctx, cancel := context.WithTimeout(ctx, s.o.StoreTimeout)
	defer cancel()
	if m.Ref == "" {
		return s.o.SelfService.Sessions.RevokeFamily(dctx, m.FamilyRef)
	}
	err := s.o.Sessions.Delete(dctx, m.Ref)
	if !errors.Is(err, session.ErrNotFound) || m.FamilyRef == "" {
		return err
	}
	return s.o.SelfService.Sessions.RevokeFamily(dctx, m.FamilyRef)
}

// revoked is the answer to a sign-out: 303 to the page for a browser form
// (Accept names text/html), else 204. Signing out the current session
// clears its cookie too, as logout does.
func (s *Server) revoked(r *authv3.AttributeContext_HttpRequest, h headers, current bool) *authv3.CheckResponse {
	var hs []*corev3.HeaderValueOption
	if current {
		hs = append(hs, header("set-cookie", s.o.Cookie.Clear()))
	}
	accept, _ := h.get("accept")
	if r.GetMethod() == "POST" && strings.Contains(accept, "text/html") && s.o.SelfService.PagePath != "" {
		return localReply(typev3.StatusCode_SeeOther, "", "", append(hs, header("location", s.o.SelfService.PagePath))...)
	}
	return localReply(typev3.StatusCode_NoContent, "", "", hs...)
}

// storeFailed is the answer when the store could not list or delete.
func (s *Server) storeFailed(ctx context.Context, err error, rule int) (*authv3.CheckResponse, Verdict) {
	if ctx.Err() == context.Canceled {
		return s.resp.unavailable, verdict(DecisionCanceled, "caller canceled", rule)
	}
	s.o.Log.Warn("self-service: session store unavailable", "err", err)
	return s.resp.unavailable, verdict(DecisionUnavailable, "session store unavailable", rule)
}

// pageHeaders are the devices page's security headers, besides
// cache-control: no-store, which every local reply carries.
var pageHeaders = []*corev3.HeaderValueOption{
	header("content-security-policy", selfservice.CSP),
	header("referrer-policy", "no-referrer"),
	header("x-frame-options", "DENY"),
}

// selfNotFound is the one answer for a ref that is not the caller's,
// whether it belongs to someone else or to no one.
var selfNotFound = localReply(typev3.StatusCode_NotFound, "application/json", `{"error":"not_found"}`)

func methodNotAllowed(allow string) *authv3.CheckResponse {
	return localReply(typev3.StatusCode_MethodNotAllowed, "application/json", `{"error":"method_not_allowed"}`, header("allow", allow))
}

// localReply is an answer sessiongate gives itself. Envoy sends a denied
// response to the client as it is, whatever its status: so a 200 with a
// body, a 204 or a 303 is a "denial" on the wire between the two.
func localReply(status typev3.StatusCode, contentType, body string, extra ...*corev3.HeaderValueOption) *authv3.CheckResponse {
	hs := []*corev3.HeaderValueOption{header("cache-control", "no-store")}
	if contentType != "" {
		hs = append(hs, header("content-type", contentType))
	}
	if body != "" {
		hs = append(hs, header("x-content-type-options", "nosniff"))
	}
	hs = append(hs, extra...)
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: status},
			Headers: hs,
			Body:    body,
		}},
	}
}

// explainKey marks a context in which Check runs for Explain: the
// self-service routes then decide everything and end no session.
type explainKey struct{}

func explaining(ctx context.Context) bool { return ctx.Value(explainKey{}) != nil }
