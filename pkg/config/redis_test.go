package config

import (
	"reflect"
	"strings"
	"testing"
)

// redisBase passes Validate(false) with no Redis topology chosen yet.
func redisBase() Config {
	c := production()
	c.Redis.URL = ""
	return c
}

func TestValidateRedisTopologiesAccepted(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Redis)
	}{
		{"standalone", func(r *Redis) { r.URL = "redis://redis:6379/0" }},
		{"standalone acl in url", func(r *Redis) { r.URL = "rediss://sessiongate:pw@redis:6380/0" }},
		{"standalone password file", func(r *Redis) {
			r.URL = "redis://redis:6379/0"
			r.Username = "sessiongate"
			r.PasswordFile = "/run/secrets/redis-password"
		}},
		{"standalone tls files", func(r *Redis) {
			r.URL = "rediss://redis:6380"
			r.TLS = RedisTLS{CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem", ServerName: "redis.internal"}
		}},
		{"sentinel", func(r *Redis) {
			r.Sentinel = RedisSentinel{MasterName: "mymaster", Addrs: []string{"s1:26379", "s2:26379", "s3:26379"}, Password: "x"}
			r.Username = "sessiongate"
			r.PasswordFile = "/pw"
			r.TLS.Enabled = true
		}},
		{"cluster", func(r *Redis) { r.ClusterAddrs = []string{"c1:6379", "c2:6379"} }},
		{"cluster single seed with tls", func(r *Redis) {
			r.ClusterAddrs = []string{"clustercfg.example:6379"}
			r.TLS.CAFile = "/ca.pem"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := redisBase()
			tt.mutate(&c.Redis)
			if err := c.Validate(false); err != nil {
				t.Errorf("Validate = %v", err)
			}
			if !c.Redis.Configured() {
				t.Error("Configured() = false")
			}
		})
	}
}

func TestValidateRedisTopologiesRejected(t *testing.T) {
	tests := []struct {
		key    string // the error must start with "config: <key>: "
		mutate func(*Redis)
	}{
		{"redis.url", func(r *Redis) {}},
		{"redis.sentinel", func(r *Redis) {
			r.URL = "redis://r:6379"
			r.Sentinel = RedisSentinel{MasterName: "m", Addrs: []string{"s:26379"}}
		}},
		{"redis.cluster_addrs", func(r *Redis) {
			r.URL = "redis://r:6379"
			r.ClusterAddrs = []string{"c:6379"}
		}},
		{"redis.cluster_addrs", func(r *Redis) {
			r.Sentinel = RedisSentinel{MasterName: "m", Addrs: []string{"s:26379"}}
			r.ClusterAddrs = []string{"c:6379"}
		}},
		{"redis.sentinel.addrs", func(r *Redis) { r.Sentinel.MasterName = "m" }},
		{"redis.sentinel.master_name", func(r *Redis) { r.Sentinel.Addrs = []string{"s:26379"} }},
		{"redis.sentinel.addrs[1]", func(r *Redis) { r.Sentinel = RedisSentinel{MasterName: "m", Addrs: []string{"s:26379", "s2"}} }},
		{"redis.sentinel.password", func(r *Redis) { r.URL = "redis://r:6379"; r.Sentinel.Password = "x" }},
		{"redis.sentinel.username", func(r *Redis) { r.ClusterAddrs = []string{"c:6379"}; r.Sentinel.Username = "x" }},
		{"redis.cluster_addrs[0]", func(r *Redis) { r.ClusterAddrs = []string{"c"} }},
		{"redis.username", func(r *Redis) { r.URL = "redis://u:p@r:6379"; r.Username = "v" }},
		{"redis.password_file", func(r *Redis) { r.URL = "redis://:p@r:6379"; r.PasswordFile = "/pw" }},
		{"redis.tls.ca_file", func(r *Redis) { r.URL = "redis://r:6379"; r.TLS.CAFile = "/ca.pem" }},
		{"redis.tls.enabled", func(r *Redis) { r.URL = "redis://r:6379"; r.TLS.Enabled = true }},
		{"redis.tls.key_file", func(r *Redis) { r.URL = "rediss://r:6379"; r.TLS.CertFile = "/c.pem" }},
		{"redis.tls.cert_file", func(r *Redis) { r.ClusterAddrs = []string{"c:6379"}; r.TLS.KeyFile = "/k.pem" }},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			c := redisBase()
			tt.mutate(&c.Redis)
			err := c.Validate(false)
			wantErr(t, err, "config: "+tt.key+": ")
			if strings.Count(err.Error(), "config: ") != 1 {
				t.Errorf("want exactly one problem, got:\n%v", err)
			}
		})
	}
}

