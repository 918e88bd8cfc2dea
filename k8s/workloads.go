package manifests

import (
	"fmt"
	"path"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// SessiongateImage is the image repository of the sessiongate container.
const SessiongateImage = "ghcr.io/sessiongate/sessiongate"

// Well-known ports (README): gRPC ext_authz + health, HTTP JWKS/metrics/probes,
// admin API (never in a Service).
const (
	GRPCPort  = 9001
	HTTPPort  = 9002
	AdminPort = 9003
)

// sgContainer is what the checks learned about a sessiongate container.
type sgContainer struct {
	render    string
	workload  string
	namespace string
	config    *SGConfig
	grpcHost  string
	grpcPort  int
	httpPort  int
	adminPort int
}

type podRef struct {
	doc      Doc
	template *corev1.PodTemplateSpec
}

// renderIndex indexes one render's objects.
type renderIndex struct {
	dir        string
	docs       []Doc
	pods       []podRef
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	sas        map[string]*corev1.ServiceAccount
	deploys    map[string]*appsv1.Deployment
	services   []*corev1.Service
}

func (t *Tree) externalSecrets() map[string]*corev1.Secret {
	out := map[string]*corev1.Secret{}
	for rel, docs := range t.Files {
		if !strings.HasSuffix(rel, ".example.yaml") {
			continue
		}
		for _, d := range docs {
			if s, ok := d.Obj.(*corev1.Secret); ok {
				out[s.Name] = s
			}
		}
	}
	return out
}

func secretHasKey(s *corev1.Secret, key string) bool {
	if _, ok := s.Data[key]; ok {
		return true
	}
	_, ok := s.StringData[key]
	return ok
}

func (t *Tree) checkRender(dir string, docs []Doc) {
	ix := &renderIndex{dir: dir, docs: docs,
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		sas: map[string]*corev1.ServiceAccount{}, deploys: map[string]*appsv1.Deployment{}}
	for _, d := range docs {
		switch o := d.Obj.(type) {
		case *appsv1.Deployment:
			ix.pods = append(ix.pods, podRef{d, &o.Spec.Template})
			ix.deploys[o.Name] = o
		case *corev1.ConfigMap:
			ix.configMaps[o.Name] = o
		case *corev1.Secret:
			ix.secrets[o.Name] = o
		case *corev1.ServiceAccount:
			ix.sas[o.Name] = o
		case *corev1.Service:
			ix.services = append(ix.services, o)
		}
	}
	ext := t.externalSecrets()
	for _, d := range docs {
		switch o := d.Obj.(type) {
		case *appsv1.Deployment:
			t.checkDeployment(ix, d, o, ext)
		case *corev1.Service:
			t.checkService(ix, d, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			t.checkHPA(ix, d, o)
		case *policyv1.PodDisruptionBudget:
			t.checkSelects(ix, d, o.Spec.Selector)
		case *networkingv1.NetworkPolicy:
			t.checkNetworkPolicy(ix, d, o)
		case *corev1.ServiceAccount:
			if o.AutomountServiceAccountToken == nil || *o.AutomountServiceAccountToken {
				t.errf("%s: automountServiceAccountToken must be false", d)
			}
		case *corev1.Secret:
			if !strings.Contains(dir, "dev") {
				t.errf("%s: a Secret rendered outside a dev overlay: real secrets are created out of band (see base/secrets.example.yaml), never applied from git", d)
			}
		}
	}
}

// ---------------------------------------------------------------- pods

func (t *Tree) checkDeployment(ix *renderIndex, d Doc, dep *appsv1.Deployment, ext map[string]*corev1.Secret) {
	pod := &dep.Spec.Template.Spec
	if sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector); err != nil || !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.errf("%s: spec.selector does not match the pod template labels", d)
	}
	// Pod-level security.
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.errf("%s: hostNetwork/hostPID/hostIPC must be off", d)
	}
	automount := pod.AutomountServiceAccountToken
	if automount == nil {
		if sa, ok := ix.sas[pod.ServiceAccountName]; ok {
			automount = sa.AutomountServiceAccountToken
		}
	}
	if automount == nil || *automount {
		t.errf("%s: automountServiceAccountToken must be false (pod or its ServiceAccount)", d)
	}
	if pod.ServiceAccountName != "" && pod.ServiceAccountName != "default" {
		if _, ok := ix.sas[pod.ServiceAccountName]; !ok {
			t.errf("%s: serviceAccountName %q is not in the render", d, pod.ServiceAccountName)
		}
	}
	t.checkReferences(ix, d, pod, ext)

	all := append(slices.Clone(pod.InitContainers), pod.Containers...)
	var sg *sgContainer
	for i := range all {
		c := &all[i]
		where := fmt.Sprintf("%s: container %q", d, c.Name)
		t.checkContainerSecurity(where, pod, c)
		t.checkContainerProbes(where, c)
		t.checkResources(where, c)
		t.checkImage(where, c.Image)
		if repo, _, _ := splitImage(c.Image); repo == SessiongateImage {
			if sg != nil {
				t.errf("%s: more than one sessiongate container in a pod", where)
			}
			sg = t.checkSessiongateContainer(ix, where, d, dep, c)
		}
	}
	if sg != nil {
		if dep.Spec.Replicas == nil || *dep.Spec.Replicas < 2 {
			t.errf("%s: a sessiongate Deployment needs at least 2 replicas", d)
		}
		if prev, ok := t.sgConfig[ix.dir]; ok && prev.workload != d.Name {
			t.errf("%s: more than one sessiongate Deployment in one render", d)
		}
		t.sgConfig[ix.dir] = sg
	}
	for i := range pod.Containers {
		c := &pod.Containers[i]
		if strings.Contains(c.Image, "envoyproxy/envoy") {
			t.checkEnvoyContainer(ix, d, pod, c, sg)
		}
	}
}

