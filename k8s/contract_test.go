package manifests_test

// The contracts k8s/ is checked against. Keep them in step with the README's
// config reference and pkg/config, and with the metric names pkg/ registers.

// knownConfigKeys: dotted keys; "[]" marks a list of objects.
var knownConfigKeys = []string{
	"grpc_addr",
	"http_addr",
	"admin_addr",
	"admin_token_file",
	"login_url",
	"log_level",
	"redis.url",
	"redis.timeout",
	"cookie.name",
	"cookie.same_site",
	"cookie.domain",
	"session.idle_timeout",
	"session.absolute_timeout",
	"session.max_per_user",
	"session.on_limit",
	"token.header",
	"token.issuer",
	"token.audience",
	"token.ttl",
	"token.signing_keys",
	"token.verification_keys",
	"token.jwks_max_age",
	"logout.path",
	"logout.redirect_url",
	"routes[].path_prefix",
	"routes[].methods",
	"routes[].access",
	"routes[].roles",
	"routes[].services",
	"services.spiffe_trust_domain",
	"token.exchange_ttl",
	"token.exchange_rate_limit",
	"token.exchange_rate_burst",
}

// knownMetrics: the Prometheus metrics sessiongate exports on :9002/metrics.
var knownMetrics = map[string]string{
	"sessiongate_check_decisions_total":    "counter", // {result}
	"sessiongate_check_duration_seconds":   "histogram",
	"sessiongate_store_duration_seconds":   "histogram", // {op}
	"sessiongate_store_errors_total":       "counter",   // {op}
	"sessiongate_store_canceled_total":     "counter",   // {op}
	"sessiongate_sessions_created_total":   "counter",
	"sessiongate_sessions_revoked_total":   "counter",
	"sessiongate_token_cache_hits_total":   "counter",
	"sessiongate_token_cache_misses_total": "counter",
	"sessiongate_store_up":                 "gauge",   // 1 when the last store probe succeeded
	"sessiongate_token_requests_total":     "counter", // {grant,result}
}

// The kustomizations that must exist and render.
var wantKustomizations = []string{
	"base",
	"overlays/sidecar",
	"overlays/redis-dev",
	"istio",
	"observability",
}
