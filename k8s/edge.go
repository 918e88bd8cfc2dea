package manifests

import (
	"fmt"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	netv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	secv1 "istio.io/client-go/pkg/apis/security/v1"
	"sigs.k8s.io/yaml"
)

// The edge limits every shipped Envoy must state (README, "Hardening the
// edge"; Envoy's edge best practices).
const (
	edgeBufferLimit   = 32768
	edgeMaxStreams    = 100
	edgeStreamWindow  = 65536
	edgeConnWindow    = 1048576
	edgeHeadersMaxSec = 30
)

// parseGatewayValues decodes the istio/gateway Helm values this project
// ships (only podAnnotations) and the ProxyConfig annotation in them.
func parseGatewayValues(data []byte) (*meshv1alpha1.ProxyConfig, error) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, err
	}
	var v struct {
		PodAnnotations map[string]string `json:"podAnnotations"`
	}
	if err := strictJSON(j, &v); err != nil {
		return nil, fmt.Errorf("gateway values (only podAnnotations is expected here): %w", err)
	}
	a, ok := v.PodAnnotations[ProxyConfigAnnotation]
	if !ok {
		return nil, fmt.Errorf("podAnnotations has no %s", ProxyConfigAnnotation)
	}
	pc, err := parseProxyConfig(a)
	if err != nil {
		return nil, fmt.Errorf("podAnnotations %s: %w", ProxyConfigAnnotation, err)
	}
	return pc, nil
}

// checkEdgeProxyConfig: the gateway's ProxyConfig carries the edge settings
// explicitly (a profile's defaults are not a promise this repo controls).
func (t *Tree) checkEdgeProxyConfig(where string, pc *meshv1alpha1.ProxyConfig) {
	if pc.GetGatewayTopology() == nil {
		t.errf("%s: gatewayTopology must be set: numTrustedProxies decides which address is the client's", where)
	}
	cs := pc.GetConnectionSettings()
	if cs == nil {
		t.errf("%s: connectionSettings is missing", where)
		return
	}
	if cs.GetHttpHeadersWithUnderscoresAction() != meshv1alpha1.ProxyConfig_ConnectionSettings_HEADERS_WITH_UNDERSCORES_REJECT_REQUEST {
		t.errf("%s: connectionSettings.httpHeadersWithUnderscoresAction must be HEADERS_WITH_UNDERSCORES_REJECT_REQUEST (x_internal_jwt would reach CGI-style upstreams)", where)
	}
	if d := cs.GetHttpRequestHeadersTimeout(); d == nil || d.AsDuration().Seconds() > edgeHeadersMaxSec {
		t.errf("%s: connectionSettings.httpRequestHeadersTimeout must be set, at most %ds (slowloris)", where, edgeHeadersMaxSec)
	}
	for name, d := range map[string]*durationpb.Duration{
		"httpIdleTimeout": cs.GetHttpIdleTimeout(), "httpStreamIdleTimeout": cs.GetHttpStreamIdleTimeout(),
		"httpRequestTimeout": cs.GetHttpRequestTimeout(),
	} {
		if d == nil {
			t.errf("%s: connectionSettings.%s must be set", where, name)
		}
	}
	for name, v := range map[string]struct {
		got interface{ GetValue() int32 }
		max int32
	}{
		"listenerPerConnectionBufferLimitBytes": {cs.GetListenerPerConnectionBufferLimitBytes(), edgeBufferLimit},
		"clusterPerConnectionBufferLimitBytes":  {cs.GetClusterPerConnectionBufferLimitBytes(), edgeBufferLimit},
		"httpMaxConcurrentStreams":              {cs.GetHttpMaxConcurrentStreams(), edgeMaxStreams},
		"http2InitialStreamWindowSize":          {cs.GetHttp2InitialStreamWindowSize(), edgeStreamWindow},
		"http2InitialConnectionWindowSize":      {cs.GetHttp2InitialConnectionWindowSize(), edgeConnWindow},
	} {
		if v.got.GetValue() <= 0 || v.got.GetValue() > v.max {
			t.errf("%s: connectionSettings.%s must be set, at most %d", where, name, v.max)
		}
	}
	l, g := cs.GetListenerConnectionLimit().GetValue(), cs.GetGlobalDownstreamConnectionLimit().GetValue()
	if l <= 0 || g <= 0 || l > g {
		t.errf("%s: connectionSettings.listenerConnectionLimit (%d) and globalDownstreamConnectionLimit (%d) must be set, the first at most the second", where, l, g)
	}
}

