package session

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// RedisOptions say how to reach Redis. Exactly one topology is set: URL
// (standalone), SentinelMaster with SentinelAddrs (Sentinel), or
// ClusterAddrs (Cluster). The fields mirror the redis.* config keys, which
// errors name.
type RedisOptions struct {
	URL string // redis.url: redis:// or rediss://, user, password and db in the URL

	SentinelMaster   string   // redis.sentinel.master_name
	SentinelAddrs    []string // redis.sentinel.addrs
	SentinelUsername string   // redis.sentinel.username
	SentinelPassword string   // redis.sentinel.password

	ClusterAddrs []string // redis.cluster_addrs: seed nodes

	// Username and PasswordFile authenticate to the data nodes when the URL
	// does not (redis.username, redis.password_file). The file is read again
	// for every new connection, so a rotated password is picked up without a
	// restart by connections made after the rotation.
	Username     string
	PasswordFile string

	TLS RedisTLS

	// Timeout bounds every socket read and write and the wait for a pooled
	// connection (redis.timeout). Callers still bound each call with a
	// context; see NewClient.
	Timeout time.Duration
}

// RedisTLS configures TLS (redis.tls.*). A rediss:// URL turns it on too.
type RedisTLS struct {
	Enabled    bool
	CAFile     string // verifies the servers; empty = system roots
	CertFile   string // client certificate, with KeyFile
	KeyFile    string
	ServerName string // name expected in every node's certificate; empty = the dialled host
}

// on reports whether TLS is configured by the options alone; a rediss://
// URL turns it on too. config.Redis.TLSOn answers the same for the config
// keys (a test in cmd/sessiongate holds them together).
func (t RedisTLS) on() bool {
	return t.Enabled || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

// minIdleConns is the warm pool per Redis node: enough for a burst of
// concurrent Checks on a 2-core replica without dialling, small enough
// that a Cluster of many nodes costs Redis few idle clients.
const minIdleConns = 4

// NewRedisClient builds a standalone client from a redis:// or rediss://
// URL; see RedisOptions.NewClient for the settings it applies.
func NewRedisClient(url string, timeout time.Duration) (redis.UniversalClient, error) {
	return RedisOptions{URL: url, Timeout: timeout}.NewClient()
}

// NewClient builds the go-redis client for the configured topology.
//
// Every call sessiongate makes carries a context deadline (redis.timeout on
// the Check path), and the client is set up so that deadline is the bound:
//
//   - ContextTimeoutEnabled: without it go-redis ignores context deadlines
//     and a stalled Redis would hold each call for its socket timeout.
//   - Read, write and pool-wait timeouts equal redis.timeout, so even a call
//     made without a deadline cannot hang.
//   - Connections are dialled in the background while the caller waits on
//     its context; DialerRetries is 1 because a second dial attempt would
//     start after the caller has already given up, and only keep sockets
//     and goroutines busy during an outage. The next call dials again.
//   - MaxRetries is 1, with a backoff of a small fraction of redis.timeout.
//     go-redis sleeps between attempts on the caller's context and does not
//     retry once it has expired, so a retry can never stretch a call beyond
//     its deadline; it only turns an error that arrives fast (a connection
//     reset by a restarted server, READONLY from a master just demoted by
//     Sentinel) into an answer when time remains. A call that timed out is
//     not retried. Store operations are written to tolerate being applied
//     twice (see Create), as a retry after a lost reply implies.
//   - A few connections per node are kept open (MinIdleConns), dialled
//     when the client is made and re-dialled in the background when they
//     drop, so the first Check after startup or after a quiet spell does
//     not pay a TCP (and TLS) handshake inside its redis.timeout. With
//     RedisStore.Warm loading the scripts, that first Check is one round
//     trip.
//   - Cluster: MOVED/ASK redirects are followed up to 3 times, also within
//     the deadline. go-redis refreshes its slot map only every 60 s or on a
//     MOVED, and a dead master sends no MOVED, so a hook asks for a refresh
//     whenever a command fails for another reason; see clusterRefresh.
func (o RedisOptions) NewClient() (redis.UniversalClient, error) {
	if o.Timeout <= 0 {
		return nil, fmt.Errorf("redis.timeout: must be > 0, got %v", o.Timeout)
	}
	u := &redis.UniversalOptions{
		ContextTimeoutEnabled: true,
		ReadTimeout:           o.Timeout,
		WriteTimeout:          o.Timeout,
		PoolTimeout:           o.Timeout,
		// The dial happens in the background (see above); a generous bound
		// lets a TLS handshake over a slow link finish for the next caller.
		DialTimeout:     max(o.Timeout, time.Second),
		DialerRetries:   1,
		MaxRetries:      1,
		MinRetryBackoff: max(o.Timeout/20, time.Millisecond),
		MaxRetryBackoff: max(o.Timeout/4, 2*time.Millisecond),
		MaxRedirects:    3,
		MinIdleConns:    minIdleConns,
		// CLIENT SETINFO and the maintenance-notification handshake are one
		// more round trip per new connection, spent exactly when Redis is
		// recovering, and would need extra ACL permissions.
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}

	var kind string
	switch {
	case o.URL != "":
		kind = "standalone"
		p, err := redis.ParseURL(o.URL)
		if err != nil {
			return nil, fmt.Errorf("redis.url: %s", redactURL(o.URL, err))
		}
		u.Addrs = []string{p.Addr}
		u.DB = p.DB
		u.Username, u.Password = p.Username, p.Password
		u.TLSConfig = p.TLSConfig
		u.ClientName = p.ClientName
		if p.Protocol != 0 {
			u.Protocol = p.Protocol
		}
	case o.SentinelMaster != "":
		kind = "sentinel"
		u.MasterName = o.SentinelMaster
		u.Addrs = o.SentinelAddrs
		u.SentinelUsername, u.SentinelPassword = o.SentinelUsername, o.SentinelPassword
	case len(o.ClusterAddrs) > 0:
		kind = "cluster"
		u.Addrs = o.ClusterAddrs
		// A single seed (a configuration endpoint) is still a cluster.
		u.IsClusterMode = true
	default:
		return nil, errors.New("redis: no topology: set redis.url, redis.sentinel.master_name and redis.sentinel.addrs, or redis.cluster_addrs")
	}
	if kind != "sentinel" && (o.SentinelUsername != "" || o.SentinelPassword != "" || len(o.SentinelAddrs) > 0) {
		return nil, fmt.Errorf("redis.sentinel: set, but the topology is %s", kind)
	}

	if o.Username != "" {
		if u.Username != "" {
			return nil, errors.New("redis.username: redis.url already names a user")
		}
		u.Username = o.Username
	}
	if o.PasswordFile != "" {
		if u.Password != "" {
			return nil, errors.New("redis.password_file: redis.url already carries a password")
		}
		provider, err := passwordFileProvider(u.Username, o.PasswordFile)
		if err != nil {
			return nil, err
		}
		u.CredentialsProviderContext = provider
	}

	if o.TLS.on() {
		if o.URL != "" && u.TLSConfig == nil {
			return nil, errors.New("redis.tls: TLS is configured but redis.url starts with redis:// (plain text); use rediss://")
		}
		cfg, err := o.TLS.config(u.TLSConfig)
		if err != nil {
			return nil, err
		}
		u.TLSConfig = cfg
	}

	switch kind {
	case "sentinel":
		return redis.NewFailoverClient(u.Failover()), nil
	case "cluster":
		c := redis.NewClusterClient(u.Cluster())
		c.AddHook(clusterRefresh{c})
		return c, nil
	}
	return redis.NewClient(u.Simple()), nil
}

// config builds the tls.Config; base is what a rediss:// URL already set.
func (t RedisTLS) config(base *tls.Config) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		cfg = base.Clone()
	}
	if t.ServerName != "" {
		cfg.ServerName = t.ServerName
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis.tls.ca_file: no PEM certificate in %s", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		if t.CertFile == "" || t.KeyFile == "" {
			return nil, errors.New("redis.tls.cert_file and redis.tls.key_file: set both or neither")
		}
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.cert_file/key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// passwordFileProvider reads the password now, so a missing file stops
// startup, and again for every new connection, so rotating the Secret (add
// the new password to the ACL user, update the file, remove the old one)
// needs no restart. A read that fails later keeps the last good password: a
// Secret being swapped must not break reconnects.
func passwordFileProvider(username, path string) (func(context.Context) (string, string, error), error) {
	read := func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return "", fmt.Errorf("%s is empty", path)
		}
		return pw, nil
	}
	pw, err := read()
	if err != nil {
		return nil, fmt.Errorf("redis.password_file: %w", err)
	}
	var last atomic.Pointer[string]
	last.Store(&pw)
	return func(context.Context) (string, string, error) {
		if pw, err := read(); err == nil {
			last.Store(&pw)
		}
		return username, *last.Load(), nil
	}, nil
}

