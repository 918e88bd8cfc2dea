package manifests

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Options carries the contracts the manifests are checked against: the
// sessiongate config keys (README / pkg/config) and the Prometheus metric names.
type Options struct {
	// KnownConfigKeys are dotted config keys; list-of-object keys use "[]",
	// e.g. "redis.url", "routes[].path_prefix".
	KnownConfigKeys []string
	// KnownMetrics maps each sessiongate metric name to its type
	// ("counter" or "histogram").
	KnownMetrics map[string]string
	// WantKustomizations, if set, must all be found and rendered (guards
	// against a discovery bug silently validating nothing).
	WantKustomizations []string
	// Charts are Helm chart renders, validated like the kustomizations. The
	// charts' own directory (helm/ under the root) is not walked as plain
	// manifests: its templates are not YAML until rendered.
	Charts []ChartRender
}

// Tree is everything found under the k8s/ root.
type Tree struct {
	FS   filesys.FileSystem
	Root string
	// Renders: kustomization directory (relative to Root) -> rendered objects.
	Renders map[string][]Doc
	// Files: YAML manifest file (relative) -> objects, decoded straight from the
	// source file (catches duplicate keys that kustomize would swallow, and
	// covers files that are in no kustomization, like secrets.example.yaml).
	Files map[string][]Doc
	// Payloads: files that are not Kubernetes objects (sessiongate config,
	// envoy.yaml, Helm values, Grafana dashboard), by relative path.
	Payloads map[string][]byte

	opts Options
	errs []error
	// sessiongate config (effective, with env overrides) per render.
	sgConfig map[string]*sgContainer
}

func (t *Tree) errf(format string, args ...any) {
	t.errs = append(t.errs, fmt.Errorf(format, args...))
}

// ValidateDir validates the k8s/ directory on disk.
func ValidateDir(root string, opts Options) error {
	abs, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	return Validate(filesys.MakeFsOnDisk(), abs, opts)
}

// Validate loads, renders, strictly decodes and checks every manifest under
// root in fsys. It returns all problems found, joined.
func Validate(fsys filesys.FileSystem, root string, opts Options) error {
	t := &Tree{FS: fsys, Root: root, opts: opts,
		Renders: map[string][]Doc{}, Files: map[string][]Doc{}, Payloads: map[string][]byte{},
		sgConfig: map[string]*sgContainer{}}
	t.load()
	t.check()
	return errors.Join(t.errs...)
}

// Load is Validate without the invariant checks (used by tests that inspect
// rendered objects).
func Load(fsys filesys.FileSystem, root string) (*Tree, error) {
	t := &Tree{FS: fsys, Root: root, Renders: map[string][]Doc{}, Files: map[string][]Doc{},
		Payloads: map[string][]byte{}, sgConfig: map[string]*sgContainer{}}
	t.load()
	return t, errors.Join(t.errs...)
}

func (t *Tree) rel(p string) string {
	r, err := filepath.Rel(t.Root, p)
	if err != nil {
		return p
	}
	return filepath.ToSlash(r)
}

func (t *Tree) load() {
	var kustDirs, files []string
	err := t.FS.Walk(t.Root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		name := info.Name()
		if info.IsDir() {
			if p != t.Root && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			if t.rel(p) == "helm" {
				return filepath.SkipDir
			}
			return nil
		}
		switch path.Ext(name) {
		case ".yaml", ".yml", ".json":
			files = append(files, p)
			if name == "kustomization.yaml" || name == "kustomization.yml" {
				kustDirs = append(kustDirs, filepath.Dir(p))
			}
		}
		return nil
	})
	if err != nil {
		t.errf("walking %s: %w", t.Root, err)
	}
	// Kustomizations first: they say which files are patches.
	patches := map[string]bool{}
	for _, dir := range kustDirs {
		for _, name := range []string{"kustomization.yaml", "kustomization.yml"} {
			p := filepath.Join(dir, name)
			if !t.FS.Exists(p) {
				continue
			}
			data, err := t.FS.ReadFile(p)
			if err != nil {
				t.errf("%s: %w", t.rel(p), err)
				continue
			}
			k := &types.Kustomization{}
			j, err := yaml.YAMLToJSONStrict(data)
			if err == nil {
				err = strictJSON(j, k)
			}
			if err != nil {
				t.errf("%s: %w", t.rel(p), err)
				continue
			}
			for _, pt := range k.Patches {
				if pt.Path != "" {
					patches[filepath.Clean(filepath.Join(dir, pt.Path))] = true
				}
			}
			for _, ps := range k.PatchesStrategicMerge {
				patches[filepath.Clean(filepath.Join(dir, string(ps)))] = true
			}
		}
	}
	for _, p := range files {
		rel := t.rel(p)
		base := path.Base(p)
		switch {
		case base == "kustomization.yaml" || base == "kustomization.yml":
			// decoded above
		case path.Ext(p) == ".json":
			data, err := t.FS.ReadFile(p)
			if err != nil {
				t.errf("%s: %w", rel, err)
				continue
			}
			t.Payloads[rel] = data
		default:
			t.loadYAMLFile(p, rel, patches[filepath.Clean(p)])
		}
	}
	sort.Strings(kustDirs)
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	for _, dir := range kustDirs {
		rel := t.rel(dir)
		m, err := k.Run(t.FS, dir)
		if err != nil {
			t.errf("kustomize build %s: %w", rel, err)
			continue
		}
		docs := []Doc{}
		for _, r := range m.Resources() {
			j, err := r.MarshalJSON()
			if err != nil {
				t.errf("%s: %s: %w", rel, r.CurId(), err)
				continue
			}
			d, err := DecodeStrict(rel, j)
			if err != nil {
				t.errs = append(t.errs, err)
			}
			if d.Obj != nil {
				docs = append(docs, d)
			}
		}
		t.Renders[rel] = docs
	}
	t.loadCharts()
	for _, want := range t.opts.WantKustomizations {
		if _, ok := t.Renders[want]; !ok {
			t.errf("kustomization %s was not found or did not render", want)
		}
	}
}

