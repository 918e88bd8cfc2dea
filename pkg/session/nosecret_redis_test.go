package session

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/internal/redistest"
)

// TestRedisSeesNoSecret extends TestRedisKeysHoldNoSessionID to refresh
// families and service credentials: no session ID, refresh token or
// service credential is in a key, in a stored value, or in any command
// sent to Redis (every command goes to the slow log, which keeps its
// arguments). A Redis error can then never quote one either.
func TestRedisSeesNoSecret(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	if err := rdb.ConfigSet(ctx, "slowlog-log-slower-than", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ConfigSet(ctx, "slowlog-max-len", "100000").Err(); err != nil {
		t.Fatal(err)
	}
	st := NewRedisStore(rdb)
	now := time.Now()
	var secrets []string

	id := mustID(t)
	secrets = append(secrets, id)
	mustCreate(t, st, &Session{Ref: RefOf(id), Subject: "lee", CreatedAt: now, ExpiresAt: now.Add(time.Hour), IdleTimeout: time.Minute}, Limit{})

	p := RefreshPolicy{AccessIdle: time.Minute, AccessAbsolute: 10 * time.Minute, TTL: time.Hour, Idle: 30 * time.Minute, Grace: 10 * time.Second}
	fam, _, err := st.CreateFamily(ctx, &Session{Subject: "lee", CreatedAt: now}, Limit{}, p)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, fam.ID, fam.RefreshToken)
	next, err := st.Refresh(ctx, fam.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, next.ID, next.RefreshToken)
	// Within the grace: the same successor, read back from its sealed copy.
	again, err := st.Refresh(ctx, fam.RefreshToken)
	if err != nil || again.RefreshToken != next.RefreshToken {
		t.Fatalf("refresh in the grace: %v, %v", again, err)
	}

	cred, err := NewCredential()
	if err != nil {
		t.Fatal(err)
	}
	cred2, err := NewCredential()
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, cred, cred2)
	if err := st.CreateService(ctx, &Service{Name: "billing", Roles: []string{"r"}, CreatedAt: now}, CredentialRefOf(cred)); err != nil {
		t.Fatal(err)
	}
	if err := st.AddCredential(ctx, "billing", CredentialRefOf(cred2)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ResolveCredential(ctx, CredentialRefOf(cred)); err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeFamily(ctx, fam.FamilyRef); err != nil {
		t.Fatal(err)
	}

	seen := func(where, text string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s holds a secret (%.6s…)", where, s)
			}
		}
	}
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		seen("key "+k, k)
		typ, err := rdb.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		var v any
		switch typ {
		case "string":
			v, err = rdb.Get(ctx, k).Result()
		case "hash":
			v, err = rdb.HGetAll(ctx, k).Result()
		case "zset":
			v, err = rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		case "set":
			v, err = rdb.SMembers(ctx, k).Result()
		case "list":
			v, err = rdb.LRange(ctx, k, 0, -1).Result()
		case "stream":
			v, err = rdb.XRange(ctx, k, "-", "+").Result()
		default:
			t.Fatalf("key %s of type %s not read", k, typ)
		}
		if err != nil {
			t.Fatal(err)
		}
		seen("value of "+k, fmt.Sprint(v))
	}
	log, err := rdb.SlowLogGet(ctx, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(log) < 10 {
		t.Fatalf("slow log has %d commands; the store's commands are not in it", len(log))
	}
	for _, e := range log {
		seen("command "+e.Args[0], strings.Join(e.Args, " "))
	}
}
