package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// The answer part: which part of an ext_authz allow answer costs Envoy
// CPU. The no-op server answers each variant below (chosen by the
// request's query, "v=<name>"), every variant one change away from the
// reference (one token-sized header), and Envoy's CPU per request is
// measured for each, the variants alternating in rounds; the real
// sessiongate, with and without dynamic metadata, is measured in the same
// rounds. Envoy's own counters (admin /stats) give the bytes per request
// on each side.

// answerVariant is one shape of the allow answer.
type answerVariant struct {
	name, shape string
	resp        func() *authv3.CheckResponse
	sleep       time.Duration // the no-op server waits this long before answering
}

func hdr(k, v string, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: action}
}

const overwrite = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD

// noopMetadata is sessiongate's dynamic metadata: same keys, same sizes.
func noopMetadata() *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		"subject":     structpb.NewStringValue("user-000123"),
		"session_ref": structpb.NewStringValue(strings.Repeat("r", 43)),
	}}
}

// answerVariants are the shapes the no-op server can answer. The first is
// the reference of the whole load test (newNoopServer's answer).
func answerVariants() []answerVariant {
	tok := strings.Repeat("n", noopTokenLen)
	ok := func(hs []*corev3.HeaderValueOption, remove []string, md bool) func() *authv3.CheckResponse {
		return func() *authv3.CheckResponse {
			r := okResponse(hs, remove)
			if md {
				r.DynamicMetadata = noopMetadata()
			}
			return r
		}
	}
	token := hdr("x-internal-jwt", tok, overwrite)
	cookie := hdr("cookie", "theme=dark", overwrite)
	return []answerVariant{
		{name: "token", shape: fmt.Sprintf("one %d-byte header (the reference)", noopTokenLen), resp: ok([]*corev3.HeaderValueOption{token}, nil, false)},
		{name: "small", shape: "one 64-byte header", resp: ok([]*corev3.HeaderValueOption{hdr("x-internal-jwt", strings.Repeat("n", 64), overwrite)}, nil, false)},
		{name: "big", shape: fmt.Sprintf("one %d-byte header", 3*noopTokenLen), resp: ok([]*corev3.HeaderValueOption{hdr("x-internal-jwt", strings.Repeat("n", 3*noopTokenLen), overwrite)}, nil, false)},
		{name: "add", shape: "reference, append action ADD_IF_ABSENT", resp: ok([]*corev3.HeaderValueOption{hdr("x-internal-jwt", tok, corev3.HeaderValueOption_ADD_IF_ABSENT)}, nil, false)},
		{name: "two", shape: "reference + a second 10-byte header (not cookie)", resp: ok([]*corev3.HeaderValueOption{token, hdr("x-extra", "theme=dark", overwrite)}, nil, false)},
		{name: "meta", shape: "reference + dynamic metadata (subject, session_ref)", resp: ok([]*corev3.HeaderValueOption{token}, nil, true)},
		{name: "remove", shape: "reference + headers_to_remove: cookie", resp: ok([]*corev3.HeaderValueOption{token}, []string{"cookie"}, false)},
		{name: "cookie", shape: "reference + cookie rewritten (theme=dark)", resp: ok([]*corev3.HeaderValueOption{token, cookie}, nil, false)},
		{name: "full", shape: "sessiongate's shape: reference + cookie rewritten + dynamic metadata", resp: ok([]*corev3.HeaderValueOption{token, cookie}, nil, true)},
		{name: "full-nomd", shape: "sessiongate's shape without dynamic metadata", resp: ok([]*corev3.HeaderValueOption{token, cookie}, nil, false)},
		{name: "full-slow", shape: "sessiongate's shape, answered after 150 µs (about sessiongate's extra latency)", resp: ok([]*corev3.HeaderValueOption{token, cookie}, nil, true), sleep: 150 * time.Microsecond},
	}
}

// answerRow is one variant's figures over all rounds.
type answerRow struct {
	name, shape string
	stats       Stats
	counters    map[string]float64 // Envoy counter deltas over the rounds (warm-ups included)
}

// envoyPerReq is Envoy's CPU time per request, in µs.
func (r answerRow) envoyPerReq() float64 {
	if r.stats.Requests == 0 {
		return 0
	}
	return r.stats.CPU["envoy"] * r.stats.Elapsed.Seconds() / float64(r.stats.Requests) * 1e6
}

// per divides a counter delta by the Checks Envoy made in the same span.
func (r answerRow) per(counter string) float64 {
	n := r.counters["checks"]
	if n == 0 {
		return 0
	}
	return r.counters[counter] / n
}

type answerReport struct {
	conc, rate  int
	tokenLen    int // length of the token sessiongate answers with
	sgAnswerLen int // bytes of sessiongate's CheckResponse, marshalled
	closed      []answerRow
	fixed       []answerRow
	load        [2]string // uptime before and after
}

