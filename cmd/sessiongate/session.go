package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/sessiongate/sessiongate/pkg/admin"
)

const sessionUsage = `usage: sessiongate session [--config FILE] [--url URL] [--token-file FILE] <command> [args]

commands:
  create --subject S [--tenant T] [--role R]... [--claim K=V]... [--idle-timeout D] [--absolute-timeout D] [--device-name N] [--refresh]
         (--refresh: also a refresh token; needs refresh.enabled, excludes the timeouts)
  list [--limit N] SUBJECT   (every session; N per request, 1..1000, default 100; family_ref for refresh families)
  revoke SESSION_REF|FAMILY_REF   (a family_ref, fam_..., revokes the whole refresh family)
  revoke-user SUBJECT
  update-user SUBJECT [--role R]... [--no-roles] [--claim K=V]...

The admin API address and token file default to admin_addr and
admin_token_file of the config (file and SESSIONGATE_* environment).
Output is JSON.
`

// listFlag collects a repeated string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func sessionCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("session", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, sessionUsage) }
	af := adminFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := af.client()
	if err != nil {
		return err
	}

	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return errors.New("session: missing command")
	}
	out := json.NewEncoder(stdout)
	out.SetIndent("", "  ")
	switch cmd, args := rest[0], rest[1:]; cmd {
	case "create":
		req, err := parseCreate(args, stderr)
		if err != nil {
			return err
		}
		resp, err := c.CreateSession(ctx, req)
		if err != nil {
			return err
		}
		return out.Encode(resp)
	case "list":
		fs := flag.NewFlagSet("session list", flag.ContinueOnError)
		fs.SetOutput(stderr)
		limit := fs.Int("limit", 0, "sessions per request, 1..1000 (default: the server's, 100)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		subject, err := oneArg("list", "SUBJECT", fs.Args())
		if err != nil {
			return err
		}
		// The whole list, as before the API was paginated: the pages are
		// joined here, so the output has no next_cursor.
		ss, err := c.ListAllSessions(ctx, subject, *limit)
		if err != nil {
			return err
		}
		return out.Encode(admin.ListResponse{Sessions: ss})
	case "revoke":
		ref, err := oneArg("revoke", "SESSION_REF or FAMILY_REF", args)
		if err != nil {
			return err
		}
		return c.RevokeSession(ctx, ref)
	case "revoke-user":
		subject, err := oneArg("revoke-user", "SUBJECT", args)
		if err != nil {
			return err
		}
		n, err := c.RevokeUser(ctx, subject)
		if err != nil {
			return err
		}
		return out.Encode(admin.RevokeResponse{Revoked: n})
	case "update-user":
		if len(args) == 0 {
			return errors.New("update-user: missing SUBJECT")
		}
		req, err := parseUpdate(args[1:], stderr)
		if err != nil {
			return err
		}
		n, err := c.UpdateUser(ctx, args[0], req)
		if err != nil {
			return err
		}
		return out.Encode(admin.UpdateResponse{Updated: n})
	default:
		fs.Usage()
		return fmt.Errorf("session: unknown command %q", cmd)
	}
}

func oneArg(cmd, name string, args []string) (string, error) {
	if len(args) != 1 {
		return "", fmt.Errorf("%s: want exactly one %s", cmd, name)
	}
	return args[0], nil
}

func parseClaims(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--claim %q: want KEY=VALUE", kv)
		}
		m[k] = v
	}
	return m, nil
}

func parseCreate(args []string, stderr io.Writer) (admin.CreateRequest, error) {
	fs := flag.NewFlagSet("session create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var req admin.CreateRequest
	var roles, claims listFlag
	var device admin.Device
	fs.StringVar(&req.Subject, "subject", "", "subject (user id), required")
	fs.StringVar(&req.Tenant, "tenant", "", "tenant")
	fs.Var(&roles, "role", "role (repeatable)")
	fs.Var(&claims, "claim", "custom claim KEY=VALUE (repeatable)")
	fs.StringVar(&req.IdleTimeout, "idle-timeout", "", "idle timeout, e.g. 15m (default: config)")
	fs.StringVar(&req.AbsoluteTimeout, "absolute-timeout", "", "absolute timeout, e.g. 8h (default: config)")
	fs.StringVar(&device.Name, "device-name", "", "device name shown in listings")
	fs.BoolVar(&req.Refresh, "refresh", false, "also issue a refresh token (refresh.enabled)")
	if err := fs.Parse(args); err != nil {
		return req, err
	}
	if fs.NArg() > 0 {
		return req, fmt.Errorf("create: unexpected argument %q", fs.Arg(0))
	}
	req.Roles = roles
	var err error
	if req.Claims, err = parseClaims(claims); err != nil {
		return req, err
	}
	if device != (admin.Device{}) {
		req.Device = &device
	}
	return req, nil
}

func parseUpdate(args []string, stderr io.Writer) (admin.UpdateRequest, error) {
	fs := flag.NewFlagSet("session update-user", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var roles, claims listFlag
	noRoles := fs.Bool("no-roles", false, "remove every role")
	fs.Var(&roles, "role", "role (repeatable); replaces the roles")
	fs.Var(&claims, "claim", "custom claim KEY=VALUE (repeatable); replaces the claims")
	if err := fs.Parse(args); err != nil {
		return admin.UpdateRequest{}, err
	}
	var req admin.UpdateRequest
	if len(roles) > 0 || *noRoles {
		r := []string(roles)
		if r == nil {
			r = []string{}
		}
		req.Roles = &r
	}
	var err error
	req.Claims, err = parseClaims(claims)
	return req, err
}
