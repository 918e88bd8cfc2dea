package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/sessiongate/sessiongate/pkg/admin"
	"github.com/sessiongate/sessiongate/pkg/authz"
	"github.com/sessiongate/sessiongate/pkg/config"
	"github.com/sessiongate/sessiongate/pkg/exchange"
	"github.com/sessiongate/sessiongate/pkg/session"
)

const serviceUsage = `usage: sessiongate service [--config FILE] [--url URL] [--token-file FILE] <command> [args]

commands:
  create NAME [--role R]... [--audience A]...
                                            register a service; prints its first credential.
                                            --audience: what client_credentials may obtain (default token.audience)
  list                                      every service, its roles and credential refs
  add-credential NAME                       a further credential, for a rotation; prints it
  revoke-credential NAME CREDENTIAL_REF     the credential fails from the next request
  delete NAME                               the service and every credential

A credential is printed once, when it is made; store it as a secret. The
admin API address and token file default to admin_addr and
admin_token_file of the config (file and SESSIONGATE_* environment).
Output is JSON.
`

func serviceCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("service", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, serviceUsage) }
	af := adminFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return errors.New("service: missing command")
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	out := json.NewEncoder(stdout)
	out.SetIndent("", "  ")
	switch cmd, args := rest[0], rest[1:]; cmd {
	case "create":
		if len(args) == 0 {
			return errors.New("create: missing NAME")
		}
		cfs := flag.NewFlagSet("service create", flag.ContinueOnError)
		cfs.SetOutput(stderr)
		var roles, audiences listFlag
		cfs.Var(&roles, "role", "role (repeatable)")
		cfs.Var(&audiences, "audience", "audience it may obtain with client_credentials (repeatable)")
		if err := cfs.Parse(args[1:]); err != nil {
			return err
		}
		if cfs.NArg() > 0 {
			return fmt.Errorf("create: unexpected argument %q", cfs.Arg(0))
		}
		resp, err := c.CreateService(ctx, admin.ServiceRequest{Name: args[0], Roles: roles, Audiences: audiences})
		if err != nil {
			return err
		}
		return out.Encode(resp)
	case "list":
		if len(args) > 0 {
			return fmt.Errorf("list: unexpected argument %q", args[0])
		}
		ss, err := c.ListServices(ctx)
		if err != nil {
			return err
		}
		return out.Encode(admin.ServiceList{Services: ss})
	case "add-credential":
		name, err := oneArg("add-credential", "NAME", args)
		if err != nil {
			return err
		}
		resp, err := c.AddCredential(ctx, name)
		if err != nil {
			return err
		}
		return out.Encode(resp)
	case "revoke-credential":
		if len(args) != 2 {
			return errors.New("revoke-credential: want NAME and CREDENTIAL_REF")
		}
		return c.RevokeCredential(ctx, args[0], args[1])
	case "delete":
		name, err := oneArg("delete", "NAME", args)
		if err != nil {
			return err
		}
		n, err := c.DeleteService(ctx, name)
		if err != nil {
			return err
		}
		return out.Encode(admin.RevokeResponse{Revoked: n})
	default:
		fs.Usage()
		return fmt.Errorf("service: unknown command %q", cmd)
	}
}

// authzSPIFFE builds Check's mTLS principal mapping from config.
func authzSPIFFE(s config.Services) (authz.SPIFFE, error) {
	m, err := authz.NewSPIFFE(s.SPIFFE, s.SPIFFETrustDomain)
	if err != nil {
		return authz.SPIFFE{}, fmt.Errorf("services.spiffe: %w", err)
	}
	return m, nil
}

// newExchange builds the token endpoint (POST /oauth2/token on http_addr)
// from config: the exchange policy, whose every name must be a service
// name, and the token.exchange_* limits.
func newExchange(cfg *config.Config, g *gate) (*exchange.Handler, error) {
	policy := make(map[string][]string, len(cfg.TokenExchange))
	for name, auds := range cfg.TokenExchange {
		if !session.ValidServiceName(name) {
			return nil, fmt.Errorf("token_exchange: %q is not a service name (a-z, 0-9 and '-', at most 63)", name)
		}
		policy[name] = append([]string(nil), auds...)
	}
	return exchange.New(exchange.Options{
		Sessions:        g.peek,
		Services:        g.services,
		Signer:          g.signer,
		Policy:          policy,
		DefaultAudience: cfg.Token.Audience,
		TTL:             cfg.Token.ExchangeTTL,
		StoreTimeout:    max(cfg.Redis.Timeout, time.Second),
		RateLimit:       cfg.Token.ExchangeRateLimit,
		RateBurst:       cfg.Token.ExchangeRateBurst,
		Count:           countTokenRequests(g),
		Log:             g.log,
	}), nil
}

// countTokenRequests counts token endpoint answers, every label exported at
// zero from the start so rate() works before the first of each.
func countTokenRequests(g *gate) func(grant, result string) {
	for _, gr := range exchange.CountedGrants {
		for _, res := range exchange.CountedResults {
			g.metrics.TokenRequests.WithLabelValues(gr, res)
		}
	}
	return func(grant, result string) { g.metrics.TokenRequests.WithLabelValues(grant, result).Inc() }
}
