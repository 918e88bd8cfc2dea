package config

// Events configures the security event log (logins, logouts, revocations,
// binding mismatches): a Redis stream shared by every replica, or memory
// in dev mode.
type Events struct {
	// MaxLen caps the stream near this many events (MAXLEN ~); older ones
	// are trimmed.
	MaxLen int `yaml:"max_len"`
}

func (c *Config) validateEvents(v *validator) {
	if n := c.Events.MaxLen; n < 1000 || n > 10_000_000 {
		v.fail("events.max_len", "must be 1000 to 10000000, got %d", n)
	}
}
