package manifests_test

// The contracts k8s/ is checked against: the config keys come from
// pkg/config itself (the root module, through the replace directive in
// go.mod), so a manifest cannot use a key the binary does not know.

import "github.com/sessiongate/sessiongate/pkg/config"

// knownConfigKeys: dotted keys; "routes" covers its items.
var knownConfigKeys = config.Keys()

// knownMetrics: the Prometheus metrics sessiongate exports on :9002/metrics.
var knownMetrics = map[string]string{
	"sessiongate_check_decisions_total":    "counter", // {result}
	"sessiongate_check_duration_seconds":   "histogram",
	"sessiongate_store_duration_seconds":   "histogram", // {op}
	"sessiongate_store_errors_total":       "counter",   // {op}
	"sessiongate_store_canceled_total":     "counter",   // {op}
	"sessiongate_shadow_decisions_total":   "counter",   // {rule,decision}
	"sessiongate_sessions_created_total":   "counter",
	"sessiongate_sessions_revoked_total":   "counter",
	"sessiongate_token_cache_hits_total":   "counter",
	"sessiongate_token_cache_misses_total": "counter",
	"sessiongate_store_up":                 "gauge", // 1 when the last store probe succeeded

	"sessiongate_security_events_total":         "counter", // {type}
	"sessiongate_security_events_dropped_total": "counter",
	"sessiongate_security_events_webhook_total": "counter", // {result}
}

// The kustomizations that must exist and render.
var wantKustomizations = []string{
	"base",
	"overlays/sidecar",
	"overlays/redis-dev",
	"istio",
	"observability",
}
