package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/internal/testenv"
	"github.com/sessiongate/sessiongate/pkg/token"
)

func TestStartupErrorsNameTheProblem(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("redis:\n  tiemout: 1s\n"), 0o600)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no redis without --dev", []string{"serve"}, "redis.url"},
		{"no signing key without --dev", []string{"serve", "--redis-url", "redis://127.0.0.1:1"}, "token.signing_keys"},
		{"unknown key", []string{"serve", "--config", bad}, "redis.tiemout"},
		{"missing config file", []string{"serve", "--config", filepath.Join(dir, "nope.yaml")}, "nope.yaml"},
		{"dev open admin on network", []string{"serve", "--dev", "--admin-addr", "0.0.0.0:0", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, "loopback"},
		{"unknown command", []string{"frobnicate"}, "unknown command"},
		{"bad keygen alg", []string{"keygen", "--alg", "HS256"}, "HS256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want mention of %q", err, tt.want)
			}
		})
	}
}

func TestKeygenWritesLoadableKeys(t *testing.T) {
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"keygen", "--alg", alg}, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		if b, _ := pem.Decode(out.Bytes()); b == nil {
			t.Fatalf("%s: not PEM", alg)
		}
		path := filepath.Join(t.TempDir(), "k.pem")
		os.WriteFile(path, out.Bytes(), 0o600)
		ks, err := token.LoadKeySet([]string{path}, nil)
		if err != nil || ks.Algorithm() != alg {
			t.Fatalf("%s: %v %v", alg, ks, err)
		}
	}
}

func freeAddr(t *testing.T) string { return testenv.FreeAddr(t) }

