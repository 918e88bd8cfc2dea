package e2e

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
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sessiongate/sessiongate/e2e/harness"
	"github.com/sessiongate/sessiongate/pkg/admin"
	"github.com/sessiongate/sessiongate/pkg/exchange"
	"github.com/sessiongate/sessiongate/pkg/token"
	"github.com/sessiongate/sessiongate/pkg/verify"
)

// TestServices runs the machine side through a real Envoy 1.40: an
// east-west listener that requires client certificates (a CA, a server
// certificate and client certificates with SPIFFE URI SANs, all made here)
// in front of the upstream, with ext_authz to sessiongate, and a listener
// whose jwt_authn accepts only tokens for audience inventory.
//
//   - a service with a credential reaches an internal route; a user session
//     is refused there (403); a mesh caller whose SPIFFE ID maps to a service
//     passes without a credential; one that maps to nothing is anonymous;
//   - billing exchanges a user's token for one addressed to inventory, which
//     Envoy's jwt_authn and pkg/verify both accept, with billing as actor;
//     the user's own token is refused by that listener;
//   - once the user's session is revoked, the exchange is refused;
//   - a revoked credential is refused on the next request.
func TestServices(t *testing.T) {
	s := harness.Start(t, harness.Options{Configure: func(c *harness.SGConfig) {
		c.Routes = append([]harness.SGRoute{{PathPrefix: "/internal/", Access: "internal"}}, c.Routes...)
		c.Services.SPIFFETrustDomain = "e2e.local"
		c.TokenExchange = map[string][]string{"billing": {"inventory"}}
	}})
	pki := newPKI(t, s.Dir)
	ew := startEastWest(t, s, pki)
	ctx := context.Background()

	billing, err := s.Admin().CreateService(ctx, admin.ServiceRequest{Name: "billing", Roles: []string{"payments"}})
	if err != nil {
		t.Fatal(err)
	}

	// A service credential over mTLS, from a certificate that maps to no
	// service: the credential decides.
	anon := ew.client(t, pki.client(t, "spiffe://partner.example/robot"))
	res := ew.get(t, anon, "/internal/stock", map[string]string{"authorization": "Bearer " + billing.Credential})
	if res.status != 200 || !res.body.Verified || res.body.Token.Claims["sub"] != "billing" ||
		res.body.Token.Claims["kind"] != "service" || res.body.Token.Header["typ"] != "service+jwt" {
		t.Fatalf("service credential on an internal route: %d %+v", res.status, res.body)
	}
	if got := res.body.Headers["authorization"]; len(got) != 0 {
		t.Fatalf("the credential reached the upstream: %v", got)
	}

	// A user session on the same route: 403.
	alice := s.Login("alice", "alice-password", "laptop")
	res = ew.get(t, anon, "/internal/stock", map[string]string{"cookie": harness.CookieName + "=" + alice.ID})
	if res.status != 403 {
		t.Fatalf("user session on an internal route: %d", res.status)
	}
	// No credential, an unmapped certificate: anonymous.
	if res = ew.get(t, anon, "/internal/stock", nil); res.status != 401 {
		t.Fatalf("unmapped principal without a credential: %d", res.status)
	}
	// No credential, a certificate whose SPIFFE ID names billing.
	mesh := ew.client(t, pki.client(t, "spiffe://e2e.local/ns/payments/sa/billing"))
	res = ew.get(t, mesh, "/internal/stock", nil)
	if res.status != 200 || res.body.Token.Claims["sub"] != "billing" || res.body.Token.Claims["kind"] != "service" {
		t.Fatalf("mapped SPIFFE principal: %d %+v", res.status, res.body)
	}
	// No client certificate at all: the listener refuses the handshake.
	if _, err := ew.client(t, nil).Get(ew.url("/internal/stock")); err == nil {
		t.Fatal("a request without a client certificate got through")
	}

	// Token exchange: alice's token for billing, as Check would put it in
	// front of billing, exchanged by billing for one addressed to inventory.
	subjectToken := checkToken(t, s, alice.ID, "billing")
	exchanged := exchangeToken(t, s, billing.Credential, subjectToken)
	if exchanged.status != 200 {
		t.Fatalf("token exchange: %d %v", exchanged.status, exchanged.body)
	}
	tok, _ := exchanged.body["access_token"].(string)
	if status := ew.inventory(t, tok); status != 200 {
		t.Fatalf("Envoy jwt_authn (audience inventory) refused the exchanged token: %d", status)
	}
	// jwt_authn answers an audience it does not accept with 403.
	if status := ew.inventory(t, subjectToken); status != 403 {
		t.Fatalf("Envoy jwt_authn (audience inventory) accepted the token for billing: %d", status)
	}
	c := verifyAt(t, s, "inventory", tok)
	if c.Subject != "alice" || !slices.Equal(c.ActorChain(), []string{"billing"}) || c.Kind != token.KindUser {
		t.Fatalf("pkg/verify: %+v", c)
	}

	// Revoked user: no more acting for her, though her token is unexpired.
	if _, err := s.Admin().RevokeUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if r := exchangeToken(t, s, billing.Credential, subjectToken); r.status != 400 || r.body["error"] != "invalid_grant" {
		t.Fatalf("exchange after the user was revoked: %d %v", r.status, r.body)
	}

	// A revoked credential fails on the next request.
	if err := s.Admin().RevokeCredential(ctx, "billing", billing.CredentialRef); err != nil {
		t.Fatal(err)
	}
	if res = ew.get(t, anon, "/internal/stock", map[string]string{"authorization": "Bearer " + billing.Credential}); res.status != 401 {
		t.Fatalf("revoked credential: %d", res.status)
	}
	if strings.Contains(s.Sessiongate.Tail(10000), billing.Credential) {
		t.Fatal("sessiongate's log contains the credential")
	}
}

