package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/e2e/envtmpl"
	"github.com/sessiongate/sessiongate/e2e/harness"
)

// envoyValidate runs `envoy --mode validate` on the rendered config.
func envoyValidate(t *testing.T, envoy, cfg string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, envoy, "--mode", "validate", "-c", cfg, "--disable-hot-restart", "--log-level", "warn").CombinedOutput()
	return string(out), err
}

// TestEnvoyConfigsValidate renders every configuration in envoy/ with the
// harness's values and with the Compose stack's values, and has the real
// Envoy 1.40 validate each.
func TestEnvoyConfigsValidate(t *testing.T) {
	envoy, err := harness.EnvoyBinary()
	if err != nil {
		t.Fatal(err)
	}
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(root, "envoy"))
	if err != nil {
		t.Fatal(err)
	}
	proj, _ := loadCompose(t)
	varSets := map[string]map[string]string{
		"harness": harness.EnvoyVars(harness.Ports{Redis: 1, SGGRPC: 2, SGHTTP: 3, SGAdmin: 4, Login: 5, Upstream: 6, EnvoyEdge: 7, EnvoyHop: 8, EnvoyAdmn: 9}, "/dev/null"),
		"compose": composeEnvoyVars(t, proj),
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yaml.tmpl")) {
			t.Errorf("envoy/%s: not a .yaml or .yaml.tmpl configuration; the validate test would not cover it", name)
			continue
		}
		n++
		for set, vars := range varSets {
			t.Run(name+"/"+set, func(t *testing.T) {
				rendered, err := envtmpl.RenderFile(filepath.Join(root, "envoy", name), vars)
				if err != nil {
					t.Fatal(err)
				}
				cfg := filepath.Join(t.TempDir(), "envoy.yaml")
				if err := os.WriteFile(cfg, []byte(rendered), 0o644); err != nil {
					t.Fatal(err)
				}
				if out, err := envoyValidate(t, envoy, cfg); err != nil || !strings.Contains(out, "OK") {
					t.Fatalf("envoy --mode validate: %v\n%s", err, out)
				}
			})
		}
	}
	if n == 0 {
		t.Fatal("no Envoy configuration found in envoy/")
	}
}

// TestEnvoyValidateRejectsBrokenConfig shows that the validation above is
// real: a misspelt field fails it.
func TestEnvoyValidateRejectsBrokenConfig(t *testing.T) {
	envoy, err := harness.EnvoyBinary()
	if err != nil {
		t.Fatal(err)
	}
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := envtmpl.RenderFile(filepath.Join(root, "envoy", "envoy.yaml.tmpl"),
		harness.EnvoyVars(harness.Ports{Redis: 1, SGGRPC: 2, SGHTTP: 3, SGAdmin: 4, Login: 5, Upstream: 6, EnvoyEdge: 7, EnvoyHop: 8, EnvoyAdmn: 9}, "/dev/null"))
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(rendered, "failure_mode_allow: false", "failure_mode_alow: false", 1)
	if broken == rendered {
		t.Fatal("failure_mode_allow not found in the template")
	}
	cfg := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := os.WriteFile(cfg, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := envoyValidate(t, envoy, cfg); err == nil {
		t.Fatalf("envoy accepted a misspelt field:\n%s", out)
	}
}
