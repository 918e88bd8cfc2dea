package tracing

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/protobuf/types/known/structpb"
)

type fixed struct {
	authv3.UnimplementedAuthorizationServer
	resp *authv3.CheckResponse
}

func (f fixed) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return f.resp, nil
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
	srv := Authorization(fixed{resp: ok}, tp, log)
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
	for _, want := range []string{`"request_id":"req-1"`, `"status":200`, `"subject":"alice"`, `"path":"/api"`, `"latency"`} {
		if !strings.Contains(line, want) {
			t.Errorf("log %s lacks %s", line, want)
		}
	}
	if strings.Contains(line, "secret") {
		t.Error("query string logged")
	}

	denied := &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable}}}}
	Authorization(fixed{resp: denied}, tp, nil).Check(context.Background(), req)
	if got := rec.Ended()[1].Status().Code.String(); got != "Error" {
		t.Errorf("503 span status %s", got)
	}
}
