package manifests

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// SGConfig is a parsed sessiongate YAML config, flattened to dotted keys.
type SGConfig struct {
	// Values holds scalar (and scalar-list) leaves by dotted key; list-of-object
	// leaves use "[]" ("routes[].path_prefix") and are not stored.
	Values map[string]any
}

// String returns a string value or "".
func (c *SGConfig) String(key string) string {
	if c == nil {
		return ""
	}
	s, _ := c.Values[key].(string)
	return s
}

// Strings returns a list-of-strings value.
func (c *SGConfig) Strings(key string) []string {
	if c == nil {
		return nil
	}
	var out []string
	switch v := c.Values[key].(type) {
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
	case string:
		out = []string{v}
	}
	return out
}

// Defaults of the keys the manifests' checks read (README, pkg/config).
var configDefaults = map[string]any{
	"grpc_addr":      ":9001",
	"http_addr":      ":9002",
	"admin_addr":     "127.0.0.1:9003",
	"token.header":   "x-internal-jwt",
	"token.issuer":   "sessiongate",
	"token.audience": "internal",
}

// parseSGConfig parses a sessiongate config file (strict YAML: duplicate keys
// are errors) and checks every key against known. Defaults fill the keys the
// checks need. known may name list-of-object keys either per field
// ("routes[].path_prefix") or as a whole ("routes", as pkg/config.Keys() does).
func parseSGConfig(data []byte, known []string) (*SGConfig, error) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("sessiongate config: %w", err)
	}
	var root map[string]any
	if err := json.Unmarshal(j, &root); err != nil {
		return nil, fmt.Errorf("sessiongate config: want a YAML mapping: %w", err)
	}
	cfg := &SGConfig{Values: map[string]any{}}
	var leaves []string
	flatten("", root, cfg.Values, &leaves)
	knownSet := map[string]bool{}
	for _, k := range known {
		knownSet[k] = true
	}
	var unknown []string
	for _, k := range leaves {
		listKey, _, isListItem := strings.Cut(k, "[]")
		if !knownSet[k] && !isContainerOfKnown(k, known) && !(isListItem && knownSet[listKey]) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return cfg, fmt.Errorf("sessiongate config: unknown config key(s) %s (known: see README / pkg/config)", strings.Join(unknown, ", "))
	}
	for k, v := range configDefaults {
		if _, ok := cfg.Values[k]; !ok {
			cfg.Values[k] = v
		}
	}
	return cfg, nil
}

func flatten(prefix string, v any, out map[string]any, leaves *[]string) {
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 0 && prefix != "" {
			*leaves = append(*leaves, prefix)
			out[prefix] = t
		}
		for k, e := range t {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			flatten(key, e, out, leaves)
		}
	case []any:
		objects := false
		for _, e := range t {
			if m, ok := e.(map[string]any); ok {
				objects = true
				for k, f := range m {
					sub := map[string]any{}
					var subLeaves []string
					flatten(prefix+"[]."+k, f, sub, &subLeaves)
					*leaves = append(*leaves, subLeaves...)
				}
			}
		}
		if !objects {
			*leaves = append(*leaves, prefix)
			out[prefix] = t
		}
	default:
		*leaves = append(*leaves, prefix)
		out[prefix] = t
	}
	// dedupe leaves (list elements repeat keys)
	if prefix == "" {
		seen := map[string]bool{}
		uniq := (*leaves)[:0]
		for _, l := range *leaves {
			if !seen[l] {
				seen[l] = true
				uniq = append(uniq, l)
			}
		}
		*leaves = uniq
	}
}

// isContainerOfKnown accepts an empty map or list standing for known keys
// below it ("routes: []").
func isContainerOfKnown(leaf string, known []string) bool {
	for _, k := range known {
		if strings.HasPrefix(k, leaf+".") || strings.HasPrefix(k, leaf+"[].") {
			return true
		}
	}
	return false
}

// EnvName is the env var that overrides a config key: SESSIONGATE_ + the key
// upper-cased with dots as underscores ("redis.url" -> SESSIONGATE_REDIS_URL).
func EnvName(key string) string {
	return "SESSIONGATE_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// envKey maps an env var name back to its config key, or "" if unknown.
func envKey(env string, known []string) string {
	for _, k := range known {
		if strings.Contains(k, "[]") {
			continue
		}
		if EnvName(k) == env {
			return k
		}
	}
	return ""
}
