package config

import (
	"strings"
	"testing"
)

func TestValidateBinding(t *testing.T) {
	if Default().Session.Binding.On() {
		t.Fatal("binding is on by default")
	}
	accepts := []struct {
		name   string
		mutate func(*Config)
	}{
		{"user agent, deny", func(c *Config) { c.Session.Binding.UserAgent = true; c.Session.Binding.Action = "deny" }},
		{"prefix bounds", func(c *Config) { c.Session.Binding.IPPrefix = IPPrefix{IPv4: 32, IPv6: 128} }},
		{"one family", func(c *Config) { c.Session.Binding.IPPrefix = IPPrefix{IPv6: 48}; c.Session.Binding.Action = "revoke" }},
		{"hops", func(c *Config) { c.ClientIP.XFFTrustedHops = maxTrustedHops }},
		{"webhook", func(c *Config) {
			c.Events.Webhook = EventsWebhook{URL: "https://siem.example.com/hook?src=sg", SecretFile: "/run/secrets/webhook"}
		}},
		{"country change", func(c *Config) {
			c.Session.Anomaly.CountryChange = "revoke"
			c.GeoIP.Database = "/geo/country.mmdb"
		}},
		{"rate anomaly", func(c *Config) { c.Session.Anomaly = SessionAnomaly{MaxRate: 600, Action: "deny"} }},
	}
	for _, tt := range accepts {
		t.Run(tt.name, func(t *testing.T) {
			c := production()
			tt.mutate(&c)
			if err := c.Validate(false); err != nil {
				t.Errorf("Validate = %v", err)
			}
		})
	}
	rejects := []struct {
		key    string
		mutate func(*Config)
	}{
		{"session.binding.ip_prefix.ipv4", func(c *Config) { c.Session.Binding.IPPrefix.IPv4 = 33 }},
		{"session.binding.ip_prefix.ipv4", func(c *Config) { c.Session.Binding.IPPrefix.IPv4 = -1 }},
		{"session.binding.ip_prefix.ipv6", func(c *Config) { c.Session.Binding.IPPrefix.IPv6 = 129 }},
		{"session.binding.action", func(c *Config) { c.Session.Binding.Action = "" }},
		{"session.binding.action", func(c *Config) { c.Session.Binding.Action = "Deny" }},
		{"session.binding.action", func(c *Config) { c.Session.Binding.Action = "block" }},
		{"client_ip.xff_trusted_hops", func(c *Config) { c.ClientIP.XFFTrustedHops = -1 }},
		{"client_ip.xff_trusted_hops", func(c *Config) { c.ClientIP.XFFTrustedHops = maxTrustedHops + 1 }},
		{"events.max_len", func(c *Config) { c.Events.MaxLen = 999 }},
		{"events.webhook.url", func(c *Config) { c.Events.Webhook = EventsWebhook{URL: "ftp://x", SecretFile: "/s"} }},
		{"events.webhook.url", func(c *Config) { c.Events.Webhook = EventsWebhook{URL: "/hook", SecretFile: "/s"} }},
		{"events.webhook.url", func(c *Config) { c.Events.Webhook = EventsWebhook{URL: "https://u:p@h/x", SecretFile: "/s"} }},
		{"events.webhook.secret_file", func(c *Config) { c.Events.Webhook = EventsWebhook{URL: "https://siem.example.com/hook"} }},
		{"events.webhook.secret_file", func(c *Config) { c.Events.Webhook = EventsWebhook{SecretFile: "/s"} }},
		{"session.anomaly.max_rate", func(c *Config) { c.Session.Anomaly.MaxRate = -1 }},
		{"session.anomaly.max_rate", func(c *Config) { c.Session.Anomaly.MaxRate = 1_000_001 }},
		{"session.anomaly.action", func(c *Config) { c.Session.Anomaly.Action = "block" }},
		{"session.anomaly.country_change", func(c *Config) { c.Session.Anomaly.CountryChange = "log" }},
		{"session.anomaly.country_change", func(c *Config) {
			c.Session.Anomaly.CountryChange = "block"
			c.GeoIP.Database = "/geo/country.mmdb"
		}},
		{"events.max_len", func(c *Config) { c.Events.MaxLen = 10_000_001 }},
	}
	for _, tt := range rejects {
		t.Run(tt.key, func(t *testing.T) {
			c := production()
			tt.mutate(&c)
			err := c.Validate(false)
			wantErr(t, err, "config: "+tt.key+": ")
			if strings.Count(err.Error(), "config: ") != 1 {
				t.Errorf("want exactly one problem, got %v", err)
			}
		})
	}
}

func TestLoadBinding(t *testing.T) {
	env := []string{
		"SESSIONGATE_SESSION_BINDING_USER_AGENT=true",
		"SESSIONGATE_SESSION_BINDING_IP_PREFIX_IPV4=24",
		"SESSIONGATE_SESSION_BINDING_IP_PREFIX_IPV6=48",
		"SESSIONGATE_SESSION_BINDING_ACTION=revoke",
		"SESSIONGATE_CLIENT_IP_XFF_TRUSTED_HOPS=2",
	}
	c, err := Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	want := SessionBinding{UserAgent: true, IPPrefix: IPPrefix{IPv4: 24, IPv6: 48}, Action: "revoke"}
	if c.Session.Binding != want || c.ClientIP.XFFTrustedHops != 2 {
		t.Errorf("got %+v, hops %d", c.Session.Binding, c.ClientIP.XFFTrustedHops)
	}
}
