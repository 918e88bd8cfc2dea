package k8s

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	secv1 "istio.io/client-go/pkg/apis/security/v1"
	iopv1 "istio.io/api/mesh/v1alpha1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
)

func TestProbe(t *testing.T) {
	_ = appsv1.Deployment{}
	_ = secv1.AuthorizationPolicy{}
	_ = iopv1.MeshConfig{}
	_ = krusty.MakeDefaultOptions()
	_ = filesys.MakeFsInMemory()
	_, _ = yaml.Marshal(1)
	_ = monv1.ServiceMonitor{}
	_ = bootstrapv3.Bootstrap{}
}
