package config

import (
	"math"
	"reflect"
	"testing"
)

func TestValidateSecurity(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		err    string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"origins", func(c *Config) {
			c.CSRF.AllowedOrigins = []string{"https://app.example.com", "http://localhost:8080", "https://a.example/"}
		}, ""},
		{"origins as an operator may spell them", func(c *Config) {
			c.CSRF.AllowedOrigins = []string{"HTTPS://App.Example.com:443//", " http://localhost:8080 "}
		}, ""},
		{"origin with path", func(c *Config) { c.CSRF.AllowedOrigins = []string{"https://app.example.com/app"} }, "csrf.allowed_origins[0]"},
		{"wildcard origin", func(c *Config) { c.CSRF.AllowedOrigins = []string{"*"} }, "csrf.allowed_origins[0]"},
		{"null origin", func(c *Config) { c.CSRF.AllowedOrigins = []string{"null"} }, "csrf.allowed_origins[0]"},
		{"origin without scheme", func(c *Config) { c.CSRF.AllowedOrigins = []string{"app.example.com"} }, "csrf.allowed_origins[0]"},
		{"origin with user", func(c *Config) { c.CSRF.AllowedOrigins = []string{"https://u@app.example.com"} }, "csrf.allowed_origins[0]"},
		{"origin with query", func(c *Config) { c.CSRF.AllowedOrigins = []string{"https://app.example.com?x"} }, "csrf.allowed_origins[0]"},
		{"ftp origin", func(c *Config) { c.CSRF.AllowedOrigins = []string{"ftp://app.example.com"} }, "csrf.allowed_origins[0]"},
		{"rate limit off", func(c *Config) { c.Admin.RateLimit, c.Admin.RateBurst = 0, 0 }, ""},
		{"negative rate", func(c *Config) { c.Admin.RateLimit = -1 }, "admin.rate_limit"},
		{"NaN rate", func(c *Config) { c.Admin.RateLimit = math.NaN() }, "admin.rate_limit"},
		{"infinite rate", func(c *Config) { c.Admin.RateLimit = math.Inf(1) }, "admin.rate_limit"},
		{"absurd rate", func(c *Config) { c.Admin.RateLimit = 1e9 }, "admin.rate_limit"},
		{"negative burst", func(c *Config) { c.Admin.RateBurst = -1 }, "admin.rate_burst"},
		{"tls", func(c *Config) { c.AdminTLS = AdminTLS{CertFile: "/c", KeyFile: "/k"} }, ""},
		{"mtls", func(c *Config) { c.AdminTLS = AdminTLS{CertFile: "/c", KeyFile: "/k", ClientCAFile: "/ca"} }, ""},
		{"cert without key", func(c *Config) { c.AdminTLS = AdminTLS{CertFile: "/c"} }, "admin_tls.key_file"},
		{"client CA without a server cert", func(c *Config) { c.AdminTLS = AdminTLS{ClientCAFile: "/ca"} }, "admin_tls.client_ca_file"},
		{"cert-only auth without a client CA", func(c *Config) { c.AdminTLS = AdminTLS{CertFile: "/c", KeyFile: "/k", ClientCertAuthOnly: true} }, "admin_tls.client_cert_auth_only"},
		{"cert-only auth needs no token file", func(c *Config) {
			c.AdminTokenFile = ""
			c.AdminTLS = AdminTLS{CertFile: "/c", KeyFile: "/k", ClientCAFile: "/ca", ClientCertAuthOnly: true}
		}, ""},
		{"mtls alone still needs a token file", func(c *Config) {
			c.AdminTokenFile = ""
			c.AdminTLS = AdminTLS{CertFile: "/c", KeyFile: "/k", ClientCAFile: "/ca"}
		}, "admin_token_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := production()
			tt.mutate(&c)
			err := c.Validate(false)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			wantErr(t, err, "config: "+tt.err)
		})
	}
}

func TestSecurityEnv(t *testing.T) {
	c := mustLoad(t, "", []string{
		"SESSIONGATE_CSRF_ENABLED=false",
		"SESSIONGATE_CSRF_ALLOWED_ORIGINS=https://A.example.com:443, http://b.example.com:8080",
		"SESSIONGATE_ADMIN_RATE_LIMIT=0.5",
		"SESSIONGATE_ADMIN_RATE_BURST=3",
		"SESSIONGATE_ADMIN_TLS_CERT_FILE=/c",
		"SESSIONGATE_ADMIN_TLS_KEY_FILE=/k",
		"SESSIONGATE_ADMIN_TLS_CLIENT_CA_FILE=/ca",
		"SESSIONGATE_ADMIN_TLS_CLIENT_CERT_AUTH_ONLY=true",
	})
	want := Default()
	// Origins are kept as written; authz.New normalises them.
	want.CSRF = CSRF{Enabled: false, AllowedOrigins: []string{"https://A.example.com:443", "http://b.example.com:8080"}}
	want.Admin = Admin{RateLimit: 0.5, RateBurst: 3}
	want.AdminTLS = AdminTLS{CertFile: "/c", KeyFile: "/k", ClientCAFile: "/ca", ClientCertAuthOnly: true}
	if !reflect.DeepEqual(*c, want) {
		t.Fatalf("Load = %+v\nwant   %+v", *c, want)
	}
	if _, err := Load("", []string{"SESSIONGATE_CSRF_ENABLED=maybe"}); err == nil {
		t.Fatal("csrf.enabled=maybe accepted")
	}
}

// TestEnvNamesUnique: admin_addr, admin.* and admin_tls.* all start
// SESSIONGATE_ADMIN_; no two keys may share a variable.
func TestEnvNamesUnique(t *testing.T) {
	seen := map[string]string{}
	for _, k := range Keys() {
		if other, dup := seen[EnvName(k)]; dup {
			t.Errorf("%s and %s both map to %s", other, k, EnvName(k))
		}
		seen[EnvName(k)] = k
	}
}
