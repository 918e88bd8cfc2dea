package manifests

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

var metricRef = regexp.MustCompile(`\bsessiongate_[a-z0-9_]+`)

// checkExprMetrics: every sessiongate_* series an expression uses is a known
// metric (histograms also via _bucket/_sum/_count). Returns the base names used.
func (t *Tree) checkExprMetrics(where, expr string) map[string]bool {
	used := map[string]bool{}
	if strings.Count(expr, "(") != strings.Count(expr, ")") || strings.Count(expr, "{") != strings.Count(expr, "}") {
		t.errf("%s: unbalanced brackets in %q", where, expr)
	}
	for _, m := range metricRef.FindAllString(expr, -1) {
		name := m
		if _, ok := t.opts.KnownMetrics[name]; !ok {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(m, suffix); ok && t.opts.KnownMetrics[base] == "histogram" {
					name = base
				}
			}
		}
		if _, ok := t.opts.KnownMetrics[name]; !ok {
			t.errf("%s: unknown metric %s (known: %s)", where, m, strings.Join(sortedKeys(t.opts.KnownMetrics), ", "))
			continue
		}
		if t.opts.KnownMetrics[name] == "histogram" && name == m {
			t.errf("%s: %s is a histogram: use %s_bucket/_sum/_count", where, m, m)
		}
		used[name] = true
	}
	return used
}

type grafanaPanel struct {
	ID      int            `json:"id"`
	Type    string         `json:"type"`
	Title   string         `json:"title"`
	Panels  []grafanaPanel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// checkDashboard: valid JSON, unique panel ids, every query uses known
// metrics, and every known metric is on the dashboard.
func (t *Tree) checkDashboard(rel string, data []byte) {
	var dash struct {
		UID    string         `json:"uid"`
		Title  string         `json:"title"`
		Panels []grafanaPanel `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.errf("%s: %w", rel, err)
		return
	}
	if dash.UID == "" || dash.Title == "" || len(dash.Panels) == 0 {
		t.errf("%s: a dashboard needs uid, title and panels", rel)
	}
	used := map[string]bool{}
	ids := map[int]bool{}
	var walk func(ps []grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.errf("%s: duplicate panel id %d", rel, p.ID)
			}
			ids[p.ID] = true
			if p.Type != "row" && len(p.Targets) == 0 {
				t.errf("%s: panel %q has no query", rel, p.Title)
			}
			for _, tg := range p.Targets {
				for m := range t.checkExprMetrics(fmt.Sprintf("%s: panel %q", rel, p.Title), tg.Expr) {
					used[m] = true
				}
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	var missing []string
	for m := range t.opts.KnownMetrics {
		if !used[m] {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.errf("%s: metrics not on the dashboard: %s", rel, strings.Join(missing, ", "))
	}
}

// checkObservability: alert expressions use known metrics; each
// ServiceMonitor selects exactly one Service (no duplicate scrapes) that has
// the scraped port, in the base and in every overlay.
func (t *Tree) checkObservability() {
	var monitors []Doc
	for _, rel := range sortedKeys(t.Renders) {
		for _, d := range t.Renders[rel] {
			switch o := d.Obj.(type) {
			case *monv1.PrometheusRule:
				for _, g := range o.Spec.Groups {
					for _, r := range g.Rules {
						t.checkExprMetrics(fmt.Sprintf("%s: rule %s%s", d, r.Alert, r.Record), r.Expr.String())
					}
				}
			case *monv1.ServiceMonitor:
				monitors = append(monitors, d)
			}
		}
	}
	for _, md := range monitors {
		sm := md.Obj.(*monv1.ServiceMonitor)
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil || sel.Empty() {
			t.errf("%s: invalid or empty selector", md)
			continue
		}
		// A chart's monitor selects within its own render; the standalone
		// one in observability/ must fit the base and every overlay.
		fromChart := strings.HasPrefix(md.Source, "helm/")
		for _, rel := range sortedKeys(t.Renders) {
			if fromChart && rel != md.Source {
				continue
			}
			if !fromChart && !strings.HasPrefix(rel, "base") && !strings.HasPrefix(rel, "overlays/") {
				continue
			}
			var matched []*corev1.Service
			for _, d := range t.Renders[rel] {
				if s, ok := d.Obj.(*corev1.Service); ok && sel.Matches(labels.Set(s.Labels)) {
					matched = append(matched, s)
				}
			}
			if len(matched) != 1 {
				t.errf("%s: selects %d Services in %s, want exactly 1 (duplicate or missing scrapes)", md, len(matched), rel)
				continue
			}
			for _, ep := range sm.Spec.Endpoints {
				found := false
				for _, p := range matched[0].Spec.Ports {
					if p.Name == ep.Port && p.Port == HTTPPort {
						found = true
					}
				}
				if !found {
					t.errf("%s: endpoint port %q is not the http port %d of Service %s in %s", md, ep.Port, HTTPPort, matched[0].Name, rel)
				}
			}
		}
	}
}
