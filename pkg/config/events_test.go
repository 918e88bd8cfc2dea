package config

import (
	"strings"
	"testing"
)

// TestWebhookURLCredentialsNotEchoed: a webhook URL is refused when it
// carries credentials, and the refusal, which serve logs at start and on a
// failed reload, must not repeat them.
func TestWebhookURLCredentialsNotEchoed(t *testing.T) {
	const secret = "s3cretWebhookPw"
	for _, tc := range []struct {
		name, url, want string
	}{
		{"user and password", "https://alice:" + secret + "@siem.example.com/hook", `"https://siem.example.com/hook"`},
		{"password only", "https://:" + secret + "@siem.example.com/hook", `"https://siem.example.com/hook"`},
		{"token as user", "https://" + secret + "@siem.example.com/hook", `"https://siem.example.com/hook"`},
		{"other scheme with credentials", "ftp://alice:" + secret + "@siem.example.com/", `"ftp://siem.example.com/"`},
		{"does not parse", "https://alice:" + secret + "@siem.example.com:port/hook", "does not parse"},
		{"control character", "https://alice:" + secret + "@siem.example.com/\x7f", "does not parse"},
		{"no credentials, shown as is", "ftp://siem.example.com/hook", `"ftp://siem.example.com/hook"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := production()
			c.Events.Webhook = EventsWebhook{URL: tc.url, SecretFile: "/run/secrets/webhook"}
			err := c.Validate(false)
			wantErr(t, err, "config: events.webhook.url: ", tc.want)
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the refusal repeats the credential: %v", err)
			}
		})
	}
}
