package tracing

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sessiongate/sessiongate/pkg/authz"
)

type fixed struct {
	authv3.UnimplementedAuthorizationServer
	resp *authv3.CheckResponse
	v    authz.Verdict
}

func (f fixed) Decide(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, authz.Verdict) {
	return f.resp, f.v
}

func TestEnabled(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_TRACES_EXPORTER": "none"}, false},
		{map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, false},
	}
	for _, tt := range tests {
		if got := Enabled(func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("%v: %v, want %v", tt.env, got, tt.want)
		}
	}
}

func TestSpanContinuesTheRequestTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ok := &authv3.CheckResponse{
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			"subject": structpb.NewStringValue("alice"), "session_ref": structpb.NewStringValue("0123456789abcdef0123456789abcdef"),
		}},
	}
	srv := Authorization(fixed{resp: ok, v: authz.Verdict{Decision: authz.DecisionOK, Reason: "session valid", Rule: 2}}, tp, log)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/api?token=secret", Headers: map[string]string{
			"traceparent":  "00-" + traceID + "-00f067aa0ba902b7-01",
			"x-request-id": "req-1",
		}},
	}}}
	if _, err := srv.Check(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	s := spans[0]
	if s.SpanContext().TraceID().String() != traceID || s.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Fatalf("span not in the request's trace: %v parent %v", s.SpanContext().TraceID(), s.Parent().SpanID())
	}
	line := logs.String()
	for _, want := range []string{`"request_id":"req-1"`, `"status":200`, `"subject":"alice"`, `"path":"/api"`, `"latency"`,
		`"decision":"ok"`, `"reason":"session valid"`, `"rule":2`} {
		if !strings.Contains(line, want) {
			t.Errorf("log %s lacks %s", line, want)
		}
	}
	if strings.Contains(line, "secret") {
		t.Error("query string logged")
	}

	denied := &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable}}}}
	Authorization(fixed{resp: denied, v: authz.Verdict{Decision: authz.DecisionUnavailable}}, tp, nil).Check(context.Background(), req)
	if got := rec.Ended()[1].Status().Code.String(); got != "Error" {
		t.Errorf("503 span status %s", got)
	}
	// A cancelled Check answers 503 too, but nothing failed.
	Authorization(fixed{resp: denied, v: authz.Verdict{Decision: authz.DecisionCanceled}}, tp, nil).Check(context.Background(), req)
	if got := rec.Ended()[2].Status().Code.String(); got == "Error" {
		t.Errorf("cancelled Check span status %s", got)
	}
}

// With encode_raw_headers Envoy sends header_map instead of headers; the
// trace parent and request id are read from it like Check reads headers.
func TestRawHeaderMapIsRead(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/api", HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: "traceparent", RawValue: []byte("00-" + traceID + "-00f067aa0ba902b7-01")},
			{Key: "x-request-id", RawValue: []byte("req-raw")},
		}}},
	}}}
	forbidden := &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}}}}
	srv := Authorization(fixed{resp: forbidden, v: authz.Verdict{Decision: authz.DecisionForbidden, Reason: "missing role", Rule: 0}}, tp, log)
	if _, err := srv.Check(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if got := rec.Ended()[0].SpanContext().TraceID().String(); got != traceID {
		t.Errorf("trace id %s, want %s from header_map", got, traceID)
	}
	for _, want := range []string{`"request_id":"req-raw"`, `"decision":"forbidden"`, `"reason":"missing role"`, `"status":403`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %s lacks %s", logs.String(), want)
		}
	}
}
