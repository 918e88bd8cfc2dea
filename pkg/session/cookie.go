package session

import (
	"strconv"
	"strings"
	"time"
)

// Cookie describes the session cookie as browsers see it.
type Cookie struct {
	Name     string
	SameSite string // Lax, Strict or None
	Domain   string // empty for host-only (required with the __Host- prefix)
}

// Set returns a complete Set-Cookie value carrying id. It is always Secure
// and HttpOnly with Path=/: a session cookie readable by scripts or sent over
// plain HTTP would undo the point of keeping the ID opaque and server-side.
func (c Cookie) Set(id string, maxAge time.Duration) string {
	return c.render(id, int64(maxAge/time.Second))
}

// Clear returns a Set-Cookie value that makes browsers drop the cookie.
func (c Cookie) Clear() string { return c.render("", 0) }

func (c Cookie) render(value string, maxAge int64) string {
	var b strings.Builder
	b.WriteString(c.Name)
	b.WriteByte('=')
	b.WriteString(value)
	b.WriteString("; Path=/")
	if c.Domain != "" {
		b.WriteString("; Domain=")
		b.WriteString(c.Domain)
	}
	b.WriteString("; Max-Age=")
	b.WriteString(strconv.FormatInt(maxAge, 10))
	b.WriteString("; Secure; HttpOnly")
	if c.SameSite != "" {
		b.WriteString("; SameSite=")
		b.WriteString(c.SameSite)
	}
	return b.String()
}
