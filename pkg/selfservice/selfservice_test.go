package selfservice

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/pkg/session"
)

const (
	chromeLinux  = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	headlessUA   = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36"
	firefoxWin   = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
	safariIPhone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
	safariMac    = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"
	edgeWin      = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0"
	chromeAndr   = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36"
	xss          = `<script>alert(1)</script>"><img src=x onerror=alert(1)>'`
)

func TestDeviceLabel(t *testing.T) {
	for _, tc := range []struct {
		d    session.Device
		want string
	}{
		{session.Device{UserAgent: chromeLinux}, "Chrome on Linux"},
		{session.Device{UserAgent: headlessUA}, "Chrome on Linux"},
		{session.Device{UserAgent: firefoxWin}, "Firefox on Windows"},
		{session.Device{UserAgent: safariIPhone}, "Safari on iPhone"},
		{session.Device{UserAgent: safariMac}, "Safari on macOS"},
		{session.Device{UserAgent: edgeWin}, "Edge on Windows"},
		{session.Device{UserAgent: chromeAndr}, "Chrome on Android"},
		{session.Device{UserAgent: "curl/8.5.0"}, "curl"},
		{session.Device{UserAgent: "SomeBot/1.0 (Linux)"}, "A browser on Linux"},
		{session.Device{UserAgent: xss}, "Unknown device"},
		{session.Device{}, "Unknown device"},
		{session.Device{Name: "Work laptop", UserAgent: chromeLinux}, "Work laptop"},
		{session.Device{Name: "  ", UserAgent: firefoxWin}, "Firefox on Windows"},
	} {
		if got := DeviceLabel(tc.d); got != tc.want {
			t.Errorf("DeviceLabel(%+v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestAgo(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Minute, "just now"}, // a clock ahead of ours
		{0, "just now"},
		{59 * time.Second, "just now"},
		{time.Minute, "1 minute ago"},
		{2*time.Minute + 30*time.Second, "2 minutes ago"},
		{time.Hour, "1 hour ago"},
		{23 * time.Hour, "23 hours ago"},
		{30 * time.Hour, "yesterday"},
		{3 * 24 * time.Hour, "3 days ago"},
		{45 * 24 * time.Hour, "on 16 Oct 2026"},
	} {
		if got := Ago(now, now.Add(-tc.d)); got != tc.want {
			t.Errorf("Ago(-%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestRows(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	idle := 30 * time.Minute
	mk := func(ref string, created, seen time.Time) *session.Session {
		s := &session.Session{Ref: ref, CreatedAt: created, ExpiresAt: created.Add(12 * time.Hour), IdleTimeout: idle}
		if !seen.IsZero() {
			s.IdleExpiresAt = seen.Add(idle)
		}
		return s
	}
	rows := Rows([]*session.Session{
		mk("old", now.Add(-5*time.Hour), now.Add(-3*time.Hour)),
		mk("cur", now.Add(-4*time.Hour), now),
		mk("recent", now.Add(-2*time.Hour), now.Add(-time.Minute)),
		mk("unknown", now.Add(-time.Hour), time.Time{}),
		// Capped at the absolute end: the idle expiry minus the timeout
		// falls before the login; shown as the login.
		{Ref: "capped", CreatedAt: now.Add(-10 * time.Minute), ExpiresAt: now.Add(5 * time.Minute), IdleTimeout: idle, IdleExpiresAt: now.Add(5 * time.Minute)},
		// A store clock ahead of ours: never in the future.
		mk("ahead", now.Add(-time.Hour), now.Add(time.Minute)),
	}, "cur", now)
	var order []string
	for _, r := range rows {
		order = append(order, r.Ref)
	}
	if got := strings.Join(order, ","); got != "cur,ahead,recent,capped,old,unknown" {
		t.Fatalf("order = %s", got)
	}
	if !rows[0].Current || rows[1].Current {
		t.Fatal("current flag")
	}
	byRef := map[string]Row{}
	for _, r := range rows {
		byRef[r.Ref] = r
	}
	if !byRef["capped"].LastSeen.Equal(now.Add(-10 * time.Minute)) {
		t.Errorf("capped last seen %v", byRef["capped"].LastSeen)
	}
	if !byRef["ahead"].LastSeen.Equal(now) {
		t.Errorf("ahead last seen %v", byRef["ahead"].LastSeen)
	}
	if !byRef["unknown"].LastSeen.IsZero() {
		t.Errorf("unknown last seen %v", byRef["unknown"].LastSeen)
	}
}

func TestJSON(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	b, err := JSON([]Row{
		{Ref: "a", Current: true, Device: session.Device{UserAgent: xss, IP: "192.0.2.1"}, Label: "Unknown device", CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)},
		{Ref: "b", FamilyRef: "fam_0123", CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(string(b), "<>") {
		t.Fatalf("JSON carries raw markup: %s", b)
	}
	var got struct {
		Sessions []map[string]any `json:"sessions"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Sessions) != 2 || got.Sessions[0]["current"] != true || got.Sessions[0]["last_seen_at"] != "2026-11-30T12:00:00Z" ||
		got.Sessions[1]["family_ref"] != "fam_0123" || got.Sessions[0]["family_ref"] != nil {
		t.Fatalf("JSON = %s", b)
	}
	if _, ok := got.Sessions[1]["last_seen_at"]; ok {
		t.Fatalf("unknown last use rendered: %s", b)
	}
	if d := got.Sessions[0]["device"].(map[string]any); d["user_agent"] != xss || d["ip"] != "192.0.2.1" {
		t.Fatalf("device = %v", d)
	}
	empty, _ := JSON(nil)
	if string(empty) != `{"sessions":[]}` {
		t.Fatalf("no sessions = %s", empty)
	}
}

func TestHTMLEscapesAndHasNoExternalURL(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	rows := Rows([]*session.Session{
		{Ref: "0123456789abcdef0123456789abcdef", CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Hour), IdleTimeout: time.Minute, IdleExpiresAt: now.Add(time.Minute),
			Device: session.Device{UserAgent: chromeLinux}},
		{Ref: "fedcba9876543210fedcba9876543210", CreatedAt: now.Add(-3 * 24 * time.Hour), ExpiresAt: now.Add(time.Hour), IdleTimeout: time.Minute, IdleExpiresAt: now.Add(-time.Minute),
			Device: session.Device{Name: xss, UserAgent: xss, IP: xss}},
	}, "0123456789abcdef0123456789abcdef", now)
	b, err := HTML(Page{Rows: rows, Now: now, PathPrefix: "/auth/sessions"})
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, bad := range []string{"<script", "<img", "onerror=alert(1)>", `"><img`} {
		if strings.Contains(page, bad) {
			t.Errorf("page holds %q unescaped", bad)
		}
	}
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the hostile device name is not shown escaped")
	}
	for _, want := range []string{
		"Chrome on Linux", `<span class="badge">This device</span>`, "Active now", "2 minutes ago", "3 days ago",
		`action="/auth/sessions/fedcba9876543210fedcba9876543210/revoke"`, `action="/auth/sessions/revoke-others"`,
		"Sign out all other devices",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// No external URL, nothing loaded: no scheme, no protocol-relative
	// URL, no src or href at all.
	// (Attribute values are emptied first: escaped text inside one is text.)
	tags := regexp.MustCompile(`"[^"]*"`).ReplaceAllString(page, `""`)
	if regexp.MustCompile(`(?i)://|url\(|@import`).MatchString(page) || regexp.MustCompile(`(?i)<[^>]*\s(src|href)=`).MatchString(tags) {
		t.Errorf("page refers to something outside itself:\n%s", page)
	}
	// The CSP names the hash of exactly the style element's content.
	m := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no style element")
	}
	sum := sha256.Sum256([]byte(m[1]))
	if want := "style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(CSP, want) {
		t.Errorf("CSP %q lacks %q", CSP, want)
	}
	for _, d := range []string{"default-src 'none'", "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(CSP, d) {
			t.Errorf("CSP lacks %q", d)
		}
	}

	alone, err := HTML(Page{Rows: rows[:1], Now: now, PathPrefix: "/auth/sessions"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(alone), "revoke") || !strings.Contains(string(alone), "No other device is signed in.") {
		t.Errorf("a page with only this device offers to sign something out:\n%s", alone)
	}
}
