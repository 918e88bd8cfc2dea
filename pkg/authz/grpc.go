package authz

import (
	"google.golang.org/grpc"
)

// ServerOptions are the gRPC server options sessiongate serves Check with.
// They live here, next to the handler, so that the server binary, the
// benchmarks and the load test's no-op reference server all run the very
// same transport settings (docs/BENCHMARKS.md has the measurements).
func ServerOptions() []grpc.ServerOption {
	return nil
}
