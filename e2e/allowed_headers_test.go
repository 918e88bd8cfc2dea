package e2e

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sessiongate/sessiongate/e2e/envtmpl"
	"github.com/sessiongate/sessiongate/e2e/harness"
)

// checkReadHeaders derives, from the source of pkg/authz and pkg/tracing,
// every request header name that Check reads. ext_authz's allowed_headers
// must list each one: a header Envoy does not forward is silently absent, and
// CSRF (origin, sec-fetch-site), the login redirect (accept) or tracing
// (traceparent) stop working without any error.
//
// The forms recognised are the ones the code uses: h.get("name"),
// h.m["name"] / GetHeaders()["name"], GetKey() == "name", and an OpenTelemetry
// propagator value. A form the derivation cannot read (a header name that is
// not a literal, an unknown propagator) fails the test instead of being
// skipped.
func checkReadHeaders(t *testing.T) []string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	fset := token.NewFileSet()
	for _, dir := range []string{"pkg/authz", "pkg/tracing"} {
		files, err := filepath.Glob(filepath.Join(root, dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				// headers.get itself indexes by its parameter; its callers'
				// literals are what count.
				if fd, ok := n.(*ast.FuncDecl); ok && fd.Name.Name == "get" && recvType(fd) == "headers" {
					return false
				}
				// So does authz.RequestHeader; and the trace carrier's Get
				// reads what its propagator names (handled below).
				if fd, ok := n.(*ast.FuncDecl); ok && (fd.Name.Name == "RequestHeader" && fd.Recv == nil ||
					fd.Name.Name == "Get" && recvType(fd) == "headerCarrier") {
					return false
				}
				where := func() string { return fset.Position(n.Pos()).String() }
				switch x := n.(type) {
				case *ast.CallExpr:
					// authz.RequestHeader(req, "name"), in authz or from tracing.
					if funcName(x.Fun) == "RequestHeader" && len(x.Args) == 2 {
						name, ok := stringLit(x.Args[1])
						if !ok {
							t.Errorf("%s: RequestHeader() with a non-literal header name; the allowed_headers check cannot follow it", where())
						}
						set[name] = true
					}
					// headers.get has one argument; the token cache's get has two.
					if sel, ok := x.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "get" && len(x.Args) == 1 {
						name, ok := stringLit(x.Args[0])
						if !ok {
							t.Errorf("%s: get() with a non-literal header name; the allowed_headers check cannot follow it", where())
						}
						set[name] = true
					}
				case *ast.IndexExpr:
					if isHeaderMap(x.X) {
						name, ok := stringLit(x.Index)
						if !ok {
							t.Errorf("%s: header map indexed by a non-literal; the allowed_headers check cannot follow it", where())
						}
						set[name] = true
					}
				case *ast.BinaryExpr:
					for _, pair := range [][2]ast.Expr{{x.X, x.Y}, {x.Y, x.X}} {
						if c, ok := pair[0].(*ast.CallExpr); ok {
							if sel, ok := c.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "GetKey" {
								if name, ok := stringLit(pair[1]); ok {
									set[name] = true
								}
							}
						}
					}
				case *ast.SelectorExpr:
					if id, ok := x.X.(*ast.Ident); ok && id.Name == "propagation" {
						switch x.Sel.Name {
						case "TraceContext":
							// W3C Trace Context: what propagation.TraceContext.Fields() returns.
							set["traceparent"], set["tracestate"] = true, true
						case "TextMapCarrier", "TextMapPropagator", "NewCompositeTextMapPropagator":
						default:
							t.Errorf("%s: propagation.%s: add the headers this propagator reads to the derivation", where(), x.Sel.Name)
						}
					}
				}
				return true
			})
		}
	}
	var names []string
	for k := range set {
		if k != "" {
			names = append(names, strings.ToLower(k))
		}
	}
	slices.Sort(names)
	// The derivation itself must be alive: these are read today, and an
	// empty or shrunken result would make every config pass.
	for _, must := range []string{"cookie", "authorization", "origin", "sec-fetch-site", "accept", "x-request-id", "traceparent"} {
		if !slices.Contains(names, must) {
			t.Fatalf("derived header list %v lacks %q: the derivation no longer understands pkg/authz or pkg/tracing", names, must)
		}
	}
	return names
}

func stringLit(e ast.Expr) (string, bool) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(bl.Value)
	return s, err == nil
}

func recvType(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return ""
	}
	if id, ok := fd.Recv.List[0].Type.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// isHeaderMap: h.m (the headers value's map form, always named h) or
// x.GetHeaders().
func isHeaderMap(e ast.Expr) bool {
	switch x := e.(type) {
	case *ast.SelectorExpr:
		id, ok := x.X.(*ast.Ident)
		return ok && id.Name == "h" && x.Sel.Name == "m"
	case *ast.CallExpr:
		sel, ok := x.Fun.(*ast.SelectorExpr)
		return ok && sel.Sel.Name == "GetHeaders"
	}
	return false
}

