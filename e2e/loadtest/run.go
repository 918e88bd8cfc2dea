package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sessiongate/sessiongate/e2e/harness"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// runAll seeds the active sessions and runs the parts in order, filling rep.
func runAll(ctx context.Context, st *stack, o options, rep *report) error {
	if err := verifyLayout(ctx, st.rdb); err != nil {
		return err
	}
	if err := st.rdb.FlushAll(ctx).Err(); err != nil {
		return err
	}
	mem0, err := usedMemory(ctx, st.rdb)
	if err != nil {
		return err
	}
	ids := make([]string, o.active)
	refs := make([]string, o.active)
	for i := range ids {
		if ids[i], err = session.NewID(); err != nil {
			return err
		}
		refs[i] = session.RefOf(ids[i])
	}
	t0 := time.Now()
	if err := seed(ctx, st.rdb, "user-", 0, o.active, refs); err != nil {
		return err
	}
	memActive, err := usedMemory(ctx, st.rdb)
	if err != nil {
		return err
	}
	logf("seeded %d active sessions in %v", o.active, time.Since(t0).Round(time.Millisecond))
	rep.memEmpty, rep.memActive = mem0, memActive
	reqs := checkRequests(ids)
	cookies := filepath.Join(st.dir, "cookies.txt")
	if err := os.WriteFile(cookies, []byte(strings.Join(ids, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	sgWatch := map[string]int{"loadgen": 0, "sessiongate": st.sessiongate.PID(), "redis": st.redis.PID()}
	noopWatch := map[string]int{"loadgen": 0, "noop": st.noop.PID()}

	grpcRun := func(target string, conc int, watch map[string]int, d time.Duration) (Stats, error) {
		return GRPCLoad{
			Target: target, Conns: 4, Concurrency: conc,
			Warmup: o.warmup, Duration: d, MaxRequests: o.maxRequests,
			Requests: reqs, OK: isAllow, Watch: watch,
		}.Run(ctx)
	}

	if o.only == "" || o.only == "grpc" {
		for _, c := range o.conc {
			// Alternate the two targets in rounds, so that a burst of
			// noise from the rest of the machine lands on both.
			var a, b Stats
			for round := range o.rounds {
				logf("gRPC c=%d round %d: no-op", c, round+1)
				s, err := grpcRun(st.noopGRPC, c, noopWatch, o.duration/time.Duration(o.rounds))
				if err != nil {
					return err
				}
				a = a.merge(s)
				logf("gRPC c=%d round %d: sessiongate", c, round+1)
				if s, err = grpcRun(st.sgGRPC, c, sgWatch, o.duration/time.Duration(o.rounds)); err != nil {
					return err
				}
				b = b.merge(s)
			}
			rep.grpc = append(rep.grpc, grpcRow{conc: c, noop: a, sg: b})
		}
	}

	if o.only == "" || o.only == "cache" {
		if err := runCache(ctx, st, o, ids, reqs, rep); err != nil {
			return err
		}
	}

	if o.only == "" || o.only == "envoy" {
		envoyPID := st.ev.PID()
		names := []string{"ext_authz disabled", "ext_authz -> no-op", "ext_authz -> sessiongate"}
		// wrk's whole-second durations: each round at least 1 s.
		d := max(o.duration/time.Duration(o.rounds), time.Second)
		for _, c := range o.envoyConc {
			row := envoyRow{conc: c}
			// The three listeners alternate in rounds, as the gRPC targets
			// do; each round's latency distribution is pooled (wrk.go).
			for round := range o.rounds {
				for i, u := range []string{st.directURL, st.noopURL, st.sgURL} {
					watch := map[string]int{"envoy": envoyPID, "upstream": st.upstream.PID()}
					switch i {
					case 1:
						watch["noop"] = st.noop.PID()
					case 2:
						watch["sessiongate"], watch["redis"] = st.sessiongate.PID(), st.redis.PID()
					}
					logf("Envoy c=%d round %d: %s", c, round+1, names[i])
					s, err := HTTPLoad{URL: u, Concurrency: c, Threads: o.wrkThreads, Duration: d,
						Cookies: cookies, Dir: st.dir, Watch: watch}.Run(ctx)
					if err != nil {
						return err
					}
					row.runs[i] = row.runs[i].merge(s)
				}
			}
			rep.envoy = append(rep.envoy, row)
		}
		if o.envoyRate > 0 {
			// Moderate load: 16 connections at a fixed total rate well
			// below what Envoy with the no-op server sustains here, so
			// that the latency added is the Check's, not a queue's.
			const conc = 16
			row := envoyRow{conc: conc, rate: o.envoyRate}
			for round := range o.rounds {
				for i, u := range []string{st.directURL, st.noopURL, st.sgURL} {
					watch := map[string]int{"envoy": envoyPID, "upstream": st.upstream.PID()}
					switch i {
					case 1:
						watch["noop"] = st.noop.PID()
					case 2:
						watch["sessiongate"], watch["redis"] = st.sessiongate.PID(), st.redis.PID()
					}
					logf("Envoy %d req/s over %d connections, round %d: %s", o.envoyRate, conc, round+1, names[i])
					s, err := RateLoad{URL: u, Concurrency: conc, RatePerConn: max(o.envoyRate/conc, 1), Duration: d,
						SessionID: ids[0], Dir: st.dir, Watch: watch}.Run(ctx)
					if err != nil {
						return err
					}
					row.runs[i] = row.runs[i].merge(s)
				}
			}
			rep.envoyRate = &row
		}
	}

	// Not part of the whole run: some 13 targets in rounds, two loads each,
	// would double its length. -only answer.
	if o.only == "answer" {
		if err := runAnswer(ctx, st, o, cookies, ids, reqs, rep); err != nil {
			return err
		}
	}

	if o.only == "" || o.only == "scale" {
		const conc = 16
		n, err := st.rdb.DBSize(ctx).Result()
		if err != nil {
			return err
		}
		small := scaleRow{sessions: o.active, keys: n, mem: memActive, perSession: float64(memActive-mem0) / float64(o.active)}
		// The large point lives in database 1 of the same Redis: the same
		// active sessions (same refs, so the very same requests) plus cold
		// ones up to o.scale, served by a second, identical sessiongate.
		// Both points are then measured alternately, in rounds, like the
		// gRPC table, so that the machine's noise lands on both.
		big := scaleRow{sessions: max(o.scale, o.active)}
		memBefore, err := usedMemory(ctx, st.rdb)
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := seed(ctx, st.rdbBig, "user-", 0, o.active, refs); err != nil {
			return err
		}
		if err := seed(ctx, st.rdbBig, "cold-", 0, big.sessions-o.active, nil); err != nil {
			return err
		}
		took := time.Since(t0)
		rep.seedRate = float64(big.sessions) / took.Seconds()
		logf("seeded %d sessions into database 1 in %v (%.0f sessions/s)", big.sessions, took.Round(time.Millisecond), rep.seedRate)
		memAfter, err := usedMemory(ctx, st.rdb)
		if err != nil {
			return err
		}
		big.mem = memAfter
		big.perSession = float64(memAfter-memBefore) / float64(big.sessions)
		if big.keys, err = st.rdbBig.DBSize(ctx).Result(); err != nil {
			return err
		}
		bigWatch := map[string]int{"loadgen": 0, "sessiongate": st.sessiongateBig.PID(), "redis": st.redis.PID()}
		for round := range o.rounds {
			d := o.duration / time.Duration(o.rounds)
			logf("scale round %d: %d sessions, c=%d", round+1, small.sessions, conc)
			s, err := grpcRun(st.sgGRPC, conc, sgWatch, d)
			if err != nil {
				return err
			}
			small.stats = small.stats.merge(s)
			logf("scale round %d: %d sessions, c=%d", round+1, big.sessions, conc)
			if s, err = grpcRun(st.sgBigGRPC, conc, bigWatch, d); err != nil {
				return err
			}
			big.stats = big.stats.merge(s)
		}
		rep.scale = append(rep.scale, small, big)
	}
	return nil
}

func isAllow(r *authv3.CheckResponse) bool {
	return r.GetStatus().GetCode() == int32(codes.OK) && r.GetOkResponse() != nil
}

// checkRequests builds one CheckRequest per session, shaped like the ones
// Envoy sends for a browser's API call: addresses, the request's headers
// (the session cookie among others), path with a query, HTTP/1.1.
func checkRequests(ids []string) []*authv3.CheckRequest {
	now := timestamppb.Now()
	out := make([]*authv3.CheckRequest, len(ids))
	for i, id := range ids {
		path := "/api/items?page=2"
		out[i] = &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source:      &authv3.AttributeContext_Peer{Address: sockAddr("127.0.0.1", 40000+uint32(i%20000))},
			Destination: &authv3.AttributeContext_Peer{Address: sockAddr("127.0.0.1", 8080)},
			Request: &authv3.AttributeContext_Request{
				Time: now,
				Http: &authv3.AttributeContext_HttpRequest{
					Id: fmt.Sprintf("%016x", i), Method: "GET", Path: path, Host: "app.example.com",
					Scheme: "http", Protocol: "HTTP/1.1",
					Headers: map[string]string{
						":authority":        "app.example.com",
						":method":           "GET",
						":path":             path,
						":scheme":           "http",
						"accept":            "application/json",
						"user-agent":        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
						"cookie":            "theme=dark; " + harness.CookieName + "=" + id,
						"x-forwarded-proto": "http",
						"x-request-id":      fmt.Sprintf("6c1a%012x-0000-4000-8000-%012x", i, i),
					},
				},
			},
		}}
	}
	return out
}

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