// checkEdgeHCM holds an edge HTTP listener of a shipped Envoy bootstrap to
// the same settings as envoy/envoy.yaml.tmpl (e2e proves them there).
func (t *Tree) checkEdgeHCM(where string, ec *EnvoyConfig, lname string, hcm *hcmv3.HttpConnectionManager) {
	var l *listenerv3.Listener
	for _, x := range ec.Bootstrap.GetStaticResources().GetListeners() {
		if x.GetName() == lname {
			l = x
		}
	}
	if l.GetPerConnectionBufferLimitBytes().GetValue() == 0 || l.GetPerConnectionBufferLimitBytes().GetValue() > edgeBufferLimit {
		t.errf("%s: per_connection_buffer_limit_bytes must be set, at most %d", where, edgeBufferLimit)
	}
	if !hasRuntimeKey(ec.Bootstrap, "envoy.resource_limits.listener."+lname+".connection_limit") {
		t.errf("%s: no connection limit (runtime envoy.resource_limits.listener.%s.connection_limit)", where, lname)
	}
	po := hcm.GetCommonHttpProtocolOptions()
	if po.GetHeadersWithUnderscoresAction() != corev3.HttpProtocolOptions_REJECT_REQUEST {
		t.errf("%s: common_http_protocol_options.headers_with_underscores_action must be REJECT_REQUEST", where)
	}
	if po.GetIdleTimeout() == nil {
		t.errf("%s: common_http_protocol_options.idle_timeout must be set", where)
	}
	if d := hcm.GetRequestHeadersTimeout(); d == nil || d.AsDuration() <= 0 || d.AsDuration().Seconds() > edgeHeadersMaxSec {
		t.errf("%s: request_headers_timeout must be set, at most %ds", where, edgeHeadersMaxSec)
	}
	if hcm.GetStreamIdleTimeout() == nil || hcm.GetRequestTimeout() == nil {
		t.errf("%s: stream_idle_timeout and request_timeout must be set", where)
	}
	if hcm.GetMaxRequestHeadersKb() == nil {
		t.errf("%s: max_request_headers_kb must be stated", where)
	}
	h2 := hcm.GetHttp2ProtocolOptions()
	if v := h2.GetMaxConcurrentStreams().GetValue(); v == 0 || v > edgeMaxStreams {
		t.errf("%s: http2_protocol_options.max_concurrent_streams must be set, at most %d", where, edgeMaxStreams)
	}
	if v := h2.GetInitialStreamWindowSize().GetValue(); v == 0 || v > edgeStreamWindow {
		t.errf("%s: http2_protocol_options.initial_stream_window_size must be set, at most %d", where, edgeStreamWindow)
	}
	if v := h2.GetInitialConnectionWindowSize().GetValue(); v == 0 || v > edgeConnWindow {
		t.errf("%s: http2_protocol_options.initial_connection_window_size must be set, at most %d", where, edgeConnWindow)
	}
	for _, hf := range hcm.GetHttpFilters() {
		m, _ := hf.GetTypedConfig().UnmarshalNew()
		if f, ok := m.(*extauthzv3.ExtAuthz); ok {
			if len(f.GetAllowedHeaders().GetPatterns()) == 0 {
				t.errf("%s: ext_authz allowed_headers must list the headers Check reads", where)
			}
			if f.GetStatusOnError().GetCode() != 503 {
				t.errf("%s: ext_authz status_on_error must be 503 (a 403 reads as a policy decision)", where)
			}
		}
	}
}

