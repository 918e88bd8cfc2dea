package admin

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sessiongate/sessiongate/pkg/session"
)

// recordRefuses stores a session whose field holds v, bypassing the admin
// API, and reports whether the record decoder refuses it on read.
func recordRefuses(t *testing.T, store *session.MemoryStore, field, v string) bool {
	t.Helper()
	now := time.Now().Truncate(time.Millisecond)
	s := &session.Session{Ref: strings.Repeat("d", session.RefLen), Subject: "alice",
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), IdleTimeout: time.Hour}
	switch field {
	case "subject":
		s.Subject = v
	case "tenant":
		s.Tenant = v
	case "roles":
		s.Roles = []string{v}
	case "claims":
		s.Claims = map[string]string{"org": v}
	case "device.name":
		s.Device.Name = v
	}
	ctx := context.Background()
	_ = store.Delete(ctx, s.Ref)
	if _, err := store.Create(ctx, s, session.Limit{}); err != nil {
		t.Fatalf("store create %q: %v", v, err)
	}
	e, err := store.Touch(ctx, s.Ref)
	if err != nil {
		t.Fatalf("store touch: %v", err)
	}
	_, err = e.Session()
	if err != nil && !errors.Is(err, session.ErrCorrupt) {
		t.Fatalf("record decode: %v is not ErrCorrupt", err)
	}
	return err != nil
}

// runeClasses is every rune of the Basic Multilingual Plane below U+3000
// (C0, ASCII, DEL, C1, Latin, combining marks, the general punctuation
// block with its zero-width, bidi and separator characters) plus
// representatives of the rest: surrogate code points (which Go strings
// carry as U+FFFD), BOM, noncharacters, private use, tags and the last
// code point.
func runeClasses() []rune {
	var rs []rune
	for r := rune(0); r < 0x3000; r++ {
		rs = append(rs, r)
	}
	return append(rs, 0x3000, 0xd800, 0xdfff, 0xfeff, 0xfff9, 0xfffd, 0xfffe, 0xffff,
		0xe000, 0xf8ff, 0x1f600, 0xe0001, 0xe007f, 0xf0000, 0x10fffd, 0x10ffff)
}

// TestControlCharactersAgreeWithRecordDecoder: the admin API refuses a
// value exactly when the record decoder would refuse the record holding
// it, for every rune class and every stored text field.
func TestControlCharactersAgreeWithRecordDecoder(t *testing.T) {
	store := session.NewMemoryStore(nil)
	fields := []string{"subject", "tenant", "roles", "claims", "device.name"}
	refused := 0
	for _, r := range runeClasses() {
		v := "a" + string(r) + "b"
		if !utf8.ValidString(v) {
			t.Fatalf("U+%04X made invalid UTF-8", r)
		}
		admin := validText("v", v, maxValue) != nil
		if admin != session.ControlRune(r) {
			t.Errorf("U+%04X: validText refuses=%v, ControlRune=%v", r, admin, session.ControlRune(r))
		}
		// Every field for the runes either side refuses and a sample of
		// the others; the subject for all.
		check := fields[:1]
		if admin || r%97 == 0 {
			check = fields
		}
		for _, f := range check {
			if rec := recordRefuses(t, store, f, v); rec != admin {
				t.Errorf("U+%04X in %s: admin refuses=%v, record decoder refuses=%v", r, f, admin, rec)
			}
		}
		if admin {
			refused++
		}
	}
	if want := 0x20 + 1 + 0x20 + 2; refused != want {
		t.Errorf("%d runes refused, want %d (C0, DEL, C1, U+2028, U+2029)", refused, want)
	}
}
