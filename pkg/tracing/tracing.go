// Package tracing adds OpenTelemetry spans and decision logs around Check
// without touching the Check path itself: when tracing and debug logging are
// both off, nothing is wrapped and Check costs exactly what it did.
//
// The parent span comes from the W3C traceparent/tracestate headers of the
// request Envoy is authorizing (attributes.request.http.headers), so a
// sessiongate span appears inside the client request's trace. Export is
// configured by the standard OTEL_* environment variables and is off unless
// OTEL_TRACES_EXPORTER=otlp or an OTLP endpoint variable is set.
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessiongate/sessiongate/pkg/authz"
)

// Enabled reports whether the environment asks for trace export.
func Enabled(getenv func(string) string) bool {
	if getenv("OTEL_SDK_DISABLED") == "true" {
		return false
	}
	switch getenv("OTEL_TRACES_EXPORTER") {
	case "otlp":
		return true
	case "":
		return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	}
	return false // "none", or an exporter sessiongate does not ship
}

// NewProvider builds a tracer provider exporting over OTLP/gRPC, configured
// by OTEL_EXPORTER_OTLP_* variables (endpoint, headers, TLS, timeout) and
// OTEL_TRACES_SAMPLER / OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, which
// the SDK reads itself.
func NewProvider(ctx context.Context, version string) (*sdktrace.TracerProvider, error) {
	exp, err := otlptracegrpc.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		semconv.ServiceName(serviceName()), semconv.ServiceVersion(version)))
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

func serviceName() string {
	if s := os.Getenv("OTEL_SERVICE_NAME"); s != "" {
		return s
	}
	return "sessiongate"
}

// Decider is a Check server that also says why it decided, as
// authz.Server does.
type Decider interface {
	authv3.AuthorizationServer
	Decide(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, authz.Verdict)
}

// Authorization wraps a Check server with a span per Check (when tp is not
// nil) and a debug-level decision log line (when log has debug enabled).
// Both record the verdict the server reached, not a guess from its answer.
func Authorization(inner Decider, tp trace.TracerProvider, log *slog.Logger) authv3.AuthorizationServer {
	w := &wrapped{Decider: inner, log: log}
	if tp != nil {
		w.tracer = tp.Tracer("github.com/sessiongate/sessiongate/pkg/authz")
	}
	return w
}

type wrapped struct {
	Decider
	tracer trace.Tracer
	log    *slog.Logger
}

var propagator = propagation.TraceContext{}

// headerCarrier reads propagation headers the way Check reads headers, so
// traceparent is found in Envoy's header_map (encode_raw_headers) too.
type headerCarrier struct {
	r *authv3.AttributeContext_HttpRequest
}

func (c headerCarrier) Get(k string) string { return authz.RequestHeader(c.r, strings.ToLower(k)) }
func (c headerCarrier) Set(string, string)  {}
func (c headerCarrier) Keys() []string      { return propagator.Fields() }

func (w *wrapped) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	httpReq := req.GetAttributes().GetRequest().GetHttp()
	var span trace.Span
	if w.tracer != nil {
		ctx = propagator.Extract(ctx, headerCarrier{httpReq})
		ctx, span = w.tracer.Start(ctx, "sessiongate.Check", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(
				attribute.String("http.request.method", httpReq.GetMethod()),
				attribute.String("url.path", pathOnly(httpReq.GetPath())),
			))
	}
	start := time.Now()
	resp, v := w.Decide(ctx, req)
	status := decisionStatus(resp)
	md := resp.GetDynamicMetadata().GetFields()
	if span != nil {
		span.SetAttributes(
			attribute.String("sessiongate.decision", v.Decision.String()),
			attribute.String("sessiongate.reason", v.Reason),
			attribute.Int("sessiongate.rule", v.Rule),
			attribute.Int("sessiongate.decision.status", status),
		)
		if ref := md["session_ref"].GetStringValue(); ref != "" {
			span.SetAttributes(attribute.String("sessiongate.session_ref", ref))
		}
		if v.Decision == authz.DecisionUnavailable {
			span.SetStatus(codes.Error, v.Reason)
		}
		span.End()
	}
	if w.log != nil && w.log.Enabled(ctx, slog.LevelDebug) {
		w.log.LogAttrs(ctx, slog.LevelDebug, "check",
			slog.String("request_id", authz.RequestHeader(httpReq, "x-request-id")),
			slog.String("method", httpReq.GetMethod()),
			slog.String("path", pathOnly(httpReq.GetPath())),
			slog.String("decision", v.Decision.String()),
			slog.String("reason", v.Reason),
			slog.Int("rule", v.Rule),
			slog.Int("status", status),
			slog.String("subject", md["subject"].GetStringValue()),
			slog.String("session_ref", md["session_ref"].GetStringValue()),
			slog.Duration("latency", time.Since(start)),
		)
	}
	return resp, nil
}

// decisionStatus is the HTTP status the decision means for the client: 200
// for OK, else the denial's status.
func decisionStatus(resp *authv3.CheckResponse) int {
	if d := resp.GetDeniedResponse(); d != nil {
		return int(d.GetStatus().GetCode())
	}
	if resp.GetOkResponse() != nil {
		return 200
	}
	return 0
}

// pathOnly drops the query: it may carry anything, including secrets.
func pathOnly(p string) string {
	for i := 0; i < len(p); i++ {
		if p[i] == '?' || p[i] == '#' {
			return p[:i]
		}
	}
	return p
}