func (t *Tree) checkContainerSecurity(where string, pod *corev1.PodSpec, c *corev1.Container) {
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	sc := c.SecurityContext
	if sc == nil {
		t.errf("%s: securityContext is missing", where)
		return
	}
	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = psc.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		t.errf("%s: runAsNonRoot must be true", where)
	}
	uid := sc.RunAsUser
	if uid == nil {
		uid = psc.RunAsUser
	}
	if uid != nil && *uid == 0 {
		t.errf("%s: runAsUser must not be 0", where)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.errf("%s: readOnlyRootFilesystem must be true", where)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.errf("%s: allowPrivilegeEscalation must be false", where)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.errf("%s: must not be privileged", where)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.errf("%s: capabilities.drop must contain ALL", where)
	} else if len(sc.Capabilities.Add) > 0 {
		t.errf("%s: capabilities.add must be empty, got %v", where, sc.Capabilities.Add)
	}
	sp := sc.SeccompProfile
	if sp == nil {
		sp = psc.SeccompProfile
	}
	if sp == nil || (sp.Type != corev1.SeccompProfileTypeRuntimeDefault && sp.Type != corev1.SeccompProfileTypeLocalhost) {
		t.errf("%s: seccompProfile must be RuntimeDefault (container or pod)", where)
	}
}

func probeHandlers(p *corev1.Probe) int {
	n := 0
	if p.Exec != nil {
		n++
	}
	if p.HTTPGet != nil {
		n++
	}
	if p.TCPSocket != nil {
		n++
	}
	if p.GRPC != nil {
		n++
	}
	return n
}

func (t *Tree) checkContainerProbes(where string, c *corev1.Container) {
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		need  bool
	}{{"livenessProbe", c.LivenessProbe, true}, {"readinessProbe", c.ReadinessProbe, true}, {"startupProbe", c.StartupProbe, false}} {
		if p.probe == nil {
			if p.need {
				t.errf("%s: %s is missing", where, p.name)
			}
			continue
		}
		if n := probeHandlers(p.probe); n != 1 {
			t.errf("%s: %s must have exactly one handler (exec, httpGet, tcpSocket or grpc), has %d", where, p.name, n)
			continue
		}
		var port *intstr.IntOrString
		switch {
		case p.probe.HTTPGet != nil:
			port = &p.probe.HTTPGet.Port
		case p.probe.TCPSocket != nil:
			port = &p.probe.TCPSocket.Port
		case p.probe.GRPC != nil:
			port = &intstr.IntOrString{IntVal: p.probe.GRPC.Port}
		}
		if port != nil {
			if _, ok := containerPort(c, *port); !ok {
				t.errf("%s: %s port %s is not a declared containerPort", where, p.name, port.String())
			}
		}
	}
}

// containerPort resolves a port name or number against the container's ports.
func containerPort(c *corev1.Container, p intstr.IntOrString) (int32, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

func (t *Tree) checkResources(where string, c *corev1.Container) {
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
			t.errf("%s: resources.requests.%s is not set", where, r)
		}
		if q, ok := c.Resources.Limits[r]; !ok || q.IsZero() {
			t.errf("%s: resources.limits.%s is not set", where, r)
		}
	}
}

