package config

import "net/url"

// Events configures the security event log (logins, logouts, revocations,
// binding mismatches): a Redis stream shared by every replica, or memory
// in dev mode.
type Events struct {
	// MaxLen caps the stream near this many events (MAXLEN ~); older ones
	// are trimmed.
	MaxLen int `yaml:"max_len"`
	// Webhook receives every event as a signed JSON POST; off without a URL.
	Webhook EventsWebhook `yaml:"webhook"`
}

// EventsWebhook is where events are pushed, and the HMAC-SHA256 key that
// signs them (a file, like the other secrets).
type EventsWebhook struct {
	URL        string `yaml:"url"`
	SecretFile string `yaml:"secret_file"`
}

func (c *Config) validateEvents(v *validator) {
	if n := c.Events.MaxLen; n < 1000 || n > 10_000_000 {
		v.fail("events.max_len", "must be 1000 to 10000000, got %d", n)
	}
	w := c.Events.Webhook
	if w.URL != "" {
		u, err := url.Parse(w.URL)
		switch {
		case err != nil:
			// Not quoted: what does not parse may be credentials.
			v.fail("events.webhook.url", "must be an absolute http(s) URL without credentials; the value does not parse as a URL")
		case (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "":
			// The refusal is logged: it names the URL without its
			// userinfo, which is credentials.
			shown := *u
			shown.User = nil
			v.fail("events.webhook.url", "must be an absolute http(s) URL without credentials, got %q", shown.String())
		}
		if w.SecretFile == "" {
			v.fail("events.webhook.secret_file", "required with events.webhook.url: deliveries are signed")
		}
	} else if w.SecretFile != "" {
		v.fail("events.webhook.secret_file", "set without events.webhook.url")
	}
}