// runAnswer measures every variant and the two sessiongates through Envoy:
// wrk's closed loop at 16 connections, then h2load at the moderate rate.
func runAnswer(ctx context.Context, st *stack, o options, cookies string, ids []string, reqs []*authv3.CheckRequest, rep *report) error {
	const conc = 16
	ar := &answerReport{conc: conc, rate: o.envoyRate}
	ar.load[0] = uptime()
	rep.answer = ar
	if err := ar.sessiongateAnswer(ctx, st.sgGRPC, reqs[0]); err != nil {
		return err
	}
	type target struct{ key, name, shape, url, cluster, listener string }
	var all []target
	for _, v := range answerVariants() {
		all = append(all, target{v.name, "no-op: " + v.name, v.shape, st.noopURL + "&v=" + v.name, "noop_grpc", "noop"})
	}
	all = append(all,
		target{"sg", "sessiongate", "the real answer (envoy.dynamic_metadata: true, the default)", st.sgURL, "sessiongate_grpc", "sg"},
		target{"sg-nomd", "sessiongate, dynamic metadata off", "the real answer with envoy.dynamic_metadata: false", st.sgNoMDURL, "sessiongate_nomd_grpc", "sgnm"})
	// The reference first, always: the table is relative to it.
	targets := all[:1]
	for _, t := range all[1:] {
		if o.answerVariants == "" || slices.Contains(strings.Split(o.answerVariants, ","), t.key) {
			targets = append(targets, t)
		}
	}
	d := max(o.duration/time.Duration(o.rounds), time.Second)
	run := func(rows *[]answerRow, load func(url string, watch map[string]int) (Stats, error)) error {
		*rows = make([]answerRow, len(targets))
		for round := range o.rounds {
			for i, t := range targets {
				watch := map[string]int{"envoy": st.ev.PID()}
				c0, err := envoyCounters(ctx, st.envoyAdmin, t.listener, t.cluster)
				if err != nil {
					return err
				}
				c0["wakeups"] = float64(contextSwitches(st.ev.PID()))
				c0["user_us"], c0["sys_us"] = userSys(st.ev.PID())
				logf("answer round %d: %s", round+1, t.name)
				s, err := load(t.url, watch)
				if err != nil {
					// A shared machine may push a few Checks past Envoy's
					// 0.25 s ext_authz timeout: counted in the errors
					// column and in Envoy's counters, not the end of the
					// part, unless nothing was answered at all.
					if s.Requests == 0 {
						return err
					}
					logf("answer round %d: %s: %v", round+1, t.name, err)
				}
				c1, err := envoyCounters(ctx, st.envoyAdmin, t.listener, t.cluster)
				if err != nil {
					return err
				}
				c1["wakeups"] = float64(contextSwitches(st.ev.PID()))
				c1["user_us"], c1["sys_us"] = userSys(st.ev.PID())
				r := &(*rows)[i]
				r.name, r.shape = t.name, t.shape
				r.stats = r.stats.merge(s)
				if r.counters == nil {
					r.counters = map[string]float64{}
				}
				for k, v := range c1 {
					r.counters[k] += v - c0[k]
				}
			}
		}
		return nil
	}
	if strings.Contains(o.answerLoads, "closed") {
		if err := run(&ar.closed, func(url string, watch map[string]int) (Stats, error) {
			return HTTPLoad{URL: url, Concurrency: conc, Threads: o.wrkThreads, Duration: d, Cookies: cookies, Dir: st.dir, Watch: watch}.Run(ctx)
		}); err != nil {
			return err
		}
	}
	if o.envoyRate > 0 && strings.Contains(o.answerLoads, "fixed") {
		if err := run(&ar.fixed, func(url string, watch map[string]int) (Stats, error) {
			return RateLoad{URL: url, Concurrency: conc, RatePerConn: max(o.envoyRate/conc, 1), Duration: d,
				SessionID: ids[0], Dir: st.dir, Watch: watch}.Run(ctx)
		}); err != nil {
			return err
		}
	}
	ar.load[1] = uptime()
	return nil
}

// sessiongateAnswer records the size of sessiongate's answer to one Check.
func (ar *answerReport) sessiongateAnswer(ctx context.Context, target string, req *authv3.CheckRequest) error {
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	resp, err := authv3.NewAuthorizationClient(cc).Check(ctx, req)
	if err != nil {
		return fmt.Errorf("answer part: a Check to sessiongate: %w", err)
	}
	if !isAllow(resp) {
		return fmt.Errorf("answer part: sessiongate refused the sample Check: %v", resp.GetStatus())
	}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == "x-internal-jwt" {
			ar.tokenLen = len(h.GetHeader().GetValue())
		}
	}
	ar.sgAnswerLen = proto.Size(resp)
	return nil
}

