package manifests_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	manifests "github.com/sessiongate/sessiongate/k8s"
	secv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// TestInternalServiceAdmitsOnlyServiceTokens: the Istio example for an
// internal service requires a sessiongate token whose kind claim is
// service, in the namespace and for the workload its RequestAuthentication
// covers.
func TestInternalServiceAdmitsOnlyServiceTokens(t *testing.T) {
	tree, err := manifests.Load(filesys.MakeFsOnDisk(), root(t))
	if err != nil {
		t.Fatal(err)
	}
	var ra *secv1.RequestAuthentication
	var ap *secv1.AuthorizationPolicy
	for _, d := range tree.Renders["istio"] {
		switch o := d.Obj.(type) {
		case *secv1.RequestAuthentication:
			if o.Name == "sessiongate-service-jwt" {
				ra = o
			}
		case *secv1.AuthorizationPolicy:
			if o.Name == "require-sessiongate-service-token" {
				ap = o
			}
		}
	}
	if ra == nil || ap == nil {
		t.Fatal("internal-service.yaml objects not rendered")
	}
	if ra.Namespace != ap.Namespace || ra.Spec.GetSelector().GetMatchLabels()["app"] != ap.Spec.GetSelector().GetMatchLabels()["app"] {
		t.Fatal("the policy does not cover the RequestAuthentication's workload")
	}
	rules := ap.Spec.GetRules()
	if len(rules) != 1 || len(rules[0].GetFrom()) != 1 || len(rules[0].GetWhen()) != 1 {
		t.Fatalf("want one rule with one source and one condition, got %v", rules)
	}
	if p := rules[0].GetFrom()[0].GetSource().GetRequestPrincipals(); len(p) != 1 || p[0] != "sessiongate/*" {
		t.Fatalf("requestPrincipals %v", p)
	}
	w := rules[0].GetWhen()[0]
	if w.GetKey() != "request.auth.claims[kind]" || len(w.GetValues()) != 1 || w.GetValues()[0] != "service" || len(w.GetNotValues()) != 0 {
		t.Fatalf("condition %v: want request.auth.claims[kind] = service", w)
	}
}

func opts() manifests.Options {
	return manifests.Options{
		KnownConfigKeys:    knownConfigKeys,
		KnownMetrics:       knownMetrics,
		WantKustomizations: wantKustomizations,
	}
}

