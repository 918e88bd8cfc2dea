package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// The load test itself runs with `make loadtest`; these check its pieces
// that can be checked without starting anything.

func TestParseWrk(t *testing.T) {
	out := `Running 5s test @ http://127.0.0.1:41234
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms  310.52us   9.87ms   88.00%
    Req/Sec    13.41k   512.33    14.10k    80.00%
  Latency Distribution
     50%    1.13ms
     75%    1.30ms
     90%    1.52ms
     99%    2.41ms
  66712 requests in 5.00s, 9.80MB read
  Non-2xx or 3xx responses: 3
Requests/sec:  13342.40
Transfer/sec:      1.96MB
`
	st, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Requests != 66712 || st.Errors != 3 || st.P50 != 1130*time.Microsecond || st.P99 != 2410*time.Microsecond {
		t.Fatalf("parsed %+v", st)
	}
	if rps := st.RPS(); rps < 13342 || rps > 13343 {
		t.Fatalf("rps %.2f, want wrk's 13342.40", rps)
	}
	if len(st.lat) != 0 {
		t.Fatalf("no QUANTILES_US line, yet %d samples", len(st.lat))
	}
	// With the script's distribution, 1000 quantiles weighted by the
	// request count: the pooled percentiles are the quantiles themselves.
	var q []string
	for k := 1; k <= 1000; k++ {
		q = append(q, strconv.Itoa(1000+k))
	}
	st, err = parseWrk(out + "QUANTILES_US " + strings.Join(q, " ") + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.lat) != 66*1000 {
		t.Fatalf("%d samples, want 66 per quantile", len(st.lat))
	}
	merged := Stats{}.merge(st).merge(st)
	if merged.P50 != 1500*time.Microsecond || merged.P99 != 1990*time.Microsecond || merged.Requests != 2*66712 {
		t.Fatalf("merged rounds: p50 %v p99 %v requests %d", merged.P50, merged.P99, merged.Requests)
	}
	if _, err := parseWrk("Running 5s test\n  0 requests in 5.00s, 0B read\n"); err == nil {
		t.Fatal("a report without a latency distribution must be an error")
	}
}

func TestParseH2loadLog(t *testing.T) {
	for _, tc := range []struct {
		name             string
		log              string
		requests, errors int
		p50, p99         time.Duration
		fails            bool
	}{
		{"all allowed", "1795434828249611\t200\t1826\n1795434828249622\t200\t900\n1795434828249617\t200\t1000\n", 3, 0, 1000 * time.Microsecond, 1826 * time.Microsecond, false},
		{"denials are errors", "1\t200\t500\n2\t503\t90\n3\t403\t80\n", 1, 2, 500 * time.Microsecond, 500 * time.Microsecond, false},
		{"nothing allowed", "1\t503\t90\n", 0, 1, 0, 0, true},
		{"malformed", "1\t200\n", 0, 0, 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "h2load.log")
			if err := os.WriteFile(path, []byte(tc.log), 0o600); err != nil {
				t.Fatal(err)
			}
			st, err := parseH2loadLog(path)
			if tc.fails {
				if err == nil {
					t.Fatalf("parsed %+v, want an error", st)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Requests != tc.requests || st.Errors != tc.errors || st.P50 != tc.p50 || st.P99 != tc.p99 {
				t.Fatalf("parsed %+v", st)
			}
		})
	}
}

func TestPercentiles(t *testing.T) {
	d := make([]time.Duration, 1000)
	for i := range d {
		d[i] = time.Duration(1000-i) * time.Microsecond
	}
	p50, p99 := percentiles(d)
	if p50 != 500*time.Microsecond || p99 != 990*time.Microsecond {
		t.Fatalf("p50 %v p99 %v", p50, p99)
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:9001", "[::1]:80", "127.3.4.5:1"} {
		if err := loopbackOnly(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"10.0.0.1:9001", "example.com:80", "0.0.0.0:1", "192.168.1.1:80", "localhost"} {
		if err := loopbackOnly(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// The seeder's record must be byte for byte what session.RedisStore
// writes; the load test checks the same against its own Redis before
// seeding.
func TestSeedLayoutMatchesStore(t *testing.T) {
	srv := redistest.Start(t)
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx := context.Background()
	if err := verifyLayout(ctx, rdb); err != nil {
		t.Fatal(err)
	}
	id, err := session.NewID()
	if err != nil {
		t.Fatal(err)
	}
	ref := session.RefOf(id)
	if err := seed(ctx, rdb, "user-", 0, 1, []string{ref}); err != nil {
		t.Fatal(err)
	}
	if err := seed(ctx, rdb, "cold-", 0, 4500, nil); err != nil {
		t.Fatal(err)
	}
	if n := rdb.DBSize(ctx).Val(); n != 2*4501 {
		t.Fatalf("%d keys, want %d", n, 2*4501)
	}
	// What was seeded is a session the real store resolves, and lists.
	st := session.NewRedisStore(rdb)
	e, err := st.Touch(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := e.Session()
	if err != nil || sess.Subject != "user-0" || sess.Device.IP == "" {
		t.Fatalf("%+v %v", sess, err)
	}
	list, err := st.List(ctx, "user-0")
	if err != nil || len(list) != 1 || list[0].Ref != ref {
		t.Fatalf("%v %v", list, err)
	}
}
