package config

import (
	"strings"
	"testing"
)

func TestValidateRevocations(t *testing.T) {
	accepts := []func(*Config){
		func(c *Config) { c.Revocations.MaxSubscribers = 1 },
		func(c *Config) { c.Revocations.MaxSubscribers = 100_000 },
		func(c *Config) { c.Revocations.MaxEntries = 1000 },
		func(c *Config) { c.Revocations.MaxEntries = 10_000_000 },
		func(c *Config) { c.Revocations.TokenFile = "/run/secrets/revocations" },
	}
	for i, mutate := range accepts {
		c := production()
		mutate(&c)
		if err := c.Validate(false); err != nil {
			t.Errorf("accept %d: %v", i, err)
		}
	}
	rejects := []struct {
		key    string
		mutate func(*Config)
	}{
		{"revocations.max_subscribers", func(c *Config) { c.Revocations.MaxSubscribers = 0 }},
		{"revocations.max_subscribers", func(c *Config) { c.Revocations.MaxSubscribers = 100_001 }},
		{"revocations.max_entries", func(c *Config) { c.Revocations.MaxEntries = 999 }},
		{"revocations.max_entries", func(c *Config) { c.Revocations.MaxEntries = 10_000_001 }},
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

func TestLoadRevocationsFromEnv(t *testing.T) {
	c, err := Load("", []string{
		"SESSIONGATE_REVOCATIONS_TOKEN_FILE=/run/secrets/rev",
		"SESSIONGATE_REVOCATIONS_MAX_SUBSCRIBERS=12",
		"SESSIONGATE_REVOCATIONS_MAX_ENTRIES=5000",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Revocations{TokenFile: "/run/secrets/rev", MaxSubscribers: 12, MaxEntries: 5000}
	if c.Revocations != want {
		t.Errorf("Revocations = %+v, want %+v", c.Revocations, want)
	}
}
