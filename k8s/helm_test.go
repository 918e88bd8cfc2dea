package manifests_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	manifests "github.com/sessiongate/sessiongate/k8s"
	"github.com/sessiongate/sessiongate/pkg/config"
	"google.golang.org/protobuf/proto"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)

var updateChartReadme = flag.Bool("update-chart-readme", false, "rewrite the values table of helm/sessiongate/README.md from values.schema.json")

const chartDir = "helm/sessiongate"

// chartRenders: every values file in ci/ (layered over values.yaml) plus the
// defaults. Each is linted, rendered, strictly decoded and checked by
// TestManifests like a kustomization.
func chartRenders(t *testing.T) []manifests.ChartRender {
	t.Helper()
	out := []manifests.ChartRender{{Name: "helm/sessiongate[default]", Dir: filepath.Join(root(t), chartDir)}}
	files, err := filepath.Glob(filepath.Join(root(t), chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) < 5 {
		t.Fatalf("want at least 5 values files in %s/ci, found %v (%v)", chartDir, files, err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), "-values.yaml")
		out = append(out, manifests.ChartRender{Name: "helm/sessiongate[" + name + "]",
			Dir: filepath.Join(root(t), chartDir), ValuesFiles: []string{filepath.Join("ci", filepath.Base(f))}})
	}
	return out
}

// renderChart renders the chart with the values files (relative to the
// chart) and extra inline values layered on top.
func renderChart(t *testing.T, extra string, files ...string) *manifests.ChartOutput {
	t.Helper()
	out, err := tryRenderChart(t, extra, files...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tryRenderChart(t *testing.T, extra string, files ...string) (*manifests.ChartOutput, error) {
	t.Helper()
	dir := filepath.Join(root(t), chartDir)
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join(dir, f))
	}
	if extra != "" {
		p := filepath.Join(t.TempDir(), "extra-values.yaml")
		if err := os.WriteFile(p, []byte(extra), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	vals, err := manifests.ReadValues(paths...)
	if err != nil {
		t.Fatal(err)
	}
	return manifests.RenderChart(dir, vals)
}

// TestChartConfigIsPkgConfig: the chart's `config` values are the config file
// key for key, with pkg/config's defaults. Loading values.yaml's config
// through the binary's own loader gives exactly config.Default().
func TestChartConfigIsPkgConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root(t), chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		Config map[string]any `json:"config"`
	}
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	var keys []string
	flattenKeys("", values.Config, &keys)
	sort.Strings(keys)
	if want := config.Keys(); !slices.Equal(keys, want) {
		t.Errorf("values.yaml config keys differ from pkg/config.Keys():\n only in values: %v\n only in pkg/config: %v",
			minus(keys, want), minus(want, keys))
	}
	cfgYAML, err := yaml.Marshal(values.Config)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, cfgYAML, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := config.Load(p, nil)
	if err != nil {
		t.Fatalf("values.yaml config does not load: %v", err)
	}
	want, err := config.Load("", nil) // config.Default(), normalized like every loaded config
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("values.yaml config differs from pkg/config.Default() (-default +values):\n%s", d)
	}
	def := config.Default()
	if d := cmp.Diff(&def, got, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("values.yaml config differs from pkg/config.Default() before normalization (-default +values):\n%s", d)
	}
}

// flattenKeys lists the leaves of a config map as pkg/config.Keys() names
// them: a list is one key, and so is an empty map (token.key_ids).
func flattenKeys(prefix string, m map[string]any, out *[]string) {
	for k, v := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			flattenKeys(key, sub, out)
			continue
		}
		*out = append(*out, key)
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// TestChartSchemaRefuses: `helm install` with a value of the wrong type or
// an unknown key fails on values.schema.json before any template runs.
func TestChartSchemaRefuses(t *testing.T) {
	if _, err := tryRenderChart(t, ""); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	cases := []struct{ name, values, want string }{
		{"string replicas", "replicaCount: two\n", "replicaCount"},
		{"unknown top-level key", "replicas: 3\n", "replicas"},
		{"unknown config key", "config:\n  redis:\n    pool_size: 10\n", "pool_size"},
		{"duration as number", "config:\n  token:\n    ttl: 300\n", "ttl"},
		{"bad duration", "config:\n  session:\n    idle_timeout: 30 minutes\n", "idle_timeout"},
		{"bad enum", "config:\n  session:\n    on_limit: drop\n", "on_limit"},
		{"bad shape", "shape: daemonset\n", "shape"},
		{"latest tag", "image:\n  tag: latest\n", "tag"},
		{"negative max_per_user", "config:\n  session:\n    max_per_user: -1\n", "max_per_user"},
		{"route without access", "config:\n  routes:\n    - path_prefix: /x/\n", "access"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := tryRenderChart(t, c.values)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want a schema error naming %q, got %v", c.want, err)
			}
		})
	}
}

