// Package verify authenticates requests that reached a Go service through
// sessiongate. Envoy forwards each request with a short-lived JWT (by default
// in the x-internal-jwt header) that sessiongate signed after resolving the
// client's session; this package checks that JWT against sessiongate's
// published JWKS and exposes the typed claims to handlers.
//
// The JWT is the only thing a downstream service should trust: it must never
// look at the client's session cookie or talk to Redis itself. Only
// asymmetric algorithms (ES256, EdDSA, RS256) are accepted, so holding the
// JWKS never allows minting tokens, and "none"/HMAC tokens are always
// rejected. Header and claims are read exactly (see exact.go): what this
// package checks and returns is what every strict parser would read.
//
// A token outlives its session's revocation until its exp unless the
// Verifier follows sessiongate's revocation feed (FollowRevocations,
// revocations.go): then it refuses tokens of revoked sessions as soon as
// the feed names them, and fails closed while the feed is down.
package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/sessiongate/sessiongate/pkg/token"
)

// Defaults applied by New and NewWithKeyfunc for zero Options fields.
const (
	DefaultHeader                    = "x-internal-jwt"
	DefaultLeeway                    = 30 * time.Second
	DefaultRefreshInterval           = 10 * time.Minute
	DefaultUnknownKIDRefreshInterval = 30 * time.Second
	DefaultHTTPTimeout               = 10 * time.Second
)

// unknownKIDBurst is how many unknown-kid refreshes may happen back to back
// before the UnknownKIDRefreshInterval rate applies. With a burst of one, a
// single forged kid would use up the refresh and make the first token of a
// genuine rotation wait the whole interval; a few in hand let the real new
// key through while forged kids still cost at most that many fetches.
const unknownKIDBurst = 3

// maxTokenBytes bounds the work an unauthenticated caller can make us do
// (base64 + JSON decoding) before any signature check. sessiongate tokens
// are well under 2 KiB.
const maxTokenBytes = 16 << 10

// ValidAlgorithms are the only JWS algorithms accepted.
var ValidAlgorithms = []string{"ES256", "EdDSA", "RS256"}

// Errors returned (wrapped) by Verify. Errors from golang-jwt such as
// jwt.ErrTokenExpired are wrapped too and can be matched with errors.Is.
var (
	ErrMissingToken = errors.New("missing token")
	ErrInvalidToken = errors.New("invalid token")
)

// Options configures a Verifier.
type Options struct {
	// JWKSURL is sessiongate's JWK Set endpoint. Required by New.
	JWKSURL string
	// Issuer must equal the token's iss. Required.
	Issuer string
	// Audience must be contained in the token's aud; it identifies this
	// service so a token minted for another service is refused. Required.
	Audience string
	// Header carrying the JWT (default "x-internal-jwt"). If it is
	// "Authorization", a "Bearer " prefix is expected and stripped.
	Header string
	// Leeway tolerates clock skew on exp, nbf and iat (default 30s; a
	// negative value disables it).
	Leeway time.Duration
	// HTTPClient fetches the JWKS (default http.DefaultClient).
	HTTPClient *http.Client
	// RefreshInterval is how often the JWKS is refetched in the background
	// (default 10m). It bounds how long a key removed from sessiongate keeps
	// being accepted.
	RefreshInterval time.Duration
	// UnknownKIDRefreshInterval is the rate of JWKS refetches triggered by
	// tokens with an unknown kid (default one per 30s, after a burst of 3).
	// It stops forged kids from turning every request into a JWKS fetch.
	UnknownKIDRefreshInterval time.Duration
	// HTTPTimeout bounds each JWKS fetch, including the wait for the
	// unknown-kid rate limiter (default 10s).
	HTTPTimeout time.Duration
	// RequireInitialFetch makes New fail when the JWKS cannot be fetched at
	// startup. By default New succeeds, logs the error and fetches again on
	// the first token, so a service can start before sessiongate.
	RequireInitialFetch bool
	// Actor says whether a token may, must or must not carry an act claim
	// (be one obtained by token exchange). Default ActorAllowed.
	Actor ActorPolicy
	// Kinds are the kinds of token accepted: token.KindUser (a session's
	// token) and/or token.KindService (a registered service's). Default:
	// user tokens only, so a service token is never taken for a user's.
	Kinds []string
	// Revocations, from FollowRevocations, makes the Verifier follow
	// sessiongate's revocation feed and refuse tokens of sessions revoked
	// before their exp (ErrRevoked), and, while the feed is stale beyond
	// its bound, every token with a sid unless it fails open
	// (ErrRevocationsStale). It starts following when New (with New's
	// context) or NewWithKeyfunc (until Revocations.Close) is called.
	// Nil: tokens live to their exp.
	Revocations *Revocations
	// Logger receives JWKS refresh failures (Warn), published keys refused
	// for carrying private key material (Error, once per key per fetch) and
	// token rejection reasons (Debug). Tokens are never logged. Default
	// slog.Default().
	Logger *slog.Logger
}

