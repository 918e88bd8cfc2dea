package config

import (
	"fmt"
	"strings"
	"time"
)

// Services maps callers identified by their mTLS certificate to registered
// services. Envoy reports the verified client certificate's URI SAN as the
// source principal; in a mesh that is a SPIFFE ID.
type Services struct {
	// SPIFFE maps exact SPIFFE IDs to service names.
	SPIFFE map[string]string `yaml:"spiffe"`
	// SPIFFETrustDomain, when set, maps spiffe://<it>/ns/<ns>/sa/<sa> to the
	// service <sa>, for IDs SPIFFE does not name.
	SPIFFETrustDomain string `yaml:"spiffe_trust_domain"`
}

// validate checks the shape; the SPIFFE ID and service name grammars are
// checked where the mapping is built (serve, authz.NewSPIFFE), by the one
// function that defines each.
func (s Services) validate(v *validator) {
	for id, name := range s.SPIFFE {
		if !strings.HasPrefix(id, "spiffe://") {
			v.fail("services.spiffe", "%q is not a SPIFFE ID (spiffe://...)", id)
		}
		if name == "" {
			v.fail("services.spiffe", "%q maps to an empty service name", id)
		}
	}
	if td := s.SPIFFETrustDomain; td != "" && (strings.Contains(td, "/") || strings.Contains(td, ":") || td != strings.ToLower(td)) {
		v.fail("services.spiffe_trust_domain", "want a bare lower-case trust domain such as cluster.local, got %q", td)
	}
}

// validateExchange checks token_exchange and the token.exchange_* keys.
func (c *Config) validateExchange(v *validator) {
	v.atLeast("token.exchange_ttl", c.Token.ExchangeTTL, 10*time.Second)
	v.atMost("token.exchange_ttl", c.Token.ExchangeTTL, time.Hour)
	if c.Token.ExchangeRateLimit < 0 {
		v.fail("token.exchange_rate_limit", "must be >= 0, got %v", c.Token.ExchangeRateLimit)
	}
	if c.Token.ExchangeRateBurst < 0 {
		v.fail("token.exchange_rate_burst", "must be >= 0, got %d", c.Token.ExchangeRateBurst)
	}
	for name, auds := range c.TokenExchange {
		if name == "" {
			v.fail("token_exchange", "a service with an empty name")
		}
		for i, a := range auds {
			v.required(fmt.Sprintf("token_exchange.%s[%d]", name, i), a)
		}
	}
}
