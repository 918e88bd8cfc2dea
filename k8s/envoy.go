package manifests

import (
	"fmt"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	healthcheckv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	// Registers the typed_config types the sidecar's envoy.yaml uses, so that
	// protojson can resolve (and strictly decode) their Any payloads.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/fixed_heap/v3"
)

type validatable interface{ ValidateAll() error }

// EnvoyConfig is a strictly decoded and PGV-validated Envoy bootstrap plus the
// pieces the checks look at.
type EnvoyConfig struct {
	Bootstrap *bootstrapv3.Bootstrap
	// Listeners' HTTP connection managers, by listener name.
	HCMs map[string]*hcmv3.HttpConnectionManager
	// ListenerPorts by listener name.
	ListenerPorts map[string]uint32
}

// ParseEnvoyBootstrap decodes an Envoy bootstrap YAML with protojson (unknown
// fields and unknown @type are errors), and runs the protoc-gen-validate rules
// on the bootstrap and on every typed_config it can unpack. That is as close
// to `envoy --mode validate` as Go gets without an Envoy binary.
func ParseEnvoyBootstrap(data []byte) (*EnvoyConfig, error) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	bs := &bootstrapv3.Bootstrap{}
	if err := strictProtoJSON(j, bs); err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	if err := bs.ValidateAll(); err != nil {
		return nil, fmt.Errorf("envoy bootstrap: %w", err)
	}
	ec := &EnvoyConfig{Bootstrap: bs, HCMs: map[string]*hcmv3.HttpConnectionManager{}, ListenerPorts: map[string]uint32{}}
	for _, l := range bs.GetStaticResources().GetListeners() {
		ec.ListenerPorts[l.GetName()] = l.GetAddress().GetSocketAddress().GetPortValue()
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				m, err := f.GetTypedConfig().UnmarshalNew()
				if err != nil {
					return nil, fmt.Errorf("envoy listener %s filter %s: %w", l.GetName(), f.GetName(), err)
				}
				if v, ok := m.(validatable); ok {
					if err := v.ValidateAll(); err != nil {
						return nil, fmt.Errorf("envoy listener %s filter %s: %w", l.GetName(), f.GetName(), err)
					}
				}
				hcm, ok := m.(*hcmv3.HttpConnectionManager)
				if !ok {
					continue
				}
				ec.HCMs[l.GetName()] = hcm
				for _, hf := range hcm.GetHttpFilters() {
					fm, err := hf.GetTypedConfig().UnmarshalNew()
					if err != nil {
						return nil, fmt.Errorf("envoy http filter %s: %w", hf.GetName(), err)
					}
					if v, ok := fm.(validatable); ok {
						if err := v.ValidateAll(); err != nil {
							return nil, fmt.Errorf("envoy http filter %s: %w", hf.GetName(), err)
						}
					}
				}
			}
		}
	}
	for _, c := range bs.GetStaticResources().GetClusters() {
		for name, a := range c.GetTypedExtensionProtocolOptions() {
			m, err := a.UnmarshalNew()
			if err != nil {
				return nil, fmt.Errorf("envoy cluster %s %s: %w", c.GetName(), name, err)
			}
			if v, ok := m.(validatable); ok {
				if err := v.ValidateAll(); err != nil {
					return nil, fmt.Errorf("envoy cluster %s %s: %w", c.GetName(), name, err)
				}
			}
		}
	}
	return ec, nil
}

func (ec *EnvoyConfig) cluster(name string) *clusterv3.Cluster {
	for _, c := range ec.Bootstrap.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	return nil
}