// TestChartRefusesMisconfiguration: mistakes the schema cannot see fail the
// render with a message naming the fix.
func TestChartRefusesMisconfiguration(t *testing.T) {
	cases := []struct{ name, values, want string }{
		{"chart-owned admin_token_file", "config:\n  admin_token_file: /x\n", "config.admin_token_file is set by the chart"},
		{"chart-owned signing keys", "config:\n  token:\n    signing_keys: [/k.pem]\n", "config.token.signing_keys is set by the chart"},
		{"chart-owned admin_addr", "config:\n  admin_addr: \":9999\"\n", "config.admin_addr is set by the chart"},
		{"two Redis topologies", "config:\n  redis:\n    cluster_addrs: [a:6379]\n", "exactly one of"},
		{"no Redis", "redisSecrets:\n  url:\n    secretName: \"\"\n", "exactly one of"},
		{"URL twice", "config:\n  redis:\n    url: redis://r:6379\n", "both set"},
		{"created key missing", "signingKeys:\n  create:\n    other.pem: x\n", "signingKeys.create has no active.pem"},
		{"sidecar grpc_addr", "shape: sidecar\nconfig:\n  grpc_addr: \":7000\"\n", "grpc_addr is set by the chart"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := tryRenderChart(t, c.values)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want an error containing %q, got %v", c.want, err)
			}
		})
	}
}

// TestChartLint: Helm's own linter has nothing to say about the chart, with
// the defaults and with every ci/ values file.
func TestChartLint(t *testing.T) {
	for _, cr := range chartRenders(t) {
		var files []string
		for _, f := range cr.ValuesFiles {
			files = append(files, filepath.Join(cr.Dir, f))
		}
		vals, err := manifests.ReadValues(files...)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range manifests.LintChart(cr.Dir, vals) {
			t.Errorf("%s: %s", cr.Name, m)
		}
	}
}

