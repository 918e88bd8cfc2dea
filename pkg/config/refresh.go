package config

import (
	"strings"
	"time"
)

// Refresh configures refresh tokens: a login that asks for one gets a
// short-lived access session and a refresh token the client trades at Path
// for the next pair (rotation, with reuse detection). Off by default: with
// Enabled false the admin API refuses "refresh": true and the edge answers
// nothing at Path.
type Refresh struct {
	Enabled bool `yaml:"enabled"`
	// Path is the request path of the token endpoint (POST, form-encoded
	// grant_type=refresh_token), answered by sessiongate itself.
	Path string `yaml:"path"`
	// TTL is a family's absolute lifetime from login, never extended;
	// IdleTimeout how long an unused refresh token stays valid.
	TTL         time.Duration `yaml:"ttl"`
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// AccessIdleTimeout and AccessAbsoluteTimeout are the lifetimes of each
	// access session of a family, instead of session.*.
	AccessIdleTimeout     time.Duration `yaml:"access_idle_timeout"`
	AccessAbsoluteTimeout time.Duration `yaml:"access_absolute_timeout"`
	// ReuseGrace is how long after a rotation the retired token still
	// yields the same successor (concurrent or retried refreshes) instead
	// of counting as reuse; 0 = never.
	ReuseGrace time.Duration `yaml:"reuse_grace"`
}

// maxReuseGrace caps the grace: within it a stolen retired token is as good
// as the current one, so it is a window for retries, not a setting to grow.
const maxReuseGrace = time.Minute

func defaultRefresh() Refresh {
	return Refresh{
		Path:                  "/auth/token",
		TTL:                   30 * 24 * time.Hour,
		IdleTimeout:           7 * 24 * time.Hour,
		AccessIdleTimeout:     15 * time.Minute,
		AccessAbsoluteTimeout: time.Hour,
		ReuseGrace:            10 * time.Second,
	}
}

// validateRefresh checks the refresh keys. They are checked whether or not
// refresh is enabled, so turning it on never uncovers an old mistake.
func (c *Config) validateRefresh(v *validator) {
	r := c.Refresh
	// The token endpoint is matched exactly, like the self-service paths.
	if r.Path == "" {
		v.fail("refresh.path", `must be a path such as "/auth/token", got ""`)
	} else if err := checkExactPath(r.Path); err != nil {
		v.check("refresh.path", err)
	} else if r.Path == c.Logout.Path {
		v.fail("refresh.path", "must differ from logout.path (%q)", c.Logout.Path)
	} else if ss := c.SelfService; r.Path == ss.PagePath || ss.PathPrefix != "" && (r.Path == ss.PathPrefix || strings.HasPrefix(r.Path, ss.PathPrefix+"/")) {
		v.fail("refresh.path", "must not be self_service.page_path or under self_service.path_prefix (%q), got %q", ss.PathPrefix, r.Path)
	}
	v.atLeast("refresh.access_idle_timeout", r.AccessIdleTimeout, time.Second)
	v.atLeast("refresh.access_absolute_timeout", r.AccessAbsoluteTimeout, time.Second)
	if r.AccessAbsoluteTimeout < r.AccessIdleTimeout {
		v.fail("refresh.access_absolute_timeout", "must be >= refresh.access_idle_timeout (%s), got %q", r.AccessIdleTimeout, r.AccessAbsoluteTimeout)
	}
	v.atLeast("refresh.idle_timeout", r.IdleTimeout, time.Second)
	if r.TTL < r.IdleTimeout {
		v.fail("refresh.ttl", "must be >= refresh.idle_timeout (%s), got %q", r.IdleTimeout, r.TTL)
	}
	if r.TTL < r.AccessAbsoluteTimeout {
		v.fail("refresh.ttl", "must be >= refresh.access_absolute_timeout (%s), got %q", r.AccessAbsoluteTimeout, r.TTL)
	}
	v.atMost("refresh.ttl", r.TTL, 365*24*time.Hour)
	if r.ReuseGrace < 0 {
		v.fail("refresh.reuse_grace", "must be >= 0 (0 = every second use is reuse), got %q", r.ReuseGrace)
	}
	v.atMost("refresh.reuse_grace", r.ReuseGrace, maxReuseGrace)
}
