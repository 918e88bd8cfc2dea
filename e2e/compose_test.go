package e2e

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/sessiongate/sessiongate/e2e/envtmpl"
	"github.com/sessiongate/sessiongate/e2e/harness"
	"github.com/sessiongate/sessiongate/pkg/config"
)

// loadCompose loads e2e/docker-compose.yml the way `docker compose` does,
// with the Compose specification's Go loader (the plugin may be absent).
func loadCompose(t *testing.T) (*types.Project, string) {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "e2e")
	p, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "docker-compose.yml")}},
		// An empty environment: the file must not depend on the user's.
		Environment: types.Mapping{},
	})
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return p, root
}

// composeEnvoyVars are the Envoy template variables that the stackinit
// service renders with.
func composeEnvoyVars(t *testing.T, p *types.Project) map[string]string {
	t.Helper()
	svc, ok := p.Services["stackinit"]
	if !ok {
		t.Fatal("no stackinit service")
	}
	vars := map[string]string{}
	for k, v := range svc.Environment {
		if v != nil {
			vars[k] = *v
		}
	}
	return vars
}

func TestComposeStack(t *testing.T) {
	p, root := loadCompose(t)

	want := []string{"envoy", "login", "redis", "sessiongate", "stackinit", "upstream"}
	got := slices.Sorted(func(yield func(string) bool) {
		for name := range p.Services {
			if !yield(name) {
				return
			}
		}
	})
	if !slices.Equal(got, want) {
		t.Fatalf("services = %v, want %v", got, want)
	}

	for name, svc := range p.Services {
		if svc.Image == "" && svc.Build == nil {
			t.Errorf("%s: neither image nor build", name)
		}
		if b := svc.Build; b != nil {
			if st, err := os.Stat(b.Context); err != nil || !st.IsDir() {
				t.Errorf("%s: build context %s: %v", name, b.Context, err)
			}
			df := b.Dockerfile
			if !filepath.IsAbs(df) {
				df = filepath.Join(b.Context, df)
			}
			if _, err := os.Stat(df); err != nil {
				t.Errorf("%s: Dockerfile: %v", name, err)
			}
		}
		for _, v := range svc.Volumes {
			switch v.Type {
			case types.VolumeTypeBind:
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("%s: mounted file %s: %v", name, v.Source, err)
				}
				if !v.ReadOnly {
					t.Errorf("%s: bind mount %s should be read-only", name, v.Source)
				}
			case types.VolumeTypeVolume:
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("%s: named volume %q is not declared", name, v.Source)
				}
			default:
				t.Errorf("%s: unexpected volume type %q", name, v.Type)
			}
		}
		for dep := range svc.DependsOn {
			if _, ok := p.Services[dep]; !ok {
				t.Errorf("%s depends on unknown service %s", name, dep)
			}
		}
	}

	// Published ports: exactly these, and each reaches a port the service
	// really listens on according to its own configuration.
	vars := composeEnvoyVars(t, p)
	sg := loadComposeSessiongateConfig(t, p)
	published := map[string]uint32{}
	for name, svc := range p.Services {
		for _, port := range svc.Ports {
			published[name+"@"+port.HostIP+":"+port.Published] = port.Target
		}
	}
	wantPorts := map[string]uint32{
		"envoy@:8080":                mustAtoi(t, vars["EDGE_PORT"]),
		"sessiongate@127.0.0.1:9002": portOf(t, sg.HTTPAddr),
		"sessiongate@127.0.0.1:9003": portOf(t, sg.AdminAddr),
	}
	if !mapsEqual(published, wantPorts) {
		t.Errorf("published ports = %v, want %v", published, wantPorts)
	}
	if vars["EDGE_ADDRESS"] != "0.0.0.0" {
		t.Errorf("Envoy must listen on all interfaces inside its container, EDGE_ADDRESS = %q", vars["EDGE_ADDRESS"])
	}

	// Envoy reaches each service by name on the port it listens on.
	for _, c := range []struct{ hostVar, portVar, service string }{
		{"SESSIONGATE_HOST", "SESSIONGATE_GRPC_PORT", "sessiongate"},
		{"SESSIONGATE_HOST", "SESSIONGATE_HTTP_PORT", "sessiongate"},
		{"LOGIN_HOST", "LOGIN_PORT", "login"},
		{"UPSTREAM_HOST", "UPSTREAM_PORT", "upstream"},
	} {
		if vars[c.hostVar] != c.service {
			t.Errorf("%s = %q, want the service name %q", c.hostVar, vars[c.hostVar], c.service)
		}
	}
	if portOf(t, sg.GRPCAddr) != mustAtoi(t, vars["SESSIONGATE_GRPC_PORT"]) || portOf(t, sg.HTTPAddr) != mustAtoi(t, vars["SESSIONGATE_HTTP_PORT"]) {
		t.Errorf("Envoy's sessiongate ports (%s, %s) differ from sessiongate.yaml (%s, %s)", vars["SESSIONGATE_GRPC_PORT"], vars["SESSIONGATE_HTTP_PORT"], sg.GRPCAddr, sg.HTTPAddr)
	}
	for svc, portVar := range map[string]string{"login": "LOGIN_PORT", "upstream": "UPSTREAM_PORT"} {
		want := "-listen=:" + vars[portVar]
		if !slices.Contains(p.Services[svc].Command, want) {
			t.Errorf("%s command %q lacks %q", svc, p.Services[svc].Command, want)
		}
	}

	// Compose runs the Envoy version the tests run.
	if img, want := p.Services["envoy"].Image, "envoyproxy/envoy:v"+pinnedEnvoyVersion(t, root); img != want {
		t.Errorf("envoy image %q, want %q (the version install-envoy.sh pins)", img, want)
	}

	// The template gets every variable it needs from the stackinit service.
	tmpl, err := os.ReadFile(filepath.Join(root, "envoy", "envoy.yaml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envtmpl.Render(string(tmpl), vars); err != nil {
		t.Errorf("stackinit environment: %v", err)
	}
}

// loadComposeSessiongateConfig loads the sessiongate configuration mounted
// into the sessiongate service with sessiongate's own loader and validator.
func loadComposeSessiongateConfig(t *testing.T, p *types.Project) *config.Config {
	t.Helper()
	var path string
	for _, v := range p.Services["sessiongate"].Volumes {
		if v.Target == "/etc/sessiongate/config.yaml" {
			path = v.Source
		}
	}
	if path == "" {
		t.Fatal("sessiongate: no config mounted at /etc/sessiongate/config.yaml")
	}
	if !slices.Contains(p.Services["sessiongate"].Command, "/etc/sessiongate/config.yaml") {
		t.Errorf("sessiongate command %q does not use the mounted config", p.Services["sessiongate"].Command)
	}
	c, err := config.Load(path, nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if err := c.Validate(false); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

var envoyVersionPin = regexp.MustCompile(`ENVOY_VERSION="\$\{ENVOY_VERSION:-([0-9.]+)\}"`)

func pinnedEnvoyVersion(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "e2e", "tools", "install-envoy.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := envoyVersionPin.FindSubmatch(b)
	if m == nil {
		t.Fatal("install-envoy.sh: no ENVOY_VERSION default found")
	}
	return string(m[1])
}

func portOf(t *testing.T, addr string) uint32 {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return mustAtoi(t, port)
}

func mustAtoi(t *testing.T, s string) uint32 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		t.Fatalf("port %q: %v", s, err)
	}
	return uint32(n)
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
