package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/pkg/admin"
	"github.com/sessiongate/sessiongate/pkg/exchange"
)

// TestServiceCommands drives `sessiongate service` against the real serve
// command over real Redis and checks each step through a real Check on an
// internal route from the config: a created credential passes, a user
// session does not, a rotation keeps both credentials working, a revoked
// one and every one of a deleted service fail on the next request. A route
// naming an invalid service stops startup.
func TestServiceCommands(t *testing.T) {
	r := redistest.Start(t)
	dir := t.TempDir()
	keyPath := writeKey(t, dir, "key.pem", "ES256")
	tokenPath := filepath.Join(dir, "admin-token")
	writeFile(t, tokenPath, "svc-admin-token-0123456789\n")
	grpcAddr, httpAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	cfgPath := filepath.Join(dir, "config.yaml")
	config := fmt.Sprintf(`grpc_addr: %q
http_addr: %q
admin_addr: %q
admin_token_file: %q
redis:
  url: %q
token:
  signing_keys: [%q]
routes:
  - path_prefix: /internal/
    access: internal
    services: [%%s]
services:
  spiffe_trust_domain: cluster.local
token_exchange:
  billing: [inventory]
`, grpcAddr, httpAddr, adminAddr, tokenPath, r.URL(), keyPath)

	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, fmt.Sprintf(config, "Billing"))
	if err := run(context.Background(), []string{"serve", "--config", bad}, io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "routes[0].services[0]") {
		t.Fatalf("serve with an invalid service name: %v", err)
	}

	writeFile(t, cfgPath, fmt.Sprintf(config, "billing"))
	logs := runServe(t, cfgPath)
	conn := dialServing(t, grpcAddr, 10*time.Second)
	ctx := context.Background()
	authz := authv3.NewAuthorizationClient(conn)
	checkFrom := func(principal string, headers map[string]string) int {
		t.Helper()
		resp, err := authz.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Principal: principal},
			Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/internal/x", Headers: headers},
			}}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetOkResponse() != nil {
			return 200
		}
		return int(resp.GetDeniedResponse().GetStatus().GetCode())
	}
	check := func(headers map[string]string) int { t.Helper(); return checkFrom("", headers) }
	cli := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := run(ctx, append([]string{"service", "--config", cfgPath}, args...), &out, io.Discard); err != nil {
			t.Fatalf("service %v: %v", args, err)
		}
		return out.String()
	}
	credential := func(out string) admin.CredentialResponse {
		t.Helper()
		var c admin.CredentialResponse
		if err := json.Unmarshal([]byte(out), &c); err != nil || c.Credential == "" {
			t.Fatalf("output %q: %v", out, err)
		}
		return c
	}
	bearer := func(c admin.CredentialResponse) map[string]string {
		return map[string]string{"authorization": "Bearer " + c.Credential}
	}

	first := credential(cli("create", "billing", "--role", "payments"))
	other := credential(cli("create", "inventory"))
	if got := check(bearer(first)); got != 200 {
		t.Fatalf("billing's credential: %d", got)
	}
	if got := check(bearer(other)); got != 403 {
		t.Fatalf("inventory on a route for billing: %d", got)
	}
	var created bytes.Buffer
	if err := run(ctx, []string{"session", "--config", cfgPath, "create", "--subject", "alice"}, &created, io.Discard); err != nil {
		t.Fatal(err)
	}
	sid := createdSessionID(t, created.String())
	if got := check(map[string]string{"cookie": "__Host-sid=" + sid}); got != 403 {
		t.Fatalf("a user session on an internal route: %d", got)
	}

	// Token exchange on http_addr: alice's token for billing, exchanged by
	// billing for one addressed to inventory; refused once she is revoked.
	resp, err := authz.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		ContextExtensions: map[string]string{"audience": "billing"},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api/orders", Headers: map[string]string{"cookie": "__Host-sid=" + sid}}}}})
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("user Check: %v %v", resp, err)
	}
	subjectToken := resp.GetOkResponse().GetHeaders()[0].GetHeader().GetValue()
	exchangeWith := func() (int, map[string]any) {
		t.Helper()
		body := url.Values{"grant_type": {exchange.GrantTokenExchange}, "subject_token": {subjectToken},
			"subject_token_type": {exchange.TokenTypeJWT}, "audience": {"inventory"}}.Encode()
		req, _ := http.NewRequest("POST", "http://"+httpAddr+"/oauth2/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+first.Credential)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(res.Body).Decode(&m)
		return res.StatusCode, m
	}
	status, answer := exchangeWith()
	if status != 200 || answer["access_token"] == nil {
		t.Fatalf("token exchange: %d %v", status, answer)
	}
	if err := run(ctx, []string{"session", "--config", cfgPath, "revoke-user", "alice"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if status, answer := exchangeWith(); status != 400 || answer["error"] != "invalid_grant" {
		t.Fatalf("token exchange after revoke: %d %v", status, answer)
	}
	res, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{
		`sessiongate_token_requests_total{grant="token_exchange",result="ok"} 1`,
		`sessiongate_token_requests_total{grant="token_exchange",result="invalid_grant"} 1`,
		`sessiongate_token_requests_total{grant="client_credentials",result="ok"} 0`,
		`sessiongate_check_decisions_total{result="internal"} 2`,
	} {
		if !strings.Contains(string(metricsText), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A mesh caller: its certificate's SPIFFE ID names billing.
	if got := checkFrom("spiffe://cluster.local/ns/pay/sa/billing", nil); got != 200 {
		t.Fatalf("billing's SPIFFE ID: %d", got)
	}
	if got := checkFrom("spiffe://elsewhere/ns/pay/sa/billing", nil); got != 401 {
		t.Fatalf("a SPIFFE ID of another trust domain: %d", got)
	}

	second := credential(cli("add-credential", "billing"))
	if check(bearer(first)) != 200 || check(bearer(second)) != 200 {
		t.Fatal("both credentials must pass during a rotation")
	}
	var list admin.ServiceList
	if err := json.Unmarshal([]byte(cli("list")), &list); err != nil || len(list.Services) != 2 || len(list.Services[0].Credentials) != 2 {
		t.Fatalf("list: %+v, %v", list, err)
	}
	cli("revoke-credential", "billing", first.CredentialRef)
	if check(bearer(first)) != 401 || check(bearer(second)) != 200 {
		t.Fatal("after revoke-credential: the first must fail, the second pass")
	}
	if out := cli("delete", "billing"); !strings.Contains(out, `"revoked": 1`) {
		t.Fatalf("delete: %s", out)
	}
	if got := check(bearer(second)); got != 401 {
		t.Fatalf("a deleted service's credential: %d", got)
	}
	for _, c := range []admin.CredentialResponse{first, second, other} {
		if strings.Contains(logs.String(), c.Credential) {
			t.Fatal("the server log contains a service credential")
		}
	}
	var errOut bytes.Buffer
	if err := run(ctx, []string{"service", "--config", cfgPath, "delete", "billing"}, io.Discard, &errOut); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("delete of a deleted service: %v", err)
	}
}
