package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/pkg/admin"
	"github.com/sessiongate/sessiongate/pkg/geoip/geoiptest"
)

// serve wired with a GeoIP database and the country check: a session used
// from another country is refused, and the event is in Redis, read back
// through the admin API.
func TestServeCountryChange(t *testing.T) {
	db := geoiptest.WriteTestDB(t, map[string]string{"198.51.100.0/24": "DE", "203.0.113.0/24": "FR"})
	s := startServe(t, fmt.Sprintf("geoip:\n  database: %q\nsession:\n  anomaly:\n    country_change: deny\n", db))
	cl := admin.NewClient("http://"+s.adminAddr, hardeningAdminToken, nil)
	resp, err := cl.CreateSession(context.Background(), admin.CreateRequest{Subject: "alice", Device: &admin.Device{IP: "198.51.100.7"}})
	if err != nil {
		t.Fatal(err)
	}
	from := func(addr string) int {
		t.Helper()
		r, err := authv3.NewAuthorizationClient(s.conn).Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: addr}}}},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/api/orders", Host: "app.example.com", Scheme: "https",
				Headers: map[string]string{"authorization": "Bearer " + resp.SessionID},
			}}}})
		if err != nil {
			t.Fatal(err)
		}
		if d := r.GetDeniedResponse(); d != nil {
			return int(d.GetStatus().GetCode())
		}
		return 200
	}
	if got := from("198.51.100.99"); got != 200 {
		t.Errorf("from DE: %d, want 200", got)
	}
	if got := from("203.0.113.5"); got != 401 {
		t.Errorf("from FR: %d, want 401", got)
	}
	if !redistest.Eventually(context.Background(), 5*time.Second, func() bool {
		page, err := cl.Events(context.Background(), "", 100)
		if err != nil {
			return false
		}
		for _, e := range page.Events {
			if e.Type == "country_change" && e.SessionRef == resp.SessionRef && e.Details["client_country"] == "FR" {
				return true
			}
		}
		return false
	}) {
		t.Error("no country_change event in the event log")
	}
}

func TestServeRefusesBadGeoIP(t *testing.T) {
	r := redistest.Start(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	tokenPath := filepath.Join(dir, "admin-token")
	writeFile(t, tokenPath, hardeningAdminToken+"\n")
	writeFile(t, filepath.Join(dir, "bad.mmdb"), "not a database")
	writeFile(t, cfg, fmt.Sprintf("grpc_addr: %q\nhttp_addr: %q\nadmin_addr: %q\nadmin_token_file: %q\nredis:\n  url: %q\ntoken:\n  signing_keys: [%q]\ngeoip:\n  database: %q\n",
		freeAddr(t), freeAddr(t), freeAddr(t), tokenPath, r.URL(), writeKey(t, dir, "key.pem", "ES256"), filepath.Join(dir, "bad.mmdb")))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := run(ctx, []string{"serve", "--config", cfg}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "geoip.database") {
		t.Errorf("serve with an unreadable geoip.database: %v, want an error naming the key", err)
	}
}
