package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// validate checks the Redis section: exactly one topology, and no setting
// that the chosen topology would silently ignore.
func (r Redis) validate(v *validator, dev bool) {
	var topologies []string
	if r.URL != "" {
		topologies = append(topologies, "redis.url")
	}
	if r.Sentinel.MasterName != "" || len(r.Sentinel.Addrs) > 0 {
		topologies = append(topologies, "redis.sentinel")
	}
	if len(r.ClusterAddrs) > 0 {
		topologies = append(topologies, "redis.cluster_addrs")
	}
	switch len(topologies) {
	case 0:
		if !dev {
			v.fail("redis.url", "required outside dev mode (or redis.sentinel.master_name and redis.sentinel.addrs for Sentinel, or redis.cluster_addrs for Cluster)")
		}
		for _, kv := range []struct {
			key string
			set bool
		}{
			{"redis.username", r.Username != ""},
			{"redis.password_file", r.PasswordFile != ""},
			{"redis.sentinel.username", r.Sentinel.Username != ""},
			{"redis.sentinel.password", r.Sentinel.Password != ""},
		} {
			if kv.set {
				v.fail(kv.key, "set, but no Redis is configured (redis.url, redis.sentinel or redis.cluster_addrs)")
			}
		}
	case 1:
	default:
		v.fail(topologies[1], "only one Redis topology may be set, got %s", strings.Join(topologies, " and "))
	}

	urlUser, urlPassword := false, false
	if r.URL != "" {
		// Only the scheme is echoed back: the URL may carry a password.
		u, err := url.Parse(r.URL)
		switch {
		case err != nil:
			v.fail("redis.url", "not a URL")
		case u.Scheme != "redis" && u.Scheme != "rediss":
			v.fail("redis.url", "must start with redis:// or rediss://, got scheme %q", u.Scheme)
		default:
			if u.User != nil {
				urlUser = u.User.Username() != ""
				_, urlPassword = u.User.Password()
			}
			if u.Scheme == "redis" && r.TLSOn() {
				v.fail(firstTLSKey(r.TLS), "TLS is configured but redis.url starts with redis:// (plain text); use rediss://")
			}
		}
	}
	// Two sources for one credential would leave the reader guessing which
	// one wins.
	if r.Username != "" && urlUser {
		v.fail("redis.username", "redis.url already names a user; set it in one place")
	}
	if r.PasswordFile != "" && urlPassword {
		v.fail("redis.password_file", "redis.url already carries a password; set it in one place")
	}

	s := r.Sentinel
	if s.MasterName != "" && len(s.Addrs) == 0 {
		v.fail("redis.sentinel.addrs", "required with redis.sentinel.master_name")
	}
	if len(s.Addrs) > 0 && s.MasterName == "" {
		v.fail("redis.sentinel.master_name", "required with redis.sentinel.addrs")
	}
	for i, a := range s.Addrs {
		v.check(fmt.Sprintf("redis.sentinel.addrs[%d]", i), checkAddr(a))
	}
	if (s.Username != "" || s.Password != "") && s.MasterName == "" && len(s.Addrs) == 0 && len(topologies) > 0 {
		key := "redis.sentinel.password"
		if s.Username != "" {
			key = "redis.sentinel.username"
		}
		v.fail(key, "only used with redis.sentinel.master_name and redis.sentinel.addrs")
	}
	for i, a := range r.ClusterAddrs {
		v.check(fmt.Sprintf("redis.cluster_addrs[%d]", i), checkAddr(a))
	}

	t := r.TLS
	if t.CertFile != "" && t.KeyFile == "" {
		v.fail("redis.tls.key_file", "required with redis.tls.cert_file")
	}
	if t.KeyFile != "" && t.CertFile == "" {
		v.fail("redis.tls.cert_file", "required with redis.tls.key_file")
	}

	v.positive("redis.timeout", r.Timeout)
	v.atMost("redis.timeout", r.Timeout, 10*time.Second)
}

// firstTLSKey names the TLS setting to blame for TLS being on.
func firstTLSKey(t RedisTLS) string {
	switch {
	case t.Enabled:
		return "redis.tls.enabled"
	case t.CAFile != "":
		return "redis.tls.ca_file"
	case t.CertFile != "":
		return "redis.tls.cert_file"
	case t.KeyFile != "":
		return "redis.tls.key_file"
	}
	return "redis.tls.server_name"
}
