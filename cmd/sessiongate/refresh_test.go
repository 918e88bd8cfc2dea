package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"

	"github.com/sessiongate/sessiongate/pkg/admin"
)

// `sessiongate serve` with refresh.enabled answers the token path from
// Check, over Redis and over the memory store (--dev): a login with
// refresh through the admin API, a refresh over gRPC as Envoy sends it,
// the new access token accepted and the old one refused.
func TestServeRefresh(t *testing.T) {
	const refreshOn = "refresh:\n  enabled: true\n"
	t.Run("redis", func(t *testing.T) {
		s := startServe(t, refreshOn)
		cl := admin.NewClient("http://"+s.adminAddr, hardeningAdminToken, nil)
		checkServedRefresh(t, cl, s.conn)
	})
	t.Run("memory", func(t *testing.T) {
		dir := t.TempDir()
		grpcAddr, adminAddr := freeAddr(t), freeAddr(t)
		cfg := filepath.Join(dir, "config.yaml")
		writeFile(t, cfg, fmt.Sprintf("grpc_addr: %q\nhttp_addr: %q\nadmin_addr: %q\n", grpcAddr, freeAddr(t), adminAddr)+refreshOn)
		runServe(t, cfg, "--dev")
		conn := dialServing(t, grpcAddr, 10*time.Second)
		checkServedRefresh(t, admin.NewClient("http://"+adminAddr, "", nil), conn)
	})
}

func checkServedRefresh(t *testing.T, cl *admin.Client, conn *grpc.ClientConn) {
	t.Helper()
	ctx := context.Background()
	created, err := cl.CreateSession(ctx, admin.CreateRequest{Subject: "alice", Refresh: true})
	if err != nil {
		t.Fatal(err)
	}
	check := func(method, path string, headers map[string]string, body string) (int, string) {
		t.Helper()
		resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: method, Path: path, Host: "app.example.com", Scheme: "https", Headers: headers, RawBody: []byte(body),
			}}}})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		if d := resp.GetDeniedResponse(); d != nil {
			return int(d.GetStatus().GetCode()), d.GetBody()
		}
		return 200, "" // an allow: the upstream would get it
	}
	bearer := func(id string) int {
		t.Helper()
		st, _ := check("GET", "/api/orders", map[string]string{"authorization": "Bearer " + id}, "")
		return st
	}
	if got := bearer(created.SessionID); got != 200 {
		t.Fatalf("access token from the login: %d", got)
	}
	st, body := check("POST", "/auth/token", map[string]string{"content-type": "application/x-www-form-urlencoded"},
		"grant_type=refresh_token&refresh_token="+created.RefreshToken)
	var pair struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if st != 200 || json.Unmarshal([]byte(body), &pair) != nil || pair.AccessToken == "" || pair.RefreshToken == "" {
		t.Fatalf("refresh: %d %s", st, body)
	}
	if got := bearer(pair.AccessToken); got != 200 {
		t.Errorf("new access token: %d", got)
	}
	if got := bearer(created.SessionID); got != 401 {
		t.Errorf("old access token: %d, want 401", got)
	}
}
