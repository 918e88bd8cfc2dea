package session

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/redistest"
)

// redisACL is the least a Redis ACL user needs for sessiongate: its keys,
// the commands the store sends and the commands its scripts call. The
// README documents the same rule; the redis-tls-acl conformance fixture
// proves it is enough.
var redisACL = []string{
	"on", "~sg:*", "resetchannels", "-@all",
	"+ping", "+hello", "+auth",
	"+get", "+set", "+getdel", "+del", "+exists", "+zrange", "+zrem",
	"+evalsha", "+eval", "+script|load",
	// called from the scripts
	"+zadd", "+pexpireat", "+pexpiretime", "+time",
	// refresh families (also called from the scripts)
	"+hset", "+hmget",
	// the local cache's invalidation link
	"+client|id", "+client|tracking", "+subscribe", "&__redis__:invalidate",
	// the revocation feed: recorded and published by a script, followed
	// by a subscription
	"+zremrangebyscore", "+publish", "&sg:revocations",
}

const aclUser = "sessiongate"

// writePassword writes a password file as a Kubernetes Secret would.
func writePassword(t *testing.T, pw string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "redis-password")
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startTLSACL starts a TLS-only server that requires client certificates
// and knows only the restricted user, with password pw.
func startTLSACL(t *testing.T, pw string) (*redistest.Server, redistest.TLSFiles) {
	t.Helper()
	files := redistest.NewTLSFiles(t)
	args := append([]string{"--user", "default", "off", "--user", aclUser, ">" + pw}, redisACL...)
	return redistest.StartTLS(t, files, args...), files
}

// tlsACLFixtures share one TLS, ACL-restricted server among the cases; the
// client authenticates with redis.username + redis.password_file and a
// client certificate, and verifies the server against a private CA.
func tlsACLFixtures(t *testing.T, cache bool) func(*testing.T) storeFixture {
	srv, files := startTLSACL(t, "s3cret-password")
	pwFile := writePassword(t, "s3cret-password")
	return func(t *testing.T) storeFixture {
		return redisClientFixtureCache(t, RedisOptions{
			URL:          "rediss://" + srv.Addr + "/0",
			Username:     aclUser,
			PasswordFile: pwFile,
			TLS:          RedisTLS{CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey},
			Timeout:      time.Second,
		}, cache)
	}
}

func TestRedisTLS(t *testing.T) {
	srv, files := startTLSACL(t, "pw-0123456789")
	pwFile := writePassword(t, "pw-0123456789")
	host := strings.TrimPrefix(srv.Addr, "127.0.0.1")
	ping := func(o RedisOptions) error {
		t.Helper()
		o.Timeout = time.Second
		if o.PasswordFile == "" && !strings.Contains(o.URL, "@") {
			o.Username, o.PasswordFile = aclUser, pwFile
		}
		rdb, err := o.NewClient()
		if err != nil {
			return err
		}
		defer rdb.Close()
		return NewRedisStore(rdb).Ping(context.Background())
	}
	full := RedisTLS{CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey}
	if err := ping(RedisOptions{URL: "rediss://" + srv.Addr, TLS: full}); err != nil {
		t.Errorf("rediss:// with CA and client certificate: %v", err)
	}
	if err := ping(RedisOptions{URL: "rediss://" + aclUser + ":pw-0123456789@" + srv.Addr, TLS: full}); err != nil {
		t.Errorf("credentials in the URL: %v", err)
	}
	named := full
	named.ServerName = redistest.TLSServerName
	if err := ping(RedisOptions{URL: "rediss://localhost" + host, TLS: named}); err != nil {
		t.Errorf("server_name: %v", err)
	}
	for name, o := range map[string]RedisOptions{
		"no client certificate": {URL: "rediss://" + srv.Addr, TLS: RedisTLS{CAFile: files.CA}},
		"unknown CA":            {URL: "rediss://" + srv.Addr, TLS: RedisTLS{CertFile: files.ClientCert, KeyFile: files.ClientKey}},
		"wrong server name":     {URL: "rediss://" + srv.Addr, TLS: RedisTLS{CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey, ServerName: "evil.example"}},
		"wrong password":        {URL: "rediss://" + srv.Addr, TLS: full, Username: aclUser, PasswordFile: writePassword(t, "nope")},
	} {
		if err := ping(o); err == nil {
			t.Errorf("%s: ping succeeded", name)
		}
	}
}

