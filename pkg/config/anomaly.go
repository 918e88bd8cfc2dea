package config

// SessionAnomaly notices sessions used unlike a person uses one.
type SessionAnomaly struct {
	// MaxRate is the most Checks per minute one session may make through
	// one replica; 0 is off.
	MaxRate int `yaml:"max_rate"`
	// Action is what exceeding it does: log, deny (429) or revoke.
	Action string `yaml:"action"`
	// CountryChange is what a session used from another country than it
	// was created in does: "" (off), log, deny or revoke. Needs
	// geoip.database.
	CountryChange string `yaml:"country_change"`
}

// GeoIP names the MaxMind-format database (.mmdb, Country or City) that
// says which country an address is in. sessiongate ships none.
type GeoIP struct {
	Database string `yaml:"database"`
}

func (c *Config) validateAnomaly(v *validator) {
	a := c.Session.Anomaly
	if a.MaxRate < 0 || a.MaxRate > 1_000_000 {
		v.fail("session.anomaly.max_rate", "must be 0 (off) to 1000000 Checks per minute, got %d", a.MaxRate)
	}
	v.oneOf("session.anomaly.action", a.Action, "log", "deny", "revoke")
	if a.CountryChange != "" {
		v.oneOf("session.anomaly.country_change", a.CountryChange, "log", "deny", "revoke")
		if c.GeoIP.Database == "" {
			v.fail("session.anomaly.country_change", "needs geoip.database")
		}
	}
}
