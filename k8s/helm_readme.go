package manifests

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// ValuesTable renders the Markdown table of a chart's values: one row per
// leaf of values.schema.json (key, type, default from values.yaml,
// description), so the README cannot list a value the schema lacks, or miss
// one.
func ValuesTable(schemaPath, valuesPath string) (string, error) {
	sb, err := os.ReadFile(schemaPath)
	if err != nil {
		return "", err
	}
	var schema map[string]any
	if err := json.Unmarshal(sb, &schema); err != nil {
		return "", fmt.Errorf("%s: %w", schemaPath, err)
	}
	vb, err := os.ReadFile(valuesPath)
	if err != nil {
		return "", err
	}
	var values map[string]any
	if err := yaml.Unmarshal(vb, &values); err != nil {
		return "", fmt.Errorf("%s: %w", valuesPath, err)
	}
	var b strings.Builder
	b.WriteString("| value | type | default | description |\n| --- | --- | --- | --- |\n")
	var walk func(prefix string, s map[string]any, v any) error
	walk = func(prefix string, s map[string]any, v any) error {
		props, _ := s["properties"].(map[string]any)
		if len(props) > 0 {
			vm, _ := v.(map[string]any)
			for _, k := range slices.Sorted(maps.Keys(props)) {
				if prefix == "" && k == "global" { // Helm's own, for subcharts
					continue
				}
				key := k
				if prefix != "" {
					key = prefix + "." + k
				}
				var sub any
				if vm != nil {
					var ok bool
					if sub, ok = vm[k]; !ok && prefix != "" {
						return fmt.Errorf("%s: in values.schema.json but not in values.yaml", key)
					}
				}
				if err := walk(key, props[k].(map[string]any), sub); err != nil {
					return err
				}
			}
			return nil
		}
		typ := fmt.Sprint(s["type"])
		if ts, ok := s["type"].([]any); ok {
			var parts []string
			for _, t := range ts {
				parts = append(parts, fmt.Sprint(t))
			}
			typ = strings.Join(parts, " or ")
		}
		if enum, ok := s["enum"].([]any); ok {
			var parts []string
			for _, e := range enum {
				parts = append(parts, fmt.Sprint(e))
			}
			typ += " (" + strings.Join(parts, ", ") + ")"
		}
		def, err := json.Marshal(v)
		if err != nil {
			return err
		}
		desc, _ := s["description"].(string)
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s |\n", prefix, typ, strings.ReplaceAll(string(def), "|", "\\|"), desc)
		return nil
	}
	if err := walk("", schema, values); err != nil {
		return "", err
	}
	return b.String(), nil
}
