package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// The seeder writes sessions straight into Redis in sessiongate's own
// layout, pipelined, so a million sessions load in seconds rather than the
// minutes that one admin API call (two Redis round trips) per session would
// take. The layout is the one pkg/session/redis.go documents:
//
//	sg:s:<ref>      string  1:<version>:<abs ms>:<idle ms>:<json>, TTL = idle window
//	sg:u:<subject>  zset    ref scored by insertion sequence, expiring with the session
//
// verifyLayout checks it against session.RedisStore.Create before any bulk
// load, so a change of the record format fails the load test instead of
// silently measuring records sessiongate would reject.

// recordJSON mirrors the record body of pkg/session (record.go), field for
// field and in the same order.
type recordJSON struct {
	Subject   string            `json:"sub"`
	Tenant    string            `json:"ten,omitempty"`
	Roles     []string          `json:"rol,omitempty"`
	Claims    map[string]string `json:"clm,omitempty"`
	Device    *session.Device   `json:"dev,omitempty"`
	CreatedAt int64             `json:"cat"`
}

func encodeRecord(s *session.Session) (string, error) {
	b := recordJSON{Subject: s.Subject, Tenant: s.Tenant, Roles: s.Roles, Claims: s.Claims, CreatedAt: s.CreatedAt.UnixMilli()}
	if s.Device != (session.Device{}) {
		d := s.Device
		b.Device = &d
	}
	js, err := json.Marshal(b)
	if err != nil {
		return "", err
	}
	return "1:" + strconv.FormatUint(s.Version, 10) + ":" + strconv.FormatInt(s.ExpiresAt.UnixMilli(), 10) + ":" +
		strconv.FormatInt(s.IdleTimeout.Milliseconds(), 10) + ":" + string(js), nil
}

// seedSession is the session every seeded user gets: what a login through
// the admin API with a browser's device info produces.
func seedSession(ref, subject string, now time.Time) *session.Session {
	return &session.Session{
		Ref: ref, Subject: subject, Tenant: "acme",
		Roles:  []string{"user"},
		Claims: map[string]string{"email": subject + "@example.com"},
		Device: session.Device{
			UserAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
			IP:        "203.0.113.7",
		},
		CreatedAt: now, ExpiresAt: now.Add(12 * time.Hour), IdleTimeout: 30 * time.Minute, Version: 1,
	}
}

// verifyLayout creates one session through the real store and compares what
// landed in Redis with what the seeder would have written.
func verifyLayout(ctx context.Context, rdb *redis.Client) error {
	id, err := session.NewID()
	if err != nil {
		return err
	}
	s := seedSession(session.RefOf(id), "layout-check", time.Now().Truncate(time.Millisecond))
	if _, err := session.NewRedisStore(rdb).Create(ctx, s, session.Limit{}); err != nil {
		return fmt.Errorf("create through session.RedisStore: %w", err)
	}
	got, err := rdb.Get(ctx, "sg:s:"+s.Ref).Result()
	if err != nil {
		return err
	}
	want, err := encodeRecord(s)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("the seeder's record format differs from session.RedisStore's:\n store:  %s\n seeder: %s", got, want)
	}
	members, err := rdb.ZRangeWithScores(ctx, "sg:u:"+s.Subject, 0, -1).Result()
	if err != nil {
		return err
	}
	if len(members) != 1 || members[0].Member != s.Ref || members[0].Score != 1 {
		return fmt.Errorf("the store's index for %s is %v, the seeder writes [{1 %s}]", s.Subject, members, s.Ref)
	}
	return rdb.Del(ctx, "sg:s:"+s.Ref, "sg:u:"+s.Subject).Err()
}

// seed writes n sessions, subjects prefix-<i> for i from first, one session
// per subject (each with its own index key: the most memory per session).
// refs gives each session's ref; nil means random refs (sessions no request
// will name, which only fill the keyspace).
func seed(ctx context.Context, rdb *redis.Client, prefix string, first, n int, refs []string) error {
	const batch = 2000
	const workers = 4
	now := time.Now().Truncate(time.Millisecond)
	jobs := make(chan int)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
		}
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for start := range jobs {
				mu.Lock()
				failed := firstErr != nil
				mu.Unlock()
				if failed {
					continue // drain
				}
				pipe := rdb.Pipeline()
				for i := start; i < min(start+batch, n); i++ {
					ref := ""
					if refs != nil {
						ref = refs[i]
					} else {
						ref = randomRef()
					}
					subject := prefix + strconv.Itoa(first+i)
					s := seedSession(ref, subject, now)
					raw, err := encodeRecord(s)
					if err != nil {
						fail(err)
						break
					}
					pipe.Set(ctx, "sg:s:"+ref, raw, s.IdleTimeout)
					pipe.ZAdd(ctx, "sg:u:"+subject, redis.Z{Score: 1, Member: ref})
					pipe.PExpireAt(ctx, "sg:u:"+subject, s.ExpiresAt)
				}
				if _, err := pipe.Exec(ctx); err != nil {
					fail(fmt.Errorf("seed pipeline: %w", err))
				}
			}
		}()
	}
	go func() {
		defer close(jobs)
		for start := 0; start < n; start += batch {
			select {
			case jobs <- start:
			case <-ctx.Done():
				return
			}
		}
	}()
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

func randomRef() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// usedMemory is Redis's INFO memory used_memory, in bytes.
func usedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no used_memory in INFO memory")
}