// TestRedisPasswordFileRotation rotates the password the way the README
// says: add the new one to the ACL user, update the file, drop the old one.
// Connections made after the file changed use the new password.
func TestRedisPasswordFileRotation(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client()
	ctx := context.Background()
	acl := append([]any{"ACL", "SETUSER", aclUser, ">old-password"}, toAny(redisACL)...)
	if err := admin.Do(ctx, acl...).Err(); err != nil {
		t.Fatal(err)
	}
	pwFile := writePassword(t, "old-password")
	rdb, err := RedisOptions{URL: srv.URL(), Username: aclUser, PasswordFile: pwFile, Timeout: time.Second}.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	st := NewRedisStore(rdb)
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("old password: %v", err)
	}
	if err := admin.Do(ctx, "ACL", "SETUSER", aclUser, ">new-password").Err(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pwFile, []byte("new-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(ctx, "ACL", "SETUSER", aclUser, "<old-password").Err(); err != nil {
		t.Fatal(err)
	}
	// Drop the client's connections (authenticated with the old password)
	// so the next call reconnects.
	if err := admin.Do(ctx, "CLIENT", "KILL", "USER", aclUser).Err(); err != nil {
		t.Fatal(err)
	}
	ok := redistest.Eventually(ctx, 3*time.Second, func() bool { return st.Ping(ctx) == nil })
	if !ok {
		t.Fatalf("no reconnect with the rotated password: %v", st.Ping(ctx))
	}
	// A file that disappears mid-swap keeps the last good password.
	if err := os.Remove(pwFile); err != nil {
		t.Fatal(err)
	}
	_ = admin.Do(ctx, "CLIENT", "KILL", "USER", aclUser).Err()
	ok = redistest.Eventually(ctx, 3*time.Second, func() bool { return st.Ping(ctx) == nil })
	if !ok {
		t.Fatalf("no reconnect after the password file vanished: %v", st.Ping(ctx))
	}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func TestRedisOptionsErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		o    RedisOptions
		want string
	}{
		{RedisOptions{}, "redis: no topology"},
		{RedisOptions{URL: "redis://r:6379", Timeout: 0}, "redis.timeout"},
		{RedisOptions{URL: "http://r:6379"}, "redis.url"},
		{RedisOptions{URL: "redis://:hunter2@r:6379/x"}, "redis.url"},
		{RedisOptions{URL: "redis://r:6379", TLS: RedisTLS{CAFile: "/ca.pem"}}, "use rediss://"},
		{RedisOptions{URL: "rediss://r:6379", TLS: RedisTLS{CAFile: filepath.Join(dir, "missing.pem")}}, "redis.tls.ca_file"},
		{RedisOptions{URL: "rediss://r:6379", TLS: RedisTLS{CAFile: notPEM}}, "redis.tls.ca_file: no PEM"},
		{RedisOptions{URL: "rediss://r:6379", TLS: RedisTLS{CertFile: notPEM}}, "set both"},
		{RedisOptions{URL: "rediss://r:6379", TLS: RedisTLS{CertFile: notPEM, KeyFile: notPEM}}, "redis.tls.cert_file"},
		{RedisOptions{URL: "redis://r:6379", PasswordFile: filepath.Join(dir, "missing")}, "redis.password_file"},
		{RedisOptions{URL: "redis://r:6379", PasswordFile: empty}, "redis.password_file"},
		{RedisOptions{URL: "redis://u:p@r:6379", PasswordFile: empty}, "redis.password_file"},
		{RedisOptions{URL: "redis://u@r:6379", Username: "v"}, "redis.username"},
		{RedisOptions{ClusterAddrs: []string{"c:6379"}, SentinelPassword: "x"}, "redis.sentinel"},
	} {
		if tt.o.Timeout == 0 && !strings.Contains(tt.want, "timeout") {
			tt.o.Timeout = time.Second
		}
		rdb, err := tt.o.NewClient()
		if err == nil {
			rdb.Close()
			t.Errorf("%+v: no error, want %q", tt.o, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err = %v, want %q", tt.o, err, tt.want)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
}

// TestRedisCreateRetryFindsItsOwnRecord is the case a go-redis retry after a
// lost reply creates: SET NX finds the record the first attempt wrote.
func TestRedisCreateRetryFindsItsOwnRecord(t *testing.T) {
	f := redisFixture(t)
	st := f.store.(*RedisStore)
	ctx := context.Background()
	s := newSession(t, "retry", time.Minute, time.Hour)
	s.Version = 1
	raw, err := encodeRecord(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.rdb.Set(ctx, sessionKey(s.Ref), raw, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(ctx, s, Limit{MaxPerUser: 1}); err != nil {
		t.Fatalf("create over its own record: %v", err)
	}
	if ss, err := st.List(ctx, "retry"); err != nil || len(ss) != 1 {
		t.Fatalf("list = %v, %v", ss, err)
	}
	other := newSession(t, "retry", time.Minute, time.Hour)
	other.Ref = s.Ref // a collision: another record under the same ref
	if _, err := st.Create(ctx, other, Limit{}); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("create over another record: %v", err)
	}
}

// TestRedisCreateUndoesOnFailure checks that a create that fails after
// writing leaves no session behind: the caller never learns its ID, and a
// leftover would count against max_per_user until it expired.
func TestRedisCreateUndoesOnFailure(t *testing.T) {
	srv := redistest.Start(t)
	rdb, err := NewRedisClient(srv.URL(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	st := NewRedisStore(rdb)
	ctx := context.Background()
	// Make the index unusable so Create fails after SET NX.
	if err := srv.Client().Set(ctx, userKey("undo"), "not a zset", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s := newSession(t, "undo", time.Minute, time.Hour)
	if _, err := st.Create(ctx, s, Limit{MaxPerUser: 1, Reject: true}); err == nil {
		t.Fatal("create succeeded over a broken index")
	}
	if _, err := st.Touch(ctx, s.Ref); !errors.Is(err, ErrNotFound) {
		t.Fatalf("half-made session left behind: %v", err)
	}
}
