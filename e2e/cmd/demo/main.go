// Command demo runs the whole sessiongate flow on this machine, without
// Docker: redis-server, sessiongate, the demo login service, the demo
// upstream and a real Envoy 1.40, as processes on fixed loopback ports. It is
// `make demo`.
//
// It uses the e2e harness (the same process manager, configs and readiness
// probes as the end-to-end tests), prints what to open and what to curl, and
// on Ctrl-C (SIGINT or SIGTERM) stops every process by PID, in reverse start
// order. Logs, keys and configs are in one folder (-dir).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/sessiongate/sessiongate/e2e/harness"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	p := harness.Ports{}
	fs.IntVar(&p.EnvoyEdge, "edge-port", 8080, "Envoy's client-facing listener (open this one)")
	fs.IntVar(&p.Login, "login-port", 8081, "demo login service")
	fs.IntVar(&p.Upstream, "upstream-port", 8082, "demo upstream")
	fs.IntVar(&p.EnvoyHop, "hop-port", 8083, "Envoy's internal listener in front of the upstream (jwt_authn)")
	fs.IntVar(&p.EnvoyAdmn, "envoy-admin-port", 9901, "Envoy admin")
	fs.IntVar(&p.SGGRPC, "grpc-port", 9001, "sessiongate ext_authz gRPC")
	fs.IntVar(&p.SGHTTP, "http-port", 9002, "sessiongate JWKS, health, metrics")
	fs.IntVar(&p.SGAdmin, "admin-port", 9003, "sessiongate admin API")
	fs.IntVar(&p.Redis, "redis-port", 6390, "redis-server")
	dir := fs.String("dir", "", "folder for logs, keys and configs (default e2e/.run/demo)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		root, err := harness.RepoRoot()
		if err != nil {
			return err
		}
		*dir = filepath.Join(root, "e2e", ".run", "demo")
	}

	r := &runner{log: stdout}
	defer func() {
		fmt.Fprintln(stdout, "demo: stopping")
		r.cleanup()
	}()
	var s *harness.Stack
	if err := r.do(func() { s = harness.Start(r, harness.Options{Ports: &p, Dir: *dir}) }); err != nil {
		return err
	}
	printWelcome(stdout, s)
	<-ctx.Done()
	return nil
}

func printWelcome(w io.Writer, s *harness.Stack) {
	edge := s.EdgeURL("")
	pids := []string{}
	for _, p := range []*harness.Process{s.Redis, s.Sessiongate, s.LoginSvc, s.Upstream, s.Envoy} {
		pids = append(pids, fmt.Sprintf("%s %d", p.Name, p.PID()))
	}
	fmt.Fprintf(w, `
sessiongate demo is up (%s).

Open in a browser:  %s/api/me
  -> redirected to the login page; sign in as alice / alice-password
     (or bob / bob-password, carol / carol-password: role admin) and the
     upstream shows the JWT claims it verified.

Or with curl:
  SID=$(curl -s -o /dev/null -D - -H 'Content-Type: application/json' -d '{"username":"alice","password":"alice-password"}' %s/login | sed -n 's/^[Ss]et-[Cc]ookie: __Host-sid=\([^;]*\).*/\1/p')
  curl -s -H "Cookie: __Host-sid=$SID" %s/api/me
  curl -s -o /dev/null -w '%%{http_code}\n' -H "Cookie: __Host-sid=$SID" %s/auth/logout

Admin API: %s (token in %s)
JWKS:      %s
Logs:      %s
Ctrl-C stops everything.
`, strings.Join(pids, ", "), edge, edge, edge, edge,
		s.AdminURL(), filepath.Join(s.Dir, "admin-token"), s.JWKSURL(), s.Dir)
	fmt.Fprintln(w, harness.DemoReadyLine)
}

// runner is the harness's TB outside a test: Fatal aborts the start, Cleanup
// functions run in reverse order at exit, Errorf and Logf print.
type runner struct {
	log      io.Writer
	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

type fatal struct{ msg string }

// do runs f and turns a Fatal inside it into an error.
func (r *runner) do(f func()) (err error) {
	defer func() {
		if v := recover(); v != nil {
			ft, ok := v.(fatal)
			if !ok {
				panic(v)
			}
			err = errors.New(ft.msg)
		}
	}()
	f()
	return nil
}

func (r *runner) cleanup() {
	r.mu.Lock()
	cs := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

func (r *runner) Helper()          {}
func (r *runner) Name() string     { return "demo" }
func (r *runner) Cleanup(f func()) { r.mu.Lock(); r.cleanups = append(r.cleanups, f); r.mu.Unlock() }
func (r *runner) Failed() bool     { r.mu.Lock(); defer r.mu.Unlock(); return r.failed }
func (r *runner) Fatal(args ...any) {
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
	panic(fatal{fmt.Sprint(args...)})
}
func (r *runner) Fatalf(format string, args ...any) { r.Fatal(fmt.Sprintf(format, args...)) }
func (r *runner) Errorf(format string, args ...any) {
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
	fmt.Fprintf(r.log, "demo: "+format+"\n", args...)
}
func (r *runner) Logf(format string, args ...any) { fmt.Fprintf(r.log, format+"\n", args...) }

var _ harness.TB = (*runner)(nil)
