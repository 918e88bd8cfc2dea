package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/sessiongate/sessiongate/pkg/admin"
	"github.com/sessiongate/sessiongate/pkg/config"
	"github.com/sessiongate/sessiongate/pkg/events"
	"github.com/sessiongate/sessiongate/pkg/metrics"
)

// newEventStore connects the security event log: a Redis stream on a
// client of its own, so event writes never queue behind (or ahead of) the
// Check path's store calls; process memory in dev mode.
func newEventStore(cfg *config.Config) (events.Store, error) {
	if !cfg.Redis.Configured() {
		return events.NewMemoryStore(cfg.Events.MaxLen), nil
	}
	rdb, err := redisOptions(cfg.Redis).NewClient()
	if err != nil {
		return nil, err
	}
	return events.NewRedisStore(rdb, cfg.Events.MaxLen), nil
}

// eventLogOptions names this replica in its events (the host name: the
// pod's name on Kubernetes) and counts events in the metrics.
func eventLogOptions(st events.Store, m *metrics.Metrics, log *slog.Logger) events.Options {
	replica, err := os.Hostname()
	if err != nil {
		replica = "unknown"
	}
	return events.Options{Store: st, Replica: replica, Counted: m.SecurityEvents, Dropped: m.SecurityEventsDropped, Log: log}
}

const eventsUsage = `usage: sessiongate events [--config FILE] [--url URL] [--token-file FILE] tail [--after ID | --all] [--interval D]

tail prints security events (logins, logouts, revocations, binding
mismatches) from the admin API as they arrive, one JSON object per line,
until interrupted. It starts with events from now on, after ID with
--after, or with every event kept with --all.
`

func eventsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, eventsUsage) }
	af := adminFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 || rest[0] != "tail" {
		fs.Usage()
		return errors.New("events: the command is tail")
	}
	tfs := flag.NewFlagSet("events tail", flag.ContinueOnError)
	tfs.SetOutput(stderr)
	after := tfs.String("after", "", "print events after this ID (next of a page, or an earlier event's id)")
	all := tfs.Bool("all", false, "start with the oldest event kept")
	interval := tfs.Duration("interval", time.Second, "poll interval once caught up")
	if err := tfs.Parse(rest[1:]); err != nil {
		return err
	}
	switch {
	case tfs.NArg() > 0:
		return fmt.Errorf("events tail: unexpected argument %q", tfs.Arg(0))
	case *all && *after != "":
		return errors.New("events tail: --after and --all exclude each other")
	case *after != "" && !events.ValidID(*after):
		return fmt.Errorf("events tail: --after %q is not an event ID", *after)
	case *interval < 10*time.Millisecond:
		return errors.New("events tail: --interval must be at least 10ms")
	case *after == "" && !*all:
		// Event IDs start with the Redis server's clock in milliseconds.
		*after = strconv.FormatInt(time.Now().UnixMilli(), 10) + "-0"
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	return tail(ctx, c, *after, *interval, stdout, stderr)
}

// tail follows the event log from after until ctx ends. A server that is
// briefly unavailable or rate limits is waited for; any other refusal
// (credential, request) ends the command.
func tail(ctx context.Context, c *admin.Client, after string, interval time.Duration, stdout, stderr io.Writer) error {
	out := json.NewEncoder(stdout)
	for {
		page, err := c.Events(ctx, after, admin.MaxPageLimit)
		var apiErr *admin.APIError
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &apiErr) && (apiErr.Status == 503 || apiErr.Status == 429):
			fmt.Fprintln(stderr, "sessiongate events:", err)
		case err != nil:
			return err
		default:
			for _, e := range page.Events {
				if err := out.Encode(e); err != nil {
					return err
				}
			}
			after = page.Next
			if len(page.Events) == admin.MaxPageLimit {
				continue // more waiting
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// minWebhookSecret is the shortest HMAC key accepted: a guessable key
// lets anyone forge events the receiver trusts.
const minWebhookSecret = 16

// newWebhook starts the events webhook, or returns nil without a URL. The
// secret is the file's content without surrounding whitespace.
func newWebhook(c config.EventsWebhook, m *metrics.Metrics, log *slog.Logger) (*events.Webhook, error) {
	if c.URL == "" {
		return nil, nil
	}
	data, err := os.ReadFile(c.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("events.webhook.secret_file: %w", err)
	}
	secret := bytes.TrimSpace(data)
	if len(secret) < minWebhookSecret {
		return nil, fmt.Errorf("events.webhook.secret_file %s: secret shorter than %d bytes", c.SecretFile, minWebhookSecret)
	}
	for _, r := range []string{"delivered", "failed", "dropped"} {
		m.SecurityEventsWebhook.WithLabelValues(r)
	}
	return events.NewWebhook(events.WebhookOptions{URL: c.URL, Secret: secret, Deliveries: m.SecurityEventsWebhook, Log: log}), nil
}
