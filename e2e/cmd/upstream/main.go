// Command upstream is the demo backend of the e2e and Compose stacks: an echo
// service that trusts nothing but sessiongate's internal JWT.
//
// Every request that carries the token header must carry a token that
// verifies against sessiongate's JWKS (fetched and refreshed with
// github.com/MicahParks/keyfunc/v3), with the right issuer and the audience
// expected for the path; otherwise it is rejected with 401. With
// -revocations-url it also follows sessiongate's revocation feed
// (pkg/verify's FollowRevocations) and refuses tokens of revoked sessions
// before their exp. Requests without
// a token are served only under the public prefixes. The response echoes the
// verified claims, the token's header and every request header and cookie the
// service received, which is what the e2e tests inspect.
//
//	upstream -listen :8082 -jwks-url http://127.0.0.1:9002/.well-known/jwks.json \
//	         -issuer sessiongate -audience internal -audience-prefix /orders/=orders
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"golang.org/x/time/rate"

	"github.com/sessiongate/sessiongate/pkg/verify"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
}

// prefixFlag collects repeated "-audience-prefix /path/=aud" flags.
type prefixFlag []AudiencePrefix

func (p *prefixFlag) String() string { return fmt.Sprint(*p) }

func (p *prefixFlag) Set(v string) error {
	prefix, aud, ok := strings.Cut(v, "=")
	if !ok || !strings.HasPrefix(prefix, "/") || aud == "" {
		return errors.New(`want "/prefix/=audience"`)
	}
	*p = append(*p, AudiencePrefix{Prefix: prefix, Audience: aud})
	return nil
}

func run(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8082", "address to listen on")
	jwksURL := fs.String("jwks-url", "http://127.0.0.1:9002/.well-known/jwks.json", "sessiongate's JWKS URL")
	issuer := fs.String("issuer", "sessiongate", "required iss claim")
	audience := fs.String("audience", "internal", "required aud claim outside the -audience-prefix paths")
	header := fs.String("token-header", "x-internal-jwt", "request header carrying the internal JWT")
	public := fs.String("public-prefix", "/public/", "comma-separated path prefixes served without a token")
	refreshEvery := fs.Duration("jwks-refresh", time.Hour, "background JWKS refresh interval")
	unknownKIDEvery := fs.Duration("jwks-unknown-kid-every", 10*time.Second, "at most one JWKS refetch per this interval when a token names an unknown kid (key rotation); 0 = never, so keys are learnt only from -jwks-refresh")
	revocationsURL := fs.String("revocations-url", "", "sessiongate's revocation feed (http://…/v1/revocations); tokens of sessions it names are refused, and every token with a sid while it is stale; empty = off")
	var prefixes prefixFlag
	fs.Var(&prefixes, "audience-prefix", `"/prefix/=audience": tokens for this path must carry this aud (repeatable)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	kf, err := newKeyfunc(ctx, *jwksURL, *refreshEvery, *unknownKIDEvery, log)
	if err != nil {
		return fmt.Errorf("JWKS: %w", err)
	}

	e := &Echo{
		Keyfunc:         kf.Keyfunc,
		Issuer:          *issuer,
		DefaultAudience: *audience,
		AudiencePrefix:  prefixes,
		TokenHeader:     *header,
		PublicPrefixes:  splitList(*public),
		Log:             log,
	}
	if *revocationsURL != "" {
		rev := verify.FollowRevocations(*revocationsURL, verify.RevocationLogger(log))
		rev.Start(ctx)
		e.Revocations = rev
	}
	srv := &http.Server{
		Addr:              *listen,
		Handler:           e.Routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("upstream listening", "addr", *listen, "jwks_url", *jwksURL)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutCtx)
}

// newKeyfunc builds the JWKS-backed key lookup. The first fetch may fail
// while sessiongate is still starting; keyfunc then retries on the first
// token and on the refresh interval instead of refusing to start, so start-up
// order does not matter. A token naming a kid we have not seen (a freshly
// rotated key) triggers a refetch, at most once per unknownKIDEvery; 0
// disables that refetch (a limiter that never admits one, so the lookup fails
// at once), which is how the e2e runbook test proves that the periodic
// refresh alone is enough when keys are published ahead of use.
func newKeyfunc(ctx context.Context, jwksURL string, refreshEvery, unknownKIDEvery time.Duration, log *slog.Logger) (keyfunc.Keyfunc, error) {
	noErrFirst := true
	unknownKID := rate.NewLimiter(0, 0)
	if unknownKIDEvery > 0 {
		unknownKID = rate.NewLimiter(rate.Every(unknownKIDEvery), 1)
	}
	return keyfunc.NewDefaultOverrideCtx(ctx, []string{jwksURL}, keyfunc.Override{
		HTTPTimeout:               5 * time.Second,
		NoErrorReturnFirstHTTPReq: &noErrFirst,
		RefreshInterval:           refreshEvery,
		RefreshUnknownKID:         unknownKID,
		// A token with a made-up kid must not park a request for the
		// default minute waiting for the rate limiter.
		RateLimitWaitMax: 250 * time.Millisecond,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				log.WarnContext(ctx, "JWKS refresh failed", "url", u, "error", err)
			}
		},
	})
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
