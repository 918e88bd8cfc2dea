// Package logtest captures what a server under test logs. Servers log from
// their own goroutines while the test reads, so the capture must be safe for
// concurrent use, which bytes.Buffer is not.
package logtest

import (
	"bytes"
	"sync"
)

// Buffer is an io.Writer that collects everything written to it. The zero
// value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