func TestValidateRedisDev(t *testing.T) {
	c := Default()
	c.Redis.PasswordFile = "/pw"
	wantErr(t, c.Validate(true), "config: redis.password_file: set, but no Redis is configured")
	c = Default()
	if c.Redis.Configured() {
		t.Error("Default().Redis.Configured() = true")
	}
}

func TestValidateRedisDoesNotEchoSecrets(t *testing.T) {
	c := redisBase()
	c.Redis.URL = "redis://:hunter2@r:6379"
	c.Redis.PasswordFile = "/pw"
	c.Redis.Sentinel.Password = "hunter3"
	err := c.Validate(false)
	if err == nil {
		t.Fatal("no error")
	}
	for _, secret := range []string{"hunter2", "hunter3"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error leaks %s: %v", secret, err)
		}
	}
}

func TestLoadRedisTopologyKeys(t *testing.T) {
	path := writeFile(t, `
redis:
  sentinel:
    master_name: mymaster
    addrs: [s1:26379, s2:26379]
    username: sentinel-user
  username: sessiongate
  password_file: /run/secrets/redis-password
  tls:
    ca_file: /ca.pem
    server_name: redis.internal
`)
	c := mustLoad(t, path, []string{
		"SESSIONGATE_REDIS_SENTINEL_ADDRS=s1:26379, s2:26379, s3:26379",
		"SESSIONGATE_REDIS_SENTINEL_PASSWORD=from-env",
		"SESSIONGATE_REDIS_TLS_ENABLED=true",
	})
	want := Redis{
		Timeout: Default().Redis.Timeout,
		Sentinel: RedisSentinel{MasterName: "mymaster", Addrs: []string{"s1:26379", "s2:26379", "s3:26379"},
			Username: "sentinel-user", Password: "from-env"},
		Username:     "sessiongate",
		PasswordFile: "/run/secrets/redis-password",
		TLS:          RedisTLS{Enabled: true, CAFile: "/ca.pem", ServerName: "redis.internal"},
	}
	if !reflect.DeepEqual(c.Redis, want) {
		t.Errorf("redis = %+v\nwant    %+v", c.Redis, want)
	}
	c = mustLoad(t, "", []string{"SESSIONGATE_REDIS_CLUSTER_ADDRS=c1:6379,c2:6379"})
	if !reflect.DeepEqual(c.Redis.ClusterAddrs, []string{"c1:6379", "c2:6379"}) {
		t.Errorf("cluster_addrs = %q", c.Redis.ClusterAddrs)
	}
	_, err := Load(writeFile(t, "redis:\n  sentinel:\n    master: x\n"), nil)
	wantErr(t, err, "config: redis.sentinel.master: unknown key")
}

func TestRedisTLSOn(t *testing.T) {
	for url, want := range map[string]bool{"redis://r": false, "rediss://r": true, "REDISS://r": true, "": false} {
		if got := (Redis{URL: url}).TLSOn(); got != want {
			t.Errorf("TLSOn(%q) = %v", url, got)
		}
	}
	if !(Redis{TLS: RedisTLS{ServerName: "x"}}).TLSOn() {
		t.Error("server_name alone does not turn TLS on")
	}
}
