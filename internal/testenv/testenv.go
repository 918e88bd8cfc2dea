// Package testenv holds the fixtures that tests of several packages share:
// a session store over a real redis-server, and free loopback addresses.
// Test rigs with more to them live beside it (redistest, logtest, faults).
package testenv

import (
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/pkg/session"
)

// RedisStore starts a real redis-server for the test and returns a store
// over it whose calls are bounded by timeout, the server (to stop or stall
// it) and the raw client (to plant records the store would never write).
// Everything is closed when the test ends.
func RedisStore(t testing.TB, timeout time.Duration) (*session.RedisStore, *redistest.Server, redis.UniversalClient) {
	t.Helper()
	srv := redistest.Start(t)
	rdb, err := session.NewRedisClient(srv.URL(), timeout)
	if err != nil {
		t.Fatal(err)
	}
	st := session.NewRedisStore(rdb)
	t.Cleanup(func() { st.Close() })
	return st, srv, rdb
}

// FreeAddr returns a loopback address nothing listens on right now, with a
// port below the ephemeral range (see redistest.FreePort).
func FreeAddr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(redistest.FreePort(t))
}