// root is the k8s/ directory (the module root, where go test runs).
func root(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

// TestManifests renders every kustomization under k8s/ and the Helm chart
// with each of its ci/ values files, decodes every object strictly into its
// typed struct and checks all invariants.
func TestManifests(t *testing.T) {
	o := opts()
	o.Charts = chartRenders(t)
	if err := manifests.ValidateDir(root(t), o); err != nil {
		for _, e := range strings.Split(err.Error(), "\n") {
			t.Error(e)
		}
	}
}

// TestRenderedShapes spot-checks what each kustomization produces, so a
// refactor cannot silently drop an object.
func TestRenderedShapes(t *testing.T) {
	tree, err := manifests.Load(filesys.MakeFsOnDisk(), root(t))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"base": {"ServiceAccount/sessiongate", "Deployment/sessiongate", "Service/sessiongate",
			"Service/sessiongate-headless", "PodDisruptionBudget/sessiongate",
			"HorizontalPodAutoscaler/sessiongate", "NetworkPolicy/sessiongate", "ConfigMap/sessiongate-config-"},
		"overlays/sidecar": {"Deployment/sessiongate-gateway", "Service/sessiongate-gateway",
			"ConfigMap/envoy-config-", "HorizontalPodAutoscaler/sessiongate"},
		"overlays/redis-dev": {"Deployment/sessiongate", "Deployment/sessiongate-redis", "Service/sessiongate-redis",
			"Secret/sessiongate-redis-", "NetworkPolicy/sessiongate-redis"},
		"istio": {"AuthorizationPolicy/sessiongate-ext-authz", "RequestAuthentication/sessiongate-internal-jwt",
			"AuthorizationPolicy/require-sessiongate-jwt", "EnvoyFilter/sessiongate-gateway-hardening",
			"RequestAuthentication/sessiongate-service-jwt", "AuthorizationPolicy/require-sessiongate-service-token"},
		"observability": {"ServiceMonitor/sessiongate", "PrometheusRule/sessiongate",
			"ConfigMap/sessiongate-grafana-dashboard"},
	}
	for dir, objs := range want {
		docs := tree.Renders[dir]
		for _, w := range objs {
			found := false
			for _, d := range docs {
				if id := d.Kind + "/" + d.Name; id == w || (strings.HasSuffix(w, "-") && strings.HasPrefix(id, w)) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: %s not rendered", dir, w)
			}
		}
	}
	// Sidecar: no Deployment named sessiongate left, the gateway pod has both
	// containers, and port 9001 is in no Service and no containerPort.
	for _, d := range tree.Renders["overlays/sidecar"] {
		switch o := d.Obj.(type) {
		case *appsv1.Deployment:
			if o.Name == "sessiongate" {
				t.Errorf("sidecar: the standalone Deployment is still rendered")
			}
			var names []string
			for _, c := range o.Spec.Template.Spec.Containers {
				names = append(names, c.Name)
				for _, p := range c.Ports {
					if p.ContainerPort == manifests.GRPCPort {
						t.Errorf("sidecar: container %s still declares port 9001", c.Name)
					}
				}
			}
			if strings.Join(names, ",") != "sessiongate,envoy" {
				t.Errorf("sidecar: gateway containers = %v", names)
			}
		case *corev1.Service:
			for _, p := range o.Spec.Ports {
				if p.Port == manifests.GRPCPort {
					t.Errorf("sidecar: Service %s still exposes 9001", o.Name)
				}
			}
		}
	}
	// redis-dev: the Redis URL reference follows the generated Secret name.
	for _, d := range tree.Renders["overlays/redis-dev"] {
		if dep, ok := d.Obj.(*appsv1.Deployment); ok && dep.Name == "sessiongate" {
			for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
				if e.Name == "SESSIONGATE_REDIS_URL" && !strings.HasPrefix(e.ValueFrom.SecretKeyRef.Name, "sessiongate-redis-") {
					t.Errorf("redis-dev: SESSIONGATE_REDIS_URL refers to %q, not the generated Secret", e.ValueFrom.SecretKeyRef.Name)
				}
			}
		}
	}
}

// memCopy copies k8s/ (manifests only) into an in-memory filesystem.
func memCopy(t *testing.T) filesys.FileSystem {
	t.Helper()
	src := root(t)
	mem := filesys.MakeFsInMemory()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			if rel != "." && (strings.HasPrefix(info.Name(), ".") || info.Name() == "testdata") {
				return filepath.SkipDir
			}
			return mem.MkdirAll(filepath.Join("/k8s", rel))
		}
		switch filepath.Ext(p) {
		case ".yaml", ".yml", ".json":
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return mem.WriteFile(filepath.Join("/k8s", rel), data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return mem
}

// edit replaces old with new in one file, exactly once.
func edit(t *testing.T, fsys filesys.FileSystem, file, old, new string) {
	t.Helper()
	p := filepath.Join("/k8s", file)
	data, err := fsys.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), old); n != 1 {
		t.Fatalf("%s: %q occurs %d times, want 1 (fix the test)", file, old, n)
	}
	if err := fsys.WriteFile(p, []byte(strings.Replace(string(data), old, new, 1))); err != nil {
		t.Fatal(err)
	}
}