func (t *Tree) loadYAMLFile(p, rel string, isPatch bool) {
	data, err := t.FS.ReadFile(p)
	if err != nil {
		t.errf("%s: %w", rel, err)
		return
	}
	docs, err := SplitYAML(data)
	if err != nil {
		t.errf("%s: %w", rel, err)
		return
	}
	for _, j := range docs {
		var err error
		if isPatch {
			// A strategic-merge patch: drop the $patch/$setElementOrder/...
			// directives (and list items deleted by them), then decode the
			// rest strictly like a full object.
			if j, err = stripPatchDirectives(j); err != nil {
				t.errf("%s: %w", rel, err)
				continue
			}
		}
		if !hasKind(j) {
			if len(docs) > 1 {
				t.errf("%s: a document without apiVersion/kind in a multi-document file", rel)
				continue
			}
			t.Payloads[rel] = data
			continue
		}
		d, err := DecodeStrict(rel, j)
		if err != nil {
			t.errs = append(t.errs, err)
			continue
		}
		t.Files[rel] = append(t.Files[rel], d)
	}
}

func (t *Tree) check() {
	// Payload files must each be claimed by a validator: nothing under k8s/
	// goes unchecked.
	for rel, data := range t.Payloads {
		base := path.Base(rel)
		switch {
		case base == "config.yaml":
			if _, err := parseSGConfig(data, t.opts.KnownConfigKeys); err != nil {
				t.errf("%s: %w", rel, err)
			}
		case base == "envoy.yaml":
			if _, err := ParseEnvoyBootstrap(data); err != nil {
				t.errf("%s: %w", rel, err)
			}
		case base == "istiod-values.yaml":
			if _, err := parseIstiodValues(data); err != nil {
				t.errf("%s: %w", rel, err)
			}
		case base == "ingressgateway-values.yaml":
			if _, err := parseGatewayValues(data); err != nil {
				t.errf("%s: %w", rel, err)
			}
		case strings.HasSuffix(base, "dashboard.json"):
			t.checkDashboard(rel, data)
		default:
			t.errf("%s: not a Kubernetes object and no validator knows this file (add one in validate.go)", rel)
		}
	}
	for _, rel := range sortedKeys(t.Renders) {
		t.checkRender(rel, t.Renders[rel])
	}
	t.checkIstio()
	t.checkGatewayHardening()
	t.checkObservability()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// hostPort splits a listen address like ":9001" or "127.0.0.1:9001".
func hostPort(addr string) (host string, port int, err error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	_, err = fmt.Sscanf(p, "%d", &port)
	return h, port, err
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// stripPatchDirectives removes strategic-merge-patch directives ("$patch",
// "$setElementOrder/...", "$retainKeys", "$deleteFromPrimitiveList/...") and
// list items marked "$patch: delete", so the rest of a patch can be decoded
// strictly into the typed struct.
func stripPatchDirectives(j []byte) ([]byte, error) {
	var v any
	if err := json.Unmarshal(j, &v); err != nil {
		return nil, err
	}
	var strip func(v any) any
	strip = func(v any) any {
		switch t := v.(type) {
		case map[string]any:
			for k, e := range t {
				if strings.HasPrefix(k, "$") {
					delete(t, k)
					continue
				}
				t[k] = strip(e)
			}
			return t
		case []any:
			out := t[:0]
			for _, e := range t {
				if m, ok := e.(map[string]any); ok && m["$patch"] == "delete" {
					continue
				}
				out = append(out, strip(e))
			}
			return out
		}
		return v
	}
	return json.Marshal(strip(v))
}
