package config

import (
	"fmt"
	"strings"
)

// SelfService configures the routes on which a signed-in user lists and
// signs out their own sessions (see the README, "Self-service"). Both are
// answered by sessiongate itself at the edge; an empty value disables one.
type SelfService struct {
	// PathPrefix is where the JSON routes live: GET PathPrefix,
	// DELETE PathPrefix/{session_ref}, POST PathPrefix/revoke-others and
	// the page's form posts. Every path under it is sessiongate's.
	PathPrefix string `yaml:"path_prefix"`
	// PagePath is the HTML page listing the user's devices.
	PagePath string `yaml:"page_path"`
}

func (c *Config) validateSelfService(v *validator) {
	s := c.SelfService
	v.check("self_service.path_prefix", checkExactPath(s.PathPrefix))
	v.check("self_service.page_path", checkExactPath(s.PagePath))
	under := func(p, prefix string) bool {
		return prefix != "" && p != "" && (p == prefix || strings.HasPrefix(p, prefix+"/"))
	}
	if under(s.PagePath, s.PathPrefix) || under(s.PathPrefix, s.PagePath) {
		v.fail("self_service.page_path", "must not be self_service.path_prefix (%q), under it or above it, got %q", s.PathPrefix, s.PagePath)
	}
	if lp := c.Logout.Path; under(lp, s.PathPrefix) || under(s.PathPrefix, lp) {
		v.fail("self_service.path_prefix", "must not overlap logout.path (%q), got %q", lp, s.PathPrefix)
	}
	if lp := c.Logout.Path; lp != "" && lp == s.PagePath {
		v.fail("self_service.page_path", "must not be logout.path (%q)", lp)
	}
}

// checkExactPath accepts "" or a path in the one form Check matches
// exactly: "/" then segments of unreserved characters (letters, digits,
// "-", "_", "." and "~"), no empty, "." or ".." segment, no trailing slash.
// Anything else could never be requested in canonical form.
func checkExactPath(p string) error {
	if p == "" {
		return nil
	}
	if p[0] != '/' || p == "/" {
		return fmt.Errorf(`must be empty or a path such as "/auth/sessions" (no trailing slash), got %q`, p)
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("must not hold an empty, %q or %q segment, got %q", ".", "..", p)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.~", c) >= 0) {
				return fmt.Errorf("must hold only letters, digits, \"-\", \"_\", \".\", \"~\" and \"/\", got %q", p)
			}
		}
	}
	return nil
}
