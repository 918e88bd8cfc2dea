package session

import (
	"strconv"
	"testing"
	"time"
)

// The allocation counts that comments in this package promise, as tests.
func TestAllocationPromises(t *testing.T) {
	id, err := NewID()
	if err != nil {
		t.Fatal(err)
	}
	raw := "1:1:" + strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10) + `:1800000:{"sub":"alice","cat":1}`
	ref := RefOf(id)
	if _, err := parseEntry(ref, raw); err != nil {
		t.Fatalf("setup: %v", err)
	}
	tests := []struct {
		name string
		max  float64
		run  func()
	}{
		{"RefOf costs one allocation, its result", 1, func() { RefOf(id) }},
		{"parseEntry allocates nothing", 0, func() { _, _ = parseEntry(ref, raw) }},
		{"ValidID allocates nothing", 0, func() { ValidID(id) }},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(100, tt.run); got > tt.max {
			t.Errorf("%s: %.1f allocations, want at most %.0f", tt.name, got, tt.max)
		}
	}
}
