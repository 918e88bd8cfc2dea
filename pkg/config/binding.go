package config

// SessionBinding ties a session to where it was created: the User-Agent
// and the client network the login service reported (device.user_agent,
// device.ip). Everything off is the default.
type SessionBinding struct {
	// UserAgent binds a session to its creation User-Agent with version
	// numbers (digits and dots) removed, so a browser update keeps it.
	UserAgent bool `yaml:"user_agent"`
	// IPPrefix binds a session to the network around its creation address:
	// the first IPv4 or IPv6 bits of it. 0 turns a family off.
	IPPrefix IPPrefix `yaml:"ip_prefix"`
	// Action is what a mismatch does: log (allow), deny (401) or revoke
	// (401 and the session deleted).
	Action string `yaml:"action"`
}

// IPPrefix is a prefix length per address family.
type IPPrefix struct {
	IPv4 int `yaml:"ipv4"`
	IPv6 int `yaml:"ipv6"`
}

// ClientIP says where the client's address comes from.
type ClientIP struct {
	// XFFTrustedHops is 0 to take Envoy's source.address (right when Envoy's
	// own xff_num_trusted_hops is set, or at the edge), or N to take the
	// N-th entry from the right of X-Forwarded-For as Envoy forwards it.
	XFFTrustedHops int `yaml:"xff_trusted_hops"`
}

// On reports whether any binding is configured.
func (b SessionBinding) On() bool {
	return b.UserAgent || b.IPPrefix.IPv4 > 0 || b.IPPrefix.IPv6 > 0
}

// maxTrustedHops bounds client_ip.xff_trusted_hops: more proxies than this
// in front of Envoy is a typo, not a topology.
const maxTrustedHops = 16

func (c *Config) validateBinding(v *validator) {
	b := c.Session.Binding
	if p := b.IPPrefix.IPv4; p < 0 || p > 32 {
		v.fail("session.binding.ip_prefix.ipv4", "must be 0 (off) to 32, got %d", p)
	}
	if p := b.IPPrefix.IPv6; p < 0 || p > 128 {
		v.fail("session.binding.ip_prefix.ipv6", "must be 0 (off) to 128, got %d", p)
	}
	v.oneOf("session.binding.action", b.Action, "log", "deny", "revoke")
	if h := c.ClientIP.XFFTrustedHops; h < 0 || h > maxTrustedHops {
		v.fail("client_ip.xff_trusted_hops", "must be 0 (source.address) to %d, got %d", maxTrustedHops, h)
	}
}
