package verify

import (
	"context"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// unauthenticatedBody deliberately carries no reason: details would help an
// attacker probe the verifier, and the reason is logged at Debug instead.
const unauthenticatedBody = `{"error":"unauthenticated"}` + "\n"

// Middleware rejects requests without a valid token with 401 and a JSON
// body, without calling next. On success the claims are available to next
// through FromContext.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := v.verifyValues(r.Context(), r.Header.Values(v.header))
		if err != nil {
			v.log.DebugContext(r.Context(), "rejected request", "method", r.Method, "path", r.URL.Path, "error", err)
			h := w.Header()
			h.Set("Content-Type", "application/json")
			h.Set("Cache-Control", "no-store")
			h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(unauthenticatedBody))
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), c)))
	})
}

// UnaryServerInterceptor authenticates unary gRPC calls from the token in
// the incoming metadata, failing with codes.Unauthenticated.
func (v *Verifier) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := v.authGRPC(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamServerInterceptor authenticates streaming gRPC calls once, when the
// stream opens; the claims are exposed through the stream's Context.
func (v *Verifier) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := v.authGRPC(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return handler(srv, &authedStream{ServerStream: ss, ctx: ctx})
	}
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }

func (v *Verifier) authGRPC(ctx context.Context, method string) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	c, err := v.verifyValues(ctx, md.Get(v.header)) // Get lowercases the key
	if err != nil {
		v.log.DebugContext(ctx, "rejected call", "method", method, "error", err)
		return nil, status.Error(codes.Unauthenticated, "unauthenticated")
	}
	return NewContext(ctx, c), nil
}

// verifyValues requires exactly one header value: two values mean a client
// smuggled its own token past a proxy that appended rather than replaced,
// and picking either would be a guess.
func (v *Verifier) verifyValues(ctx context.Context, values []string) (*Claims, error) {
	switch len(values) {
	case 0:
		return nil, ErrMissingToken
	case 1:
	default:
		return nil, ErrInvalidToken
	}
	tok := strings.TrimSpace(values[0])
	if v.bearer {
		const prefix = "bearer "
		if len(tok) < len(prefix) || !strings.EqualFold(tok[:len(prefix)], prefix) {
			return nil, ErrMissingToken
		}
		tok = strings.TrimSpace(tok[len(prefix):])
	}
	return v.VerifyContext(ctx, tok)
}
