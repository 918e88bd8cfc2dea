package authz

import (
	"context"
	"crypto"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
)

// TestKeySwapUnderConcurrentChecks swaps signing keys while Checks run: no
// Check fails, and every token verifies against the keys published at the
// end (old keys stay published during a rotation).
func TestKeySwapUnderConcurrentChecks(t *testing.T) {
	f := newFixture(t, session.NewMemoryStore(nil))
	var ids []string
	for range 8 {
		ids = append(ids, f.login(t, "alice", nil, nil))
	}
	var sets []*token.KeySet
	var publicKeys []crypto.PublicKey
	for range 4 {
		k, err := token.GenerateKey(token.AlgEdDSA)
		if err != nil {
			t.Fatal(err)
		}
		ks, err := token.NewKeySet(k, "", publicKeys...)
		if err != nil {
			t.Fatal(err)
		}
		publicKeys = append(publicKeys, k.Public())
		sets = append(sets, ks)
	}
	final := sets[len(sets)-1]
	oldest := f.signer.Keys()

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var tokens []string
	failures := 0
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				resp, err := f.srv.Check(context.Background(), request("GET", "/api/x", withCookie("__Host-sid="+ids[(w+i)%len(ids)])))
				mu.Lock()
				if err != nil || status(resp) != 200 {
					failures++
				} else if i%25 == 0 {
					tok, _ := okHeader(t, resp, tokenHeader)
					tokens = append(tokens, tok)
				}
				mu.Unlock()
			}
		})
	}
	for _, ks := range sets {
		time.Sleep(100 * time.Millisecond)
		f.signer.SetKeys(ks)
	}
	wg.Wait()
	if failures > 0 {
		t.Fatalf("%d Checks failed during key swaps", failures)
	}
	if len(tokens) == 0 {
		t.Fatal("no tokens sampled")
	}
	for _, tok := range tokens {
		_, err := jwt.Parse(tok, func(tk *jwt.Token) (any, error) {
			kid, _ := tk.Header["kid"].(string)
			if k, ok := final.PublicKey(kid); ok {
				return k, nil
			}
			k, _ := oldest.PublicKey(kid) // the fixture's first key, issued before any swap
			return k, nil
		}, jwt.WithValidMethods([]string{"ES256", "EdDSA"}), jwt.WithIssuer("sessiongate"), jwt.WithAudience("internal"))
		if err != nil {
			t.Fatalf("token from a swap window does not verify: %v", err)
		}
	}
	// After the swap, new tokens come from the final active key.
	resp := f.check(t, request("GET", "/api/x", withCookie("__Host-sid="+ids[0])))
	tok, _ := okHeader(t, resp, tokenHeader)
	parsed, _, _ := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if parsed.Header["kid"] != final.ActiveKID() {
		t.Fatalf("kid %v after rotation, want %s", parsed.Header["kid"], final.ActiveKID())
	}
}
