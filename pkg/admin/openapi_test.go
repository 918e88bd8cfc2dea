package admin

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/sessiongate/sessiongate/api"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// contract is api/openapi.yaml, loaded and validated once.
var contract = sync.OnceValues(func() (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI)
	if err != nil {
		return nil, err
	}
	return doc, doc.Validate(context.Background())
})

func contractRouter(t testing.TB) (*openapi3.T, routers.Router) {
	t.Helper()
	doc, err := contract()
	if err != nil {
		t.Fatalf("api/openapi.yaml: %v", err)
	}
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return doc, r
}

// contractHandler validates every request and response that passes through
// it against api/openapi.yaml. A request the document refuses must be
// refused by the handler too (4xx); every response, errors included, must
// match the document's status codes, headers and schemas. The handler tests'
// fixtures (newServer, serveList) put it in front of the real handler.
func contractHandler(t testing.TB, next http.Handler) http.Handler {
	t.Helper()
	_, router := contractRouter(t)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		vr := r.Clone(r.Context())
		vr.Body = io.NopCloser(bytes.NewReader(body))
		// The handler reads a body without a Content-Type as JSON (the
		// document says so in its description; OpenAPI cannot express it).
		if len(body) > 0 && vr.Header.Get("Content-Type") == "" {
			vr.Header.Set("Content-Type", "application/json")
		}
		if vr.URL.Host == "" {
			vr.URL.Scheme, vr.URL.Host = "http", "127.0.0.1:9003"
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		res := rec.Result()
		resBody := rec.Body.Bytes()

		route, params, err := router.FindRoute(vr)
		if err != nil {
			// Not in the document: the handler must not serve it either.
			if res.StatusCode != http.StatusNotFound && res.StatusCode != http.StatusMethodNotAllowed &&
				res.StatusCode != http.StatusUnauthorized && res.StatusCode != http.StatusTooManyRequests {
				t.Errorf("contract: %s %s is not in api/openapi.yaml but answered %d", r.Method, r.URL.Path, res.StatusCode)
			}
		} else {
			in := &openapi3filter.RequestValidationInput{Request: vr, PathParams: params, Route: route,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
			if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil && res.StatusCode < 400 {
				t.Errorf("contract: %s %s: the document refuses the request, the handler answered %d: %v", r.Method, r.URL, res.StatusCode, err)
			}
			out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: res.StatusCode,
				Header: res.Header, Body: io.NopCloser(bytes.NewReader(resBody)),
				Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
			if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
				t.Errorf("contract: %s %s answered %d %s, which api/openapi.yaml does not allow: %v", r.Method, r.URL, res.StatusCode, resBody, err)
			}
		}
		for k, v := range res.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(res.StatusCode)
		_, _ = w.Write(resBody)
	})
}

// TestOpenAPIRoutes: the handler's routes and the document's operations are
// the same set.
func TestOpenAPIRoutes(t *testing.T) {
	doc, _ := contractRouter(t)
	var inDoc []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inDoc = append(inDoc, method+" "+path)
		}
	}
	var inHandler []string
	// With a service store, so the service endpoints are served too.
	for pattern := range NewHandler(Options{Services: session.NewMemoryStore(nil)}).routes() {
		inHandler = append(inHandler, pattern)
	}
	slices.Sort(inDoc)
	slices.Sort(inHandler)
	for _, p := range inHandler {
		if !slices.Contains(inDoc, p) {
			t.Errorf("route %q is served but not in api/openapi.yaml", p)
		}
	}
	for _, p := range inDoc {
		if !slices.Contains(inHandler, p) {
			t.Errorf("api/openapi.yaml describes %q, which the handler does not serve", p)
		}
	}
	if len(inDoc) < 6 {
		t.Fatalf("only %d operations in the document", len(inDoc))
	}
}

// TestOpenAPIServed: GET /v1/openapi.yaml answers the embedded document, and
// only with a credential, like every other endpoint.
func TestOpenAPIServed(t *testing.T) {
	srv, _ := newServer(t, session.NewMemoryStore(nil))
	get := func(tok string) (*http.Response, []byte) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/openapi.yaml", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, body := get(testToken)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, api.OpenAPI) || resp.Header.Get("Content-Type") != "application/yaml" {
		t.Fatalf("GET /v1/openapi.yaml = %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	if !strings.HasPrefix(string(body), "openapi: 3.1") {
		t.Errorf("not an OpenAPI 3.1 document")
	}
	if resp, _ := get(""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401", resp.StatusCode)
	}
}
