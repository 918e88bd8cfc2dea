package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthgrpc "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sessiongate/sessiongate/pkg/authz"
)

// noopTokenLen is the length of the header value the no-op server answers
// with: about the size of a real sessiongate token, so both servers put the
// same number of bytes on the wire.
const noopTokenLen = 440

// noopServer is the reference ext_authz server: the same grpc-go, the same
// server options as sessiongate (authz.ServerOptions), and a Check that
// answers OK with one header and does nothing else. No Go ext_authz server
// can beat it on this machine; sessiongate is reported as a fraction of it.
// A request whose query names an answer variant ("v=<name>", answer.go)
// gets that variant instead: the answer part's A/B of what Envoy does with
// each part of an allow answer.
type noopServer struct {
	authv3.UnimplementedAuthorizationServer
	resp     *authv3.CheckResponse
	variants map[string]answerVariant
	answers  map[string]*authv3.CheckResponse
}

func newNoopServer() *noopServer {
	s := &noopServer{variants: map[string]answerVariant{}, answers: map[string]*authv3.CheckResponse{}}
	for _, v := range answerVariants() {
		s.variants[v.name], s.answers[v.name] = v, v.resp()
	}
	s.resp = s.answers["token"]
	return s
}

// okResponse is an allow answer with these headers to set and to remove.
func okResponse(hs []*corev3.HeaderValueOption, remove []string) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: hs, HeadersToRemove: remove,
		}},
	}
}

func (s *noopServer) Check(_ context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	path := r.GetAttributes().GetRequest().GetHttp().GetPath()
	i := strings.Index(path, "&v=")
	if i < 0 {
		return s.resp, nil
	}
	name := path[i+len("&v="):]
	resp, ok := s.answers[name]
	if !ok {
		return s.resp, nil
	}
	if d := s.variants[name].sleep; d > 0 {
		time.Sleep(d)
	}
	return resp, nil
}

// serveNoop is the "noop" subcommand: the no-op ext_authz server, with gRPC
// health (Envoy health-checks its ext_authz cluster as in production).
func serveNoop(args []string) error {
	fs := flag.NewFlagSet("noop", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "loopback address to serve on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := loopbackOnly(*listen); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	gs := grpc.NewServer(authz.ServerOptions()...)
	authv3.RegisterAuthorizationServer(gs, newNoopServer())
	healthpb.RegisterHealthServer(gs, healthgrpc.NewServer())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); gs.Stop() }()
	fmt.Fprintf(os.Stderr, "noop ext_authz serving on %s\n", lis.Addr())
	if err := gs.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// serveUpstream is the "upstream" subcommand: the HTTP service behind
// Envoy, as cheap as an HTTP server gets, so that the Envoy table measures
// Envoy and ext_authz rather than an application.
func serveUpstream(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "loopback address to serve on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := loopbackOnly(*listen); err != nil {
		return err
	}
	body := []byte("ok\n")
	srv := &http.Server{
		Addr: *listen,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write(body)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
