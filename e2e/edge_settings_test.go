package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/e2e/envtmpl"
	"github.com/sessiongate/sessiongate/e2e/harness"
)

// The values README "Hardening the edge" documents. Expected as Envoy's
// config_dump prints them (durations as "10s", enums by name).
var edgeHCMWant = map[string]any{
	"use_remote_address":                                           true,
	"request_headers_timeout":                                      "10s",
	"stream_idle_timeout":                                          "300s",
	"request_timeout":                                              "300s",
	"max_request_headers_kb":                                       float64(60),
	"common_http_protocol_options.idle_timeout":                    "300s",
	"common_http_protocol_options.max_headers_count":               float64(100),
	"common_http_protocol_options.headers_with_underscores_action": "REJECT_REQUEST",
	"http2_protocol_options.max_concurrent_streams":                float64(100),
	"http2_protocol_options.initial_stream_window_size":            float64(65536),
	"http2_protocol_options.initial_connection_window_size":        float64(1048576),
}

const edgeBufferLimit = float64(32768)

// startEnvoyAdminOnly runs the real Envoy on a rendered config until the test
// ends and returns its admin base URL once the admin interface answers. The
// upstreams need not exist: only the loaded configuration is looked at.
func startEnvoyAdminOnly(t *testing.T, cfg string, adminPort int) string {
	t.Helper()
	envoy, err := harness.EnvoyBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, envoy, "-c", cfg, "--disable-hot-restart", "--concurrency", "1", "--log-level", "error")
	logf, err := os.Create(cfg + ".log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		logf.Close()
	})
	base := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/server_info"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, _ := os.ReadFile(cfg + ".log")
	t.Fatalf("envoy admin did not answer within 20s:\n%s", b)
	return ""
}

func getJSON(t *testing.T, url string) map[string]any {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return m
}

// dig follows a dotted path of object keys.
func dig(v any, path string) any {
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func asList(v any) []any { l, _ := v.([]any); return l }

// walkTyped calls f on every object whose "@type" ends with suffix.
func walkTyped(v any, suffix string, f func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		if s, _ := x["@type"].(string); strings.HasSuffix(s, suffix) {
			f(x)
		}
		for _, e := range x {
			walkTyped(e, suffix, f)
		}
	case []any:
		for _, e := range x {
			walkTyped(e, suffix, f)
		}
	}
}