// TestChartRenders spot-checks what each values file produces.
func TestChartRenders(t *testing.T) {
	kinds := func(out *manifests.ChartOutput) []string {
		var ks []string
		for _, j := range out.Objects {
			var h struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(j, &h); err != nil {
				t.Fatal(err)
			}
			ks = append(ks, h.Kind+"/"+h.Metadata.Name)
		}
		sort.Strings(ks)
		return ks
	}
	cases := map[string][]string{
		"": {"ConfigMap/sessiongate-config", "Deployment/sessiongate", "HorizontalPodAutoscaler/sessiongate",
			"NetworkPolicy/sessiongate", "PodDisruptionBudget/sessiongate", "Service/sessiongate",
			"Service/sessiongate-headless", "ServiceAccount/sessiongate"},
		"ci/sidecar-values.yaml": {"ConfigMap/sessiongate-config", "ConfigMap/sessiongate-envoy-config",
			"Deployment/sessiongate-gateway", "HorizontalPodAutoscaler/sessiongate", "NetworkPolicy/sessiongate",
			"PodDisruptionBudget/sessiongate", "Service/sessiongate", "Service/sessiongate-gateway",
			"Service/sessiongate-headless", "ServiceAccount/sessiongate"},
		"ci/dev-secrets-values.yaml": {"ConfigMap/sessiongate-config", "Deployment/sessiongate", "HorizontalPodAutoscaler/sessiongate",
			"NetworkPolicy/sessiongate", "PodDisruptionBudget/sessiongate", "Secret/sessiongate-admin-token",
			"Secret/sessiongate-redis", "Secret/sessiongate-signing-keys", "Service/sessiongate",
			"Service/sessiongate-headless", "ServiceAccount/sessiongate"},
		"ci/monitoring-values.yaml": {"ConfigMap/sessiongate-config", "Deployment/sessiongate", "HorizontalPodAutoscaler/sessiongate",
			"NetworkPolicy/sessiongate", "PodDisruptionBudget/sessiongate", "PrometheusRule/sessiongate",
			"Service/sessiongate", "Service/sessiongate-headless", "ServiceAccount/sessiongate", "ServiceMonitor/sessiongate"},
		"ci/cluster-values.yaml": {"ConfigMap/sessiongate-config", "Deployment/sessiongate",
			"NetworkPolicy/sessiongate", "PodDisruptionBudget/sessiongate", "Service/sessiongate",
			"Service/sessiongate-headless", "ServiceAccount/sessiongate"},
	}
	for file, want := range cases {
		var files []string
		if file != "" {
			files = append(files, file)
		}
		out := renderChart(t, "", files...)
		if got := kinds(out); !slices.Equal(got, want) {
			t.Errorf("%s: rendered\n %v\nwant\n %v", file, got, want)
		}
		notes := out.Manifests["sessiongate/templates/NOTES.txt"]
		if !strings.Contains(notes, "sessiongate-signing-keys") {
			t.Errorf("%s: NOTES.txt does not name the Secrets:\n%s", file, notes)
		}
	}
	// The Istio CUSTOM provider snippet in NOTES.txt decodes strictly into
	// Istio's MeshConfig and points at the rendered Service's gRPC port.
	notes := renderChart(t, "").Manifests["sessiongate/templates/NOTES.txt"]
	_, snippet, ok := strings.Cut(notes, "  extensionProviders:\n")
	snippet, _, _ = strings.Cut(snippet, "\n\n")
	if !ok {
		t.Fatalf("NOTES.txt has no extensionProviders snippet:\n%s", notes)
	}
	mc, err := manifests.ParseMeshConfigYAML("extensionProviders:\n" + snippet)
	if err != nil {
		t.Fatalf("NOTES.txt Istio snippet: %v\n%s", err, snippet)
	}
	p := mc.GetExtensionProviders()
	if len(p) != 1 || p[0].GetName() != "sessiongate" || p[0].GetEnvoyExtAuthzGrpc().GetService() != "sessiongate.sessiongate.svc.cluster.local" ||
		p[0].GetEnvoyExtAuthzGrpc().GetPort() != manifests.GRPCPort || p[0].GetEnvoyExtAuthzGrpc().GetFailOpen() {
		t.Errorf("NOTES.txt Istio provider = %v", p)
	}
	// Sentinel: no URL env, the password file mounted and named in the config.
	sent := decodeChart(t, renderChart(t, "", "ci/sentinel-values.yaml"))
	dep := findDeployment(t, sent, "sessiongate")
	c := dep.Spec.Template.Spec.Containers[0]
	if slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "SESSIONGATE_REDIS_URL" }) {
		t.Errorf("sentinel: SESSIONGATE_REDIS_URL is still set")
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "SESSIONGATE_REDIS_SENTINEL_PASSWORD" && e.ValueFrom.SecretKeyRef.Key == "sentinel-password"
	}) {
		t.Errorf("sentinel: no SESSIONGATE_REDIS_SENTINEL_PASSWORD from the Secret: %v", c.Env)
	}
	cfg := chartConfig(t, sent)
	if cfg.Redis.PasswordFile != "/etc/sessiongate/redis/password" || cfg.Redis.Sentinel.MasterName != "mymaster" {
		t.Errorf("sentinel: config redis = %+v", cfg.Redis)
	}
}

func decodeChart(t *testing.T, out *manifests.ChartOutput) []manifests.Doc {
	t.Helper()
	var docs []manifests.Doc
	for _, j := range out.Objects {
		d, err := manifests.DecodeStrict("helm", j)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, d)
	}
	return docs
}

func findDeployment(t *testing.T, docs []manifests.Doc, name string) *appsv1.Deployment {
	t.Helper()
	for _, d := range docs {
		if o, ok := d.Obj.(*appsv1.Deployment); ok && o.Name == name {
			return o
		}
	}
	t.Fatalf("no Deployment %s", name)
	return nil
}

