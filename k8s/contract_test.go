package manifests_test

// The contracts k8s/ is checked against: the config keys come from
// pkg/config itself (the root module, through the replace directive in
// go.mod), so a manifest cannot use a key the binary does not know.

import (
	"github.com/sessiongate/sessiongate/pkg/config"
	"github.com/sessiongate/sessiongate/pkg/metrics"
)

// knownConfigKeys: dotted keys; "routes" covers its items.
var knownConfigKeys = config.Keys()

// knownMetrics: the Prometheus metrics sessiongate exports on :9002/metrics,
// from pkg/metrics itself.
var knownMetrics = metrics.Catalog()

// The kustomizations that must exist and render.
var wantKustomizations = []string{
	"base",
	"overlays/sidecar",
	"overlays/redis-dev",
	"istio",
	"observability",
}