// splitImage splits "repo:tag@digest".
func splitImage(image string) (repo, tag, digest string) {
	repo = image
	if i := strings.Index(repo, "@"); i >= 0 {
		repo, digest = repo[:i], repo[i+1:]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo, tag = repo[:i], repo[i+1:]
	}
	return repo, tag, digest
}

func (t *Tree) checkImage(where, image string) {
	_, tag, digest := splitImage(image)
	switch {
	case tag == "" && digest == "":
		t.errf("%s: image %q has no tag: pin a release tag or digest", where, image)
	case tag == "latest":
		t.errf("%s: image %q uses the latest tag: pin a release tag or digest", where, image)
	}
}

// checkReferences: every ConfigMap/Secret a pod uses exists (in the render, or
// as one of the documented out-of-band Secrets), with the keys it needs.
func (t *Tree) checkReferences(ix *renderIndex, d Doc, pod *corev1.PodSpec, ext map[string]*corev1.Secret) {
	cm := func(name, key string, optional *bool, what string) {
		if optional != nil && *optional {
			return
		}
		c, ok := ix.configMaps[name]
		if !ok {
			t.errf("%s: %s refers to ConfigMap %q, which is not in the render", d, what, name)
			return
		}
		if key != "" {
			if _, ok := c.Data[key]; !ok {
				t.errf("%s: %s refers to key %q of ConfigMap %q, which has no such key", d, what, key, name)
			}
		}
	}
	sec := func(name, key string, optional *bool, what string) {
		if optional != nil && *optional {
			return
		}
		s, ok := ix.secrets[name]
		if !ok {
			s, ok = ext[name]
		}
		if !ok {
			t.errf("%s: %s refers to Secret %q, which is neither in the render nor documented in a *.example.yaml", d, what, name)
			return
		}
		if key != "" && !secretHasKey(s, key) {
			t.errf("%s: %s refers to key %q of Secret %q, which has no such key", d, what, key, name)
		}
	}
	for _, v := range pod.Volumes {
		what := "volume " + v.Name
		if v.ConfigMap != nil {
			cm(v.ConfigMap.Name, "", v.ConfigMap.Optional, what)
			for _, it := range v.ConfigMap.Items {
				cm(v.ConfigMap.Name, it.Key, v.ConfigMap.Optional, what)
			}
		}
		if v.Secret != nil {
			sec(v.Secret.SecretName, "", v.Secret.Optional, what)
			for _, it := range v.Secret.Items {
				sec(v.Secret.SecretName, it.Key, v.Secret.Optional, what)
			}
		}
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			what := fmt.Sprintf("container %q env %s", c.Name, e.Name)
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				cm(r.Name, r.Key, r.Optional, what)
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				sec(r.Name, r.Key, r.Optional, what)
			}
		}
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef != nil {
				cm(ef.ConfigMapRef.Name, "", ef.ConfigMapRef.Optional, "envFrom")
			}
			if ef.SecretRef != nil {
				sec(ef.SecretRef.Name, "", ef.SecretRef.Optional, "envFrom")
			}
		}
		for _, m := range c.VolumeMounts {
			if !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name }) {
				t.errf("%s: container %q mounts volume %q, which the pod does not define", d, c.Name, m.Name)
			}
			if m.SubPath != "" {
				if v := volumeByName(pod, m.Name); v != nil && (v.Secret != nil || v.ConfigMap != nil) {
					t.errf("%s: container %q mounts %q with subPath: Secret/ConfigMap updates never reach subPath mounts (hot reload needs a directory mount)", d, c.Name, m.Name)
				}
			}
		}
	}
}

func volumeByName(pod *corev1.PodSpec, name string) *corev1.Volume {
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == name {
			return &pod.Volumes[i]
		}
	}
	return nil
}

// fileSource finds which volume (and key) provides a file path in a container.
func fileSource(pod *corev1.PodSpec, c *corev1.Container, file string) (*corev1.Volume, string, bool) {
	for _, m := range c.VolumeMounts {
		dir := strings.TrimSuffix(m.MountPath, "/")
		if !strings.HasPrefix(file, dir+"/") {
			continue
		}
		rel := strings.TrimPrefix(file, dir+"/")
		v := volumeByName(pod, m.Name)
		if v == nil {
			return nil, "", false
		}
		var items []corev1.KeyToPath
		if v.Secret != nil {
			items = v.Secret.Items
		} else if v.ConfigMap != nil {
			items = v.ConfigMap.Items
		}
		key := rel
		if len(items) > 0 {
			key = ""
			for _, it := range items {
				if it.Path == rel {
					key = it.Key
				}
			}
		}
		return v, key, key != ""
	}
	return nil, "", false
}

