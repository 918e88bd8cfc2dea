package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/sessiongate/sessiongate/pkg/admin"
	"github.com/sessiongate/sessiongate/pkg/authz"
	"github.com/sessiongate/sessiongate/pkg/config"
)

const serviceUsage = `usage: sessiongate service [--config FILE] [--url URL] [--token-file FILE] <command> [args]

commands:
  create NAME [--role R]...                 register a service; prints its first credential
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
	configPath := fs.String("config", "", "config file (for admin_addr and admin_token_file)")
	baseURL := fs.String("url", "", "admin API base URL (default http://<admin_addr>)")
	tokenFile := fs.String("token-file", "", "admin token file (default admin_token_file)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return errors.New("service: missing command")
	}
	c, err := adminClient(*configPath, *baseURL, *tokenFile)
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
		var roles listFlag
		cfs.Var(&roles, "role", "role (repeatable)")
		if err := cfs.Parse(args[1:]); err != nil {
			return err
		}
		if cfs.NArg() > 0 {
			return fmt.Errorf("create: unexpected argument %q", cfs.Arg(0))
		}
		resp, err := c.CreateService(ctx, admin.ServiceRequest{Name: args[0], Roles: roles})
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
