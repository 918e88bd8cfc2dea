package manifests

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	secv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func parseIstiodValues(data []byte) (*meshv1alpha1.MeshConfig, error) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("istiod values: %w", err)
	}
	var v IstiodValues
	if err := strictJSON(j, &v); err != nil {
		return nil, fmt.Errorf("istiod values (only meshConfig is expected here): %w", err)
	}
	mc := &meshv1alpha1.MeshConfig{}
	if err := strictProtoJSON(v.MeshConfig, mc); err != nil {
		return nil, fmt.Errorf("istiod values: meshConfig: %w", err)
	}
	return mc, nil
}

type meshSource struct {
	where string
	mesh  *meshv1alpha1.MeshConfig
}

// checkIstio ties the Istio objects to the mesh config and to the sessiongate
// base: provider -> Service/port, JWT issuer/audience/header -> config,
// jwksUri -> Service/port/path, RequestAuthentication -> a policy that
// requires the principal.
func (t *Tree) checkIstio() {
	var meshes []meshSource
	for _, rel := range sortedKeys(t.Files) {
		for _, d := range t.Files[rel] {
			if io, ok := d.Obj.(*IstioOperator); ok && io.MeshConfig != nil {
				meshes = append(meshes, meshSource{d.String(), io.MeshConfig})
			}
		}
	}
	for _, rel := range sortedKeys(t.Payloads) {
		if strings.HasSuffix(rel, "istiod-values.yaml") {
			if mc, err := parseIstiodValues(t.Payloads[rel]); err == nil {
				meshes = append(meshes, meshSource{rel, mc})
			}
		}
	}
	var policies, reqAuths []Doc
	for _, rel := range sortedKeys(t.Renders) {
		for _, d := range t.Renders[rel] {
			switch d.Obj.(type) {
			case *secv1.AuthorizationPolicy:
				policies = append(policies, d)
			case *secv1.RequestAuthentication:
				reqAuths = append(reqAuths, d)
			}
		}
	}
	if len(policies)+len(reqAuths) == 0 && len(meshes) == 0 {
		return
	}
	base := t.sgConfig["base"]
	baseSvcs := map[string]*corev1.Service{}
	for _, d := range t.Renders["base"] {
		if s, ok := d.Obj.(*corev1.Service); ok {
			baseSvcs[s.Name] = s
		}
	}
	if base == nil || base.config == nil {
		t.errf("istio: cannot cross-check: the base render has no sessiongate container/config")
		return
	}
	svcPort := func(host string, port uint32) (*corev1.ServicePort, string, error) {
		// <svc>.<ns>.svc.cluster.local
		parts := strings.Split(host, ".")
		if len(parts) != 5 || parts[2] != "svc" || parts[3] != "cluster" || parts[4] != "local" {
			return nil, "", fmt.Errorf("host %q is not <service>.<namespace>.svc.cluster.local", host)
		}
		s, ok := baseSvcs[parts[0]]
		if !ok {
			return nil, "", fmt.Errorf("host %q: no Service %q in k8s/base", host, parts[0])
		}
		for i := range s.Spec.Ports {
			if uint32(s.Spec.Ports[i].Port) == port {
				return &s.Spec.Ports[i], parts[1], nil
			}
		}
		return nil, "", fmt.Errorf("host %q: Service %s has no port %d", host, s.Name, port)
	}

	// Extension providers.
	providers := map[string]*meshv1alpha1.MeshConfig_ExtensionProvider{}
	namespaces := map[string]string{}
	for _, m := range meshes {
		for _, p := range m.mesh.GetExtensionProviders() {
			g := p.GetEnvoyExtAuthzGrpc()
			if g == nil {
				continue
			}
			where := fmt.Sprintf("%s: extensionProvider %s", m.where, p.GetName())
			if prev, ok := providers[p.GetName()]; ok && !proto.Equal(prev, p) {
				t.errf("%s: differs from the same provider in another mesh config file", where)
			}
			providers[p.GetName()] = p
			sp, ns, err := svcPort(g.GetService(), g.GetPort())
			if err != nil {
				t.errf("%s: %v", where, err)
			} else {
				namespaces[where] = ns
				if sp.Port != GRPCPort || sp.AppProtocol == nil || *sp.AppProtocol != "grpc" {
					t.errf("%s: must point at the grpc port %d (appProtocol grpc)", where, GRPCPort)
				}
			}
			if g.GetTimeout() == nil {
				t.errf("%s: set timeout: Istio's default is 600s", where)
			} else if d := g.GetTimeout().AsDuration(); d.Seconds() > 5 {
				t.errf("%s: timeout %s is too long for a per-request check", where, d)
			}
			if g.GetFailOpen() {
				t.errf("%s: failOpen must be false (fail closed)", where)
			}
		}
	}

	// CUSTOM policies must name a known gRPC provider and have rules (a CUSTOM
	// policy without rules never triggers).
	for _, d := range policies {
		ap := d.Obj.(*secv1.AuthorizationPolicy)
		if ap.Spec.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
			continue
		}
		name := ap.Spec.GetProvider().GetName()
		if _, ok := providers[name]; !ok {
			t.errf("%s: provider %q is not an envoyExtAuthzGrpc extensionProvider of the mesh config files", d, name)
		}
		if len(ap.Spec.GetRules()) == 0 {
			t.errf("%s: a CUSTOM policy without rules never calls the provider; use rules: [{}] for every request", d)
		}
	}

	// RequestAuthentication <-> sessiongate config, JWKS Service, and a
	// principal-requiring ALLOW policy.
	cfg := base.config
	for _, d := range reqAuths {
		ra := d.Obj.(*secv1.RequestAuthentication)
		if len(ra.Spec.GetJwtRules()) == 0 {
			t.errf("%s: no jwtRules", d)
		}
		for i, r := range ra.Spec.GetJwtRules() {
			where := fmt.Sprintf("%s: jwtRules[%d]", d, i)
			if r.GetIssuer() != cfg.String("token.issuer") {
				t.errf("%s: issuer %q != token.issuer %q of k8s/base/config.yaml", where, r.GetIssuer(), cfg.String("token.issuer"))
			}
			if !slices.Contains(r.GetAudiences(), cfg.String("token.audience")) {
				t.errf("%s: audiences %v do not include token.audience %q", where, r.GetAudiences(), cfg.String("token.audience"))
			}
			okHeader := false
			for _, h := range r.GetFromHeaders() {
				if strings.EqualFold(h.GetName(), cfg.String("token.header")) && h.GetPrefix() == "" {
					okHeader = true
				}
			}
			if !okHeader {
				t.errf("%s: fromHeaders must contain %q without prefix (token.header)", where, cfg.String("token.header"))
			}
			u, err := url.Parse(r.GetJwksUri())
			if err != nil || u.Path != "/.well-known/jwks.json" || u.Port() == "" {
				t.errf("%s: jwksUri %q must be http://<service>.<namespace>.svc.cluster.local:%d/.well-known/jwks.json", where, r.GetJwksUri(), HTTPPort)
			} else {
				var port uint32
				fmt.Sscanf(u.Port(), "%d", &port)
				if sp, ns, err := svcPort(u.Hostname(), port); err != nil {
					t.errf("%s: jwksUri: %v", where, err)
				} else {
					namespaces[where] = ns
					if sp.Port != HTTPPort {
						t.errf("%s: jwksUri must use the http port %d", where, HTTPPort)
					}
				}
			}
			if r.GetJwks() != "" {
				t.errf("%s: use jwksUri, not inline jwks (inline keys break rotation)", where)
			}
		}
		// A matching ALLOW policy requiring "<issuer>/*".
		want := cfg.String("token.issuer") + "/*"
		found := false
		for _, pd := range policies {
			ap := pd.Obj.(*secv1.AuthorizationPolicy)
			if ap.Namespace != ra.Namespace || ap.Spec.GetAction() != securityv1beta1.AuthorizationPolicy_ALLOW ||
				!proto.Equal(ap.Spec.GetSelector(), ra.Spec.GetSelector()) {
				continue
			}
			for _, rule := range ap.Spec.GetRules() {
				for _, f := range rule.GetFrom() {
					if slices.Contains(f.GetSource().GetRequestPrincipals(), want) {
						found = true
					}
				}
			}
		}
		if !found {
			t.errf("%s: no ALLOW AuthorizationPolicy with the same namespace and selector requires requestPrincipals [%q]; without it, requests with no token pass", d, want)
		}
	}
	// Everything must agree on sessiongate's namespace.
	seen := ""
	for where, ns := range namespaces {
		if seen == "" {
			seen = ns
		} else if ns != seen {
			t.errf("%s: sessiongate namespace %q differs from %q used elsewhere in k8s/istio", where, ns, seen)
		}
	}
}

// ParseMeshConfigYAML decodes a mesh config fragment (YAML) strictly into
// Istio's MeshConfig.
func ParseMeshConfigYAML(data string) (*meshv1alpha1.MeshConfig, error) {
	j, err := yaml.YAMLToJSONStrict([]byte(data))
	if err != nil {
		return nil, err
	}
	mc := &meshv1alpha1.MeshConfig{}
	if err := strictProtoJSON(j, mc); err != nil {
		return nil, err
	}
	return mc, nil
}
