package session

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// TestRefOfIsSHA256Prefix pins RefOf to its definition, the hex of the
// first RefLen/2 bytes of SHA-256(ID): refs name the keys of stored
// sessions, so a change in how RefOf computes them (it hashes from stack
// buffers) must not change a single ref, for IDs of any length.
func TestRefOfIsSHA256Prefix(t *testing.T) {
	tests := []struct {
		name string
		id   string
	}{
		{"empty", ""},
		{"short", "abc"},
		{"valid id", "ZCGeV77fE9EYNGb7Ybw-htAF4sx3gGbmcuX5CSyFJkk"},
		{"one past IDLen", strings.Repeat("A", IDLen+1)},
		{"long", strings.Repeat("x", 4096)},
	}
	for _, tt := range tests {
		sum := sha256.Sum256([]byte(tt.id))
		want := hex.EncodeToString(sum[:RefLen/2])
		if got := RefOf(tt.id); got != want {
			t.Errorf("%s: RefOf = %q, want %q", tt.name, got, want)
		}
	}
	// A known vector, independent of the code under test: SHA-256("abc").
	if got, want := RefOf("abc"), "ba7816bf8f01cfea414140de5dae2223"; got != want {
		t.Errorf("RefOf(%q) = %q, want %q", "abc", got, want)
	}
}