// ActorPolicy is what a Verifier requires of a token's act claim.
type ActorPolicy uint8

const (
	// ActorAllowed accepts tokens with and without an actor.
	ActorAllowed ActorPolicy = iota
	// ActorRequired accepts only tokens obtained by token exchange: a
	// service that must only ever be called on a user's behalf by another
	// service.
	ActorRequired
	// ActorForbidden refuses tokens obtained by token exchange: a service
	// that must only be called with a user's own token.
	ActorForbidden
)

// Verifier checks sessiongate JWTs. It is safe for concurrent use.
type Verifier struct {
	keyfuncCtx func(context.Context) jwt.Keyfunc
	parser     *jwt.Parser
	header     string
	bearer     bool
	kinds      []string
	actor      ActorPolicy
	rev        *Revocations
	log        *slog.Logger
}

// New returns a Verifier that fetches and caches the JWKS at opts.JWKSURL,
// refreshing it every RefreshInterval and, rate limited, whenever a token
// carries an unknown kid (the normal signal of a key rotation). The
// background refresh stops when ctx is done.
func New(ctx context.Context, opts Options) (*Verifier, error) {
	if opts.JWKSURL == "" {
		return nil, errors.New("verify: JWKSURL is required")
	}
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	url := opts.JWKSURL
	log := opts.Logger
	hc := *opts.HTTPClient
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc.Transport = &jwksFilter{base: base, log: log}
	store, err := jwkset.NewStorageFromHTTP(url, jwkset.HTTPClientStorageOptions{
		Client:                    &hc,
		Ctx:                       ctx,
		HTTPTimeout:               opts.HTTPTimeout,
		NoErrorReturnFirstHTTPReq: !opts.RequireInitialFetch,
		RefreshErrorHandler: func(ctx context.Context, err error) {
			log.WarnContext(ctx, "JWKS refresh failed", "url", url, "error", err)
		},
		RefreshInterval: opts.RefreshInterval,
		// Skip (rather than fail on) key types this version cannot use, so a
		// future sessiongate key type does not break older services.
		RequireSupportedKeys: false,
	})
	if err != nil {
		return nil, fmt.Errorf("verify: fetch JWKS from %s: %w", url, err)
	}
	client, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{url: store},
		RateLimitWaitMax:  opts.HTTPTimeout,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(opts.UnknownKIDRefreshInterval), unknownKIDBurst),
	})
	if err != nil {
		return nil, fmt.Errorf("verify: JWKS client for %s: %w", url, err)
	}
	kf, err := keyfunc.New(keyfunc.Options{
		Ctx:          ctx,
		Storage:      client,
		UseWhitelist: []jwkset.USE{jwkset.UseSig},
	})
	if err != nil {
		return nil, fmt.Errorf("verify: keyfunc: %w", err)
	}
	v := newVerifier(opts, kf.KeyfuncCtx)
	if v.rev != nil {
		v.rev.start(ctx, opts.Leeway)
	}
	return v, nil
}

