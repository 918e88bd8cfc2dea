package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sessiongate/sessiongate/pkg/redistest"
)

// TestServeRedisTopologies runs the real serve command against Redis
// Sentinel and Redis Cluster, configured only through the redis.* keys, and
// checks that a session created through the admin API passes Check.
func TestServeRedisTopologies(t *testing.T) {
	for name, redisYAML := range map[string]func(t *testing.T) string{
		"sentinel": func(t *testing.T) string {
			s := redistest.StartSentinel(t)
			return fmt.Sprintf("  sentinel:\n    master_name: %s\n    addrs: [%s]\n", redistest.SentinelMaster, strings.Join(s.Addrs(), ", "))
		},
		"cluster": func(t *testing.T) string {
			c := redistest.StartCluster(t)
			return fmt.Sprintf("  cluster_addrs: [%s]\n", c.Addrs()[0])
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var key bytes.Buffer
			if err := run(context.Background(), []string{"keygen"}, &key, io.Discard); err != nil {
				t.Fatal(err)
			}
			keyPath := filepath.Join(dir, "key.pem")
			tokenPath := filepath.Join(dir, "admin-token")
			cfgPath := filepath.Join(dir, "config.yaml")
			grpcAddr, httpAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
			for path, content := range map[string]string{
				keyPath:   key.String(),
				tokenPath: "topology-admin-token-0123456789\n",
				cfgPath: fmt.Sprintf("grpc_addr: %q\nhttp_addr: %q\nadmin_addr: %q\nadmin_token_file: %q\ntoken:\n  signing_keys: [%q]\nredis:\n  timeout: 1s\n%s",
					grpcAddr, httpAddr, adminAddr, tokenPath, keyPath, redisYAML(t)),
			} {
				if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}

			// redis.timeout is generous: this test is about wiring the
			// topologies through the config, and on a loaded 2-core machine
			// a 250 ms bound has failed it with a correct fail-closed 503.
			// The latency bound has its own tests (pkg/faults, pkg/session).
			ctx, cancel := context.WithCancel(context.Background())
			logs := &syncBuffer{}
			done := make(chan error, 1)
			go func() { done <- run(ctx, []string{"serve", "--config", cfgPath}, io.Discard, logs) }()
			t.Cleanup(func() {
				cancel()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("serve: %v", err)
					}
				case <-time.After(10 * time.Second):
					t.Error("serve did not stop")
				}
				if t.Failed() {
					t.Logf("server log:\n%s", logs.String())
				}
			})

			conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			health := healthpb.NewHealthClient(conn)
			if !redistest.Eventually(ctx, 15*time.Second, func() bool {
				resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
				return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
			}) {
				t.Fatal("grpc health never SERVING")
			}
			var created bytes.Buffer
			if err := run(ctx, []string{"session", "--config", cfgPath, "create", "--subject", "topo"}, &created, io.Discard); err != nil {
				t.Fatal(err)
			}
			out := created.String()
			i := strings.Index(out, `"session_id": "`)
			if i < 0 {
				t.Fatalf("create output %s", out)
			}
			id := out[i+len(`"session_id": "`) : i+len(`"session_id": "`)+43]
			resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/api", Headers: map[string]string{"cookie": "__Host-sid=" + id}},
			}}})
			if err != nil || resp.GetOkResponse() == nil {
				t.Fatalf("check: %v %v", resp, err)
			}
		})
	}
}
