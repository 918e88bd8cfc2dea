package session

import (
	"context"
	"errors"
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

// TestRefreshTokenShape: tokens are never session IDs nor the reverse, and
// a family ref is never a session ref.
func TestRefreshTokenShape(t *testing.T) {
	tok, err := NewRefreshToken()
	if err != nil {
		t.Fatal(err)
	}
	fam, err := NewFamilyRef()
	if err != nil {
		t.Fatal(err)
	}
	id := mustID(t)
	switch {
	case !ValidRefreshToken(tok) || ValidID(tok) || ValidRefreshToken(id) || HasCredentialPrefix(tok):
		t.Fatalf("token %q / id %q shapes overlap", tok, id)
	case !ValidFamilyRef(fam) || ValidRef(fam) || ValidFamilyRef(RefOf(id)):
		t.Fatalf("family ref %q / session ref shapes overlap", fam)
	case refreshRefOf(tok) == RefOf(tok[len(RefreshTokenPrefix):]):
		t.Fatal("a token's ref equals the ref of its body as a session ID")
	}
}

// TestRecordWithBadFamilyIsCorrupt: a record naming a family in any other
// shape was not written by sessiongate.
func TestRecordWithBadFamilyIsCorrupt(t *testing.T) {
	for _, fam := range []string{"x", "fam_", "FAM_0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"} {
		e, err := parseEntry("r", `1:1:99999999999999:60000:{"sub":"a","cat":1,"fam":"`+fam+`"}`)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Session(); !errors.Is(err, ErrCorrupt) {
			t.Errorf("fam %q: err = %v, want ErrCorrupt", fam, err)
		}
	}
}

// TestSealedSuccessorOpensOnlyWithItsToken: the grace blob opens with the
// retired token it was sealed under, in its family, and nothing else.
func TestSealedSuccessorOpensOnlyWithItsToken(t *testing.T) {
	old, _ := NewRefreshToken()
	other, _ := NewRefreshToken()
	fam, _ := NewFamilyRef()
	fam2, _ := NewFamilyRef()
	id := mustID(t)
	next, _ := NewRefreshToken()
	sealed, err := sealSuccessor(old, fam, id, next)
	if err != nil {
		t.Fatal(err)
	}
	if gotID, gotNext, err := openSuccessor(old, fam, sealed); err != nil || gotID != id || gotNext != next {
		t.Fatalf("open = %q, %q, %v", gotID, gotNext, err)
	}
	for name, try := range map[string]func() error{
		"other token":  func() error { _, _, err := openSuccessor(other, fam, sealed); return err },
		"other family": func() error { _, _, err := openSuccessor(old, fam2, sealed); return err },
		"truncated":    func() error { _, _, err := openSuccessor(old, fam, sealed[:10]); return err },
		"flipped": func() error {
			b := []byte(sealed)
			b[len(b)/2] ^= 1
			_, _, err := openSuccessor(old, fam, string(b))
			return err
		},
	} {
		if err := try(); !errors.Is(err, ErrRefreshInvalid) {
			t.Errorf("%s: err = %v, want ErrRefreshInvalid", name, err)
		}
	}
	if strings.Contains(sealed, id) || strings.Contains(sealed, next[len(RefreshTokenPrefix):]) {
		t.Fatal("the sealed blob holds the pair in the clear")
	}
}

// FuzzValidRefreshToken: whatever ValidRefreshToken accepts has the exact
// shape NewRefreshToken produces, and the store refuses the rest without
// a lookup.
func FuzzValidRefreshToken(f *testing.F) {
	tok, _ := NewRefreshToken()
	for _, s := range []string{tok, "", RefreshTokenPrefix, tok + "A", tok[:len(tok)-1] + "B", "SGR_" + tok[4:], mustIDF(f)} {
		f.Add(s)
	}
	st := NewMemoryStore(nil)
	f.Fuzz(func(t *testing.T, s string) {
		if ValidRefreshToken(s) {
			if len(s) != RefreshTokenLen || !strings.HasPrefix(s, RefreshTokenPrefix) || !ValidID(s[len(RefreshTokenPrefix):]) {
				t.Fatalf("accepted %q", s)
			}
		}
		if _, err := st.Refresh(context.Background(), s); !errors.Is(err, ErrRefreshInvalid) {
			t.Fatalf("refresh %q: %v", s, err)
		}
	})
}

func mustIDF(f *testing.F) string {
	id, err := NewID()
	if err != nil {
		f.Fatal(err)
	}
	return id
}