// ---------------------------------------------------------------- sessiongate

func (t *Tree) checkSessiongateContainer(ix *renderIndex, where string, d Doc, dep *appsv1.Deployment, c *corev1.Container) *sgContainer {
	pod := &dep.Spec.Template.Spec
	sg := &sgContainer{render: ix.dir, workload: d.Name, namespace: d.Namespace}

	// The config file: --config <path> (or --config=<path>) from a ConfigMap.
	cfgPath := ""
	for i, a := range c.Args {
		if a == "--config" || a == "-config" {
			if i+1 < len(c.Args) {
				cfgPath = c.Args[i+1]
			}
		} else if v, ok := strings.CutPrefix(a, "--config="); ok {
			cfgPath = v
		}
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.errf("%s: args must start with the serve subcommand, got %v", where, c.Args)
	}
	if strings.Contains(strings.Join(c.Args, " "), "--dev") {
		t.errf("%s: --dev (in-memory store, ephemeral key, open admin API) must never run in Kubernetes", where)
	}
	if cfgPath == "" {
		t.errf("%s: no --config <file> argument", where)
		return sg
	}
	v, key, ok := fileSource(pod, c, cfgPath)
	if !ok || v.ConfigMap == nil {
		t.errf("%s: config file %s is not mounted from a ConfigMap", where, cfgPath)
		return sg
	}
	cm, ok := ix.configMaps[v.ConfigMap.Name]
	if !ok {
		return sg // reported by checkReferences
	}
	data, ok := cm.Data[key]
	if !ok {
		t.errf("%s: config file %s: ConfigMap %s has no key %q", where, cfgPath, cm.Name, key)
		return sg
	}
	cfg, err := parseSGConfig([]byte(data), t.opts.KnownConfigKeys)
	if err != nil {
		t.errf("%s: ConfigMap %s key %s: %w", where, cm.Name, key, err)
	}
	sg.config = cfg
	// Env overrides: only SESSIONGATE_<KNOWN KEY>.
	for _, e := range c.Env {
		if !strings.HasPrefix(e.Name, "SESSIONGATE_") {
			continue
		}
		k := envKey(e.Name, t.opts.KnownConfigKeys)
		if k == "" {
			t.errf("%s: env %s does not override any known config key", where, e.Name)
			continue
		}
		if e.ValueFrom == nil {
			cfg.Values[k] = e.Value
		} else {
			cfg.Values[k] = "<from " + e.Name + ">"
		}
	}
	if cfg.String("redis.url") == "" && cfg.String("redis.sentinel.master_name") == "" && len(cfg.Strings("redis.cluster_addrs")) == 0 {
		t.errf("%s: no Redis: redis.url (config or SESSIONGATE_REDIS_URL), redis.sentinel.master_name or redis.cluster_addrs must be set", where)
	}

	// Listen addresses vs declared ports.
	addr := func(key string) (string, int) {
		h, p, err := hostPort(cfg.String(key))
		if err != nil {
			t.errf("%s: %s %q: %v", where, key, cfg.String(key), err)
		}
		return h, p
	}
	sg.grpcHost, sg.grpcPort = addr("grpc_addr")
	httpHost, httpPort := addr("http_addr")
	adminHost, adminPort := addr("admin_addr")
	sg.httpPort, sg.adminPort = httpPort, adminPort
	declared := func(port int) bool {
		_, ok := containerPort(c, intstr.FromInt32(int32(port)))
		return ok
	}
	if isLoopback(httpHost) {
		t.errf("%s: http_addr %s is loopback: kubelet probes, Prometheus and JWKS clients cannot reach it", where, cfg.String("http_addr"))
	}
	if httpPort != HTTPPort || !declared(httpPort) {
		t.errf("%s: http_addr must be port %d and declared as a containerPort", where, HTTPPort)
	}
	if adminPort != AdminPort || !declared(adminPort) {
		t.errf("%s: admin_addr must be port %d and declared as a containerPort", where, AdminPort)
	}
	if isLoopback(adminHost) {
		t.errf("%s: admin_addr %s is loopback: the login service's pods cannot reach the admin API (use \":%d\"; the NetworkPolicy guards it)", where, cfg.String("admin_addr"), AdminPort)
	}
	if sg.grpcPort != GRPCPort {
		t.errf("%s: grpc_addr must use port %d", where, GRPCPort)
	}
	if !isLoopback(sg.grpcHost) && !declared(sg.grpcPort) {
		t.errf("%s: grpc_addr port %d is not declared as a containerPort", where, sg.grpcPort)
	}
	if isLoopback(sg.grpcHost) && declared(sg.grpcPort) {
		t.errf("%s: grpc_addr is loopback but port %d is still declared as a containerPort", where, sg.grpcPort)
	}

	// Probes: liveness must not depend on Redis; readiness must.
	if p := c.LivenessProbe; p != nil {
		if p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || !t.isPort(c, p.HTTPGet.Port, httpPort) {
			t.errf("%s: livenessProbe must be httpGet /healthz on the HTTP port %d: grpc.health.v1 and /readyz fail while Redis is down, and a liveness probe on them restarts every replica during a Redis outage", where, httpPort)
		}
	}
	if p := c.ReadinessProbe; p != nil {
		switch {
		case p.GRPC != nil:
			if isLoopback(sg.grpcHost) {
				t.errf("%s: readinessProbe uses gRPC but grpc_addr %s is loopback: the kubelet probes the pod IP; use httpGet /readyz", where, cfg.String("grpc_addr"))
			} else if int(p.GRPC.Port) != sg.grpcPort {
				t.errf("%s: readinessProbe grpc port %d is not grpc_addr's port %d", where, p.GRPC.Port, sg.grpcPort)
			}
			if p.GRPC.Service != nil && *p.GRPC.Service != "" {
				t.errf("%s: readinessProbe grpc.service must be empty (overall server health)", where)
			}
		case p.HTTPGet != nil:
			if p.HTTPGet.Path != "/readyz" || !t.isPort(c, p.HTTPGet.Port, httpPort) {
				t.errf("%s: an HTTP readinessProbe must be /readyz on port %d", where, httpPort)
			}
		default:
			t.errf("%s: readinessProbe must be grpc (grpc.health.v1 on %d) or httpGet /readyz", where, GRPCPort)
		}
	}

	// Key and token files come from Secrets (hot reload on Secret update).
	files := append([]string{cfg.String("admin_token_file")}, cfg.Strings("token.signing_keys")...)
	files = append(files, cfg.Strings("token.verification_keys")...)
	if cfg.String("admin_token_file") == "" {
		t.errf("%s: admin_token_file must be set (required outside --dev)", where)
	}
	if len(cfg.Strings("token.signing_keys")) == 0 {
		t.errf("%s: token.signing_keys must list at least one key file", where)
	}
	ext := t.externalSecrets()
	for _, f := range files {
		if f == "" {
			continue
		}
		v, key, ok := fileSource(pod, c, f)
		if !ok || v.Secret == nil {
			t.errf("%s: %s is not mounted from a Secret", where, f)
			continue
		}
		s, ok := ix.secrets[v.Secret.SecretName]
		if !ok {
			s, ok = ext[v.Secret.SecretName]
		}
		if ok && !secretHasKey(s, key) {
			t.errf("%s: %s needs key %q in Secret %s, which has no such key", where, f, key, v.Secret.SecretName)
		}
		if !strings.HasPrefix(path.Clean(f), "/") {
			t.errf("%s: %s must be an absolute path", where, f)
		}
	}
	return sg
}