// chartConfig loads the rendered config file with pkg/config, as the pod would.
func chartConfig(t *testing.T, docs []manifests.Doc) *config.Config {
	t.Helper()
	for _, d := range docs {
		if cm, ok := d.Obj.(*corev1.ConfigMap); ok && cm.Data["config.yaml"] != "" {
			p := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(p, []byte(cm.Data["config.yaml"]), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := config.Load(p, nil)
			if err != nil {
				t.Fatalf("rendered config: %v", err)
			}
			return c
		}
	}
	t.Fatal("no config ConfigMap rendered")
	return nil
}

// TestChartMatchesKustomize: the chart and the Kustomize tree describe the
// same pod. For the shared shape (k8s/base) and the sidecar shape
// (k8s/overlays/sidecar), the semantically important fields of every
// container must be equal: image, args, ports, probes, security contexts,
// env, resources, volume mounts, and the pod's volumes and security context.
// Names that Kustomize hashes (ConfigMaps) are compared without the hash.
func TestChartMatchesKustomize(t *testing.T) {
	tree, err := manifests.Load(filesys.MakeFsOnDisk(), root(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ kust, values, deploy string }{
		{"base", "", "sessiongate"},
		{"overlays/sidecar", "ci/sidecar-values.yaml", "sessiongate-gateway"},
	} {
		t.Run(c.kust, func(t *testing.T) {
			var files []string
			if c.values != "" {
				files = append(files, c.values)
			}
			// The sidecar ci values point Envoy at another backend; compare
			// with the overlay's.
			helmDocs := decodeChart(t, renderChart(t, "envoy:\n  backend:\n    address: backend.default.svc.cluster.local\n    port: 8080\n", files...))
			hd := findDeployment(t, helmDocs, c.deploy)
			kd := findDeployment(t, tree.Renders[c.kust], c.deploy)
			comparePods(t, kd, hd)

			hc, kc := chartConfig(t, helmDocs), chartConfig(t, tree.Renders[c.kust])
			// The base ships example routes; the chart's default is none.
			kc.Routes = nil
			hc.Routes = nil
			if d := cmp.Diff(kc, hc, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("effective config differs (-kustomize +helm):\n%s", d)
			}
			if c.kust == "overlays/sidecar" {
				compareEnvoy(t, helmDocs, tree.Renders[c.kust])
			}
		})
	}
}

func comparePods(t *testing.T, kd, hd *appsv1.Deployment) {
	t.Helper()
	kp, hp := kd.Spec.Template.Spec, hd.Spec.Template.Spec
	eq := func(what string, k, h any) {
		t.Helper()
		kj, _ := json.Marshal(k)
		hj, _ := json.Marshal(h)
		if string(kj) != string(hj) {
			t.Errorf("%s differs:\n kustomize %s\n helm      %s", what, kj, hj)
		}
	}
	eq("pod securityContext", kp.SecurityContext, hp.SecurityContext)
	eq("automountServiceAccountToken", kp.AutomountServiceAccountToken, hp.AutomountServiceAccountToken)
	eq("terminationGracePeriodSeconds", kp.TerminationGracePeriodSeconds, hp.TerminationGracePeriodSeconds)
	eq("strategy", kd.Spec.Strategy, hd.Spec.Strategy)
	eq("volumes", unhashVolumes(kp.Volumes), unhashVolumes(hp.Volumes))
	if len(kp.Containers) != len(hp.Containers) {
		t.Fatalf("containers: kustomize %d, helm %d", len(kp.Containers), len(hp.Containers))
	}
	for i := range kp.Containers {
		k, h := kp.Containers[i], hp.Containers[i]
		w := "container " + k.Name + ": "
		eq(w+"name", k.Name, h.Name)
		eq(w+"image", k.Image, h.Image)
		eq(w+"args", k.Args, h.Args)
		eq(w+"ports", k.Ports, h.Ports)
		eq(w+"env", k.Env, h.Env)
		eq(w+"resources", k.Resources, h.Resources)
		eq(w+"startupProbe", k.StartupProbe, h.StartupProbe)
		eq(w+"livenessProbe", k.LivenessProbe, h.LivenessProbe)
		eq(w+"readinessProbe", k.ReadinessProbe, h.ReadinessProbe)
		eq(w+"lifecycle", k.Lifecycle, h.Lifecycle)
		eq(w+"securityContext", k.SecurityContext, h.SecurityContext)
		eq(w+"volumeMounts", k.VolumeMounts, h.VolumeMounts)
	}
}

// unhashVolumes maps ConfigMap names to their role: Kustomize appends a
// content hash ("sessiongate-config-5b7f..."), Helm prefixes the release name
// and rolls pods with an annotation instead.
func unhashVolumes(vs []corev1.Volume) []corev1.Volume {
	out := make([]corev1.Volume, len(vs))
	for i, v := range vs {
		v = *v.DeepCopy()
		if v.ConfigMap != nil {
			switch n := v.ConfigMap.Name; {
			case strings.Contains(n, "envoy-config"):
				v.ConfigMap.Name = "envoy-config"
			case strings.Contains(n, "config"):
				v.ConfigMap.Name = "config"
			}
		}
		out[i] = v
	}
	// Order does not matter to the kubelet; Kustomize's merge prepends.
	slices.SortFunc(out, func(a, b corev1.Volume) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func compareEnvoy(t *testing.T, helmDocs, kustDocs []manifests.Doc) {
	t.Helper()
	get := func(docs []manifests.Doc) *manifests.EnvoyConfig {
		for _, d := range docs {
			if cm, ok := d.Obj.(*corev1.ConfigMap); ok && cm.Data["envoy.yaml"] != "" {
				ec, err := manifests.ParseEnvoyBootstrap([]byte(cm.Data["envoy.yaml"]))
				if err != nil {
					t.Fatal(err)
				}
				return ec
			}
		}
		t.Fatal("no envoy.yaml ConfigMap")
		return nil
	}
	h, k := get(helmDocs), get(kustDocs)
	if !proto.Equal(h.Bootstrap, k.Bootstrap) {
		t.Errorf("the chart's files/envoy.yaml differs from k8s/overlays/sidecar/envoy.yaml (rendered with the same backend)")
	}
}

// TestChartAlertsMatchObservability: the chart's PrometheusRule carries the
// same groups as k8s/observability/prometheusrule.yaml.
func TestChartAlertsMatchObservability(t *testing.T) {
	var chartRule, kustRule *monv1.PrometheusRule
	for _, d := range decodeChart(t, renderChart(t, "", "ci/monitoring-values.yaml")) {
		if r, ok := d.Obj.(*monv1.PrometheusRule); ok {
			chartRule = r
		}
	}
	tree, err := manifests.Load(filesys.MakeFsOnDisk(), root(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range tree.Renders["observability"] {
		if r, ok := d.Obj.(*monv1.PrometheusRule); ok {
			kustRule = r
		}
	}
	if chartRule == nil || kustRule == nil {
		t.Fatalf("PrometheusRule missing: chart %v, observability %v", chartRule != nil, kustRule != nil)
	}
	if !reflect.DeepEqual(chartRule.Spec, kustRule.Spec) {
		t.Errorf("helm/sessiongate/files/prometheusrule-groups.yaml differs from observability/prometheusrule.yaml")
	}
}

// TestChartReadme: the values table in the chart's README is generated from
// values.schema.json and values.yaml; regenerate it with
//
//	go test -run TestChartReadme -update-chart-readme
func TestChartReadme(t *testing.T) {
	dir := filepath.Join(root(t), chartDir)
	table, err := manifests.ValuesTable(filepath.Join(dir, "values.schema.json"), filepath.Join(dir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	readmePath := filepath.Join(dir, "README.md")
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- values-table:begin -->\n", "<!-- values-table:end -->"
	before, rest, ok1 := strings.Cut(string(readme), begin)
	_, after, ok2 := strings.Cut(rest, end)
	if !ok1 || !ok2 {
		t.Fatalf("README.md lacks the %q ... %q markers", strings.TrimSpace(begin), end)
	}
	want := before + begin + table + end + after
	if string(readme) == want {
		return
	}
	if *updateChartReadme {
		if err := os.WriteFile(readmePath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s: the values table is out of date; run: cd k8s && go test -run TestChartReadme -update-chart-readme", readmePath)
	fmt.Println(table)
}
