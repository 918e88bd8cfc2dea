package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sessiongate/sessiongate/internal/logtest"
	"github.com/sessiongate/sessiongate/internal/redistest"
)

// Fixtures shared by the tests that run the real serve command in this
// process.

// writeFile writes a test file readable only by its owner, as keys and
// tokens are in production.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeKey writes a fresh private key made by `keygen --alg alg` to
// dir/name and returns its path.
func writeKey(t *testing.T, dir, name, alg string) string {
	t.Helper()
	var key bytes.Buffer
	if err := run(context.Background(), []string{"keygen", "--alg", alg}, &key, io.Discard); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	writeFile(t, path, key.String())
	return path
}

// runServe runs `serve [flags] --config cfgPath` until the test ends, then
// stops it as SIGTERM would and requires a clean, prompt exit. The returned
// buffer collects the server's log, which is printed when the test fails.
func runServe(t *testing.T, cfgPath string, flags ...string) *logtest.Buffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &logtest.Buffer{}
	done := make(chan error, 1)
	args := append(append([]string{"serve"}, flags...), "--config", cfgPath)
	go func() { done <- run(ctx, args, io.Discard, logs) }()
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
	return logs
}

// dialServing connects to the gRPC port and waits until grpc.health.v1 says
// SERVING, which serve only does once the store is reachable.
func dialServing(t *testing.T, grpcAddr string, within time.Duration) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	health := healthpb.NewHealthClient(conn)
	ctx := context.Background()
	if !redistest.Eventually(ctx, within, func() bool {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	}) {
		t.Fatal("grpc health never SERVING")
	}
	return conn
}

// createdSessionID takes the session ID out of `session create` output.
func createdSessionID(t *testing.T, out string) string {
	t.Helper()
	const field = `"session_id": "`
	i := strings.Index(out, field)
	if i < 0 || len(out) < i+len(field)+43 {
		t.Fatalf("create output %s", out)
	}
	return out[i+len(field) : i+len(field)+43]
}
