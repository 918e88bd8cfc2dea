package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sessiongate/sessiongate/pkg/authz"
	"github.com/sessiongate/sessiongate/pkg/config"
	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
)

// exitError asks main for a particular exit status; msg, if any, is
// printed first.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// explain's exit statuses: 0 allowed (OK or public), 1 denied, 2 bad
// input (flags, config, or a request Check refuses as malformed).
var errExplainDeny = exitError{code: 1}

func badInput(format string, args ...any) error {
	return exitError{code: 2, msg: "explain: " + fmt.Sprintf(format, args...)}
}

// explanation is what explain prints: Check's own description of its
// decision, and the claims a token would carry.
type explanation struct {
	authz.Explanation
	Session string         `json:"session,omitempty"` // where the session came from
	Claims  map[string]any `json:"claims,omitempty"`
}

// explain runs the request described by its flags through the decision
// code of Check, built from the config file exactly as serve builds it,
// with a session that is either made up (--roles) or read without touching
// it from the configured store (--session-ref). Nothing is signed and
// nothing is written.
func explain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (required)")
	method := fs.String("method", "GET", "request method, as the client sends it")
	path := fs.String("path", "", "request path, with query if any, as Envoy passes it (required)")
	ref := fs.String("session-ref", "", "read this session from the configured store (no slide, no write)")
	roles := fs.String("roles", "", "a made-up session with these comma-separated roles")
	subject := fs.String("subject", "explain", "subject of the made-up session")
	audience := fs.String("audience", "", "context_extensions audience, as an Envoy route would set it")
	access := fs.String("access", "", "context_extensions access, as an Envoy route would set it")
	var claims *string
	fs.Func("claims", "context_extensions claims (comma-separated custom claims; \"\" = none), as an Envoy route would set it", func(v string) error {
		claims = &v
		return nil
	})
	rolesInToken := fs.String("roles-in-token", "", "context_extensions roles_in_token (all or matched), as an Envoy route would set it")
	asCookie := fs.Bool("cookie", false, "present the session as the session cookie (CSRF applies) instead of a bearer token")
	origin := fs.String("origin", "", "Origin header to send")
	asJSON := fs.Bool("json", false, "print JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sessiongate explain --config FILE --path PATH [--method M] [--session-ref REF | --roles a,b] [--json]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return badInput("%v", err)
	}
	if *configPath == "" || *path == "" || fs.NArg() > 0 {
		fs.Usage()
		return badInput("--config and --path are required, and nothing else")
	}
	if *ref != "" && *roles != "" {
		return badInput("--session-ref and --roles exclude each other")
	}
	cfg, err := config.Load(*configPath, os.Environ())
	if err != nil {
		return badInput("%v", err)
	}
	ao, err := authzOptions(cfg)
	if err != nil {
		return badInput("%v", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	signer := &claimsRecorder{issuer: cfg.Token.Issuer}
	ao.Signer, ao.Log = signer, log
	// The session binding and the anomaly checks judge a client (its
	// address, its user agent, its rate), and explain has none: it
	// explains the rules, never revokes.
	ao.Binding, ao.Anomaly = authz.Binding{}, authz.Anomaly{}
	// The token endpoint is explained up to the store, which explain
	// never asks to rotate anything.
	if ao.RefreshPath != "" {
		ao.Refresh = noRefresh{}
	}

	var e explanation
	var credential string
	switch {
	case *ref != "":
		if !session.ValidRef(*ref) {
			return badInput("%q is not a session_ref", *ref)
		}
		store, err := newStore(cfg, log)
		if err != nil {
			return fmt.Errorf("explain: %w", err)
		}
		defer store.Close()
		p, ok := store.(peeker)
		if !ok {
			return badInput("the configured store cannot be read without touching it")
		}
		ao.Sessions, e.Session = peekAs{p: p, ref: *ref}, "store, session_ref "+*ref
		// Any well-formed ID: peekAs answers for the given ref whatever
		// ref Check derives from it.
		credential = placeholderID
	default:
		mem := session.NewMemoryStore(nil)
		id, err := session.NewID()
		if err != nil {
			return err
		}
		now := time.Now()
		s := &session.Session{Ref: session.RefOf(id), Subject: *subject, Roles: splitList(*roles),
			CreatedAt: now, ExpiresAt: now.Add(time.Hour), IdleTimeout: time.Hour}
		if _, err := mem.Create(ctx, s, session.Limit{}); err != nil {
			return fmt.Errorf("explain: %w", err)
		}
		ao.Sessions, e.Session = mem, fmt.Sprintf("made up: subject %q, roles %q", *subject, s.Roles)
		ao.SelfService.Sessions = mem // Explain ends no session (authz.Explain)
		credential = id
	}

	headers := map[string]string{":method": *method, ":path": *path}
	if *asCookie {
		headers["cookie"] = ao.Cookie.Name + "=" + credential
	} else {
		headers["authorization"] = "Bearer " + credential
	}
	if *origin != "" {
		headers["origin"] = *origin
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: *method, Path: *path, Scheme: "https", Host: "explain.invalid", Headers: headers},
	}}}
	ext := map[string]string{}
	if *audience != "" {
		ext["audience"] = *audience
	}
	if *access != "" {
		ext["access"] = *access
	}
	if claims != nil {
		ext["claims"] = *claims
	}
	if *rolesInToken != "" {
		ext["roles_in_token"] = *rolesInToken
	}
	if len(ext) > 0 {
		req.Attributes.ContextExtensions = ext
	}

	e.Explanation = authz.New(ao).Explain(ctx, req)
	if e.Decision == authz.DecisionOK.String() && signer.claims != nil {
		e.Claims = signer.claims
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(e); err != nil {
			return err
		}
	} else {
		printExplanation(stdout, e)
	}
	switch {
	case e.Decision == authz.DecisionBadRequest.String():
		return exitError{code: 2}
	case !e.Allowed:
		return errExplainDeny
	}
	return nil
}