// TestBrokenManifestsFail proves the validation catches broken manifests: each
// case breaks one thing in an in-memory copy of k8s/ and expects an error that
// names the problem. The unbroken copy must pass (control).
func TestBrokenManifestsFail(t *testing.T) {
	t.Run("control", func(t *testing.T) {
		if err := manifests.Validate(memCopy(t), "/k8s", opts()); err != nil {
			t.Fatalf("unbroken copy fails: %v", err)
		}
	})
	const liveness = `          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
`
	cases := []struct {
		name, file, old, new string
		want                 string
	}{
		{"unknown field in Deployment", "base/deployment.yaml",
			"imagePullPolicy: IfNotPresent", "imagePullPolicy: IfNotPresent\n          imagePullSecretz: []", `unknown field "spec.template.spec.containers[0].imagePullSecretz"`},
		{"wrongly cased field", "base/deployment.yaml",
			"readOnlyRootFilesystem: true", "readonlyRootFilesystem: true", `unknown field "spec.template.spec.containers[0].securityContext.readonlyRootFilesystem"`},
		{"duplicate key", "base/service.yaml",
			"  type: ClusterIP\n", "  type: ClusterIP\n  type: NodePort\n", `duplicate`},
		{"missing liveness probe", "base/deployment.yaml", liveness, "", `container "sessiongate": livenessProbe is missing`},
		{"missing readiness probe", "base/deployment.yaml",
			"          readinessProbe:\n            grpc:\n              port: 9001   # grpc probes need a number, not a port name\n            periodSeconds: 5\n            timeoutSeconds: 1\n            failureThreshold: 2\n", "", `container "sessiongate": readinessProbe is missing`},
		{"liveness on grpc health", "base/deployment.yaml",
			liveness, "          livenessProbe:\n            grpc:\n              port: 9001\n", `livenessProbe must be httpGet /healthz`},
		{"image tag latest", "base/deployment.yaml",
			"ghcr.io/sessiongate/sessiongate:0.1.0", "ghcr.io/sessiongate/sessiongate:latest", `uses the latest tag`},
		{"image without tag", "base/deployment.yaml",
			"ghcr.io/sessiongate/sessiongate:0.1.0", "ghcr.io/sessiongate/sessiongate", `has no tag`},
		{"runs as root", "base/deployment.yaml",
			"            runAsNonRoot: true\n            readOnlyRootFilesystem", "            runAsNonRoot: false\n            readOnlyRootFilesystem", `container "sessiongate": runAsNonRoot must be true`},
		{"runs as UID 0", "base/deployment.yaml",
			"        runAsUser: 65532", "        runAsUser: 0", `runAsUser must not be 0`},
		{"writable root filesystem", "base/deployment.yaml",
			"readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", `readOnlyRootFilesystem must be true`},
		{"capabilities not dropped", "base/deployment.yaml",
			`drop: ["ALL"]`, `drop: ["NET_RAW"]`, `capabilities.drop must contain ALL`},
		{"no resource limits", "base/deployment.yaml",
			"            limits:\n              cpu: \"1\"\n              memory: 256Mi\n", "", `resources.limits.memory is not set`},
		{"admin port in a Service", "base/service.yaml",
			"      appProtocol: http\n", "      appProtocol: http\n    - name: admin\n      port: 9003\n      targetPort: admin\n", `exposes the admin API`},
		{"gRPC port without appProtocol", "base/service.yaml",
			"      targetPort: grpc\n      protocol: TCP\n      appProtocol: grpc\n    - name: http", "      targetPort: grpc\n      protocol: TCP\n    - name: http", `needs appProtocol: grpc`},
		{"unknown config key", "base/config.yaml",
			"  timeout: 100ms\n", "  timeout: 100ms\n  pool_size: 10\n", `unknown config key(s) redis.pool_size`},
		{"unknown env override", "base/deployment.yaml",
			"            - name: GOMEMLIMIT", "            - name: SESSIONGATE_REDIS_POOL\n              value: \"10\"\n            - name: GOMEMLIMIT", `env SESSIONGATE_REDIS_POOL does not override any known config key`},
		{"admin API on loopback", "base/config.yaml",
			`admin_addr: ":9003"`, `admin_addr: "127.0.0.1:9003"`, `admin_addr 127.0.0.1:9003 is loopback`},
		{"signing key not in the Secret", "base/config.yaml",
			"/etc/sessiongate/keys/standby.pem", "/etc/sessiongate/keys/next.pem", `needs key "next.pem" in Secret sessiongate-signing-keys`},
		{"Secret name typo", "base/deployment.yaml",
			"secretName: sessiongate-admin-token", "secretName: sessiongate-admin-tokens", `Secret "sessiongate-admin-tokens", which is neither in the render`},
		{"dev mode in k8s", "base/deployment.yaml",
			`args: ["serve", "--config"`, `args: ["serve", "--dev", "--config"`, `--dev`},
		{"one replica", "base/deployment.yaml", "  replicas: 2\n", "  replicas: 1\n", `at least 2 replicas`},
		{"admin port open to all", "base/networkpolicy.yaml",
			"        - port: 9003\n          protocol: TCP\n      from:\n        - namespaceSelector: {}\n          podSelector:\n            matchLabels:\n              sessiongate.io/admin-client: \"true\"\n",
			"        - port: 9003\n          protocol: TCP\n", `admin port 9003 is open to everyone`},
		{"unknown field in kustomization", "base/kustomization.yaml",
			"resources:", "resourcez: []\nresources:", `resourcez`},
		{"sidecar: gRPC readiness on a loopback listener", "overlays/sidecar/deployment-patch.yaml",
			"            grpc: null\n", "", `readinessProbe must have exactly one handler`},
		{"sidecar: unknown Envoy field", "overlays/sidecar/envoy.yaml",
			"failure_mode_allow: false", "failure_mode_allows: false", `failure_mode_allows`},
		{"sidecar: Envoy fails open", "overlays/sidecar/envoy.yaml",
			"failure_mode_allow: false", "failure_mode_allow: true", `failure_mode_allow must be false`},
		{"sidecar: Envoy talks to the wrong port", "overlays/sidecar/envoy.yaml",
			"socket_address: { address: 127.0.0.1, port_value: 9001 }", "socket_address: { address: 127.0.0.1, port_value: 9003 }", `is not the sessiongate container's 127.0.0.1:9001`},
		{"sidecar: Envoy accepts underscore headers", "overlays/sidecar/envoy.yaml",
			"headers_with_underscores_action: REJECT_REQUEST", "headers_with_underscores_action: ALLOW", `headers_with_underscores_action must be REJECT_REQUEST`},
		{"sidecar: no request headers timeout", "overlays/sidecar/envoy.yaml",
			"                request_headers_timeout: 10s      # slowloris\n", "", `request_headers_timeout must be set`},
		{"sidecar: ext_authz answers 403 on error", "overlays/sidecar/envoy.yaml",
			"status_on_error: { code: ServiceUnavailable }", "status_on_error: { code: Forbidden }", `status_on_error must be 503`},
		{"sidecar: no listener buffer limit", "overlays/sidecar/envoy.yaml",
			"      per_connection_buffer_limit_bytes: 32768\n      filter_chains:", "      filter_chains:", `per_connection_buffer_limit_bytes must be set`},
		{"sidecar: no heap overload action", "overlays/sidecar/envoy.yaml",
			"envoy.overload_actions.shrink_heap", "envoy.overload_actions.reduce_timeouts", `no envoy.overload_actions.shrink_heap action`},
		{"istio: gateway accepts underscore headers", "istio/mesh-config/ingressgateway-values.yaml",
			"HEADERS_WITH_UNDERSCORES_REJECT_REQUEST", "HEADERS_WITH_UNDERSCORES_ALLOW", `must be HEADERS_WITH_UNDERSCORES_REJECT_REQUEST`},
		{"istio: gateway ProxyConfig field typo", "istio/mesh-config/ingressgateway-values.yaml",
			"httpRequestHeadersTimeout: 10s", "httpRequestHeaderTimeout: 10s", `httpRequestHeaderTimeout`},
		{"istio: gateway ProxyConfigs differ", "istio/mesh-config/istio-operator.yaml",
			"listenerConnectionLimit: 8000", "listenerConnectionLimit: 9000", `differs from the gateway ProxyConfig`},
		{"istio: EnvoyFilter unknown Envoy field", "istio/gateway-hardening.yaml",
			"max_request_headers_kb: 60", "max_request_header_kb: 60", `max_request_header_kb`},
		{"istio: EnvoyFilter for another workload", "istio/gateway-hardening.yaml",
			"  workloadSelector:\n    labels:\n      istio: ingressgateway", "  workloadSelector:\n    labels:\n      istio: eastwestgateway", `no EnvoyFilter with the edge hardening`},
		{"istio: unknown field in AuthorizationPolicy", "istio/ext-authz-policy.yaml",
			"  provider:\n    name: sessiongate", "  provider:\n    nmae: sessiongate", `nmae`},
		{"istio: enum typo", "istio/ext-authz-policy.yaml", "action: CUSTOM", "action: CUSTM", `CUSTM`},
		{"istio: CUSTOM policy names an unknown provider", "istio/ext-authz-policy.yaml",
			"    name: sessiongate", "    name: session-gate", `provider "session-gate" is not an envoyExtAuthzGrpc extensionProvider`},
		{"istio: unknown field in mesh config", "istio/mesh-config/istio-operator.yaml",
			"failOpen: false", "failOpen: false\n          headersToUpstreamOnAllow: [x-internal-jwt]", `headersToUpstreamOnAllow`},
		{"istio: provider timeout missing", "istio/mesh-config/istiod-values.yaml",
			"        timeout: 0.5s\n", "", `set timeout`},
		{"istio: issuer mismatch", "istio/request-authentication.yaml",
			"    - issuer: sessiongate", "    - issuer: https://sessiongate", `issuer "https://sessiongate" != token.issuer "sessiongate"`},
		{"istio: jwksUri wrong port", "istio/request-authentication.yaml",
			"svc.cluster.local:9002/", "svc.cluster.local:9003/", `Service sessiongate has no port 9003`},
		{"istio: token not required", "istio/require-jwt-policy.yaml",
			`requestPrincipals: ["sessiongate/*"]`, `requestPrincipals: ["*"]`, `requires requestPrincipals ["sessiongate/*"]`},
		{"observability: unknown metric", "observability/prometheusrule.yaml",
			"sessiongate_store_errors_total[5m]", "sessiongate_store_failures_total[5m]", `unknown metric sessiongate_store_failures_total`},
		{"observability: dashboard misses a metric", "observability/grafana-dashboard.json",
			"sessiongate_sessions_revoked_total", "sessiongate_sessions_created_total", `metrics not on the dashboard: sessiongate_sessions_revoked_total`},
		{"observability: duplicate scrape", "base/service.yaml",
			"  name: sessiongate-headless\n  labels:\n", "  name: sessiongate-headless\n  labels:\n    sessiongate.io/metrics: \"true\"\n", `selects 2 Services in base`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fsys := memCopy(t)
			edit(t, fsys, c.file, c.old, c.new)
			err := manifests.Validate(fsys, "/k8s", opts())
			if err == nil {
				t.Fatalf("broken manifest passed validation")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error does not mention %q:\n%v", c.want, err)
			}
			t.Logf("rejected as expected:\n%v", err)
		})
	}
}

// TestRawBrokenManifests feeds hand-written broken objects straight to the
// strict decoder.
func TestRawBrokenManifests(t *testing.T) {
	for name, c := range map[string]struct{ yaml, want string }{
		"unknown field": {`apiVersion: v1
kind: Service
metadata: {name: x}
spec:
  ports: [{port: 80}]
  clusterIp: None
`, `unknown field "spec.clusterIp"`},
		"unknown kind": {`apiVersion: example.com/v1
kind: Widget
metadata: {name: x}
`, `no typed struct registered`},
		"istio unknown field in a typed spec": {`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: x}
spec:
  jwtRules:
    - issuer: sessiongate
      jwks_url: http://x/
`, `jwks_url`},
		"wrong type": {`apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  replicas: two
`, `replicas`},
	} {
		t.Run(name, func(t *testing.T) {
			docs, err := manifests.SplitYAML([]byte(c.yaml))
			if err != nil {
				t.Fatal(err)
			}
			_, err = manifests.DecodeStrict("raw", docs[0])
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}
