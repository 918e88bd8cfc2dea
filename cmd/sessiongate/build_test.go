package main

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/pkg/admin"
	"github.com/sessiongate/sessiongate/pkg/authz"
	"github.com/sessiongate/sessiongate/pkg/config"
	"github.com/sessiongate/sessiongate/pkg/revocation"
	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
)

// defaults returns the default config with mutate applied.
func defaults(mutate func(*config.Config)) *config.Config {
	c := config.Default()
	if mutate != nil {
		mutate(&c)
	}
	return &c
}

func TestRedisOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   config.Redis
		want session.RedisOptions
	}{
		{"standalone", config.Redis{URL: "rediss://r:6380/2", Timeout: 250 * time.Millisecond},
			session.RedisOptions{URL: "rediss://r:6380/2", Timeout: 250 * time.Millisecond}},
		{"sentinel with TLS",
			config.Redis{
				Sentinel: config.RedisSentinel{MasterName: "m", Addrs: []string{"s1:26379", "s2:26379"}, Username: "su", Password: "sp"},
				Username: "u", PasswordFile: "/run/pw",
				TLS:     config.RedisTLS{Enabled: true, CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", ServerName: "redis.internal"},
				Timeout: time.Second,
			},
			session.RedisOptions{
				SentinelMaster: "m", SentinelAddrs: []string{"s1:26379", "s2:26379"}, SentinelUsername: "su", SentinelPassword: "sp",
				Username: "u", PasswordFile: "/run/pw",
				TLS:     session.RedisTLS{Enabled: true, CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", ServerName: "redis.internal"},
				Timeout: time.Second,
			}},
		{"cluster", config.Redis{ClusterAddrs: []string{"n1:7000"}, Timeout: time.Millisecond},
			session.RedisOptions{ClusterAddrs: []string{"n1:7000"}, Timeout: time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := redisOptions(tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("redisOptions:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestAuthzOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(*config.Config)
		want    func(*authz.Options)
		wantErr string
	}{
		{"defaults", nil, func(*authz.Options) {}, ""},
		{"every key", func(c *config.Config) {
			c.Cookie = config.Cookie{Name: "sid", SameSite: "Strict", Domain: "example.com"}
			c.Token.Header, c.Token.Audience, c.Token.TTL = "x-jwt", "api", time.Minute
			c.Redis.Timeout = 40 * time.Millisecond
			c.LoginURL = "https://login.example.com/"
			c.Logout = config.Logout{Path: "/bye", RedirectURL: "https://example.com/"}
			c.CSRF = config.CSRF{Enabled: false, AllowedOrigins: []string{"HTTPS://App.example.com:443/"}, Shadow: true}
			c.Routes = []config.Route{
				{PathPrefix: "/public/", Access: "public"},
				{PathPrefix: "/admin/", Methods: []string{"POST"}, Access: "authenticated", Roles: []string{"admin"}, Shadow: true},
				{PathPrefix: "/", Access: "deny"},
			}
		}, func(o *authz.Options) {
			o.Cookie = session.Cookie{Name: "sid", SameSite: "Strict", Domain: "example.com"}
			o.TokenHeader, o.Audience, o.TokenTTL = "x-jwt", "api", time.Minute
			o.StoreTimeout = 40 * time.Millisecond
			o.LoginURL = "https://login.example.com/"
			o.LogoutPath, o.LogoutURL = "/bye", "https://example.com/"
			o.CSRF = authz.CSRF{Disabled: true, AllowedOrigins: []string{"HTTPS://App.example.com:443/"}, Shadow: true} // authz.New normalises
			o.Routes = []authz.Route{
				{PathPrefix: "/public/", Access: authz.Public},
				{PathPrefix: "/admin/", Methods: []string{"POST"}, Access: authz.Authenticated, Roles: []string{"admin"}, Shadow: true},
				{PathPrefix: "/", Access: authz.Deny},
			}
		}, ""},
		{"dynamic metadata off", func(c *config.Config) { c.Envoy.DynamicMetadata = false },
			func(o *authz.Options) { o.NoDynamicMetadata = true }, ""},
		{"dynamic metadata on, the default, spelled out", func(c *config.Config) { c.Envoy.DynamicMetadata = true },
			func(*authz.Options) {}, ""},
		{"binding", func(c *config.Config) {
			c.Session.Binding = config.SessionBinding{UserAgent: true, IPPrefix: config.IPPrefix{IPv4: 24, IPv6: 48}, Action: "revoke"}
			c.ClientIP.XFFTrustedHops = 2
		}, func(o *authz.Options) {
			o.Binding = authz.Binding{UserAgent: true, IPv4Bits: 24, IPv6Bits: 48, Action: authz.PolicyRevoke}
			o.XFFTrustedHops = 2
		}, ""},
		{"self-service elsewhere", func(c *config.Config) {
			c.SelfService = config.SelfService{PathPrefix: "/account/sessions", PagePath: "/account/devices"}
		}, func(o *authz.Options) {
			o.SelfService = authz.SelfService{PathPrefix: "/account/sessions", PagePath: "/account/devices"}
		}, ""},
		{"self-service off", func(c *config.Config) { c.SelfService = config.SelfService{} },
			func(o *authz.Options) { o.SelfService = authz.SelfService{} }, ""},
		{"rate anomaly", func(c *config.Config) { c.Session.Anomaly = config.SessionAnomaly{MaxRate: 600, Action: "deny"} },
			func(o *authz.Options) { o.Anomaly = authz.Anomaly{MaxRate: 600, Action: authz.PolicyDeny} }, ""},
		{"country change", func(c *config.Config) { c.Session.Anomaly.CountryChange = "revoke" },
			func(o *authz.Options) {
				o.Anomaly = authz.Anomaly{CountryChange: true, CountryAction: authz.PolicyRevoke}
			}, ""},
		{"refresh on", func(c *config.Config) { c.Refresh.Enabled, c.Refresh.Path = true, "/oauth/refresh" },
			func(o *authz.Options) { o.RefreshPath = "/oauth/refresh" }, ""},
		{"refresh off keeps its path out of Check", func(c *config.Config) { c.Refresh.Path = "/oauth/refresh" },
			func(*authz.Options) {}, ""},
		{"refresh on, default path", func(c *config.Config) { c.Refresh.Enabled = true },
			func(o *authz.Options) { o.RefreshPath = "/auth/token" }, ""},
		{"unknown country change action", func(c *config.Config) { c.Session.Anomaly.CountryChange = "block" }, nil, "session.anomaly.country_change"},
		{"unknown anomaly action", func(c *config.Config) { c.Session.Anomaly.Action = "block" }, nil, "session.anomaly.action"},
		{"unknown binding action", func(c *config.Config) { c.Session.Binding.Action = "block" }, nil, "session.binding.action"},
		{"token shape and size", func(c *config.Config) {
			c.Token.WarnBytes, c.Token.MaxBytes = 0, 2048
			c.Routes = []config.Route{
				{PathPrefix: "/billing/", Access: "authenticated", Roles: []string{"billing"}, Claims: []string{"email", "plan"}, RolesInToken: "matched"},
				{PathPrefix: "/lean/", Access: "authenticated", Claims: []string{}, RolesInToken: "all"},
			}
		}, func(o *authz.Options) {
			o.TokenWarnBytes, o.TokenMaxBytes = 0, 2048
			o.Routes = []authz.Route{
				{PathPrefix: "/billing/", Access: authz.Authenticated, Roles: []string{"billing"}, Claims: []string{"email", "plan"}, RolesInToken: authz.RolesMatched},
				{PathPrefix: "/lean/", Access: authz.Authenticated, Claims: []string{}, RolesInToken: authz.RolesAll},
			}
		}, ""},
		{"owned claim", func(c *config.Config) {
			c.Routes = []config.Route{{PathPrefix: "/", Access: "authenticated", Claims: []string{"email", "Roles"}}}
		}, nil, "routes[0].claims"},
		{"unknown roles_in_token", func(c *config.Config) {
			c.Routes = []config.Route{{PathPrefix: "/", Access: "authenticated", RolesInToken: "some"}}
		}, nil, "routes[0].roles_in_token"},
		{"unknown access", func(c *config.Config) {
			c.Routes = []config.Route{{PathPrefix: "/", Access: "public"}, {PathPrefix: "/x", Access: "sometimes"}}
		}, nil, "routes[1].access"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := authzOptions(defaults(tc.mutate))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := authz.Options{
				Routes:       []authz.Route{},
				SPIFFE:       authz.SPIFFE{Principals: map[string]string{}},
				Cookie:       session.Cookie{Name: "__Host-sid", SameSite: "Lax"},
				TokenHeader:  "x-internal-jwt",
				Audience:     "internal",
				TokenTTL:     5 * time.Minute,
				StoreTimeout: 100 * time.Millisecond,
				LogoutPath:   "/auth/logout",
				SelfService:  authz.SelfService{PathPrefix: "/auth/sessions", PagePath: "/auth/devices"},

				TokenWarnBytes: 4096,
				TokenMaxBytes:  8192,
			}
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("authzOptions:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestAdminOptions(t *testing.T) {
	base := admin.Options{
		Cookie:          session.Cookie{Name: "__Host-sid", SameSite: "Lax"},
		IdleTimeout:     30 * time.Minute,
		AbsoluteTimeout: 12 * time.Hour,
		RateLimit:       100,
		RateBurst:       200,
	}
	for _, tc := range []struct {
		name    string
		mutate  func(*config.Config)
		want    func(*admin.Options)
		wantErr string
	}{
		{"token file", func(c *config.Config) { c.AdminTokenFile = "/run/tokens" }, func(*admin.Options) {}, ""},
		{"session limits", func(c *config.Config) {
			c.AdminTokenFile = "/run/tokens"
			c.Session = config.Session{IdleTimeout: time.Minute, AbsoluteTimeout: time.Hour, MaxPerUser: 3, OnLimit: "reject"}
			c.Admin = config.Admin{RateLimit: 5, RateBurst: 10}
		}, func(o *admin.Options) {
			o.IdleTimeout, o.AbsoluteTimeout = time.Minute, time.Hour
			o.Limit = session.Limit{MaxPerUser: 3, Reject: true}
			o.RateLimit, o.RateBurst = 5, 10
		}, ""},
		{"evict oldest", func(c *config.Config) {
			c.AdminTokenFile = "/run/tokens"
			c.Session.MaxPerUser = 2
		}, func(o *admin.Options) { o.Limit = session.Limit{MaxPerUser: 2} }, ""},
		{"client certificates alone", func(c *config.Config) {
			c.AdminAddr = ":9003"
			c.AdminTLS = config.AdminTLS{CertFile: "s.crt", KeyFile: "s.key", ClientCAFile: "ca.pem", ClientCertAuthOnly: true}
		}, func(o *admin.Options) { o.ClientCertAuthOnly = true }, ""},
		{"refresh", func(c *config.Config) {
			c.AdminTokenFile = "/run/tokens"
			c.Refresh = config.Refresh{Enabled: true, Path: "/t", TTL: 48 * time.Hour, IdleTimeout: 24 * time.Hour,
				AccessIdleTimeout: time.Minute, AccessAbsoluteTimeout: time.Hour, ReuseGrace: 3 * time.Second}
		}, func(o *admin.Options) {
			o.Refresh = &session.RefreshPolicy{AccessIdle: time.Minute, AccessAbsolute: time.Hour, TTL: 48 * time.Hour,
				Idle: 24 * time.Hour, Grace: 3 * time.Second}
		}, ""},
		{"refresh off", func(c *config.Config) {
			c.AdminTokenFile = "/run/tokens"
			c.Refresh.Enabled = false
			c.Refresh.TTL = time.Hour
		}, func(*admin.Options) {}, ""},
		{"open on loopback", nil, func(o *admin.Options) { o.Open = true }, ""},
		{"open on localhost", func(c *config.Config) { c.AdminAddr = "localhost:9003" }, func(o *admin.Options) { o.Open = true }, ""},
		{"open on ::1", func(c *config.Config) { c.AdminAddr = "[::1]:9003" }, func(o *admin.Options) { o.Open = true }, ""},
		{"open on every interface", func(c *config.Config) { c.AdminAddr = ":9003" }, nil, "must be a loopback address"},
		{"open on a network address", func(c *config.Config) { c.AdminAddr = "10.0.0.1:9003" }, nil, "must be a loopback address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := adminOptions(defaults(tc.mutate))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := base
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("adminOptions:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestFileOptions(t *testing.T) {
	c := defaults(func(c *config.Config) {
		c.Token.SigningKeys = []string{"a.pem", "b.pem"}
		c.Token.VerificationKeys = []string{"old.pem"}
		c.Token.KeyIDs = map[string]string{"a.pem": "2026-11"}
	})
	want := token.KeyFiles{Signing: []string{"a.pem", "b.pem"}, Verification: []string{"old.pem"}, KIDs: map[string]string{"a.pem": "2026-11"}}
	if got := keyFiles(c); !reflect.DeepEqual(got, want) {
		t.Errorf("keyFiles = %+v, want %+v", got, want)
	}

	if _, on := adminTLSFiles(defaults(nil)); on {
		t.Error("adminTLSFiles: TLS on without a certificate")
	}
	c = defaults(func(c *config.Config) {
		c.AdminTLS = config.AdminTLS{CertFile: "s.crt", KeyFile: "s.key", ClientCAFile: "ca.pem"}
	})
	files, on := adminTLSFiles(c)
	if wantFiles := (admin.TLSFiles{CertFile: "s.crt", KeyFile: "s.key", ClientCAFile: "ca.pem"}); !on || files != wantFiles {
		t.Errorf("adminTLSFiles = %+v %v, want %+v true", files, on, wantFiles)
	}
}

// TestRedisTLSOnAgrees: config (which validates) and the session client
// (which dials) each decide whether Redis TLS is on, from the config's keys
// and from the options redisOptions maps them to. For every combination of
// the TLS keys on every topology they must agree: config.Redis.TLSOn exactly
// when the client is built with TLS, or refuses a plain redis:// URL.
func TestRedisTLSOnAgrees(t *testing.T) {
	dir := t.TempDir()
	pair := selfSigned(t, "redis.internal")
	caFile, certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writeFile(t, caFile, string(pair[0]))
	writeFile(t, certFile, string(pair[0]))
	writeFile(t, keyFile, string(pair[1]))
	topologies := map[string]config.Redis{
		"redis url":  {URL: "redis://127.0.0.1:1"},
		"rediss url": {URL: "rediss://127.0.0.1:1"},
		"sentinel":   {Sentinel: config.RedisSentinel{MasterName: "m", Addrs: []string{"127.0.0.1:1"}}},
		"cluster":    {ClusterAddrs: []string{"127.0.0.1:1"}},
	}
	for name, topo := range topologies {
		for mask := range 16 {
			r := topo
			r.Timeout = time.Second
			r.TLS.Enabled = mask&1 != 0
			if mask&2 != 0 {
				r.TLS.ServerName = "redis.internal"
			}
			if mask&4 != 0 {
				r.TLS.CAFile = caFile
			}
			if mask&8 != 0 {
				r.TLS.CertFile, r.TLS.KeyFile = certFile, keyFile
			}
			var clientTLS bool
			c, err := redisOptions(r).NewClient()
			switch {
			case err != nil && strings.Contains(err.Error(), "use rediss://"):
				clientTLS = true
			case err != nil:
				t.Fatalf("%s %+v: %v", name, r.TLS, err)
			default:
				switch c := c.(type) {
				case *redis.Client:
					clientTLS = c.Options().TLSConfig != nil
				case *redis.ClusterClient:
					clientTLS = c.Options().TLSConfig != nil
				default:
					t.Fatalf("%s: client %T", name, c)
				}
				c.Close()
			}
			if on := r.TLSOn(); on != clientTLS {
				t.Errorf("%s %+v: config TLSOn %v, client TLS %v", name, r.TLS, on, clientTLS)
			}
		}
	}
}

// The access vocabulary exists twice, in config (which imports nothing of
// the project but pkg/token's claim-name rule) and in authz; they must never
// disagree.
func TestAccessLevelsAgree(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range config.AccessLevels {
		a, err := authz.ParseAccess(s)
		if err != nil {
			t.Errorf("config accepts access %q, authz does not: %v", s, err)
			continue
		}
		if a.String() != s {
			t.Errorf("authz reads %q as %q", s, a)
		}
		seen[s] = true
	}
	for a := authz.Access(0); a < 16; a++ {
		s := a.String()
		if _, err := authz.ParseAccess(s); err == nil && !seen[s] {
			t.Errorf("authz knows access %q, config does not accept it", s)
		}
	}
}

// roles_in_token's vocabulary, like access, is in config and in authz.
func TestRolesInTokenValuesAgree(t *testing.T) {
	if !slices.Equal(config.RolesInTokenValues, authz.RolesInTokenValues) {
		t.Fatalf("config %q, authz %q", config.RolesInTokenValues, authz.RolesInTokenValues)
	}
	for _, s := range config.RolesInTokenValues {
		r, err := authz.ParseRolesInToken(s)
		if err != nil || r.String() != s {
			t.Errorf("authz reads %q as %v, %v", s, r, err)
		}
	}
}

func TestRevocationOptions(t *testing.T) {
	for _, tt := range []struct {
		name       string
		mutate     func(*config.Config)
		wantWindow time.Duration
		want       revocation.Options
	}{
		{"defaults", nil, 5 * time.Minute, revocation.Options{MaxSubscribers: 256, MaxEntries: 100_000}},
		{"token ttl longer", func(c *config.Config) { c.Token.TTL = 10 * time.Minute }, 10 * time.Minute,
			revocation.Options{MaxSubscribers: 256, MaxEntries: 100_000}},
		// A token obtained by exchange carries the session's sid too.
		{"exchange ttl longer", func(c *config.Config) { c.Token.TTL = time.Minute; c.Token.ExchangeTTL = 15 * time.Minute }, 15 * time.Minute,
			revocation.Options{MaxSubscribers: 256, MaxEntries: 100_000}},
		{"caps", func(c *config.Config) { c.Revocations.MaxSubscribers = 3; c.Revocations.MaxEntries = 5000 }, 5 * time.Minute,
			revocation.Options{MaxSubscribers: 3, MaxEntries: 5000}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := defaults(tt.mutate)
			if got := revocationWindow(c); got != tt.wantWindow {
				t.Errorf("revocationWindow = %v, want %v", got, tt.wantWindow)
			}
			if got := revocationOptions(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("revocationOptions = %+v, want %+v", got, tt.want)
			}
		})
	}
}
