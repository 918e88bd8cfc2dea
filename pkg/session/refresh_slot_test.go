package session

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/internal/redistest"
)

// TestCRC16 holds crc16 to Redis Cluster's reference value (the Redis
// Cluster specification: "123456789" → 0x31C3) and to its hash tag rule.
func TestCRC16(t *testing.T) {
	if got := crc16([]byte("123456789")); got != 0x31c3 {
		t.Fatalf("crc16 = %#x, want 0x31c3", got)
	}
}

// TestIDInSlot: the IDs are valid and their session keys land in the slot
// asked for.
func TestIDInSlot(t *testing.T) {
	for _, slot := range []uint16{0, 1, 8191, 16383} {
		id, err := idInSlot(slot)
		if err != nil {
			t.Fatal(err)
		}
		if !ValidID(id) {
			t.Fatalf("invalid id %q", id)
		}
		if got := crc16([]byte(sessionKey(RefOf(id)))) & (clusterSlots - 1); got != slot {
			t.Fatalf("slot = %d, want %d", got, slot)
		}
	}
}

func BenchmarkIDInSlot(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		if _, err := idInSlot(uint16(i) & (clusterSlots - 1)); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRedisKeysHoldNoRefreshCredential: after a login with refresh and two
// rotations (one answered again from the grace), no key or value in Redis
// holds any access session ID or refresh token, nor the token's body.
func TestRedisKeysHoldNoRefreshCredential(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	st := NewRedisStore(rdb)
	ctx := context.Background()
	r0, _, err := st.CreateFamily(ctx, login("lee"), Limit{}, testPolicy(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	r1, err := st.Refresh(ctx, r0.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := st.Refresh(ctx, r1.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := st.Refresh(ctx, r1.RefreshToken); err != nil || again != r2 {
		t.Fatalf("grace: %+v, %v", again, err)
	}
	var secrets []string
	for _, r := range []Refreshed{r0, r1, r2} {
		secrets = append(secrets, r.ID, r.RefreshToken, r.RefreshToken[len(RefreshTokenPrefix):])
	}
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		dump, _ := rdb.Dump(ctx, k).Result()
		for _, sec := range secrets {
			if strings.Contains(k, sec) || strings.Contains(dump, sec) {
				t.Fatalf("key %q or its value holds a credential", k)
			}
		}
	}
}
