package manifests

import (
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
)

// ChartRender is one way of installing a Helm chart: its directory and the
// values files layered over its values.yaml, in order (later files win).
type ChartRender struct {
	// Name is the render's key in Tree.Renders, e.g. "helm/sessiongate[sidecar]".
	Name        string
	Dir         string
	ValuesFiles []string
}

// Release and cluster the charts are rendered for. The release name equals the
// chart name so that object names match the Kustomize base's.
const (
	HelmRelease   = "sessiongate"
	HelmNamespace = "sessiongate"
	// HelmKubeVersion satisfies the chart's kubeVersion (lifecycle sleep needs 1.30).
	HelmKubeVersion = "v1.33.0"
)

// ChartOutput is what Helm produced for one ChartRender.
type ChartOutput struct {
	// Manifests: template path -> rendered text, NOTES.txt included.
	Manifests map[string]string
	// Objects: every rendered Kubernetes object as JSON, in template order.
	Objects [][]byte
	// Values are the values the templates saw (.Values).
	Values map[string]any
}

// ReadValues reads and merges values files the way `helm install -f a -f b`
// does: maps merge key by key, anything else in a later file replaces.
func ReadValues(files ...string) (map[string]any, error) {
	out := map[string]any{}
	for _, f := range files {
		v, err := chartutil.ReadValuesFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = mergeValues(out, v.AsMap())
	}
	return out, nil
}

func mergeValues(dst, src map[string]any) map[string]any {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				dst[k] = mergeValues(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

// LoadChart loads the chart at dir from disk.
func LoadChart(dir string) (*chart.Chart, error) {
	return loader.Load(dir)
}

// RenderChart renders the chart at dir with user values, as `helm install`
// would: values.schema.json is enforced, then every template is executed.
func RenderChart(dir string, user map[string]any) (*ChartOutput, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return nil, err
	}
	return renderLoaded(ch, user)
}

func renderLoaded(ch *chart.Chart, user map[string]any) (*ChartOutput, error) {
	caps := chartutil.DefaultCapabilities.Copy()
	kv, err := chartutil.ParseKubeVersion(HelmKubeVersion)
	if err != nil {
		return nil, err
	}
	caps.KubeVersion = *kv
	if ch.Metadata.KubeVersion != "" && !chartutil.IsCompatibleRange(ch.Metadata.KubeVersion, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("chart needs Kubernetes %s, rendering for %s", ch.Metadata.KubeVersion, caps.KubeVersion)
	}
	vals, err := chartutil.ToRenderValues(ch, user, chartutil.ReleaseOptions{
		Name: HelmRelease, Namespace: HelmNamespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return nil, err
	}
	out := &ChartOutput{Manifests: files}
	if v, ok := vals["Values"].(chartutil.Values); ok {
		out.Values = v.AsMap()
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if !strings.HasSuffix(name, ".yaml") || strings.HasPrefix(path.Base(name), "_") {
			continue
		}
		docs, err := SplitYAML([]byte(files[name]))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out.Objects = append(out.Objects, docs...)
	}
	return out, nil
}

// LintChart runs Helm's own linter (`helm lint --strict` rules: Chart.yaml,
// values against the schema, templates, rendered YAML) and returns its
// warnings and errors.
func LintChart(dir string, user map[string]any) []string {
	kv, err := chartutil.ParseKubeVersion(HelmKubeVersion)
	if err != nil {
		return []string{err.Error()}
	}
	l := lint.AllWithKubeVersion(dir, user, HelmNamespace, kv)
	var msgs []string
	for _, m := range l.Messages {
		if m.Severity >= support.WarningSev {
			msgs = append(msgs, m.Error())
		}
	}
	return msgs
}

// loadCharts renders every ChartRender of the options into t.Renders, so the
// same strict decoding and the same invariants apply as to the Kustomize
// renders.
func (t *Tree) loadCharts() {
	for _, cr := range t.opts.Charts {
		var files []string
		for _, f := range cr.ValuesFiles {
			files = append(files, filepath.Join(cr.Dir, f))
		}
		user, err := ReadValues(files...)
		if err != nil {
			t.errf("%s: %w", cr.Name, err)
			continue
		}
		for _, m := range LintChart(cr.Dir, user) {
			t.errf("%s: helm lint: %s", cr.Name, m)
		}
		out, err := RenderChart(cr.Dir, user)
		if err != nil {
			t.errf("%s: helm render: %w", cr.Name, err)
			continue
		}
		docs := []Doc{}
		for _, j := range out.Objects {
			d, err := DecodeStrict(cr.Name, j)
			if err != nil {
				t.errs = append(t.errs, err)
			}
			if d.Obj != nil {
				docs = append(docs, d)
			}
		}
		t.Renders[cr.Name] = docs
	}
}