// checkEdgeBootstrap: overload manager with heap and connection monitors,
// and heap-triggered actions; every cluster has a buffer limit.
func (t *Tree) checkEdgeBootstrap(where string, bs *bootstrapv3.Bootstrap) {
	om := bs.GetOverloadManager()
	monitors := map[string]bool{}
	for _, m := range om.GetResourceMonitors() {
		monitors[m.GetName()] = true
	}
	for _, want := range []string{"envoy.resource_monitors.fixed_heap", "envoy.resource_monitors.global_downstream_max_connections"} {
		if !monitors[want] {
			t.errf("%s: overload_manager has no %s resource monitor", where, want)
		}
	}
	actions := map[string]bool{}
	for _, a := range om.GetActions() {
		actions[a.GetName()] = true
	}
	for _, want := range []string{"envoy.overload_actions.shrink_heap", "envoy.overload_actions.stop_accepting_requests"} {
		if !actions[want] {
			t.errf("%s: overload_manager has no %s action", where, want)
		}
	}
	for _, c := range bs.GetStaticResources().GetClusters() {
		if v := c.GetPerConnectionBufferLimitBytes().GetValue(); v == 0 || v > edgeBufferLimit {
			t.errf("%s: cluster %s: per_connection_buffer_limit_bytes must be set, at most %d", where, c.GetName(), edgeBufferLimit)
		}
	}
}

func hasRuntimeKey(bs *bootstrapv3.Bootstrap, key string) bool {
	for _, l := range bs.GetLayeredRuntime().GetLayers() {
		if f, ok := l.GetStaticLayer().GetFields()[key]; ok && f.GetNumberValue() > 0 {
			return true
		}
	}
	return false
}

// checkGatewayHardening ties the Istio edge settings together: the gateway
// that the CUSTOM policy protects has a ProxyConfig with the edge settings
// (the same in every install method shipped) and an EnvoyFilter for the rest.
func (t *Tree) checkGatewayHardening() {
	var gateways []Doc // CUSTOM policies: their selectors name the gateways
	var filters []Doc
	for _, rel := range sortedKeys(t.Renders) {
		for _, d := range t.Renders[rel] {
			switch o := d.Obj.(type) {
			case *secv1.AuthorizationPolicy:
				if o.Spec.GetAction() == securityv1beta1.AuthorizationPolicy_CUSTOM {
					gateways = append(gateways, d)
				}
			case *netv1alpha3.EnvoyFilter:
				filters = append(filters, d)
			}
		}
	}
	if len(gateways) == 0 {
		return
	}
	type source struct {
		where string
		pc    *meshv1alpha1.ProxyConfig
	}
	var pcs []source
	for _, rel := range sortedKeys(t.Files) {
		for _, d := range t.Files[rel] {
			if io, ok := d.Obj.(*IstioOperator); ok {
				for _, name := range sortedKeys(io.GatewayProxyConfigs) {
					pcs = append(pcs, source{fmt.Sprintf("%s: ingressGateways %s", d, name), io.GatewayProxyConfigs[name]})
				}
			}
		}
	}
	for _, rel := range sortedKeys(t.Payloads) {
		if strings.HasSuffix(rel, "ingressgateway-values.yaml") {
			if pc, err := parseGatewayValues(t.Payloads[rel]); err == nil {
				pcs = append(pcs, source{rel, pc})
			}
		}
	}
	if len(pcs) == 0 {
		t.errf("istio: no gateway ProxyConfig (%s annotation) with the edge settings", ProxyConfigAnnotation)
	}
	for i, s := range pcs {
		t.checkEdgeProxyConfig(s.where, s.pc)
		if i > 0 && !proto.Equal(s.pc, pcs[0].pc) {
			t.errf("%s: differs from the gateway ProxyConfig in %s", s.where, pcs[0].where)
		}
	}
	for _, g := range gateways {
		ap := g.Obj.(*secv1.AuthorizationPolicy)
		var ef *netv1alpha3.EnvoyFilter
		for _, d := range filters {
			f := d.Obj.(*netv1alpha3.EnvoyFilter)
			if f.Namespace == ap.Namespace && equalLabels(f.Spec.GetWorkloadSelector().GetLabels(), ap.Spec.GetSelector().GetMatchLabels()) {
				ef = f
			}
		}
		if ef == nil {
			t.errf("%s: no EnvoyFilter with the edge hardening for the same workload (namespace and selector)", g)
			continue
		}
		t.checkHardeningFilter(fmt.Sprintf("%s/EnvoyFilter/%s", ef.Namespace, ef.Name), ef)
	}
}

