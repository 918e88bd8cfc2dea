package admin

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/logtest"
	"github.com/sessiongate/sessiongate/pkg/session"
)

func withLog(buf *logtest.Buffer) func(*Options) {
	return func(o *Options) { o.Log = slog.New(slog.NewJSONHandler(buf, nil)) }
}

func TestRateLimit(t *testing.T) {
	h := NewHandler(Options{Store: session.NewMemoryStore(nil), Open: true, RateLimit: 1, RateBurst: 3,
		IdleTimeout: time.Minute, AbsoluteTimeout: time.Hour})
	get := func(remote string) *httptest.ResponseRecorder {
		t.Helper()
		r := httptest.NewRequest("GET", "/v1/users/a/sessions", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for i := range 3 {
		if w := get("192.0.2.1:1000"); w.Code != 200 {
			t.Fatalf("request %d within the burst: %d", i, w.Code)
		}
	}
	w := get("192.0.2.1:2000") // another port, same source
	if w.Code != 429 || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("past the burst: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	var e ErrorResponse
	if json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error == "" {
		t.Fatalf("429 body %q", w.Body)
	}
	if w := get("192.0.2.2:1000"); w.Code != 200 {
		t.Fatalf("another source is limited too: %d", w.Code)
	}
	// An IPv6 /64 is one source: hopping addresses inside it does not help.
	for i := range 3 {
		get("[2001:db8::" + string(rune('a'+i)) + "]:1")
	}
	if w := get("[2001:db8::ff]:1"); w.Code != 429 {
		t.Fatalf("new address in the same /64: %d, want 429", w.Code)
	}
	if w := get("[2001:db8:0:1::1]:1"); w.Code != 200 {
		t.Fatalf("another /64: %d", w.Code)
	}
}

// TestRateLimitBeforeAuth: token guessing is throttled like anything else.
func TestRateLimitBeforeAuth(t *testing.T) {
	srv, _ := newServer(t, session.NewMemoryStore(nil), func(o *Options) { o.RateLimit, o.RateBurst = 0.5, 2 })
	codes := []int{}
	for range 4 {
		got, _ := call(t, srv, "GET", "/v1/users/a/sessions", "", "wrong-token-0123456789")
		codes = append(codes, got)
	}
	if codes[0] != 401 || codes[1] != 401 || codes[2] != 429 || codes[3] != 429 {
		t.Fatalf("codes %v, want 401 401 429 429", codes)
	}
}

func TestSourceLimiterBounded(t *testing.T) {
	l := newSourceLimiter(1, 1)
	now := time.Now()
	for i := range maxTrackedSources + 100 {
		addr := net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).String() + ":1"
		l.allow(addr, now)
	}
	if len(l.sources) > maxTrackedSources {
		t.Fatalf("%d sources tracked", len(l.sources))
	}
	// Once buckets refill, the sweep makes room for new sources again.
	later := now.Add(2 * time.Second)
	if ok, _ := l.allow("192.0.2.99:1", later); !ok {
		t.Fatal("new source refused after the others refilled")
	}
	if _, tracked := l.sources[sourceKey("192.0.2.99:1")]; !tracked {
		t.Fatal("new source not tracked after the sweep")
	}
}

func TestTokenAuth(t *testing.T) {
	var logs logtest.Buffer
	srv, _ := newServer(t, session.NewMemoryStore(nil), withLog(&logs))
	for _, tc := range []struct {
		name, header string
		want         int
	}{
		{"scheme is case-insensitive", "bearer " + testToken, 201},
		{"upper-case scheme", "BEARER " + testToken, 201},
		{"basic", "Basic " + testToken, 401},
		{"no scheme", testToken, 401},
		{"token with a byte more", "Bearer " + testToken + "x", 401},
		{"two spaces after the scheme", "Bearer  " + testToken, 401},
		{"token prefix", "Bearer " + testToken[:10], 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", srv.URL+"/v1/sessions", strings.NewReader(`{"subject":"a"}`))
			req.Header.Set("Authorization", tc.header)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	// The second token in the file authenticated: the audit line says so.
	if !strings.Contains(logs.String(), `"auth":"token#1"`) {
		t.Fatalf("audit lines do not name the token used:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), testToken) {
		t.Fatal("a token reached the log")
	}
}

// TestAuditLog: every mutation logs who, what and the ref; no line ever
// holds a session ID.
func TestAuditLog(t *testing.T) {
	var logs logtest.Buffer
	store := session.NewMemoryStore(nil)
	srv, c := newServer(t, store, withLog(&logs))
	ctx := context.Background()
	a, err := c.CreateSession(ctx, CreateRequest{Subject: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := c.CreateSession(ctx, CreateRequest{Subject: "alice"})
	roles := []string{"x"}
	c.UpdateUser(ctx, "alice", UpdateRequest{Roles: &roles})
	c.RevokeSession(ctx, a.SessionRef)
	c.RevokeUser(ctx, "alice")
	call(t, srv, "GET", "/v1/users/alice/sessions", "", testToken) // a read: no audit line

	var actions []string
	for line := range strings.SplitSeq(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] != "admin audit" {
			continue
		}
		actions = append(actions, rec["action"].(string))
		if rec["remote"] == "" || rec["auth"] != "token#1" {
			t.Errorf("audit line without who: %s", line)
		}
	}
	if want := "create create update_user revoke revoke_user"; strings.Join(actions, " ") != want {
		t.Fatalf("audit actions %v, want %s", actions, want)
	}
	for _, id := range []string{a.SessionID, b.SessionID} {
		if strings.Contains(logs.String(), id) {
			t.Fatal("a session ID reached the log")
		}
	}
	if !strings.Contains(logs.String(), a.SessionRef) {
		t.Fatal("the audit log does not name the session ref")
	}
}

func TestStrictJSON(t *testing.T) {
	srv, _ := newServer(t, session.NewMemoryStore(nil))
	big := func(n int, v string) string {
		var b strings.Builder
		b.WriteString(`{"subject":"a","claims":{`)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`"k` + string(rune('A'+i/26)) + string(rune('a'+i%26)) + `":"` + v + `"`)
		}
		b.WriteString(`}}`)
		return b.String()
	}
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"duplicate key", "POST", "/v1/sessions", `{"subject":"a","subject":"root"}`, 400},
		{"duplicate nested key", "POST", "/v1/sessions", `{"subject":"a","claims":{"x":"1","x":"2"}}`, 400},
		{"same key in sibling objects is fine", "POST", "/v1/sessions", `{"subject":"a","claims":{"name":"1"},"device":{"name":"2"}}`, 201},
		{"invalid UTF-8", "POST", "/v1/sessions", "{\"subject\":\"a\xff\"}", 400},
		{"escaped NUL", "POST", "/v1/sessions", `{"subject":"a\u0000"}`, 400},
		{"claims within the budget", "POST", "/v1/sessions", big(8, strings.Repeat("v", 1000)), 201},
		{"claims past the record budget", "POST", "/v1/sessions", big(30, strings.Repeat("v", 1000)), 400},
		{"escaping counts against the budget", "POST", "/v1/sessions", big(8, strings.Repeat("<", 1000)), 400},
		{"update past the record budget", "PATCH", "/v1/users/a/sessions", strings.Replace(big(30, strings.Repeat("v", 1000)), `"subject":"a",`, "", 1), 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, body := call(t, srv, tc.method, tc.path, tc.body, testToken)
			if got != tc.want {
				t.Fatalf("%d %v, want %d", got, body, tc.want)
			}
		})
	}
}

// TestMutualTLS runs the handler behind the TLS config TLSFiles.Load makes, as serve does.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "sessiongate test CA")
	other := newCA(t, "someone else's CA")
	ca.issue(t, dir, "server", "127.0.0.1", true)
	ca.issue(t, dir, "login", "login-service", false)
	other.issue(t, dir, "stranger", "login-service", false)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.der)

	files := TLSFiles{CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"), ClientCAFile: filepath.Join(dir, "ca.pem")}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)

	for _, mode := range []struct {
		name     string
		certOnly bool
	}{{"token also required", false}, {"client cert alone", true}} {
		t.Run(mode.name, func(t *testing.T) {
			var logs logtest.Buffer
			cfg, err := files.Load()
			if err != nil {
				t.Fatal(err)
			}
			h := NewHandler(Options{Store: session.NewMemoryStore(nil), IdleTimeout: time.Minute, AbsoluteTimeout: time.Hour,
				ClientCertAuthOnly: mode.certOnly, Log: slog.New(slog.NewJSONHandler(&logs, nil))})
			h.SetTokens([]string{testToken})
			url := serveTLS(t, h, cfg)
			client := func(name string) *http.Client {
				tc := &tls.Config{RootCAs: pool}
				if name != "" {
					kp, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
					if err != nil {
						t.Fatal(err)
					}
					tc.Certificates = []tls.Certificate{kp}
				}
				return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 5 * time.Second}
			}
			post := func(hc *http.Client, tok string) (int, error) {
				req, _ := http.NewRequest("POST", url+"/v1/sessions", strings.NewReader(`{"subject":"a"}`))
				if tok != "" {
					req.Header.Set("Authorization", "Bearer "+tok)
				}
				resp, err := hc.Do(req)
				if err != nil {
					return 0, err
				}
				resp.Body.Close()
				return resp.StatusCode, nil
			}
			if _, err := post(client(""), testToken); err == nil {
				t.Fatal("no client certificate: handshake succeeded")
			}
			if _, err := post(client("stranger"), testToken); err == nil {
				t.Fatal("certificate from another CA: handshake succeeded")
			}
			if got, err := post(client("login"), testToken); err != nil || got != 201 {
				t.Fatalf("client cert and token: %d %v", got, err)
			}
			want := 401
			if mode.certOnly {
				want = 201
			}
			if got, err := post(client("login"), ""); err != nil || got != want {
				t.Fatalf("client cert without token: %d %v, want %d", got, err, want)
			}
			if !strings.Contains(logs.String(), `"client_cn":"login-service"`) {
				t.Fatalf("audit lines lack the client CN:\n%s", logs.String())
			}
		})
	}
}

