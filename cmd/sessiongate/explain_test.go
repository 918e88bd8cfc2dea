package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// explain answers from a config file the way Check would: which rule, what
// decision and why, the claims a token would carry, and an exit status
// scripts can branch on.
func TestExplain(t *testing.T) {
	r := redistest.Start(t)
	dir := t.TempDir()
	keyPath := writeKey(t, dir, "key.pem", "ES256")
	tokenPath := filepath.Join(dir, "admin-token")
	writeFile(t, tokenPath, "explain-admin-token-0123456789\n")
	cfgPath := filepath.Join(dir, "config.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`admin_token_file: %q
redis:
  url: %q
token:
  signing_keys: [%q]
  audience: internal
routes:
  - path_prefix: /public/
    access: public
  - path_prefix: /admin/
    access: authenticated
    roles: [admin]
  - path_prefix: /reports/
    methods: [POST, DELETE]
    access: deny
  - path_prefix: /billing/
    access: deny
    shadow: true
  - path_prefix: /lean/
    access: authenticated
    roles: [admin, ops]
    claims: [email]
    roles_in_token: matched
`, tokenPath, r.URL(), keyPath))

	// A session in the store, read by --session-ref without being touched.
	rdb, err := session.NewRedisClient(r.URL(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	store := session.NewRedisStore(rdb)
	t.Cleanup(func() { store.Close() })
	id, err := session.NewID()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Millisecond)
	ref := session.RefOf(id)
	if _, err := store.Create(context.Background(), &session.Session{Ref: ref, Subject: "bob", Roles: []string{"admin"},
		Claims: map[string]string{"team": "ops"}, CreatedAt: now, ExpiresAt: now.Add(time.Hour), IdleTimeout: 10 * time.Minute}, session.Limit{}); err != nil {
		t.Fatal(err)
	}
	ttl := func() time.Duration {
		d, err := rdb.PTTL(context.Background(), session.RecordKey(ref)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	before := ttl()

	tests := []struct {
		name     string
		args     []string
		code     int      // exit status
		contains []string // in the text output
	}{
		{"public", []string{"--path", "/public/x"}, 0, []string{"routes[0]: path_prefix /public/", "decision:        public, status 200"}},
		{"role missing", []string{"--path", "/admin/x", "--roles", "user"}, 1, []string{"routes[1]", "forbidden, status 403", "missing role"}},
		{"role present", []string{"--path", "/admin/x", "--roles", "user,admin"}, 0, []string{"ok, status 200", `"roles":["user","admin"]`, "(not signed)"}},
		{"lower-case method on a deny rule", []string{"--path", "/reports/1", "--method", "delete", "--roles", "x"}, 1, []string{"routes[2]", "denied, status 403"}},
		{"no rule", []string{"--path", "/app/x", "--roles", "x"}, 0, []string{"no rule: authenticated", `"aud":"internal"`}},
		{"audience from context_extensions", []string{"--path", "/app/x", "--audience", "orders"}, 0, []string{`"aud":"orders"`}},
		{"a shadow rule is not enforced", []string{"--path", "/billing/x", "--roles", "x"}, 0, []string{"ok, status 200",
			"shadow rule:     routes[3]: path_prefix /billing/, access deny, shadow, would decide denied"}},
		{"folding changes the match", []string{"--path", "/adm%C4%B1n/x"}, 2, []string{"folded path:", "admin/x", "bad_request, status 400"}},
		{"not canonical", []string{"--path", "/public/../admin/"}, 2, []string{"canonical path:  (none", "bad_request"}},
		{"cookie without Origin on POST", []string{"--path", "/app/x", "--method", "POST", "--cookie"}, 1, []string{"csrf, status 403"}},
		{"cookie with its own origin", []string{"--path", "/app/x", "--method", "POST", "--cookie", "--origin", "https://explain.invalid"}, 0, []string{"ok, status 200"}},
		{"session from the store", []string{"--path", "/admin/x", "--session-ref", ref}, 0, []string{`"sub":"bob"`, `"team":"ops"`, "session_ref " + ref}},
		{"unknown session ref", []string{"--path", "/admin/x", "--session-ref", strings.Repeat("0", len(ref))}, 1, []string{"unauthenticated, status 401", "session not found"}},
		{"malformed session ref", []string{"--path", "/admin/x", "--session-ref", "nope"}, 2, nil},
		{"both kinds of session", []string{"--path", "/x", "--session-ref", ref, "--roles", "a"}, 2, nil},
		{"no path", nil, 2, nil},
		{"a rule's token shape", []string{"--path", "/lean/x", "--session-ref", ref}, 0, []string{
			"routes[4]: path_prefix /lean/, access authenticated, roles [admin, ops], claims [email], roles_in_token matched",
			"token shape:     claims [email], roles matched [admin, ops]", `"roles":["admin"]`}},
		{"the team claim is not selected", []string{"--path", "/lean/x", "--session-ref", ref, "--json"}, 0, []string{`"token_shape": "claims [email], roles matched [admin, ops]"`}},
		{"context_extensions claims", []string{"--path", "/app/x", "--session-ref", ref, "--claims", "team", "--roles-in-token", "matched"}, 0, []string{
			"token shape:     claims [team], roles matched []", `"team":"ops"`, `"roles":[]`}},
		{"context_extensions claims empty", []string{"--path", "/app/x", "--session-ref", ref, "--claims", ""}, 0, []string{"token shape:     claims [], all roles"}},
		{"context_extensions owned claim", []string{"--path", "/app/x", "--roles", "x", "--claims", "sub"}, 1, []string{"denied, status 403", "bad context_extensions claims"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), append([]string{"explain", "--config", cfgPath}, tt.args...), &out, &errOut)
			code := 0
			var exit exitError
			switch {
			case err == nil:
			case errors.As(err, &exit):
				code = exit.code
			default:
				t.Fatalf("error without an exit status: %v", err)
			}
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, out.String(), errOut.String())
			}
			for _, want := range tt.contains {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
	if after := ttl(); after > before {
		t.Errorf("explain slid the session's expiry: TTL %v → %v", before, after)
	}

	// --json: the same, for machines.
	var out bytes.Buffer
	err = run(context.Background(), []string{"explain", "--config", cfgPath, "--path", "/admin/x", "--roles", "user", "--json"}, &out, &bytes.Buffer{})
	var exit exitError
	if !errors.As(err, &exit) || exit.code != 1 {
		t.Fatalf("--json deny: %v", err)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	for k, want := range map[string]any{"decision": "forbidden", "reason": "missing role", "rule": 1.0, "status": 403.0, "allowed": false, "canonical_path": "/admin/x"} {
		if got[k] != want {
			t.Errorf("--json %s = %v, want %v", k, got[k], want)
		}
	}
}