// shippedAuthzConfigs are the files users copy or that measure what users
// run, each rendered as YAML text.
func shippedAuthzConfigs(t *testing.T) map[string]string {
	t.Helper()
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	render := func(rel string, vars map[string]string) string {
		out, err := envtmpl.RenderFile(filepath.Join(root, rel), vars)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	out := map[string]string{
		"envoy/envoy.yaml.tmpl":           render("envoy/envoy.yaml.tmpl", harness.EnvoyVars(dummyPorts, "/dev/null")),
		"e2e/loadtest/envoy.yaml.tmpl":    render("e2e/loadtest/envoy.yaml.tmpl", loadtestDummyVars),
		"k8s/overlays/sidecar/envoy.yaml": read("k8s/overlays/sidecar/envoy.yaml"),
	}
	istio, err := filepath.Glob(filepath.Join(root, "k8s", "istio", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, f := range istio {
		all = append(all, read(strings.TrimPrefix(f, root+string(filepath.Separator))))
	}
	out["k8s/istio/*.yaml"] = strings.Join(all, "\n---\n")
	return out
}

var (
	dummyPorts        = harness.Ports{Redis: 1, SGGRPC: 2, SGHTTP: 3, SGAdmin: 4, Login: 5, Upstream: 6, EnvoyEdge: 7, EnvoyHop: 8, EnvoyAdmn: 9}
	loadtestDummyVars = map[string]string{"ADMIN_PORT": "1", "DIRECT_PORT": "2", "NOOP_PORT": "3", "SG_PORT": "4",
		"UPSTREAM_PORT": "5", "NOOP_GRPC_PORT": "6", "SG_GRPC_PORT": "7", "SGNM_PORT": "8", "SGNM_GRPC_PORT": "9"}
)

const extAuthzType = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"

// extAuthzConfigs finds every ExtAuthz typed_config in a (multi-document)
// YAML text, wherever it is nested: bootstrap, EnvoyFilter patch value.
func extAuthzConfigs(t *testing.T, text string) []map[string]any {
	t.Helper()
	var found []map[string]any
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["@type"] == extAuthzType {
				found = append(found, x)
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	dec := yaml.NewDecoder(strings.NewReader(text))
	for {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		walk(doc)
	}
	return found
}

// allowedBy reports whether header name passes allowed_headers (a
// ListStringMatcher) as Envoy evaluates it, and the exact names it lists.
func allowedBy(t *testing.T, cfg map[string]any, name string) (bool, []string) {
	t.Helper()
	ah, _ := cfg["allowed_headers"].(map[string]any)
	pats, _ := ah["patterns"].([]any)
	if len(pats) == 0 {
		t.Fatalf("ext_authz without allowed_headers: every client header travels to sessiongate")
	}
	ok := false
	var exact []string
	for _, p := range pats {
		m, _ := p.(map[string]any)
		fold := m["ignore_case"] == true
		v := name
		norm := func(s string) string {
			if fold {
				return strings.ToLower(s)
			}
			return s
		}
		switch {
		case m["exact"] != nil:
			e, _ := m["exact"].(string)
			exact = append(exact, strings.ToLower(e))
			ok = ok || norm(e) == norm(v)
		case m["prefix"] != nil:
			e, _ := m["prefix"].(string)
			ok = ok || strings.HasPrefix(norm(v), norm(e))
		case m["suffix"] != nil:
			e, _ := m["suffix"].(string)
			ok = ok || strings.HasSuffix(norm(v), norm(e))
		case m["contains"] != nil:
			e, _ := m["contains"].(string)
			ok = ok || strings.Contains(norm(v), norm(e))
		case m["safe_regex"] != nil:
			re, _ := m["safe_regex"].(map[string]any)["regex"].(string)
			ok = ok || regexp.MustCompile("^(?:"+re+")$").MatchString(v)
		default:
			t.Fatalf("allowed_headers pattern %v: unknown matcher", m)
		}
	}
	return ok, exact
}

// TestAllowedHeadersCoverCheck: every shipped ext_authz configuration lets
// through each header Check reads, and lists no header it does not read.
func TestAllowedHeadersCoverCheck(t *testing.T) {
	names := checkReadHeaders(t)
	t.Logf("headers read by Check: %v", names)
	for file, text := range shippedAuthzConfigs(t) {
		t.Run(file, func(t *testing.T) {
			cfgs := extAuthzConfigs(t, text)
			if len(cfgs) == 0 {
				t.Fatalf("no ext_authz filter found")
			}
			for i, cfg := range cfgs {
				var listed []string
				for _, n := range names {
					ok, exact := allowedBy(t, cfg, n)
					listed = exact
					if !ok {
						t.Errorf("ext_authz #%d: header %q is read by Check but not in allowed_headers", i, n)
					}
				}
				for _, e := range listed {
					if !slices.Contains(names, e) {
						t.Errorf("ext_authz #%d: allowed_headers lists %q, which Check never reads", i, e)
					}
				}
			}
		})
	}
}

// funcName is the called function's name, bare or package-qualified.
func funcName(fun ast.Expr) string {
	switch f := fun.(type) {
	case *ast.Ident:
		return f.Name
	case *ast.SelectorExpr:
		return f.Sel.Name
	}
	return ""
}