// envoyCounters reads the Envoy counters the answer table reports, under
// short names: checks (ext_authz OK answers on the listener), grpc_rx and
// grpc_tx (bytes from and to the ext_authz cluster), upstream_tx (bytes to
// the upstream: the request as the answer left it).
func envoyCounters(ctx context.Context, admin, listener, cluster string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/stats?filter="+
		"^(http\\."+listener+"\\.ext_authz\\.|cluster\\.("+cluster+"|upstream)\\.upstream_cx_(rx|tx)_bytes_total$)", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("envoy admin /stats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("envoy admin /stats: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 1<<20))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			continue // histograms
		}
		switch k {
		case "http." + listener + ".ext_authz.ok":
			out["checks"] = n
		case "cluster." + cluster + ".upstream_cx_rx_bytes_total":
			out["grpc_rx"] = n
		case "cluster." + cluster + ".upstream_cx_tx_bytes_total":
			out["grpc_tx"] = n
		case "cluster.upstream.upstream_cx_tx_bytes_total":
			out["upstream_tx"] = n
		default:
			if name, ok := strings.CutPrefix(k, "http."+listener+".ext_authz."); ok {
				out["ext_authz."+name] = n
			}
		}
	}
	return out, sc.Err()
}

// contextSwitches is the voluntary context switches of all of pid's
// threads so far: each is a thread going to sleep in epoll_wait with
// nothing left to do, so per request it says how well Envoy's event loops
// batch the work of several requests into one wake-up.
func contextSwitches(pid int) int64 {
	tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	var n int64
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + t.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				c, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += c
			}
		}
	}
	return n
}

// userSys is pid's user and system CPU time so far, in µs (10 ms steps).
func userSys(pid int) (user, sys float64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return ut * 1e6 / clockTick, st * 1e6 / clockTick
}

// uptime is /proc/loadavg's three load averages.
func uptime() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func (ar *answerReport) print(w io.Writer) {
	if ar == nil {
		return
	}
	fmt.Fprintf(w, "\n### Envoy's CPU per request by the shape of the ext_authz answer\n\n")
	fmt.Fprintf(w, "Load average %s at the start of this part, %s at its end. sessiongate's token: %d bytes; its whole CheckResponse for the sample request: %d bytes marshalled.\n",
		ar.load[0], ar.load[1], ar.tokenLen, ar.sgAnswerLen)
	for _, part := range []struct {
		title string
		rows  []answerRow
	}{
		{fmt.Sprintf("wrk, %d connections, closed loop", ar.conc), ar.closed},
		{fmt.Sprintf("h2load, %d req/s over %d connections, fixed rate", ar.rate, ar.conc), ar.fixed},
	} {
		if len(part.rows) == 0 {
			continue
		}
		ref := part.rows[0].envoyPerReq()
		fmt.Fprintf(w, "\n#### %s\n\n", part.title)
		fmt.Fprintf(w, "| ext_authz answer | shape | req/s | p50 | Envoy CPU µs per request | vs the reference | gRPC bytes in / out per Check | bytes to upstream per request | Envoy thread wake-ups per request | Envoy user / system µs per Check | errors |\n")
		fmt.Fprintf(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range part.rows {
			fmt.Fprintf(w, "| %s | %s | %.0f | %s | %.1f | %+.1f | %.0f / %.0f | %.0f | %.2f | %.0f / %.0f | %d |\n", r.name, r.shape, r.stats.RPS(), ms(r.stats.P50),
				r.envoyPerReq(), r.envoyPerReq()-ref, r.per("grpc_rx"), r.per("grpc_tx"), r.per("upstream_tx"), r.per("wakeups"),
				r.per("user_us"), r.per("sys_us"), r.stats.Errors)
		}
		var other []string
		for _, r := range part.rows {
			var ks []string
			for k, v := range r.counters {
				if strings.HasPrefix(k, "ext_authz.") && k != "ext_authz.ok" && v != 0 {
					ks = append(ks, fmt.Sprintf("%s %.0f", k, v))
				}
			}
			if len(ks) > 0 {
				sort.Strings(ks)
				other = append(other, r.name+": "+strings.Join(ks, ", "))
			}
		}
		if len(other) > 0 {
			fmt.Fprintf(w, "\nOther ext_authz counters: %s.\n", strings.Join(other, "; "))
		}
	}
	fmt.Fprintf(w, "\nEach variant is one Envoy listener's load with the others idle, the variants alternating in rounds; Envoy CPU per request = Envoy's utime+stime over the measured windows / requests answered. Bytes per Check from Envoy's counters (cluster upstream_cx_rx/tx_bytes_total over ext_authz.ok), warm-ups included; wake-ups: voluntary context switches of Envoy's threads (/proc/<pid>/task/*/status) over the same span / ext_authz.ok; user / system: Envoy's utime and stime over the same span / ext_authz.ok.\n")
}