// pki is a CA and a server certificate for 127.0.0.1, made for one test.
type pki struct {
	dir                string
	ca                 *x509.Certificate
	caKey              *ecdsa.PrivateKey
	caFile             string
	serverCert, server string // PEM files
	n                  int64
}

func newPKI(t *testing.T, dir string) *pki {
	t.Helper()
	p := &pki{dir: dir}
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e mesh CA"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caKey = key
	p.caFile = writePEM(t, dir, "mesh-ca.pem", "CERTIFICATE", der)
	p.serverCert, p.server = p.issue(t, "eastwest", func(c *x509.Certificate) {
		c.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// issue makes a certificate signed by the CA and returns its PEM files.
func (p *pki) issue(t *testing.T, name string, edit func(*x509.Certificate)) (certFile, keyFile string) {
	t.Helper()
	p.n++
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.n + 1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	edit(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, p.dir, fmt.Sprintf("%s-%d.pem", name, p.n), "CERTIFICATE", der),
		writePEM(t, p.dir, fmt.Sprintf("%s-%d-key.pem", name, p.n), "PRIVATE KEY", kder)
}

// client makes a client certificate whose URI SAN is spiffeID.
func (p *pki) client(t *testing.T, spiffeID string) *tls.Certificate {
	t.Helper()
	u, err := url.Parse(spiffeID)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := p.issue(t, "client", func(c *x509.Certificate) {
		c.URIs = []*url.URL{u}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &cert
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// eastWest is a second Envoy: the mTLS listener in front of the upstream
// and the inventory listener with jwt_authn.
type eastWest struct {
	port, inventoryPort int
	ca                  *x509.CertPool
}

const eastWestConfig = `
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: %[1]d } }
static_resources:
  listeners:
  - name: eastwest
    address: { socket_address: { address: 127.0.0.1, port_value: %[2]d } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates:
            - certificate_chain: { filename: "%[3]s" }
              private_key: { filename: "%[4]s" }
            validation_context:
              trusted_ca: { filename: "%[5]s" }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: eastwest
          http_filters:
          - name: envoy.filters.http.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations:
                request_mutations:
                - remove: x-internal-jwt
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              grpc_service:
                envoy_grpc: { cluster_name: sessiongate_grpc }
                timeout: 1s
              failure_mode_allow: false
              status_on_error: { code: ServiceUnavailable }
              allowed_headers:
                patterns: [{ exact: cookie }, { exact: authorization }]
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          route_config:
            virtual_hosts:
            - name: eastwest
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: upstream }
  - name: inventory
    address: { socket_address: { address: 127.0.0.1, port_value: %[6]d } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inventory
          http_filters:
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                inventory:
                  issuer: "%[8]s"
                  audiences: [inventory]
                  from_headers: [{ name: x-internal-jwt }]
                  remote_jwks:
                    http_uri:
                      uri: "http://127.0.0.1:%[7]d/.well-known/jwks.json"
                      cluster: sessiongate_http
                      timeout: 1s
                    cache_duration: 300s
                    async_fetch: { fast_listener: false, failed_refetch_duration: 1s }
              rules:
              - match: { prefix: "/" }
                requires: { provider_name: inventory }
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          route_config:
            virtual_hosts:
            - name: inventory
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "inventory: token accepted" } }
  clusters:
  - name: sessiongate_grpc
    type: STATIC
    connect_timeout: 0.5s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment:
      cluster_name: sessiongate_grpc
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %[9]d } } } }] }]
  - name: sessiongate_http
    type: STATIC
    connect_timeout: 0.5s
    load_assignment:
      cluster_name: sessiongate_http
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %[7]d } } } }] }]
  - name: upstream
    type: STATIC
    connect_timeout: 0.5s
    load_assignment:
      cluster_name: upstream
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %[10]d } } } }] }]
`

func startEastWest(t *testing.T, s *harness.Stack, p *pki) *eastWest {
	t.Helper()
	ports, err := harness.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(eastWestConfig, ports[0], ports[1], p.serverCert, p.server, p.caFile, ports[2],
		s.Ports.SGHTTP, harness.Issuer, s.Ports.SGGRPC, s.Ports.Upstream)
	path := filepath.Join(s.Dir, "envoy-eastwest.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	proc := &harness.Process{Name: "envoy-eastwest", LogPath: filepath.Join(s.Dir, "envoy-eastwest.log"), Path: s.Bin.Envoy,
		Args: []string{"-c", path, "--disable-hot-restart", "--concurrency", "1", "--log-level", "warning", "--drain-time-s", "1"}, Dir: s.Dir}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- envoy-eastwest: last 40 lines ----\n%s", proc.Tail(40))
		}
		if err := proc.Stop(5 * time.Second); err != nil {
			t.Errorf("stopping envoy-eastwest: %v", err)
		}
	})
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	if err := proc.WaitReady(20*time.Second, harness.HTTPProbe(fmt.Sprintf("http://127.0.0.1:%d/ready", ports[0]), 200)); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	return &eastWest{port: ports[1], inventoryPort: ports[2], ca: pool}
}

func (e *eastWest) url(path string) string {
	return fmt.Sprintf("https://127.0.0.1:%d%s", e.port, path)
}

// client is an HTTPS client presenting cert (none when nil).
func (e *eastWest) client(t *testing.T, cert *tls.Certificate) *http.Client {
	t.Helper()
	cfg := &tls.Config{RootCAs: e.ca, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

type echoAnswer struct {
	status int
	body   struct {
		Verified bool `json:"verified"`
		Token    *struct {
			Header map[string]any `json:"header"`
			Claims map[string]any `json:"claims"`
		} `json:"token"`
		Headers map[string][]string `json:"headers"`
	}
}

func (e *eastWest) get(t *testing.T, c *http.Client, path string, headers map[string]string) echoAnswer {
	t.Helper()
	req, _ := http.NewRequest("GET", e.url(path), nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a echoAnswer
	a.status = resp.StatusCode
	data, _ := io.ReadAll(resp.Body)
	if a.status == 200 {
		if err := json.Unmarshal(data, &a.body); err != nil || a.body.Token == nil {
			t.Fatalf("upstream answer %q: %v", data, err)
		}
	}
	return a
}

// inventory sends tok to the jwt_authn listener and returns the status.
func (e *eastWest) inventory(t *testing.T, tok string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/stock", e.inventoryPort), nil)
	req.Header.Set("x-internal-jwt", tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// checkToken asks sessiongate's Check, as Envoy would in front of a
// service whose audience is aud, for the user token of session id.
func checkToken(t *testing.T, s *harness.Stack, id, aud string) string {
	t.Helper()
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", s.Ports.SGGRPC), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		ContextExtensions: map[string]string{"audience": aud},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api/orders", Host: "app.example.com", Scheme: "https",
			Headers: map[string]string{"cookie": harness.CookieName + "=" + id}}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == harness.TokenHeader {
			return h.GetHeader().GetValue()
		}
	}
	t.Fatalf("Check gave no token: %v", resp)
	return ""
}

type tokenAnswer struct {
	status int
	body   map[string]any
}

func exchangeToken(t *testing.T, s *harness.Stack, cred, subject string) tokenAnswer {
	t.Helper()
	form := url.Values{"grant_type": {exchange.GrantTokenExchange}, "subject_token": {subject},
		"subject_token_type": {exchange.TokenTypeJWT}, "audience": {"inventory"}}
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/oauth2/token", s.Ports.SGHTTP), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("billing", cred)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a tokenAnswer
	a.status = resp.StatusCode
	if err := json.NewDecoder(resp.Body).Decode(&a.body); err != nil {
		t.Fatal(err)
	}
	return a
}

// verifyAt verifies tok with pkg/verify against sessiongate's JWKS, as the
// service whose audience is aud.
func verifyAt(t *testing.T, s *harness.Stack, aud, tok string) *verify.Claims {
	t.Helper()
	v, err := verify.New(t.Context(), verify.Options{JWKSURL: s.JWKSURL(), Issuer: harness.Issuer, Audience: aud, RequireInitialFetch: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("pkg/verify: %v", err)
	}
	return c
}
