package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sessiongate/sessiongate/internal/redistest"
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
			keyPath := writeKey(t, dir, "key.pem", "ES256")
			tokenPath := filepath.Join(dir, "admin-token")
			cfgPath := filepath.Join(dir, "config.yaml")
			grpcAddr, httpAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
			writeFile(t, tokenPath, "topology-admin-token-0123456789\n")
			// redis.timeout is generous: this test is about wiring the
			// topologies through the config, and on a loaded 2-core machine
			// a 250 ms bound has failed it with a correct fail-closed 503.
			// The latency bound has its own tests (internal/faults, pkg/session).
			writeFile(t, cfgPath, fmt.Sprintf("grpc_addr: %q\nhttp_addr: %q\nadmin_addr: %q\nadmin_token_file: %q\ntoken:\n  signing_keys: [%q]\nredis:\n  timeout: 1s\n%s",
				grpcAddr, httpAddr, adminAddr, tokenPath, keyPath, redisYAML(t)))

			runServe(t, cfgPath)
			conn := dialServing(t, grpcAddr, 15*time.Second)
			ctx := context.Background()
			var created bytes.Buffer
			if err := run(ctx, []string{"session", "--config", cfgPath, "create", "--subject", "topo"}, &created, io.Discard); err != nil {
				t.Fatal(err)
			}
			id := createdSessionID(t, created.String())
			resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/api", Headers: map[string]string{"cookie": "__Host-sid=" + id}},
			}}})
			if err != nil || resp.GetOkResponse() == nil {
				t.Fatalf("check: %v %v", resp, err)
			}
		})
	}
}
