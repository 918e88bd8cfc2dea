package config

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEDocumentsEveryKey keeps the README's configuration table in step
// with the code: a key users cannot find is a key they cannot use.
func TestREADMEDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	for _, k := range Keys() {
		if !strings.Contains(readme, "| `"+k+"` |") {
			t.Errorf("README.md has no configuration table row for %q", k)
		}
	}
}
