package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/pkg/admin"
)

// TestSessionListFollowsCursors runs `session list` against the real serve
// command over real Redis, through a proxy that records each request: the
// CLI walks every page, asks with the --limit it was given, and prints the
// whole list once, in the shape it always had.
func TestSessionListFollowsCursors(t *testing.T) {
	r := redistest.Start(t)
	dir := t.TempDir()
	keyPath := writeKey(t, dir, "key.pem", "ES256")
	const token = "list-admin-token-0123456789"
	tokenPath := filepath.Join(dir, "admin-token")
	writeFile(t, tokenPath, token+"\n")
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
admin:
  rate_limit: 0 # 250 creates from one address in a burst
`, grpcAddr, httpAddr, adminAddr, tokenPath, r.URL(), keyPath))
	runServe(t, cfgPath)
	dialServing(t, grpcAddr, 10*time.Second)

	target, _ := url.Parse("http://" + adminAddr)
	var mu sync.Mutex
	var queries []url.Values
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet {
			mu.Lock()
			queries = append(queries, req.URL.Query())
			mu.Unlock()
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)

	ctx := context.Background()
	c := admin.NewClient(srv.URL, token, nil)
	const n = 250
	want := map[string]bool{}
	for range n {
		s, err := c.CreateSession(ctx, admin.CreateRequest{Subject: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		want[s.SessionRef] = true
	}

	for _, tc := range []struct {
		name  string
		flags []string
		limit string // sent as ?limit=, "" for none
		pages int
	}{
		{"server default", nil, "", 3},
		{"limit 7", []string{"--limit", "7"}, "7", 36},
		{"limit 1000", []string{"--limit", "1000"}, "1000", 1},
		{"limit equal to the count", []string{"--limit", "250"}, "250", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			queries = nil
			mu.Unlock()
			args := append(append([]string{"session", "--url", srv.URL, "--token-file", tokenPath, "list"}, tc.flags...), "alice")
			var out bytes.Buffer
			if err := run(ctx, args, &out, io.Discard); err != nil {
				t.Fatal(err)
			}
			var got map[string]json.RawMessage
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatalf("output %q: %v", out.String(), err)
			}
			if _, ok := got["next_cursor"]; ok || len(got) != 1 {
				t.Fatalf("output has fields beyond sessions: %s", out.String()[:min(200, out.Len())])
			}
			var list []admin.SessionInfo
			if err := json.Unmarshal(got["sessions"], &list); err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, s := range list {
				if seen[s.SessionRef] || !want[s.SessionRef] {
					t.Fatalf("%s printed twice or never created", s.SessionRef)
				}
				seen[s.SessionRef] = true
			}
			if len(seen) != n {
				t.Fatalf("printed %d sessions, want %d", len(seen), n)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(queries) != tc.pages {
				t.Fatalf("%d requests, want %d pages", len(queries), tc.pages)
			}
			for i, q := range queries {
				if q.Get("limit") != tc.limit || (i == 0) != (q.Get("cursor") == "") {
					t.Fatalf("request %d: query %v", i, q)
				}
			}
		})
	}

	var out, errOut bytes.Buffer
	err := run(ctx, []string{"session", "--url", srv.URL, "--token-file", tokenPath, "list", "--limit", "1001", "alice"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("--limit 1001: err = %v", err)
	}
	var empty bytes.Buffer
	if err := run(ctx, []string{"session", "--url", srv.URL, "--token-file", tokenPath, "list", "nobody"}, &empty, io.Discard); err != nil ||
		strings.Join(strings.Fields(empty.String()), "") != `{"sessions":[]}` {
		t.Fatalf("no sessions: %q, %v", empty.String(), err)
	}
}

// TestSessionRefreshCommands runs the CLI against the real serve command
// over real Redis with refresh on: `session create --refresh` prints the
// refresh fields, `session list` shows the family_ref, and `session revoke`
// takes the family_ref and ends the family.
func TestSessionRefreshCommands(t *testing.T) {
	r := redistest.Start(t)
	dir := t.TempDir()
	keyPath := writeKey(t, dir, "key.pem", "ES256")
	const token = "refresh-admin-token-0123456789"
	tokenPath := filepath.Join(dir, "admin-token")
	writeFile(t, tokenPath, token+"\n")
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
refresh:
  enabled: true
  access_absolute_timeout: 30m
`, grpcAddr, httpAddr, adminAddr, tokenPath, r.URL(), keyPath))
	runServe(t, cfgPath)
	dialServing(t, grpcAddr, 10*time.Second)
	ctx := context.Background()
	cli := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, append([]string{"session", "--url", "http://" + adminAddr, "--token-file", tokenPath}, args...), &out, io.Discard)
		return out.String(), err
	}

	out, err := cli("create", "--subject", "rosa", "--refresh", "--device-name", "phone")
	if err != nil {
		t.Fatal(err)
	}
	var created admin.CreateResponse
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if !strings.HasPrefix(created.RefreshToken, "sgr_") || !strings.HasPrefix(created.FamilyRef, "fam_") ||
		created.RefreshExpiresAt == nil || time.Until(created.ExpiresAt) > 30*time.Minute {
		t.Fatalf("create --refresh printed %s", out)
	}
	if _, err := cli("create", "--subject", "rosa", "--refresh", "--idle-timeout", "1m"); err == nil {
		t.Fatal("--refresh with --idle-timeout was accepted")
	}

	out, err = cli("list", "rosa")
	if err != nil {
		t.Fatal(err)
	}
	var list admin.ListResponse
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Sessions) != 1 || list.Sessions[0].FamilyRef != created.FamilyRef || list.Sessions[0].SessionRef != created.SessionRef {
		t.Fatalf("list printed %s", out)
	}
	if !strings.Contains(out, `"family_ref": "`+created.FamilyRef+`"`) {
		t.Fatalf("list output lacks family_ref: %s", out)
	}

	if _, err := cli("revoke", created.FamilyRef); err != nil {
		t.Fatal(err)
	}
	out, err = cli("list", "rosa")
	if err != nil || strings.Contains(out, created.SessionRef) {
		t.Fatalf("after revoking the family: %s, %v", out, err)
	}
	if _, err := cli("revoke", created.FamilyRef); err == nil {
		t.Fatal("revoking a revoked family succeeded")
	}
}
