package exchange

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiongate/sessiongate/internal/logtest"
	"github.com/sessiongate/sessiongate/internal/redistest"
	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
	"github.com/sessiongate/sessiongate/pkg/verify"
)

type store interface {
	session.Store
	session.ServiceStore
	Sessions
}

func stores(t testing.TB) map[string]func(testing.TB) store {
	return map[string]func(testing.TB) store{
		"memory": func(testing.TB) store { return session.NewMemoryStore(nil) },
		"redis": func(t testing.TB) store {
			srv := redistest.Start(t)
			rdb, err := session.NewRedisClient(srv.URL(), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			st := session.NewRedisStore(rdb)
			t.Cleanup(func() { st.Close() })
			return st
		},
	}
}

// fixture is a token endpoint over a real store, with two registered
// services and a user session.
type fixture struct {
	st       store
	signer   *token.Signer
	srv      *httptest.Server
	logs     *logtest.Buffer
	billing  string // billing's credential
	shipping string // shipping's credential (no exchange policy)
	alice    *session.Session

	mu      sync.Mutex
	counted [][2]string // (grant, result) of every answer, from Options.Count
}

// lastCount is the (grant, result) Count was told of the latest answer.
func (f *fixture) lastCount() [2]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.counted) == 0 {
		return [2]string{}
	}
	return f.counted[len(f.counted)-1]
}

