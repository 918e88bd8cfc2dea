package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiongate/sessiongate/internal/logtest"
	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/pkg/admin"
	"github.com/sessiongate/sessiongate/pkg/revocation"
	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
)

// testGate is a gate with the components the file sets feed, and no servers.
func testGate(log *slog.Logger) *gate {
	g := &gate{log: log, files: newWatcher(log), signer: token.NewSigner(nil, "iss")}
	g.admin = admin.NewHandler(admin.Options{Store: session.NewMemoryStore(nil), IdleTimeout: time.Minute, AbsoluteTimeout: time.Hour, Log: log})
	g.revocations = revocation.New(revocation.Options{Source: session.NewMemoryStore(nil), Log: log})
	return g
}

// A watchCase is one file set: write puts version "a", "b" or "bad" of its
// files into dir, current says which valid version is in service.
type watchCase struct {
	name    string
	set     func(g *gate, dir string) fileSet
	write   func(t *testing.T, dir, version string)
	current func(t *testing.T, g *gate) string
	secrets []string // file content that must never reach the log
}

func watchCases(t *testing.T) []watchCase {
	keys := map[string][]byte{}
	kids := map[string]string{}
	for _, v := range []string{"a", "b"} {
		var pemKey strings.Builder
		if err := run(t.Context(), []string{"keygen", "--alg", "EdDSA"}, &pemKey, io.Discard); err != nil {
			t.Fatal(err)
		}
		keys[v] = []byte(pemKey.String())
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "k.pem"), pemKey.String())
		ks, err := token.LoadKeySet([]string{filepath.Join(dir, "k.pem")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		kids[ks.ActiveKID()] = v
	}
	tokens := map[string]string{"a": "admin-token-a-0123456789", "b": "admin-token-b-0123456789"}
	certs := map[string][2][]byte{"a": selfSigned(t, "a"), "b": selfSigned(t, "b")}
	bad := "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"

	return []watchCase{
		{
			name: "signing keys",
			set: func(g *gate, dir string) fileSet {
				return g.keySet(token.KeyFiles{Signing: []string{filepath.Join(dir, "k.pem")}})
			},
			write: func(t *testing.T, dir, v string) {
				if v == "bad" {
					writeFile(t, filepath.Join(dir, "k.pem"), bad)
					return
				}
				writeFile(t, filepath.Join(dir, "k.pem"), string(keys[v]))
			},
			current: func(t *testing.T, g *gate) string { return kids[g.signer.Keys().ActiveKID()] },
			secrets: []string{strings.Split(string(keys["a"]), "\n")[1], strings.Split(string(keys["b"]), "\n")[1], "AAAA"},
		},
		{
			name: "admin tokens",
			set:  func(g *gate, dir string) fileSet { return g.adminTokenSet(filepath.Join(dir, "tokens")) },
			write: func(t *testing.T, dir, v string) {
				if v == "bad" {
					writeFile(t, filepath.Join(dir, "tokens"), "# only a comment and a short one\nshort-secret\n")
					return
				}
				writeFile(t, filepath.Join(dir, "tokens"), "# admin\n"+tokens[v]+"\n")
			},
			current: func(t *testing.T, g *gate) string {
				in := ""
				for _, v := range []string{"a", "b"} {
					req := httptest.NewRequest("GET", "/v1/users/u/sessions", nil)
					req.Header.Set("Authorization", "Bearer "+tokens[v])
					rec := httptest.NewRecorder()
					g.admin.ServeHTTP(rec, req)
					if rec.Code == http.StatusOK {
						in += v
					}
				}
				return in
			},
			secrets: []string{tokens["a"], tokens["b"], "short-secret"},
		},
		{
			name: "revocation feed tokens",
			set:  func(g *gate, dir string) fileSet { return g.revocationTokenSet(filepath.Join(dir, "feed-tokens")) },
			write: func(t *testing.T, dir, v string) {
				if v == "bad" {
					writeFile(t, filepath.Join(dir, "feed-tokens"), "short-secret\n")
					return
				}
				writeFile(t, filepath.Join(dir, "feed-tokens"), "# feed\nfeed-"+tokens[v]+"\n")
			},
			current: func(t *testing.T, g *gate) string {
				in := ""
				for _, v := range []string{"a", "b"} {
					req := httptest.NewRequest("GET", "/v1/revocations", nil)
					req.Header.Set("Authorization", "Bearer feed-"+tokens[v])
					rec := httptest.NewRecorder()
					g.revocations.ServeHTTP(rec, req) // not running: 503 once authorized
					if rec.Code != http.StatusUnauthorized {
						in += v
					}
				}
				return in
			},
			secrets: []string{"feed-" + tokens["a"], "feed-" + tokens["b"], "short-secret"},
		},
		{
			name: "admin TLS files",
			set: func(g *gate, dir string) fileSet {
				return g.adminTLSSet(admin.TLSFiles{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")})
			},
			write: func(t *testing.T, dir, v string) {
				if v == "bad" {
					writeFile(t, filepath.Join(dir, "tls.crt"), "garbage")
					return
				}
				writeFile(t, filepath.Join(dir, "tls.crt"), string(certs[v][0]))
				writeFile(t, filepath.Join(dir, "tls.key"), string(certs[v][1]))
			},
			current: func(t *testing.T, g *gate) string {
				c, err := g.adminListenerTLS().GetConfigForClient(nil)
				if err != nil || c == nil {
					t.Fatalf("no TLS config in service: %v", err)
				}
				return c.Certificates[0].Leaf.Subject.CommonName
			},
			secrets: []string{"garbage", strings.Split(string(certs["a"][1]), "\n")[1]},
		},
	}
}

// TestFileSetsKeepCurrentWhenInvalid holds every watched file set to the
// same behaviour: a valid change applies on the next poll, an invalid one is
// logged once and the current value keeps serving, a SIGHUP that names
// other files moves the watch only if they load.
func TestFileSetsKeepCurrentWhenInvalid(t *testing.T) {
	for _, c := range watchCases(t) {
		t.Run(c.name, func(t *testing.T) {
			logs := &logtest.Buffer{}
			g := testGate(slog.New(slog.NewTextHandler(logs, nil)))
			dir := t.TempDir()
			want := func(step, v string) {
				t.Helper()
				if got := c.current(t, g); got != v {
					t.Fatalf("%s: %q in service, want %q\nlog:\n%s", step, got, v, logs.String())
				}
			}
			invalid := c.name + " invalid; keeping the current ones"

			c.write(t, dir, "bad")
			if err := g.files.start(c.set(g, dir)); err == nil {
				t.Fatal("start accepted invalid files")
			}
			c.write(t, dir, "a")
			if err := g.files.start(c.set(g, dir)); err != nil {
				t.Fatal(err)
			}
			want("start", "a")
			g.files.poll()
			if strings.Contains(logs.String(), "reloaded") {
				t.Fatalf("unchanged files reloaded:\n%s", logs.String())
			}

			c.write(t, dir, "b")
			g.files.poll()
			want("valid change", "b")
			if !strings.Contains(logs.String(), c.name+" reloaded") {
				t.Errorf("reload not logged:\n%s", logs.String())
			}

			c.write(t, dir, "bad")
			for range 3 {
				g.files.poll()
			}
			want("invalid change", "b")
			if n := strings.Count(logs.String(), invalid); n != 1 {
				t.Errorf("invalid files logged %d times, want once:\n%s", n, logs.String())
			}

			c.write(t, dir, "a")
			g.files.poll()
			want("recovery", "a")

			// SIGHUP naming other files: invalid ones change nothing and the
			// watch stays where it was.
			other := t.TempDir()
			c.write(t, other, "bad")
			g.files.replace(c.set(g, other))
			want("replace with invalid files", "a")
			if n := strings.Count(logs.String(), invalid); n != 2 {
				t.Errorf("invalid replacement logged %d times in all, want 2", n)
			}
			c.write(t, dir, "b")
			g.files.poll()
			want("old files still watched", "b")

			c.write(t, other, "a")
			g.files.replace(c.set(g, other))
			want("replace with valid files", "a")
			c.write(t, dir, "b")
			c.write(t, other, "b")
			g.files.poll()
			want("new files watched", "b")

			for _, s := range c.secrets {
				if strings.Contains(logs.String(), s) {
					t.Errorf("log holds file content %q:\n%s", s, logs.String())
				}
			}
		})
	}
}

// selfSigned returns a PEM certificate and key for cn.
func selfSigned(t *testing.T, cn string) [2][]byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{cn}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return [2][]byte{
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}
}

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

// TestKeyRotationUnderLoad rotates the signing keys through a Secret-style
// symlink swap while tokens are signed and verified without pause.
func TestKeyRotationUnderLoad(t *testing.T) {
	keyPEM := func(alg string) []byte {
		var b strings.Builder
		if err := run(t.Context(), []string{"keygen", "--alg", alg}, &b, io.Discard); err != nil {
			t.Fatal(err)
		}
		return []byte(b.String())
	}
	oldPEM, newPEM := keyPEM("ES256"), keyPEM("EdDSA")
	sec := newSecretDir(t, map[string][]byte{"signing.pem": oldPEM, "previous.pem": oldPEM})
	files := token.KeyFiles{Signing: []string{sec.path("signing.pem")}, Verification: []string{sec.path("previous.pem")}}
	oldKID := kidOf(t, oldPEM)
	newKID := kidOf(t, newPEM)

	logs := &logtest.Buffer{}
	g := testGate(slog.New(slog.NewTextHandler(logs, nil)))
	if err := g.files.start(g.keySet(files)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var watchDone sync.WaitGroup
	watchDone.Go(func() { g.files.run(ctx, 10*time.Millisecond) })

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
				tok, err := g.signer.Sign(token.Claims{Subject: "u", Audience: "a", ExpiresAt: time.Now().Add(time.Minute)})
				if err != nil {
					errs <- err
					return
				}
				if _, err := jwt.Parse(tok, func(tk *jwt.Token) (any, error) {
					kid, _ := tk.Header["kid"].(string)
					if k, ok := g.signer.Keys().PublicKey(kid); ok {
						return k, nil
					}
					return nil, fmt.Errorf("unknown kid %s", kid)
				}, jwt.WithValidMethods(token.SupportedAlgorithms)); err != nil {
					errs <- err
					return
				}
				signed.Add(1)
			}
		})
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		if !redistest.Eventually(ctx, 5*time.Second, cond) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}

	// Rotate: new active key, old key kept for verification.
	sec.update(map[string][]byte{"signing.pem": newPEM, "previous.pem": oldPEM})
	waitFor("rotation", func() bool { return g.signer.Keys().ActiveKID() == newKID })

	// A corrupt update must not replace the working keys.
	sec.update(map[string][]byte{"signing.pem": []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "previous.pem": oldPEM})
	waitFor("failure log", func() bool { return strings.Contains(logs.String(), "keeping the current ones") })
	time.Sleep(50 * time.Millisecond) // several more ticks
	if got := g.signer.Keys().ActiveKID(); got != newKID {
		t.Errorf("active kid changed to %s after corrupt update", got)
	}

	// Recovery once a good file appears again.
	sec.update(map[string][]byte{"signing.pem": oldPEM, "previous.pem": newPEM})
	waitFor("recovery", func() bool { return g.signer.Keys().ActiveKID() == oldKID })

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
	if out := logs.String(); !strings.Contains(out, sec.path("signing.pem")) {
		t.Errorf("failure log does not name the file:\n%s", out)
	}
}

func kidOf(t *testing.T, keyPEM []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "k.pem")
	writeFile(t, path, string(keyPEM))
	ks, err := token.LoadKeySet([]string{path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ks.ActiveKID()
}