func (t *Tree) isPort(c *corev1.Container, p intstr.IntOrString, want int) bool {
	got, ok := containerPort(c, p)
	return ok && int(got) == want
}

// ---------------------------------------------------------------- services etc.

func (ix *renderIndex) podsSelectedBy(sel labels.Selector) []podRef {
	var out []podRef
	for _, p := range ix.pods {
		if sel.Matches(labels.Set(p.template.Labels)) {
			out = append(out, p)
		}
	}
	return out
}

func (t *Tree) checkService(ix *renderIndex, d Doc, s *corev1.Service) {
	pods := ix.podsSelectedBy(labels.SelectorFromSet(s.Spec.Selector))
	if len(s.Spec.Selector) > 0 && len(ix.pods) > 0 && len(pods) == 0 {
		t.errf("%s: selector %v matches no pod in the render", d, s.Spec.Selector)
	}
	for _, p := range s.Spec.Ports {
		target := p.TargetPort
		if target.Type == intstr.Int && target.IntVal == 0 {
			target = intstr.FromInt32(p.Port)
		}
		admin := p.Port == AdminPort || (target.Type == intstr.Int && target.IntVal == AdminPort) ||
			(target.Type == intstr.String && target.StrVal == "admin")
		for _, pr := range pods {
			n, ok := podPort(pr.template, target)
			switch {
			case ok && n == AdminPort:
				admin = true
			case !ok && target.Type == intstr.String:
				t.errf("%s: port %s targets %q, which no container of %s declares", d, p.Name, target.StrVal, pr.doc)
			}
		}
		if admin {
			t.errf("%s: port %s exposes the admin API (%d): the admin port must be in no Service", d, p.Name, AdminPort)
		}
		if (p.Port == GRPCPort || strings.HasPrefix(p.Name, "grpc")) && (p.AppProtocol == nil || *p.AppProtocol != "grpc") {
			t.errf("%s: port %s carries gRPC and needs appProtocol: grpc", d, p.Name)
		}
	}
}

