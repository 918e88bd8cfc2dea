// Package manifests renders and validates sessiongate's Kubernetes, Istio,
// Envoy and observability manifests (everything under k8s/).
//
// It is a separate Go module (github.com/sessiongate/sessiongate/k8s) so that
// k8s.io/api, kustomize, Istio's and Envoy's API types never enter the
// sessiongate binary's go.mod. Run it with:
//
//	cd k8s && go test ./...
//
// Validation is strict: kustomize renders every kustomization, every object is
// decoded into its typed Go struct (k8s.io/api, istio.io/client-go +
// istio.io/api, prometheus-operator), with unknown, duplicate and wrongly
// cased fields as errors, and then deployment invariants are checked
// (probes, non-root, read-only root filesystem, capabilities, pinned image,
// admin port in no Service, known config keys, ...).
package manifests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	netv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	secv1 "istio.io/client-go/pkg/apis/security/v1"
	secv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

// Doc is one Kubernetes-style object, decoded into its typed struct.
type Doc struct {
	Source     string // kustomization directory or file it came from
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
	JSON       []byte
	Obj        any // *appsv1.Deployment, *corev1.Service, *secv1.AuthorizationPolicy, ...
}

func (d Doc) String() string {
	s := d.Kind + "/" + d.Name
	if d.Namespace != "" {
		s = d.Namespace + "/" + s
	}
	return d.Source + ": " + s
}

// IstioOperator is a strict subset of install.istio.io/v1alpha1 IstioOperator.
// The real type lives in the istio.io/istio module (the whole of Istio, far too
// heavy to build here), so the envelope is checked against its documented
// fields and spec.meshConfig is decoded strictly into istio.io/api's
// MeshConfig. components and values are accepted but not validated.
type IstioOperator struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Profile    string          `json:"profile,omitempty"`
		Revision   string          `json:"revision,omitempty"`
		Hub        string          `json:"hub,omitempty"`
		Tag        string          `json:"tag,omitempty"`
		Namespace  string          `json:"namespace,omitempty"`
		MeshConfig json.RawMessage `json:"meshConfig,omitempty"`
		Components json.RawMessage `json:"components,omitempty"`
		Values     json.RawMessage `json:"values,omitempty"`
	} `json:"spec"`
	// MeshConfig is Spec.MeshConfig decoded strictly.
	MeshConfig *meshv1alpha1.MeshConfig `json:"-"`
	// GatewayProxyConfigs are the proxy.istio.io/config pod annotations of
	// spec.components.ingressGateways, by gateway name, decoded strictly.
	GatewayProxyConfigs map[string]*meshv1alpha1.ProxyConfig `json:"-"`
}

// ProxyConfigAnnotation is the pod annotation through which a gateway gets
// its own ProxyConfig.
const ProxyConfigAnnotation = "proxy.istio.io/config"

// parseProxyConfig decodes a proxy.istio.io/config annotation value (YAML)
// strictly into ProxyConfig.
func parseProxyConfig(value string) (*meshv1alpha1.ProxyConfig, error) {
	j, err := yaml.YAMLToJSONStrict([]byte(value))
	if err != nil {
		return nil, err
	}
	pc := &meshv1alpha1.ProxyConfig{}
	if err := strictProtoJSON(j, pc); err != nil {
		return nil, err
	}
	return pc, nil
}

// gatewayProxyConfigs reads the gateway annotations of an IstioOperator's
// components. Only this path is read; the rest of components stays
// unvalidated (see IstioOperator).
func gatewayProxyConfigs(components json.RawMessage) (map[string]*meshv1alpha1.ProxyConfig, error) {
	var c struct {
		IngressGateways []struct {
			Name string `json:"name"`
			K8s  struct {
				PodAnnotations map[string]string `json:"podAnnotations"`
			} `json:"k8s"`
		} `json:"ingressGateways"`
	}
	if err := json.Unmarshal(components, &c); err != nil {
		return nil, err
	}
	out := map[string]*meshv1alpha1.ProxyConfig{}
	for _, g := range c.IngressGateways {
		v, ok := g.K8s.PodAnnotations[ProxyConfigAnnotation]
		if !ok {
			continue
		}
		pc, err := parseProxyConfig(v)
		if err != nil {
			return nil, fmt.Errorf("ingressGateways %s: %s: %w", g.Name, ProxyConfigAnnotation, err)
		}
		out[g.Name] = pc
	}
	return out, nil
}

// IstiodValues is the part of the istiod Helm chart values this project
// ships: only meshConfig, decoded strictly into MeshConfig.
type IstiodValues struct {
	MeshConfig json.RawMessage `json:"meshConfig"`
}

