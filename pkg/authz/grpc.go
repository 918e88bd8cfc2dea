package authz

import (
	"google.golang.org/grpc"
)

// ServerOptions are the gRPC server options sessiongate serves Check with.
// They live here, next to the handler, so that the server binary, the
// benchmarks and the load test's no-op reference server all run the very
// same transport settings (docs/BENCHMARKS.md has the measurements).
//
// None, on purpose: grpc-go's defaults measured best. NumStreamWorkers(256)
// was meant to spare each stream a new goroutine and its stack growth
// (runtime.copystack was 5-8% of the CPU profile under load), but
// interleaved runs of BenchmarkCheckGRPC (64 callers, 2 s, 3 rounds each,
// cpu-ns/op = this process's CPU per Check) measured no gain: no-op server
// 74 316 / 95 206 / 76 649 with the defaults against 89 436 / 105 134 /
// 99 143 with the workers; over Redis 159 384 / 168 059 / 159 096 against
// 157 066 / 167 968 / 169 713. SharedWriteBuffer and 8 KiB read/write
// buffers were within the noise too (91 121-91 984 and 93 231-94 488 ns/op
// wall for the no-op server against 84 836-99 581 with the defaults). With
// one small message per stream, the buffers and windows the options tune
// are not where the time goes; the Redis round trip is (see
// session.NewRedisStore).
func ServerOptions() []grpc.ServerOption {
	return nil
}