func printExplanation(w io.Writer, e explanation) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "request:\t%s %s\n", e.Method, e.Path)
	if e.Canonical != "" {
		fmt.Fprintf(tw, "canonical path:\t%s\n", e.Canonical)
	} else {
		fmt.Fprintf(tw, "canonical path:\t(none: the path is not in canonical form)\n")
	}
	if e.Folded != "" {
		changed := "the same rule"
		if e.FoldedRule != nil && *e.FoldedRule != e.Rule {
			changed = fmt.Sprintf("rule %d: folding changes the match, so the request is refused", *e.FoldedRule)
		}
		fmt.Fprintf(tw, "folded path:\t%s (%s)\n", e.Folded, changed)
	}
	fmt.Fprintf(tw, "rule:\t%s\n", e.RuleText)
	fmt.Fprintf(tw, "session:\t%s\n", e.Session)
	fmt.Fprintf(tw, "decision:\t%s, status %d\n", e.Decision, e.Status)
	fmt.Fprintf(tw, "reason:\t%s\n", e.Reason)
	if e.Shadow != nil {
		fmt.Fprintf(tw, "shadow rule:\t%s, would decide %s (counted, not enforced)\n", e.Shadow.RuleText, e.Shadow.Decision)
	}
	if e.TokenShape != "" {
		fmt.Fprintf(tw, "token shape:\t%s\n", e.TokenShape)
	}
	if e.Claims != nil {
		b, _ := json.Marshal(e.Claims)
		fmt.Fprintf(tw, "token claims:\t%s (not signed)\n", b)
	}
	tw.Flush()
}

// placeholderID is a well-formed session ID that no store holds.
const placeholderID = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// peeker is a store that can read an entry without touching it.
type peeker interface {
	Peek(ctx context.Context, ref string) (session.Entry, error)
}

// peekAs serves Check's Touch with a look at one given session: explain
// never slides an idle expiry or writes anything.
type peekAs struct {
	p   peeker
	ref string
}

func (s peekAs) Touch(ctx context.Context, _ string) (session.Entry, error) {
	return s.p.Peek(ctx, s.ref)
}

func (peekAs) Delete(context.Context, string) error {
	return errors.New("explain deletes nothing")
}

// noRefresh serves the token endpoint in explain: it rotates nothing.
type noRefresh struct{}

func (noRefresh) Refresh(context.Context, string) (session.Refreshed, error) {
	return session.Refreshed{}, errors.New("explain refreshes nothing")
}

// claimsRecorder stands in for the signer: it keeps the claims a token
// would carry and signs nothing. It refuses what the signer refuses.
type claimsRecorder struct {
	issuer string
	claims map[string]any
}

func (r *claimsRecorder) Sign(c token.Claims) (string, error) {
	for k := range c.Custom {
		if err := token.CheckCustomClaim(k); err != nil {
			return "", err
		}
	}
	r.claims = map[string]any{
		"iss": r.issuer, "sub": c.Subject, "aud": c.Audience, "sid": c.SessionRef, "roles": c.Roles,
		"iat": c.IssuedAt.Unix(), "nbf": c.NotBefore.Unix(), "exp": c.ExpiresAt.Unix(),
	}
	if c.Tenant != "" {
		r.claims["tenant"] = c.Tenant
	}
	for k, v := range c.Custom {
		r.claims[k] = v
	}
	return "explain.not.signed", nil
}

func (*claimsRecorder) ActiveKID() string { return "explain" }

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
