package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessiongate/sessiongate/pkg/token"
)

func TestInitIsIdempotentAndKeepsSecrets(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "t.tmpl")
	if err := os.WriteFile(tmpl, []byte("host: ${HOST}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"HOST": "sessiongate"}
	if err := Init(tmpl, out, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(out, "envoy.yaml"))
	if string(got) != "host: sessiongate\n" {
		t.Fatalf("envoy.yaml = %q", got)
	}
	key1, _ := os.ReadFile(filepath.Join(out, "signing-key.pem"))
	tok1, _ := os.ReadFile(filepath.Join(out, "admin-token"))
	for _, f := range []string{"signing-key.pem", "admin-token"} {
		st, err := os.Stat(filepath.Join(out, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v mode %v, want 0600", f, err, st.Mode())
		}
	}
	// The key must be one sessiongate loads.
	if _, err := token.LoadKeySet([]string{filepath.Join(out, "signing-key.pem")}, nil); err != nil {
		t.Fatalf("sessiongate cannot load the generated key: %v", err)
	}
	if len(strings.TrimSpace(string(tok1))) < 40 {
		t.Fatalf("admin token too short: %q", tok1)
	}

	env["HOST"] = "other"
	if err := Init(tmpl, out, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	key2, _ := os.ReadFile(filepath.Join(out, "signing-key.pem"))
	tok2, _ := os.ReadFile(filepath.Join(out, "admin-token"))
	if !bytes.Equal(key1, key2) || !bytes.Equal(tok1, tok2) {
		t.Fatal("a second run replaced the existing key or token")
	}
	got, _ = os.ReadFile(filepath.Join(out, "envoy.yaml"))
	if string(got) != "host: other\n" {
		t.Fatalf("envoy.yaml not re-rendered: %q", got)
	}
}

func TestInitFailsOnMissingVariable(t *testing.T) {
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "t.tmpl")
	_ = os.WriteFile(tmpl, []byte("a: ${A}\nb: ${B}\n"), 0o644)
	err := Init(tmpl, dir, func(k string) string { return map[string]string{"A": "x"}[k] })
	if err == nil || !strings.Contains(err.Error(), "no value for B") {
		t.Fatalf("err = %v", err)
	}
	if _, statErr := os.Stat(filepath.Join(dir, "envoy.yaml")); statErr == nil {
		t.Fatal("envoy.yaml written despite the error")
	}
}