func newKeySigner(t testing.TB, issuer string) *token.Signer {
	t.Helper()
	key, err := token.GenerateKey(token.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := token.NewKeySet(key, "")
	if err != nil {
		t.Fatal(err)
	}
	return token.NewSigner(ks, issuer)
}

func newFixture(t testing.TB, st store, mutate ...func(*Options)) *fixture {
	t.Helper()
	f := &fixture{st: st, signer: newKeySigner(t, "sessiongate"), logs: &logtest.Buffer{}}
	ctx := context.Background()
	register := func(name string, roles, audiences []string) string {
		cred, err := session.NewCredential()
		if err != nil {
			t.Fatal(err)
		}
		s := &session.Service{Name: name, Roles: roles, Audiences: audiences, CreatedAt: time.Now().Truncate(time.Millisecond)}
		if err := st.CreateService(ctx, s, session.CredentialRefOf(cred)); err != nil {
			t.Fatal(err)
		}
		return cred
	}
	f.billing = register("billing", []string{"payments"}, nil)
	f.shipping = register("shipping", nil, []string{"carriers"})
	id, _ := session.NewID()
	now := time.Now().Truncate(time.Millisecond)
	f.alice = &session.Session{Ref: session.RefOf(id), Subject: "alice", Tenant: "acme", Roles: []string{"buyer"},
		Claims: map[string]string{"email": "alice@example.com"}, CreatedAt: now, ExpiresAt: now.Add(time.Hour), IdleTimeout: 30 * time.Minute}
	if _, err := st.Create(ctx, f.alice, session.Limit{}); err != nil {
		t.Fatal(err)
	}
	o := Options{
		Sessions: st, Services: st, Signer: f.signer,
		Policy:          map[string][]string{"billing": {"inventory", "ledger"}},
		DefaultAudience: "internal",
		TTL:             5 * time.Minute,
		StoreTimeout:    2 * time.Second,
		Log:             slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Count: func(grant, result string) {
			f.mu.Lock()
			f.counted = append(f.counted, [2]string{grant, result})
			f.mu.Unlock()
		},
	}
	for _, m := range mutate {
		m(&o)
	}
	f.srv = httptest.NewServer(New(o))
	t.Cleanup(f.srv.Close)
	return f
}

// userToken is what Check signs for alice's session on a route whose
// audience is aud.
func (f *fixture) userToken(t testing.TB, aud string, mutate ...func(*token.Claims)) string {
	t.Helper()
	now := time.Now()
	c := token.Claims{Subject: "alice", Tenant: "acme", SessionRef: f.alice.Ref, Audience: aud, Roles: []string{"buyer"},
		IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(5 * time.Minute)}
	for _, m := range mutate {
		m(&c)
	}
	tok, err := f.signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func (f *fixture) post(t *testing.T, auth []string, ctype, query, body string) answer {
	t.Helper()
	req, err := http.NewRequest("POST", f.srv.URL+"/oauth2/token"+query, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for _, a := range auth {
		req.Header.Add("Authorization", a)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("answer %q is not JSON", data)
	}
	return answer{resp.StatusCode, resp.Header, m}
}

const form = "application/x-www-form-urlencoded"

func exchangeForm(subject, audience string, extra ...string) string {
	v := url.Values{"grant_type": {GrantTokenExchange}, "subject_token": {subject},
		"subject_token_type": {TokenTypeJWT}, "audience": {audience}}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Add(extra[i], extra[i+1])
	}
	return v.Encode()
}

func basic(name, cred string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(name+":"+cred))
}

// verifier is how inventory verifies what billing obtained for it.
func (f *fixture) verifier(t *testing.T, aud string, kinds ...string) *verify.Verifier {
	t.Helper()
	v, err := verify.NewWithKeyfunc(func(tk *jwt.Token) (any, error) {
		k, _ := f.signer.Keys().PublicKey(tk.Header["kid"].(string))
		return k, nil
	}, verify.Options{Issuer: "sessiongate", Audience: aud, Kinds: kinds})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTokenExchange(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, newStore(t))
			for _, auth := range []string{"Bearer " + f.billing, basic("billing", f.billing)} {
				a := f.post(t, []string{auth}, form, "", exchangeForm(f.userToken(t, "billing"), "inventory"))
				if a.status != 200 || a.body["issued_token_type"] != TokenTypeJWT || a.body["token_type"] != "N_A" ||
					a.header.Get("Cache-Control") != "no-store" {
					t.Fatalf("%s: %d %v", strings.Fields(auth)[0], a.status, a.body)
				}
				if c := f.lastCount(); c != [2]string{"token_exchange", "ok"} {
					t.Errorf("counted %v", c)
				}
				if e := a.body["expires_in"].(float64); e < 290 || e > 300 {
					t.Errorf("expires_in %v", e)
				}
				c, err := f.verifier(t, "inventory").Verify(a.body["access_token"].(string))
				if err != nil {
					t.Fatal(err)
				}
				if c.Subject != "alice" || c.SessionRef != f.alice.Ref || c.Kind != token.KindUser || c.Tenant != "acme" ||
					!slices.Equal(c.ActorChain(), []string{"billing"}) || !slices.Equal(c.Roles, []string{"buyer"}) ||
					c.Custom["email"] != "alice@example.com" {
					t.Fatalf("claims %+v", c)
				}
			}
			// A token already obtained by exchange nests the actors.
			nested := f.userToken(t, "billing", func(c *token.Claims) { c.Actor = &token.Actor{Subject: "gateway"} })
			a := f.post(t, []string{"Bearer " + f.billing}, form, "", exchangeForm(nested, "ledger"))
			if a.status != 200 {
				t.Fatalf("nested: %d %v", a.status, a.body)
			}
			c, err := f.verifier(t, "ledger").Verify(a.body["access_token"].(string))
			if err != nil || !slices.Equal(c.ActorChain(), []string{"billing", "gateway"}) {
				t.Fatalf("nested: %+v, %v", c, err)
			}
			// Revocation applies within the subject token's lifetime.
			tok := f.userToken(t, "billing")
			if err := f.st.Delete(context.Background(), f.alice.Ref); err != nil {
				t.Fatal(err)
			}
			a = f.post(t, []string{"Bearer " + f.billing}, form, "", exchangeForm(tok, "inventory"))
			if a.status != 400 || a.body["error"] != "invalid_grant" || a.body["access_token"] != nil {
				t.Fatalf("after revoke: %d %v", a.status, a.body)
			}
			logs := f.logs.String()
			for _, want := range []string{"action=token_exchange", "service=billing", "subject=alice", "audience=inventory", "session_ref=" + f.alice.Ref} {
				if !strings.Contains(logs, want) {
					t.Errorf("audit log lacks %q", want)
				}
			}
			for _, secret := range []string{f.billing, f.shipping, tok, "sgsvc_"} {
				if strings.Contains(logs, secret) {
					t.Errorf("log holds a secret: %.20q", secret)
				}
			}
		})
	}
}

