package config

// Revocations configures the revocation feed (GET /v1/revocations on
// http_addr): the sids of sessions revoked while their tokens may live,
// for verifiers that follow it.
type Revocations struct {
	// TokenFile holds the bearer tokens a follower must present (one per
	// line, ≥ 16 characters, like admin_token_file); empty = open to
	// anyone who reaches http_addr.
	TokenFile string `yaml:"token_file"`
	// MaxSubscribers caps the SSE clients one replica serves at once.
	MaxSubscribers int `yaml:"max_subscribers"`
	// MaxEntries caps the revocations in force a replica holds and sends
	// in a snapshot; beyond it the feed reports itself out of sync (its
	// followers fail closed) until entries expire.
	MaxEntries int `yaml:"max_entries"`
}

func (c *Config) validateRevocations(v *validator) {
	if n := c.Revocations.MaxSubscribers; n < 1 || n > 100_000 {
		v.fail("revocations.max_subscribers", "must be 1 to 100000, got %d", n)
	}
	if n := c.Revocations.MaxEntries; n < 1000 || n > 10_000_000 {
		v.fail("revocations.max_entries", "must be 1000 to 10000000, got %d", n)
	}
}
