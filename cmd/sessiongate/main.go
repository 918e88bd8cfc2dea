// Command sessiongate is an Envoy external-authorization server for the
// pattern "opaque session ID outside, signed JWT inside".
//
//	sessiongate serve [--config FILE] [--dev]   run the server
//	sessiongate keygen [--alg ES256|EdDSA|RS256] write a new PEM private key to stdout
//	sessiongate session ...                     manage sessions through the admin API
//	sessiongate service ...                     manage services and their credentials through the admin API
//	sessiongate events tail                     follow security events through the admin API
//	sessiongate version                         print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sessiongate/sessiongate/pkg/token"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage: sessiongate <command> [flags]

commands:
  serve     run the ext_authz gRPC server, JWKS/health/metrics HTTP server and admin API
  keygen    write a new PEM private signing key to stdout
  session   create, list, revoke and update sessions through the admin API
  events    follow security events (events tail) through the admin API
  explain   show which rule applies to a request and what Check decides, and why
  service   register services and manage their credentials through the admin API
  version   print the version
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var exit exitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		if exit.msg != "" {
			fmt.Fprintln(os.Stderr, "sessiongate:", exit.msg)
		}
		os.Exit(exit.code)
	default:
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "sessiongate:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return serve(ctx, rest, stderr)
	case "keygen":
		return keygen(rest, stdout, stderr)
	case "session":
		return sessionCmd(ctx, rest, stdout, stderr)
	case "events":
		return eventsCmd(ctx, rest, stdout, stderr)
	case "explain":
		return explain(ctx, rest, stdout, stderr)
	case "service":
		return serviceCmd(ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func keygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	alg := fs.String("alg", token.AlgES256, "signing algorithm: ES256, EdDSA or RS256")
	if err := fs.Parse(args); err != nil {
		return err
	}
	k, err := token.GenerateKey(*alg)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	pem, err := token.EncodePrivateKeyPEM(k)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	_, err = stdout.Write(pem)
	return err
}