// checkEdgeDump asserts the hardening settings on what Envoy actually loaded:
// /config_dump (bootstrap, static listeners and clusters) and /runtime (the
// per-listener connection limits).
func checkEdgeDump(t *testing.T, admin string, edgeListeners []string) {
	t.Helper()
	dump := getJSON(t, admin+"/config_dump")
	var bootstrap map[string]any
	var listeners, clusters []any
	for _, c := range asList(dump["configs"]) {
		switch ty, _ := dig(c, "@type").(string); {
		case strings.HasSuffix(ty, "BootstrapConfigDump"):
			bootstrap, _ = dig(c, "bootstrap").(map[string]any)
		case strings.HasSuffix(ty, "ListenersConfigDump"):
			listeners = asList(dig(c, "static_listeners"))
		case strings.HasSuffix(ty, "ClustersConfigDump"):
			clusters = asList(dig(c, "static_clusters"))
		}
	}
	if bootstrap == nil || len(listeners) == 0 || len(clusters) == 0 {
		t.Fatalf("config_dump lacks bootstrap, static listeners or static clusters")
	}

	// Overload manager: heap and connection monitors, heap-triggered actions.
	om := dig(bootstrap, "overload_manager")
	names := func(path string) map[string]bool {
		out := map[string]bool{}
		for _, e := range asList(dig(om, path)) {
			n, _ := dig(e, "name").(string)
			out[n] = true
		}
		return out
	}
	for _, m := range []string{"envoy.resource_monitors.fixed_heap", "envoy.resource_monitors.global_downstream_max_connections"} {
		if !names("resource_monitors")[m] {
			t.Errorf("overload_manager: no %s in effect", m)
		}
	}
	for _, a := range []string{"envoy.overload_actions.shrink_heap", "envoy.overload_actions.stop_accepting_requests"} {
		if !names("actions")[a] {
			t.Errorf("overload_manager: no %s in effect", a)
		}
	}
	var globalMax float64
	walkTyped(om, "DownstreamConnectionsConfig", func(m map[string]any) {
		globalMax, _ = strconv.ParseFloat(fmt.Sprint(m["max_active_downstream_connections"]), 64)
	})

	// Per-listener connection limits, as the runtime resolved them.
	rt := getJSON(t, admin+"/runtime")
	var sum float64
	for _, l := range listeners {
		name, _ := dig(l, "listener.name").(string)
		key := "envoy.resource_limits.listener." + name + ".connection_limit"
		entries, _ := rt["entries"].(map[string]any)
		v, err := strconv.ParseFloat(fmt.Sprint(dig(entries[key], "final_value")), 64)
		if err != nil || v <= 0 {
			t.Errorf("listener %s: runtime %s not in effect", name, key)
		}
		sum += v
	}
	if globalMax == 0 || sum > globalMax {
		t.Errorf("listener connection limits add up to %v, global max_active_downstream_connections is %v", sum, globalMax)
	}

	edge := map[string]bool{}
	for _, n := range edgeListeners {
		edge[n] = true
	}
	for _, l := range listeners {
		lc := dig(l, "listener")
		name, _ := dig(lc, "name").(string)
		if got := dig(lc, "per_connection_buffer_limit_bytes"); got != edgeBufferLimit {
			t.Errorf("listener %s: per_connection_buffer_limit_bytes = %v, want %v", name, got, edgeBufferLimit)
		}
		walkTyped(lc, "HttpConnectionManager", func(hcm map[string]any) {
			if got := dig(hcm, "common_http_protocol_options.headers_with_underscores_action"); got != "REJECT_REQUEST" {
				t.Errorf("listener %s: headers_with_underscores_action = %v", name, got)
			}
			if !edge[name] {
				return
			}
			delete(edge, name)
			for k, want := range edgeHCMWant {
				if got := dig(hcm, k); got != want {
					t.Errorf("listener %s: %s = %#v, want %#v", name, k, got, want)
				}
			}
			n := 0
			walkTyped(hcm, "ext_authz.v3.ExtAuthz", func(a map[string]any) {
				n++
				if a["failure_mode_allow"] == true {
					t.Errorf("listener %s: ext_authz fails open", name)
				}
				if got := dig(a, "status_on_error.code"); got != "ServiceUnavailable" {
					t.Errorf("listener %s: ext_authz status_on_error = %v, want ServiceUnavailable", name, got)
				}
				redis, _ := time.ParseDuration(harness.RedisTimeoutStr)
				to, err := time.ParseDuration(fmt.Sprint(dig(a, "grpc_service.timeout")))
				if err != nil || to <= redis || to > time.Second {
					t.Errorf("listener %s: ext_authz timeout %v, want above redis.timeout %v and at most 1s", name, dig(a, "grpc_service.timeout"), redis)
				}
				if len(asList(dig(a, "allowed_headers.patterns"))) == 0 {
					t.Errorf("listener %s: ext_authz allowed_headers not in effect", name)
				}
			})
			if name != "direct" && n == 0 {
				t.Errorf("listener %s: no ext_authz filter", name)
			}
		})
	}
	for n := range edge {
		t.Errorf("edge listener %s not found in config_dump", n)
	}
	for _, c := range clusters {
		name, _ := dig(c, "cluster.name").(string)
		if got := dig(c, "cluster.per_connection_buffer_limit_bytes"); got != edgeBufferLimit {
			t.Errorf("cluster %s: per_connection_buffer_limit_bytes = %v, want %v", name, got, edgeBufferLimit)
		}
	}
}

// TestEdgeSettingsInEffect starts the real Envoy with each rendered
// configuration (the shipped one, which the Compose stack also renders, and
// the load test's) and reads back from its admin interface that every
// hardening setting is loaded, not only written in the file.
func TestEdgeSettingsInEffect(t *testing.T) {
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, tmpl string
		edge       []string
		vars       func(p []int) (map[string]string, int)
	}{
		{"envoy.yaml.tmpl", "envoy/envoy.yaml.tmpl", []string{"edge"}, func(p []int) (map[string]string, int) {
			ports := harness.Ports{Redis: p[0], SGGRPC: p[1], SGHTTP: p[2], SGAdmin: p[3], Login: p[4], Upstream: p[5], EnvoyEdge: p[6], EnvoyHop: p[7], EnvoyAdmn: p[8]}
			return harness.EnvoyVars(ports, "/dev/null"), ports.EnvoyAdmn
		}},
		{"loadtest", "e2e/loadtest/envoy.yaml.tmpl", []string{"direct", "noop", "sg", "sgnm"}, func(p []int) (map[string]string, int) {
			it := strconv.Itoa
			return map[string]string{"ADMIN_PORT": it(p[0]), "DIRECT_PORT": it(p[1]), "NOOP_PORT": it(p[2]), "SG_PORT": it(p[3]),
				"UPSTREAM_PORT": it(p[4]), "NOOP_GRPC_PORT": it(p[5]), "SG_GRPC_PORT": it(p[6]), "SGNM_PORT": it(p[7]), "SGNM_GRPC_PORT": it(p[8])}, p[0]
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := harness.FreePorts(9)
			if err != nil {
				t.Fatal(err)
			}
			vars, admin := c.vars(p)
			out, err := envtmpl.RenderFile(filepath.Join(root, c.tmpl), vars)
			if err != nil {
				t.Fatal(err)
			}
			cfg := filepath.Join(t.TempDir(), "envoy.yaml")
			if err := os.WriteFile(cfg, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			checkEdgeDump(t, startEnvoyAdminOnly(t, cfg, admin), c.edge)
		})
	}
}