func TestTokenExchangeExpiresWithTheSession(t *testing.T) {
	f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) { o.TTL = time.Hour })
	a := f.post(t, []string{"Bearer " + f.billing}, form, "", exchangeForm(f.userToken(t, "billing"), "inventory"))
	if a.status != 200 {
		t.Fatalf("%d %v", a.status, a.body)
	}
	c, err := f.verifier(t, "inventory").Verify(a.body["access_token"].(string))
	if err != nil || c.ExpiresAt.After(f.alice.ExpiresAt) {
		t.Fatalf("exp %v after the session's end %v (%v)", c.ExpiresAt, f.alice.ExpiresAt, err)
	}
}

func TestClientCredentials(t *testing.T) {
	f := newFixture(t, session.NewMemoryStore(nil))
	for _, tc := range []struct {
		cred, aud string
		want      int
		code      string
	}{
		{f.billing, "internal", 200, ""}, // registered without audiences: the default
		{f.billing, "inventory", 400, "invalid_target"},
		{f.shipping, "carriers", 200, ""},
		{f.shipping, "internal", 400, "invalid_target"},
	} {
		a := f.post(t, []string{"Bearer " + tc.cred}, form, "", url.Values{"grant_type": {"client_credentials"}, "audience": {tc.aud}}.Encode())
		if a.status != tc.want || (tc.code != "" && a.body["error"] != tc.code) {
			t.Errorf("audience %s: %d %v", tc.aud, a.status, a.body)
			continue
		}
		if tc.want != 200 {
			continue
		}
		c, err := f.verifier(t, tc.aud, token.KindService).Verify(a.body["access_token"].(string))
		if err != nil || c.Kind != token.KindService || c.SessionRef != "" || c.Actor != nil {
			t.Fatalf("service token %+v, %v", c, err)
		}
		if tc.cred == f.billing && (c.Service() != "billing" || !slices.Equal(c.Roles, []string{"payments"})) {
			t.Fatalf("claims %+v", c)
		}
	}
}

