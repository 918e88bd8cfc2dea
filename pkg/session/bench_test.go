package session

import (
	"context"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/internal/redistest"
)

// benchSession is a realistic record: one role, one custom claim and the
// device the login service reports.
func benchSession(b *testing.B) (*Session, string) {
	b.Helper()
	id, err := NewID()
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().Truncate(time.Millisecond)
	s := &Session{
		Ref: RefOf(id), Subject: "alice", Tenant: "acme",
		Roles:     []string{"dev"},
		Claims:    map[string]string{"email": "alice@example.com"},
		Device:    Device{UserAgent: "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", IP: "203.0.113.7"},
		CreatedAt: now, ExpiresAt: now.Add(12 * time.Hour), IdleTimeout: 30 * time.Minute, Version: 1,
	}
	return s, id
}

// BenchmarkRefOf is the hash that turns a presented session ID into the
// store key, once per Check.
func BenchmarkRefOf(b *testing.B) {
	_, id := benchSession(b)
	b.ReportAllocs()
	for b.Loop() {
		RefOf(id)
	}
}

// BenchmarkParseEntry reads a stored record's header: what every Check does
// with the store's answer (the JSON body is left undecoded).
func BenchmarkParseEntry(b *testing.B) {
	s, _ := benchSession(b)
	raw, err := encodeRecord(s)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseEntry(s.Ref, raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEntrySession decodes the JSON body: paid only on a token cache
// miss, right before signing.
func BenchmarkEntrySession(b *testing.B) {
	s, _ := benchSession(b)
	raw, err := encodeRecord(s)
	if err != nil {
		b.Fatal(err)
	}
	e, err := parseEntry(s.Ref, raw)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Session(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeRecord is the write side (create, update).
func BenchmarkEncodeRecord(b *testing.B) {
	s, _ := benchSession(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeRecord(s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTouch is the store call of every Check: in memory, and the Lua
// script's round trip to a real redis-server on loopback.
func BenchmarkTouch(b *testing.B) {
	run := func(b *testing.B, st Store) {
		s, _ := benchSession(b)
		ctx := context.Background()
		if _, err := st.Create(ctx, s, Limit{}); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := st.Touch(ctx, s.Ref); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("memory", func(b *testing.B) { run(b, NewMemoryStore(nil)) })
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		rdb, err := NewRedisClient(srv.URL(), time.Second)
		if err != nil {
			b.Fatal(err)
		}
		st := NewRedisStore(rdb)
		b.Cleanup(func() { st.Close() })
		run(b, st)
	})
}