func equalLabels(a, b map[string]string) bool {
	if len(a) != len(b) || len(a) == 0 {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkHardeningFilter decodes each patch value strictly into the Envoy type
// it patches and checks what the patch is there for.
func (t *Tree) checkHardeningFilter(where string, ef *netv1alpha3.EnvoyFilter) {
	var authz, hcm, bs bool
	for i, p := range ef.Spec.GetConfigPatches() {
		pw := fmt.Sprintf("%s: configPatches[%d]", where, i)
		if ctx := p.GetMatch().GetContext(); p.GetApplyTo() != networkingv1alpha3.EnvoyFilter_BOOTSTRAP && ctx != networkingv1alpha3.EnvoyFilter_GATEWAY {
			t.errf("%s: match.context must be GATEWAY, not %s (the sidecars are not the edge)", pw, ctx)
		}
		raw, err := protojson.Marshal(p.GetPatch().GetValue())
		if err != nil {
			t.errf("%s: %v", pw, err)
			continue
		}
		switch p.GetApplyTo() {
		case networkingv1alpha3.EnvoyFilter_HTTP_FILTER:
			f := &hcmv3.HttpFilter{}
			if err := strictProtoJSON(raw, f); err != nil {
				t.errf("%s: value: %v", pw, err)
				continue
			}
			m, err := f.GetTypedConfig().UnmarshalNew()
			if err != nil {
				t.errf("%s: value.typed_config: %v", pw, err)
				continue
			}
			if a, ok := m.(*extauthzv3.ExtAuthz); ok && len(a.GetAllowedHeaders().GetPatterns()) > 0 {
				authz = true
			}
		case networkingv1alpha3.EnvoyFilter_NETWORK_FILTER:
			f := &listenerv3.Filter{}
			if err := strictProtoJSON(raw, f); err != nil {
				t.errf("%s: value: %v", pw, err)
				continue
			}
			m, err := f.GetTypedConfig().UnmarshalNew()
			if err != nil {
				t.errf("%s: value.typed_config: %v", pw, err)
				continue
			}
			if h, ok := m.(*hcmv3.HttpConnectionManager); ok && h.GetMaxRequestHeadersKb() != nil {
				hcm = true
			}
		case networkingv1alpha3.EnvoyFilter_BOOTSTRAP:
			b := &bootstrapv3.Bootstrap{}
			if err := strictProtoJSON(raw, b); err != nil {
				t.errf("%s: value: %v", pw, err)
				continue
			}
			for _, m := range b.GetOverloadManager().GetResourceMonitors() {
				if m.GetName() == "envoy.resource_monitors.fixed_heap" {
					bs = true
				}
			}
		}
	}
	if !authz {
		t.errf("%s: no HTTP_FILTER patch giving ext_authz allowed_headers", where)
	}
	if !hcm {
		t.errf("%s: no NETWORK_FILTER patch stating max_request_headers_kb", where)
	}
	if !bs {
		t.errf("%s: no BOOTSTRAP patch with a fixed_heap overload monitor", where)
	}
}