// clusterRefresh asks the cluster client to reload its slot map when a
// command fails for a reason other than a Redis reply. go-redis reloads the
// map on MOVED or READONLY, or every 60 s; a master that was killed or cut
// off answers nothing, so without this the client would keep sending that
// master's slots to a dead address for up to a minute after its replica
// took over. Reloads are coalesced by go-redis (one at a time, 200 ms
// apart), so a burst of failures costs a few CLUSTER SLOTS, not one each.
type clusterRefresh struct{ c *redis.ClusterClient }

func (h clusterRefresh) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h clusterRefresh) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.maybeRefresh(ctx, err)
		return err
	}
}

func (h clusterRefresh) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.maybeRefresh(ctx, err)
		return err
	}
}

func (h clusterRefresh) maybeRefresh(ctx context.Context, err error) {
	if err == nil || errors.Is(err, redis.Nil) {
		return
	}
	var reply redis.Error
	if errors.As(err, &reply) && !isTopologyReply(err) {
		return // an answer from a live node (NOSCRIPT, WRONGTYPE, OOM): the map is fine
	}
	h.c.ReloadState(ctx)
}

// redactURL returns err's message without the URL's password, which
// parse errors may quote.
func redactURL(raw string, err error) string {
	u, perr := url.Parse(raw)
	if perr != nil {
		return "not a valid URL"
	}
	msg := err.Error()
	if pw, ok := u.User.Password(); ok && pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return msg
}

// isTopologyReply reports replies that mean the cluster is changing shape.
func isTopologyReply(err error) bool {
	s := err.Error()
	for _, p := range []string{"CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "LOADING"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