func podPort(tpl *corev1.PodTemplateSpec, p intstr.IntOrString) (int32, bool) {
	for i := range tpl.Spec.Containers {
		if n, ok := containerPort(&tpl.Spec.Containers[i], p); ok {
			return n, true
		}
	}
	return 0, false
}

func (t *Tree) checkSelects(ix *renderIndex, d Doc, ls *metav1.LabelSelector) {
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil || ls == nil {
		t.errf("%s: invalid or missing selector: %v", d, err)
		return
	}
	if sel.Empty() {
		t.errf("%s: empty selector selects every pod in the namespace", d)
	}
	if len(ix.pods) > 0 && len(ix.podsSelectedBy(sel)) == 0 {
		t.errf("%s: selector %s matches no pod in the render", d, sel)
	}
}

func (t *Tree) checkHPA(ix *renderIndex, d Doc, h *autoscalingv2.HorizontalPodAutoscaler) {
	ref := h.Spec.ScaleTargetRef
	if ref.Kind != "Deployment" || ix.deploys[ref.Name] == nil {
		t.errf("%s: scaleTargetRef %s/%s is not a Deployment in the render", d, ref.Kind, ref.Name)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
		t.errf("%s: minReplicas must be at least 2", d)
	}
	if h.Spec.MaxReplicas < 2 || (h.Spec.MinReplicas != nil && h.Spec.MaxReplicas < *h.Spec.MinReplicas) {
		t.errf("%s: maxReplicas must be >= minReplicas", d)
	}
	if dep := ix.deploys[ref.Name]; dep != nil {
		for _, c := range dep.Spec.Template.Spec.Containers {
			if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
				t.errf("%s: CPU utilization needs resources.requests.cpu on container %q", d, c.Name)
			}
		}
	}
}

func (t *Tree) checkNetworkPolicy(ix *renderIndex, d Doc, np *networkingv1.NetworkPolicy) {
	t.checkSelects(ix, d, &np.Spec.PodSelector)
	for i, r := range np.Spec.Ingress {
		where := fmt.Sprintf("%s: ingress[%d]", d, i)
		if len(r.Ports) == 0 {
			t.errf("%s: a rule without ports opens every port, including the admin API", where)
			continue
		}
		for _, p := range r.Ports {
			if p.Port == nil {
				t.errf("%s: a port entry without port opens every port", where)
				continue
			}
			if p.EndPort != nil {
				t.errf("%s: port ranges are not used here", where)
			}
			switch {
			case p.Port.IntValue() == AdminPort || p.Port.StrVal == "admin":
				if len(r.From) == 0 {
					t.errf("%s: the admin port %d is open to everyone", where, AdminPort)
				}
				for _, peer := range r.From {
					if peer.IPBlock != nil || peer.PodSelector == nil || len(peer.PodSelector.MatchLabels)+len(peer.PodSelector.MatchExpressions) == 0 {
						t.errf("%s: admin port %d peers must select login pods by label (no ipBlock, no whole namespaces)", where, AdminPort)
					}
				}
			case p.Port.IntValue() == GRPCPort || p.Port.StrVal == "grpc":
				if len(r.From) == 0 {
					t.errf("%s: the ext_authz port %d is open to everyone; admit only gateway/sidecar pods", where, GRPCPort)
				}
			}
		}
	}
}