// TestTLSFilesLoad: a renewed certificate is read as such; a broken file is
// an error (serve then keeps the certificate it has, or refuses to start).
func TestTLSFilesLoad(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "reload CA")
	ca.issue(t, dir, "server", "127.0.0.1", true)
	files := TLSFiles{CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key")}
	serial := func() *big.Int {
		t.Helper()
		c, err := files.Load()
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(c.Certificates[0].Certificate[0])
		return leaf.SerialNumber
	}
	first := serial()
	ca.issue(t, dir, "server", "127.0.0.1", true)
	if serial().Cmp(first) == 0 {
		t.Fatal("renewed certificate not read")
	}
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.der)
	withCA := files
	withCA.ClientCAFile = filepath.Join(dir, "ca.pem")
	if c, err := withCA.Load(); err != nil || c.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("with a client CA: %v, %v", c, err)
	}
	os.WriteFile(withCA.ClientCAFile, []byte("garbage"), 0o600)
	if _, err := withCA.Load(); err == nil || !strings.Contains(err.Error(), "ca.pem") {
		t.Fatalf("broken client CA: err = %v", err)
	}
	os.WriteFile(files.CertFile, []byte("garbage"), 0o600)
	if _, err := files.Load(); err == nil || !strings.Contains(err.Error(), "server.crt") {
		t.Fatalf("broken certificate: err = %v", err)
	}
}

func serveTLS(t *testing.T, h http.Handler, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slogDiscard()}
	go srv.Serve(tls.NewListener(ln, cfg))
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

type testCA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	der  []byte
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: serialNumber(t), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{key: key, cert: cert, der: der}
}

// issue writes name.crt and name.key signed by the CA: a server certificate
// for the IP cn, or a client certificate with common name cn.
func (ca *testCA) issue(t *testing.T, dir, name, cn string, server bool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: serialNumber(t), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP(cn)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	writePEM(t, filepath.Join(dir, name+".crt"), "CERTIFICATE", der)
	writePEM(t, filepath.Join(dir, name+".key"), "PRIVATE KEY", kd)
}

func serialNumber(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// slogDiscard keeps expected handshake failures out of the test output.
func slogDiscard() *log.Logger { return log.New(io.Discard, "", 0) }