// NewWithKeyfunc returns a Verifier that resolves keys with kf instead of
// fetching a JWKS, e.g. for tests or keys distributed out of band.
// opts.JWKSURL and the HTTP/refresh options are ignored.
func NewWithKeyfunc(kf jwt.Keyfunc, opts Options) (*Verifier, error) {
	if kf == nil {
		return nil, errors.New("verify: nil keyfunc")
	}
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	v := newVerifier(opts, func(context.Context) jwt.Keyfunc { return kf })
	if v.rev != nil {
		v.rev.start(context.Background(), opts.Leeway)
	}
	return v, nil
}

func (o *Options) defaults() error {
	if o.Issuer == "" {
		return errors.New("verify: Issuer is required")
	}
	if o.Audience == "" {
		return errors.New("verify: Audience is required")
	}
	if o.Header == "" {
		o.Header = DefaultHeader
	}
	switch {
	case o.Leeway == 0:
		o.Leeway = DefaultLeeway
	case o.Leeway < 0:
		o.Leeway = 0
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = DefaultRefreshInterval
	}
	if o.UnknownKIDRefreshInterval <= 0 {
		o.UnknownKIDRefreshInterval = DefaultUnknownKIDRefreshInterval
	}
	if o.HTTPTimeout <= 0 {
		o.HTTPTimeout = DefaultHTTPTimeout
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Actor > ActorForbidden {
		return fmt.Errorf("verify: unknown actor policy %d", o.Actor)
	}
	if len(o.Kinds) == 0 {
		o.Kinds = []string{token.KindUser}
	}
	for _, k := range o.Kinds {
		if k != token.KindUser && k != token.KindService {
			return fmt.Errorf("verify: unknown token kind %q (want %q or %q)", k, token.KindUser, token.KindService)
		}
	}
	return nil
}

func newVerifier(opts Options, kf func(context.Context) jwt.Keyfunc) *Verifier {
	return &Verifier{
		keyfuncCtx: kf,
		parser: jwt.NewParser(
			jwt.WithValidMethods(ValidAlgorithms),
			jwt.WithIssuer(opts.Issuer),
			jwt.WithAudience(opts.Audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(opts.Leeway),
			jwt.WithStrictDecoding(),
		),
		header: http.CanonicalHeaderKey(opts.Header),
		bearer: http.CanonicalHeaderKey(opts.Header) == "Authorization",
		kinds:  append([]string(nil), opts.Kinds...),
		actor:  opts.Actor,
		rev:    opts.Revocations,
		log:    opts.Logger,
	}
}

// Verify checks token and returns its claims. Any JWKS refresh it triggers
// runs without a caller deadline beyond Options.HTTPTimeout; prefer
// VerifyContext in request paths.
func (v *Verifier) Verify(token string) (*Claims, error) {
	return v.VerifyContext(context.Background(), token)
}

// VerifyContext is Verify with a context that bounds a JWKS refresh
// triggered by an unknown kid.
func (v *Verifier) VerifyContext(ctx context.Context, token string) (*Claims, error) {
	if token == "" {
		return nil, ErrMissingToken
	}
	if len(token) > maxTokenBytes {
		return nil, fmt.Errorf("%w: token larger than %d bytes", ErrInvalidToken, maxTokenBytes)
	}
	// golang-jwt reads the header into a map, where a repeated member
	// silently keeps its last value; read it exactly first.
	header, _, _ := strings.Cut(token, ".")
	if err := checkHeader(header); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	var ec exactClaims
	kf := v.keyfuncCtx(ctx)
	parsed, err := v.parser.ParseWithClaims(token, &ec, func(t *jwt.Token) (any, error) {
		// sessiongate always sets kid; requiring it avoids keyfunc's
		// try-every-key fallback.
		if kid, _ := t.Header["kid"].(string); kid == "" {
			return nil, errors.New("token has no kid")
		}
		key, err := kf(t)
		if err != nil {
			return nil, err
		}
		if err := checkKeyForAlg(t.Method.Alg(), key); err != nil {
			return nil, err
		}
		return key, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	typ, _ := parsed.Header["typ"].(string)
	if err := v.checkKind(&ec.c, typ); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	switch {
	case v.actor == ActorRequired && ec.c.Actor == nil:
		return nil, fmt.Errorf("%w: no act claim, where an actor is required", ErrInvalidToken)
	case v.actor == ActorForbidden && ec.c.Actor != nil:
		return nil, fmt.Errorf("%w: an act claim, where none is allowed", ErrInvalidToken)
	}
	if v.rev != nil {
		// After the signature: an unauthenticated sid says nothing.
		if err := v.rev.check(ec.c.SessionRef); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
		}
	}
	c := ec.c
	return &c, nil
}

// checkKind holds a verified token to the kinds this verifier accepts. A
// token is typed twice, by its kind claim (absent: a user token, as
// sessiongate signed before kinds existed) and by its header's typ; the
// two must agree, so neither can be changed alone to pass one kind off as
// the other (RFC 8725 §3.11).
func (v *Verifier) checkKind(c *Claims, typ string) error {
	if c.Kind == "" {
		c.Kind = token.KindUser
	}
	switch {
	case c.Kind == token.KindUser && typ == token.TypUser:
	case c.Kind == token.KindService && typ == token.TypService:
	default:
		return fmt.Errorf("kind %q with typ %q: not a token sessiongate signs", c.Kind, typ)
	}
	for _, k := range v.kinds {
		if k == c.Kind {
			return nil
		}
	}
	return fmt.Errorf("a %s token, where only %s tokens are accepted", c.Kind, strings.Join(v.kinds, " and "))
}

// checkKeyForAlg pins each alg to one key type and strength, independently
// of whatever the JWKS claims, as defense in depth against alg confusion.
func checkKeyForAlg(alg string, key any) error {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if alg == "ES256" && k.Curve == elliptic.P256() {
			return nil
		}
	case ed25519.PublicKey:
		if alg == "EdDSA" {
			return nil
		}
	case *rsa.PublicKey:
		if alg == "RS256" && k.N.BitLen() >= 2048 {
			return nil
		}
	}
	return fmt.Errorf("key of type %T is not acceptable for alg %s", key, alg)
}

// Claims is the verified content of a sessiongate token.
type Claims struct {
	Issuer     string
	Subject    string
	Audience   []string
	Tenant     string
	SessionRef string // sid: an opaque reference to the session, not the session ID
	ID         string // jti
	Roles      []string
	// Custom holds every other string-valued claim sessiongate added.
	// Names are exact (case-sensitive); a token whose claim names repeat,
	// or fold onto a claim above without being it, is refused.
	Custom                         map[string]string
	IssuedAt, NotBefore, ExpiresAt time.Time
	// Kind is token.KindUser (a session's token; also for tokens without a
	// kind claim) or token.KindService (a registered service's).
	Kind string
	// Actor is the act claim of a token obtained by token exchange: the
	// service acting for Subject, and whom that one acted for in turn. Nil
	// for a token that speaks for its subject directly.
	Actor *Actor
}

// Actor is one link of an act chain.
type Actor struct {
	Subject string
	Actor   *Actor
}

// ActorChain lists the actors, the one that called this service first:
// ["inventory", "billing"] for a token billing obtained for a user and
// inventory exchanged again. Empty without an actor. Nil-safe.
func (c *Claims) ActorChain() []string {
	if c == nil {
		return nil
	}
	var out []string
	for a := c.Actor; a != nil; a = a.Actor {
		out = append(out, a.Subject)
	}
	return out
}

// Service returns the calling service's name for a service token, and ""
// for a user token. It is nil-safe.
func (c *Claims) Service() string {
	if c == nil || c.Kind != token.KindService {
		return ""
	}
	return c.Subject
}

// HasRole reports whether the token grants role. It is nil-safe so handlers
// can write `c, _ := FromContext(ctx); c.HasRole("admin")`.
func (c *Claims) HasRole(role string) bool {
	if c == nil {
		return false
	}
	for _, r := range c.Roles {
		if r == role {
			return true
		}
	}
	return false
}

type ctxKey struct{}

// NewContext returns a copy of ctx carrying c. Middleware and interceptors
// call it; tests of downstream handlers can too.
func NewContext(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// FromContext returns the claims stored by Middleware or the interceptors.
func FromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(ctxKey{}).(*Claims)
	return c, ok && c != nil
}