// TestServeEndToEnd runs the real serve command against a real Redis, with a
// key file and an admin token file, and drives it over the network: admin
// API through the CLI, Check over gRPC, JWKS and health over HTTP, then a
// graceful shutdown.
func TestServeEndToEnd(t *testing.T) {
	r := redistest.Start(t)
	dir := t.TempDir()
	keyPath := writeKey(t, dir, "key.pem", "ES256")
	tokenPath := filepath.Join(dir, "admin-token")
	writeFile(t, tokenPath, "e2e-admin-token-0123456789\n")
	grpcAddr, httpAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	cfgPath := filepath.Join(dir, "config.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`grpc_addr: %q
http_addr: %q
admin_addr: %q
admin_token_file: %q
redis:
  url: %q
token:
  signing_keys: [%q]
routes:
  - path_prefix: /public/
    access: public
`, grpcAddr, httpAddr, adminAddr, tokenPath, r.URL(), keyPath))

	logs := runServe(t, cfgPath)
	conn := dialServing(t, grpcAddr, 10*time.Second)
	ctx := context.Background()

	var created bytes.Buffer
	err := run(ctx, []string{"session", "--config", cfgPath, "create", "--subject", "alice", "--role", "dev"}, &created, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	id := createdSessionID(t, created.String())

	authz := authv3.NewAuthorizationClient(conn)
	resp, err := authz.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/api", Headers: map[string]string{"cookie": "__Host-sid=" + id}},
	}}})
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("check: %v %v", resp, err)
	}

	for path, want := range map[string]string{
		"/.well-known/jwks.json":            `"kid"`,
		"/.well-known/openid-configuration": `"jwks_uri"`,
		"/healthz":                          "ok",
		"/readyz":                           "ready",
		"/metrics":                          `sessiongate_check_decisions_total{result="ok"} 1`,
	} {
		res, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("%s: %d %.200s", path, res.StatusCode, body)
		}
	}
	// The admin API is not served on the JWKS port.
	if res, err := http.Post("http://"+httpAddr+"/v1/sessions", "application/json", strings.NewReader(`{"subject":"x"}`)); err == nil {
		res.Body.Close()
		if res.StatusCode < 400 {
			t.Errorf("admin API answered on http_addr: %d", res.StatusCode)
		}
	}

	var listed bytes.Buffer
	if err := run(ctx, []string{"session", "--config", cfgPath, "revoke-user", "alice"}, &listed, io.Discard); err != nil || !strings.Contains(listed.String(), `"revoked": 1`) {
		t.Fatalf("revoke-user: %v %s", err, listed.String())
	}
	if strings.Contains(logs.String(), id) {
		t.Fatal("the server log contains a session ID")
	}
}

// TestSIGHUPWalksTheRotationRunbook follows the README's rotation steps by
// rewriting the config file and sending SIGHUP, checking after each step
// which keys the JWKS publishes and which key signs.
func TestSIGHUPWalksTheRotationRunbook(t *testing.T) {
	r := redistest.Start(t)
	dir := t.TempDir()
	current, next := writeKey(t, dir, "current.pem", "EdDSA"), writeKey(t, dir, "next.pem", "EdDSA")
	kid := func(path string) string {
		ks, err := token.LoadKeySet([]string{path}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return ks.ActiveKID()
	}
	curKID, nextKID := kid(current), kid(next)
	tokenPath := filepath.Join(dir, "admin-token")
	os.WriteFile(tokenPath, []byte("rotation-admin-token-0123456789\n"), 0o600)
	grpcAddr, httpAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	cfgPath := filepath.Join(dir, "config.yaml")
	writeConfig := func(tokenYAML string) {
		t.Helper()
		err := os.WriteFile(cfgPath, []byte(fmt.Sprintf("grpc_addr: %q\nhttp_addr: %q\nadmin_addr: %q\nadmin_token_file: %q\nredis:\n  url: %q\ntoken:\n%s",
			grpcAddr, httpAddr, adminAddr, tokenPath, r.URL(), tokenYAML)), 0o600)
		if err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(fmt.Sprintf("  signing_keys: [%q]\n", current))

	logs := runServe(t, cfgPath)
	ctx := context.Background()
	jwksKIDs := func() string {
		res, err := http.Get("http://" + httpAddr + "/.well-known/jwks.json")
		if err != nil {
			return ""
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	if !redistest.Eventually(ctx, 10*time.Second, func() bool { return strings.Contains(jwksKIDs(), curKID) }) {
		t.Fatal("server did not start")
	}
	steps := []struct {
		name      string
		yaml      string
		published []string
		dropped   []string
	}{
		{"1 publish next", fmt.Sprintf("  signing_keys: [%q]\n  verification_keys: [%q]\n", current, next), []string{curKID, nextKID}, nil},
		{"3 activate next", fmt.Sprintf("  signing_keys: [%q, %q]\n", next, current), []string{nextKID, curKID}, nil},
		{"5 drop old", fmt.Sprintf("  signing_keys: [%q]\n", next), []string{nextKID}, []string{curKID}},
	}
	for _, st := range steps {
		writeConfig(st.yaml)
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		ok := redistest.Eventually(ctx, 5*time.Second, func() bool {
			body := jwksKIDs()
			for _, k := range st.published {
				if !strings.Contains(body, k) {
					return false
				}
			}
			for _, k := range st.dropped {
				if strings.Contains(body, k) {
					return false
				}
			}
			// The JWKS lists the active (signing) key first.
			for _, k := range st.published[1:] {
				if strings.Index(body, k) < strings.Index(body, st.published[0]) {
					return false
				}
			}
			return true
		})
		if !ok {
			t.Fatalf("step %s: JWKS %s", st.name, jwksKIDs())
		}
	}
	// A broken config on SIGHUP changes nothing.
	os.WriteFile(cfgPath, []byte("token:\n  signing_keys: [\"/does/not/exist.pem\"]\n  bogus: 1\n"), 0o600)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	if !redistest.Eventually(ctx, 5*time.Second, func() bool { return strings.Contains(logs.String(), "config reload failed") }) {
		t.Fatal("bad config not reported")
	}
	if body := jwksKIDs(); !strings.Contains(body, nextKID) {
		t.Fatalf("bad config changed the keys: %s", body)
	}
}