var kinds = map[string]func() any{
	"v1/ServiceAccount":                               func() any { return &corev1.ServiceAccount{} },
	"v1/Service":                                      func() any { return &corev1.Service{} },
	"v1/ConfigMap":                                    func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                                       func() any { return &corev1.Secret{} },
	"v1/Namespace":                                    func() any { return &corev1.Namespace{} },
	"apps/v1/Deployment":                              func() any { return &appsv1.Deployment{} },
	"policy/v1/PodDisruptionBudget":                   func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler":          func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"networking.k8s.io/v1/NetworkPolicy":              func() any { return &networkingv1.NetworkPolicy{} },
	"security.istio.io/v1/AuthorizationPolicy":        func() any { return &secv1.AuthorizationPolicy{} },
	"networking.istio.io/v1alpha3/EnvoyFilter":        func() any { return &netv1alpha3.EnvoyFilter{} },
	"security.istio.io/v1/RequestAuthentication":      func() any { return &secv1.RequestAuthentication{} },
	"security.istio.io/v1beta1/AuthorizationPolicy":   func() any { return &secv1beta1.AuthorizationPolicy{} },
	"security.istio.io/v1beta1/RequestAuthentication": func() any { return &secv1beta1.RequestAuthentication{} },
	"monitoring.coreos.com/v1/ServiceMonitor":         func() any { return &monv1.ServiceMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule":         func() any { return &monv1.PrometheusRule{} },
	"install.istio.io/v1alpha1/IstioOperator":         func() any { return &IstioOperator{} },
	"kustomize.config.k8s.io/v1beta1/Kustomization":   func() any { return &types.Kustomization{} },
	"kustomize.config.k8s.io/v1alpha1/Component":      func() any { return &types.Kustomization{} },
}

// strictJSON decodes data into v: unknown fields, duplicate fields and fields
// whose case differs from the Go struct's json tag are all errors (encoding/json
// alone would accept "readonlyRootFilesystem").
func strictJSON(data []byte, v any) error {
	strictErrs, err := sigsjson.UnmarshalStrict(data, v)
	if err != nil {
		return err
	}
	if len(strictErrs) > 0 {
		return errors.Join(strictErrs...)
	}
	return nil
}

// strictProtoJSON decodes a JSON object into a protobuf message, rejecting
// unknown fields and unknown enum values. Istio's own UnmarshalJSON shims allow
// unknown fields, so Istio specs are always re-decoded with this.
func strictProtoJSON(data []byte, m proto.Message) error {
	return protojson.UnmarshalOptions{DiscardUnknown: false}.Unmarshal(data, m)
}

// DecodeStrict decodes one JSON object into its typed struct.
func DecodeStrict(source string, data []byte) (Doc, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return Doc{}, fmt.Errorf("%s: %w", source, err)
	}
	d := Doc{Source: source, APIVersion: head.APIVersion, Kind: head.Kind,
		Name: head.Metadata.Name, Namespace: head.Metadata.Namespace, JSON: data}
	mk, ok := kinds[head.APIVersion+"/"+head.Kind]
	if !ok {
		return d, fmt.Errorf("%s: no typed struct registered for apiVersion %q kind %q (add it to kinds in decode.go)", d, head.APIVersion, head.Kind)
	}
	obj := mk()
	if err := strictJSON(data, obj); err != nil {
		// Keep a leniently decoded object so that cross-object checks do not
		// cascade into unrelated errors; the strict error is still returned.
		lenient := mk()
		if json.Unmarshal(data, lenient) == nil {
			d.Obj = lenient
		}
		return d, fmt.Errorf("%s: %w", d, err)
	}
	// Istio specs: re-decode strictly with protojson.
	var spec proto.Message
	switch o := obj.(type) {
	case *secv1.AuthorizationPolicy:
		spec = &o.Spec
	case *secv1.RequestAuthentication:
		spec = &o.Spec
	case *secv1beta1.AuthorizationPolicy:
		spec = &o.Spec
	case *secv1beta1.RequestAuthentication:
		spec = &o.Spec
	case *netv1alpha3.EnvoyFilter:
		spec = &o.Spec
	case *IstioOperator:
		if len(o.Spec.MeshConfig) > 0 {
			o.MeshConfig = &meshv1alpha1.MeshConfig{}
			if err := strictProtoJSON(o.Spec.MeshConfig, o.MeshConfig); err != nil {
				return d, fmt.Errorf("%s: spec.meshConfig: %w", d, err)
			}
		}
		if len(o.Spec.Components) > 0 {
			pcs, err := gatewayProxyConfigs(o.Spec.Components)
			if err != nil {
				return d, fmt.Errorf("%s: spec.components: %w", d, err)
			}
			o.GatewayProxyConfigs = pcs
		}
	}
	if spec != nil {
		var raw struct {
			Spec json.RawMessage `json:"spec"`
		}
		if err := json.Unmarshal(data, &raw); err != nil {
			return d, fmt.Errorf("%s: %w", d, err)
		}
		proto.Reset(spec)
		if len(raw.Spec) > 0 {
			if err := strictProtoJSON(raw.Spec, spec); err != nil {
				return d, fmt.Errorf("%s: spec: %w", d, err)
			}
		}
	}
	d.Obj = obj
	return d, nil
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// SplitYAML splits a multi-document YAML file and converts each document to
// JSON, rejecting duplicate keys. Empty (comment-only) documents are dropped.
func SplitYAML(data []byte) ([][]byte, error) {
	var out [][]byte
	for i, part := range docSeparator.Split(string(data), -1) {
		j, err := yaml.YAMLToJSONStrict([]byte(part))
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		j = bytes.TrimSpace(j)
		if len(j) == 0 || string(j) == "null" {
			continue
		}
		out = append(out, j)
	}
	return out, nil
}

// hasKind reports whether a JSON document looks like a Kubernetes-style object.
func hasKind(j []byte) bool {
	var head map[string]json.RawMessage
	if json.Unmarshal(j, &head) != nil {
		return false
	}
	_, a := head["apiVersion"]
	_, k := head["kind"]
	return a && k
}

// trimDocs is a helper for error messages.
func trimDocs(docs []Doc) string {
	var s []string
	for _, d := range docs {
		s = append(s, d.Kind+"/"+d.Name)
	}
	return strings.Join(s, ", ")
}
