// Command login is the demo login service of the e2e and Compose stacks.
//
// It checks a username and password against a fixture file, asks
// sessiongate's admin API (through the Go client in pkg/admin) for a session,
// and forwards the Set-Cookie that sessiongate built. It is what a real login
// service (or an OIDC callback) does in front of sessiongate, kept small:
// no sign-up, no MFA, users come from a JSON file.
//
//	login -listen :8081 -admin-url http://127.0.0.1:9003 \
//	      -admin-token-file admin-token -users users.json
//	login -hash-password < password.txt   # prints a hash for the fixture
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sessiongate/sessiongate/pkg/admin"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "login:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8081", "address to listen on")
	adminURL := fs.String("admin-url", "http://127.0.0.1:9003", "sessiongate admin API base URL")
	adminTokenFile := fs.String("admin-token-file", "", "file whose first line is the admin API bearer token")
	usersFile := fs.String("users", "", "JSON fixture with the users (see e2e/fixtures/users.json)")
	hash := fs.Bool("hash-password", false, "read a password from stdin, print its hash for the fixture and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *hash {
		pw, err := io.ReadAll(io.LimitReader(os.Stdin, 4096))
		if err != nil {
			return err
		}
		h, err := HashPassword(strings.TrimRight(string(pw), "\r\n"))
		if err != nil {
			return err
		}
		fmt.Println(h)
		return nil
	}
	if *usersFile == "" || *adminTokenFile == "" {
		return errors.New("-users and -admin-token-file are required")
	}
	users, err := LoadUsers(*usersFile)
	if err != nil {
		return err
	}
	token, err := readToken(*adminTokenFile)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	h := &Handler{
		Users: users,
		Admin: admin.NewClient(*adminURL, token, &http.Client{Timeout: 5 * time.Second}),
		Log:   log,
	}
	srv := &http.Server{
		Addr:              *listen,
		Handler:           h.Routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("login listening", "addr", *listen, "admin_url", *adminURL, "users", len(users))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutCtx)
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", fmt.Errorf("admin token: %s is empty", path)
	}
	return tok, nil
}
