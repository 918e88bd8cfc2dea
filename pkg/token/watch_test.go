package token

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiongate/sessiongate/pkg/logtest"
)

// secretDir mimics a Kubernetes Secret volume: the visible file is a symlink
// through "..data", which is atomically re-pointed at a new timestamped dir.
type secretDir struct {
	t   *testing.T
	dir string
	gen int
}

func newSecretDir(t *testing.T, files map[string][]byte) *secretDir {
	s := &secretDir{t: t, dir: t.TempDir()}
	s.update(files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(s.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func (s *secretDir) update(files map[string][]byte) {
	s.gen++
	gen := fmt.Sprintf("..gen_%d", s.gen)
	if err := os.Mkdir(filepath.Join(s.dir, gen), 0o700); err != nil {
		s.t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(s.dir, gen, name), data, 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
	tmp := filepath.Join(s.dir, "..data_tmp")
	if err := os.Symlink(gen, tmp); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "..data")); err != nil {
		s.t.Fatal(err)
	}
}

func (s *secretDir) path(name string) string { return filepath.Join(s.dir, name) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatchKeysRotationUnderLoad(t *testing.T) {
	oldKey, newKey := testKey(t, AlgES256), testKey(t, AlgEdDSA)
	oldPEM, newPEM := mustPEM(t, oldKey), mustPEM(t, newKey)
	sec := newSecretDir(t, map[string][]byte{"signing.pem": oldPEM, "previous.pem": oldPEM})
	signing := []string{sec.path("signing.pem")}
	verification := []string{sec.path("previous.pem")}

	ks, err := LoadKeySet(signing, verification)
	if err != nil {
		t.Fatal(err)
	}
	oldKID := ks.ActiveKID()
	signer := NewSigner(ks, "iss")

	logs := &logtest.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	var watchDone sync.WaitGroup
	watchDone.Go(func() {
		WatchKeys(ctx, KeyFiles{Signing: signing, Verification: verification}, 10*time.Millisecond, log, signer.SetKeys)
	})

	// Sign continuously while keys rotate. Every token must verify with the
	// key set that was current when it was signed or the one after it, which
	// is what a JWKS-caching verifier sees during rotation.
	var stop atomic.Bool
	var signed atomic.Int64
	var workers sync.WaitGroup
	errs := make(chan error, 16)
	for range 4 {
		workers.Go(func() {
			for !stop.Load() {
				tok, err := signer.Sign(Claims{Subject: "u", Audience: "a", ExpiresAt: time.Now().Add(time.Minute)})
				if err != nil {
					errs <- err
					return
				}
				if _, err := jwt.Parse(tok, func(tk *jwt.Token) (any, error) {
					kid, _ := tk.Header["kid"].(string)
					if k, ok := signer.Keys().PublicKey(kid); ok {
						return k, nil
					}
					return nil, fmt.Errorf("unknown kid %s", kid)
				}, jwt.WithValidMethods(SupportedAlgorithms)); err != nil {
					errs <- err
					return
				}
				signed.Add(1)
			}
		})
	}

	// Rotate: new active key, old key kept for verification.
	sec.update(map[string][]byte{"signing.pem": newPEM, "previous.pem": oldPEM})
	newKID, _ := Thumbprint(newKey.Public())
	waitFor(t, "rotation", func() bool { return signer.Keys().ActiveKID() == newKID })

	// A corrupt update must not replace the working keys.
	sec.update(map[string][]byte{"signing.pem": []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "previous.pem": oldPEM})
	waitFor(t, "failure log", func() bool { return strings.Contains(logs.String(), "reload failed") })
	time.Sleep(50 * time.Millisecond) // several more ticks
	if got := signer.Keys().ActiveKID(); got != newKID {
		t.Errorf("active kid changed to %s after corrupt update", got)
	}
	if n := strings.Count(logs.String(), "reload failed"); n != 1 {
		t.Errorf("bad file logged %d times, want once", n)
	}

	// Recovery once a good file appears again.
	sec.update(map[string][]byte{"signing.pem": oldPEM, "previous.pem": newPEM})
	waitFor(t, "recovery", func() bool { return signer.Keys().ActiveKID() == oldKID })

	stop.Store(true)
	workers.Wait()
	cancel()
	watchDone.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Sign/verify: %v", err)
	}
	if signed.Load() == 0 {
		t.Error("no tokens signed during rotation")
	}

	out := logs.String()
	if !strings.Contains(out, sec.path("signing.pem")) {
		t.Errorf("failure log does not name the file:\n%s", out)
	}
	for _, secret := range [][]byte{oldPEM, newPEM} {
		body := strings.Split(string(secret), "\n")[1]
		if strings.Contains(out, body[:16]) {
			t.Error("log contains key material")
		}
	}
	if strings.Contains(out, "AAAA") {
		t.Error("log contains file content")
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "k.pem", mustPEM(t, testKey(t, AlgEdDSA)))
	bad := writeFile(t, dir, "bad.pem", []byte("garbage"))
	var got *KeySet
	apply := func(ks *KeySet) { got = ks }
	log := slog.New(slog.DiscardHandler)
	if err := Reload(KeyFiles{Signing: []string{bad}}, log, apply); err == nil || got != nil {
		t.Fatalf("Reload(bad) err=%v applied=%v", err, got != nil)
	}
	if err := Reload(KeyFiles{Signing: []string{good}}, log, apply); err != nil || got == nil {
		t.Fatalf("Reload(good) err=%v applied=%v", err, got != nil)
	}
	if got.Algorithm() != AlgEdDSA {
		t.Errorf("applied set has alg %s", got.Algorithm())
	}
}