// checkEnvoyContainer validates the Envoy config an envoy container runs and
// ties it to the sessiongate container of the same pod.
func (t *Tree) checkEnvoyContainer(ix *renderIndex, d Doc, pod *corev1.PodSpec, c *corev1.Container, sg *sgContainer) {
	where := fmt.Sprintf("%s: container %q", d, c.Name)
	cfgPath := ""
	for i, a := range c.Args {
		if (a == "-c" || a == "--config-path") && i+1 < len(c.Args) {
			cfgPath = c.Args[i+1]
		}
	}
	if cfgPath == "" {
		t.errf("%s: no -c <envoy.yaml> argument", where)
		return
	}
	v, key, ok := fileSource(pod, c, cfgPath)
	if !ok || v.ConfigMap == nil {
		t.errf("%s: %s is not mounted from a ConfigMap", where, cfgPath)
		return
	}
	cm, ok := ix.configMaps[v.ConfigMap.Name]
	if !ok {
		return // reported by checkReferences
	}
	ec, err := ParseEnvoyBootstrap([]byte(cm.Data[key]))
	if err != nil {
		t.errf("%s: ConfigMap %s key %s: %w", where, cm.Name, key, err)
		return
	}
	if a := ec.Bootstrap.GetAdmin().GetAddress().GetSocketAddress(); a != nil && !isLoopback(a.GetAddress()) {
		t.errf("%s: the Envoy admin interface must listen on loopback, not %s", where, a.GetAddress())
	}
	for lname, port := range ec.ListenerPorts {
		if _, ok := containerPort(c, intstr.FromInt32(int32(port))); !ok {
			t.errf("%s: listener %s port %d is not a declared containerPort", where, lname, port)
		}
	}
	if len(ec.HCMs) == 0 {
		t.errf("%s: no HTTP listener", where)
	}
	t.checkEdgeBootstrap(where, ec.Bootstrap)
	for lname, hcm := range ec.HCMs {
		lw := fmt.Sprintf("%s: listener %s", where, lname)
		t.checkEdgeHCM(lw, ec, lname, hcm)
		filters := hcm.GetHttpFilters()
		authzAt, routerAt := -1, -1
		for i, hf := range filters {
			m, _ := hf.GetTypedConfig().UnmarshalNew()
			switch f := m.(type) {
			case *extauthzv3.ExtAuthz:
				authzAt = i
				t.checkExtAuthz(lw, ec, f, sg)
			case *healthcheckv3.HealthCheck:
				t.checkEnvoyHealthProbe(lw, c, f)
			}
			if strings.HasSuffix(hf.GetTypedConfig().GetTypeUrl(), ".router.v3.Router") {
				routerAt = i
			}
		}
		if authzAt < 0 {
			t.errf("%s: no ext_authz http filter", lw)
		}
		if routerAt != len(filters)-1 {
			t.errf("%s: the router must be the last http filter", lw)
		}
		if authzAt > routerAt {
			t.errf("%s: ext_authz must come before the router", lw)
		}
	}
}

func (t *Tree) checkExtAuthz(where string, ec *EnvoyConfig, f *extauthzv3.ExtAuthz, sg *sgContainer) {
	if f.GetFailureModeAllow() {
		t.errf("%s: ext_authz failure_mode_allow must be false (fail closed)", where)
	}
	gs := f.GetGrpcService()
	if gs == nil || gs.GetEnvoyGrpc() == nil {
		t.errf("%s: ext_authz must use grpc_service.envoy_grpc (sessiongate speaks the gRPC API)", where)
		return
	}
	if gs.GetTimeout() == nil || gs.GetTimeout().AsDuration().Seconds() > 5 {
		t.errf("%s: ext_authz grpc_service.timeout must be set (and short)", where)
	}
	if f.GetTransportApiVersion().String() != "V3" {
		t.errf("%s: ext_authz transport_api_version must be V3", where)
	}
	cl := ec.cluster(gs.GetEnvoyGrpc().GetClusterName())
	if cl == nil {
		t.errf("%s: ext_authz cluster %q is not defined", where, gs.GetEnvoyGrpc().GetClusterName())
		return
	}
	opts, ok := cl.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	h2 := false
	if ok {
		if m, err := opts.UnmarshalNew(); err == nil {
			if hp, ok := m.(*upstreamhttpv3.HttpProtocolOptions); ok {
				h2 = hp.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil
			}
		}
	}
	if !h2 {
		t.errf("%s: cluster %s must speak HTTP/2 (gRPC): explicit_http_config.http2_protocol_options", where, cl.GetName())
	}
	if sg == nil {
		t.errf("%s: no sessiongate container in this pod to send Checks to", where)
		return
	}
	for _, ep := range cl.GetLoadAssignment().GetEndpoints() {
		for _, lb := range ep.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			if !isLoopback(sa.GetAddress()) || int(sa.GetPortValue()) != sg.grpcPort {
				t.errf("%s: cluster %s endpoint %s:%d is not the sessiongate container's 127.0.0.1:%d", where, cl.GetName(), sa.GetAddress(), sa.GetPortValue(), sg.grpcPort)
			}
		}
	}
}

// checkEnvoyHealthProbe: the envoy container's readiness probe hits the path
// the health_check filter answers.
func (t *Tree) checkEnvoyHealthProbe(where string, c *corev1.Container, f *healthcheckv3.HealthCheck) {
	p := c.ReadinessProbe
	if p == nil || p.HTTPGet == nil {
		return
	}
	for _, h := range f.GetHeaders() {
		if h.GetName() == ":path" && h.GetStringMatch().GetExact() == p.HTTPGet.Path {
			return
		}
	}
	t.errf("%s: readinessProbe path %s is not answered by the health_check filter", where, p.HTTPGet.Path)
}