// TestTokenEndpointRefusals is the endpoint's bad-input catalog: each a
// clear RFC 6749 §5.2 error, nothing signed.
func TestTokenEndpointRefusals(t *testing.T) {
	f := newFixture(t, session.NewMemoryStore(nil))
	other := newKeySigner(t, "sessiongate") // same issuer name, another key
	otherIssuer := newKeySigner(t, "https://idp.example")
	now := time.Now()
	foreign := func(s *token.Signer) string {
		tok, err := s.Sign(token.Claims{Subject: "alice", SessionRef: f.alice.Ref, Audience: "billing", IssuedAt: now, ExpiresAt: now.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := f.userToken(t, "billing")
	sid, _ := session.NewID()
	revoked, err := session.NewCredential()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.AddCredential(context.Background(), "billing", session.CredentialRefOf(revoked)); err != nil {
		t.Fatal(err)
	}
	if err := f.st.RevokeCredential(context.Background(), "billing", session.CredentialRefOf(revoked)); err != nil {
		t.Fatal(err)
	}
	last := "A"
	if strings.HasSuffix(f.billing, "A") {
		last = "B"
	}
	badSum := f.billing[:len(f.billing)-1] + last
	bearer := []string{"Bearer " + f.billing}

	for _, tc := range []struct {
		name   string
		auth   []string
		ctype  string
		query  string
		body   string
		status int
		code   string
	}{
		{"no client authentication", nil, form, "", exchangeForm(good, "inventory"), 401, "invalid_client"},
		{"credential with a bad checksum", []string{"Bearer " + badSum}, form, "", exchangeForm(good, "inventory"), 401, "invalid_client"},
		{"credential with a wrong prefix", []string{"Bearer sgsvx_" + f.billing[6:]}, form, "", exchangeForm(good, "inventory"), 401, "invalid_client"},
		{"a session ID as the credential", []string{"Bearer " + sid}, form, "", exchangeForm(good, "inventory"), 401, "invalid_client"},
		{"a revoked credential", []string{"Bearer " + revoked}, form, "", exchangeForm(good, "inventory"), 401, "invalid_client"},
		{"Basic with another service's name", []string{basic("shipping", f.billing)}, form, "", exchangeForm(good, "inventory"), 401, "invalid_client"},
		{"Basic not base64", []string{"Basic %%%"}, form, "", exchangeForm(good, "inventory"), 401, "invalid_client"},
		{"two Authorization headers", []string{"Bearer " + f.billing, "Bearer " + f.billing}, form, "", exchangeForm(good, "inventory"), 401, "invalid_client"},
		{"credential in the body", nil, form, "", exchangeForm(good, "inventory", "client_id", "billing", "client_secret", f.billing), 401, "invalid_client"},
		{"parameters in the query string", bearer, form, "?audience=inventory", exchangeForm(good, "inventory"), 400, "invalid_request"},
		{"JSON body", bearer, "application/json", "", `{"grant_type":"client_credentials"}`, 400, "invalid_request"},
		{"oversized form body", bearer, form, "", exchangeForm(good, "inventory", "pad", strings.Repeat("x", MaxBodyBytes)), 400, "invalid_request"},
		{"malformed form body", bearer, form, "", "grant_type=%zz", 400, "invalid_request"},
		{"a parameter twice", bearer, form, "", exchangeForm(good, "inventory", "audience", "ledger"), 400, "invalid_request"},
		{"an empty parameter", bearer, form, "", exchangeForm(good, ""), 400, "invalid_request"},
		{"an actor token (forged act)", bearer, form, "", exchangeForm(good, "inventory", "actor_token", good, "actor_token_type", TokenTypeJWT), 400, "invalid_request"},
		{"a resource parameter", bearer, form, "", exchangeForm(good, "inventory", "resource", "https://inventory"), 400, "invalid_request"},
		{"client_id in the body beside a credential", bearer, form, "", exchangeForm(good, "inventory", "client_id", "shipping"), 400, "invalid_request"},
		{"no grant_type", bearer, form, "", "audience=inventory", 400, "invalid_request"},
		{"another grant type", bearer, form, "", "grant_type=password&username=a&password=b", 400, "unsupported_grant_type"},
		{"no subject_token", bearer, form, "", url.Values{"grant_type": {GrantTokenExchange}, "subject_token_type": {TokenTypeJWT}, "audience": {"inventory"}}.Encode(), 400, "invalid_request"},
		{"subject_token_type access_token", bearer, form, "", url.Values{"grant_type": {GrantTokenExchange}, "subject_token": {good}, "subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}, "audience": {"inventory"}}.Encode(), 400, "invalid_request"},
		{"requested_token_type saml", bearer, form, "", exchangeForm(good, "inventory", "requested_token_type", "urn:ietf:params:oauth:token-type:saml2"), 400, "invalid_request"},
		{"no audience", bearer, form, "", url.Values{"grant_type": {GrantTokenExchange}, "subject_token": {good}, "subject_token_type": {TokenTypeJWT}}.Encode(), 400, "invalid_request"},
		{"subject token not addressed to the caller", bearer, form, "", exchangeForm(f.userToken(t, "inventory"), "inventory"), 400, "invalid_grant"},
		{"subject token of another key", bearer, form, "", exchangeForm(foreign(other), "inventory"), 400, "invalid_grant"},
		{"subject token of another issuer", bearer, form, "", exchangeForm(foreign(otherIssuer), "inventory"), 400, "invalid_grant"},
		{"a service token as subject", bearer, form, "", exchangeForm(f.userToken(t, "billing", func(c *token.Claims) { c.Kind = token.KindService; c.Subject = "shipping"; c.SessionRef = "" }), "inventory"), 400, "invalid_grant"},
		{"an expired subject token", bearer, form, "", exchangeForm(f.userToken(t, "billing", func(c *token.Claims) {
			c.IssuedAt, c.NotBefore, c.ExpiresAt = now.Add(-time.Hour), now.Add(-time.Hour), now.Add(-time.Second)
		}), "inventory"), 400, "invalid_grant"},
		{"a subject token without a session", bearer, form, "", exchangeForm(f.userToken(t, "billing", func(c *token.Claims) { c.SessionRef = "" }), "inventory"), 400, "invalid_grant"},
		{"a subject token naming an unknown session", bearer, form, "", exchangeForm(f.userToken(t, "billing", func(c *token.Claims) { c.SessionRef = session.RefOf(sid) }), "inventory"), 400, "invalid_grant"},
		{"a subject token naming another user's session", bearer, form, "", exchangeForm(f.userToken(t, "billing", func(c *token.Claims) { c.Subject = "mallory" }), "inventory"), 400, "invalid_grant"},
		{"garbage as subject token", bearer, form, "", exchangeForm("eyJ.not.a.jwt", "inventory"), 400, "invalid_grant"},
		{"a session ID as subject token", bearer, form, "", exchangeForm(sid, "inventory"), 400, "invalid_grant"},
		{"an audience the policy does not allow", bearer, form, "", exchangeForm(good, "shipping"), 400, "invalid_target"},
		{"a caller the policy names nowhere", []string{"Bearer " + f.shipping}, form, "", exchangeForm(f.userToken(t, "shipping"), "inventory"), 400, "invalid_target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := f.post(t, tc.auth, tc.ctype, tc.query, tc.body)
			if a.status != tc.status || a.body["error"] != tc.code {
				t.Fatalf("%d %v, want %d %s", a.status, a.body, tc.status, tc.code)
			}
			if a.body["access_token"] != nil {
				t.Fatal("a token on a refusal")
			}
			if tc.status == 401 && a.header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			// Every answer is counted, under labels the metric exports.
			c := f.lastCount()
			if c[1] != tc.code || !slices.Contains(CountedGrants, c[0]) || !slices.Contains(CountedResults, c[1]) {
				t.Fatalf("counted %v", c)
			}
		})
	}
}

func TestTokenEndpointRateLimit(t *testing.T) {
	f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) { o.RateLimit, o.RateBurst = 0.5, 2 })
	body := url.Values{"grant_type": {"client_credentials"}, "audience": {"internal"}}.Encode()
	for i := range 2 {
		if a := f.post(t, []string{"Bearer " + f.billing}, form, "", body); a.status != 200 {
			t.Fatalf("request %d: %d", i, a.status)
		}
	}
	a := f.post(t, []string{"Bearer " + f.billing}, form, "", body)
	if a.status != 429 || a.header.Get("Retry-After") == "" || a.body["access_token"] != nil {
		t.Fatalf("over the limit: %d %v %v", a.status, a.header, a.body)
	}
	// Per client: shipping is not held back by billing.
	if a := f.post(t, []string{"Bearer " + f.shipping}, form, "", url.Values{"grant_type": {"client_credentials"}, "audience": {"carriers"}}.Encode()); a.status != 200 {
		t.Fatalf("another client: %d", a.status)
	}
}

// failingSessions is a session store that cannot answer.
type failingSessions struct{}

func (failingSessions) Peek(context.Context, string) (session.Entry, error) {
	return session.Entry{}, errors.New("dial tcp: connection refused")
}

func TestTokenExchangeStoreDownIsUnavailable(t *testing.T) {
	f := newFixture(t, session.NewMemoryStore(nil), func(o *Options) { o.Sessions = failingSessions{} })
	a := f.post(t, []string{"Bearer " + f.billing}, form, "", exchangeForm(f.userToken(t, "billing"), "inventory"))
	if a.status != 503 || a.body["error"] != "temporarily_unavailable" || a.header.Get("Retry-After") == "" || a.body["access_token"] != nil {
		t.Fatalf("%d %v", a.status, a.body)
	}
}
