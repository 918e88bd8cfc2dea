package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sessiongate/sessiongate/pkg/admin"
	"github.com/sessiongate/sessiongate/pkg/config"
	"github.com/sessiongate/sessiongate/pkg/token"
)

// reloadOnSIGHUP re-reads keys and the config file. What is safe to change
// live is applied (keys, routes); everything else needs a restart and is
// reported as such.
func (g *gate) reloadOnSIGHUP(ctx context.Context) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			g.reload(ctx)
		}
	}
}

// watchKeys (re)starts the key file watcher on files; a SIGHUP that changes
// the configured key files moves the watch to the new ones.
func (g *gate) watchKeys(ctx context.Context, files token.KeyFiles) {
	g.keyWatchMu.Lock()
	defer g.keyWatchMu.Unlock()
	if g.stopKeyWatch != nil {
		g.stopKeyWatch()
	}
	wctx, cancel := context.WithCancel(ctx)
	g.stopKeyWatch = cancel
	go token.WatchKeys(wctx, files, token.DefaultWatchInterval, g.log, g.signer.SetKeys)
}

// reload applies what is safe to change live from the config file and the
// files it names: signing keys (including a changed list of key files, which
// is how the rotation runbook moves from step to step), route rules and
// admin tokens. An invalid config or key file changes nothing.
func (g *gate) reload(ctx context.Context) {
	g.log.Info("SIGHUP: reloading")
	cfg := g.cfg
	if g.configPath != "" {
		next, err := config.Load(g.configPath, os.Environ())
		if err == nil {
			g.overrides(next)
			err = next.Validate(g.dev)
		}
		if err != nil {
			g.log.Error("config reload failed; keeping current config", "err", err)
			return
		}
		cfg = next
	}
	routes, err := authzRoutes(cfg.Routes)
	if err != nil {
		g.log.Error("config reload failed; keeping current config", "err", err)
		return
	}
	if len(cfg.Token.SigningKeys) > 0 {
		files := keyFiles(cfg)
		if err := token.Reload(files, g.log, g.signer.SetKeys); err == nil {
			g.watchKeys(ctx, files)
		}
	}
	g.authz.SetRoutes(routes)
	if cfg.AdminTokenFile != "" {
		if tokens, err := readAdminTokens(cfg.AdminTokenFile); err != nil {
			g.log.Error("admin token reload failed; keeping current tokens", "err", err)
		} else {
			g.admin.SetTokens(tokens)
		}
	}
	g.log.Info("reloaded: signing keys, routes and admin tokens applied; other keys need a restart")
}

// watchAdminTokens re-reads the admin token file when its content changes,
// like the key files: a Kubernetes Secret update rotates admin tokens without
// a signal, which a distroless pod cannot easily be sent. A bad file is
// logged and the current tokens stay.
func (g *gate) watchAdminTokens(ctx context.Context, interval time.Duration) {
	last, _ := os.ReadFile(g.cfg.AdminTokenFile)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := os.ReadFile(g.cfg.AdminTokenFile)
		if err != nil || bytes.Equal(data, last) {
			continue
		}
		last = data
		tokens, err := admin.ParseTokenFile(data)
		if err != nil {
			g.log.Error("admin token file changed but is invalid; keeping current tokens", "err", err)
			continue
		}
		g.admin.SetTokens(tokens)
		g.log.Info("admin tokens reloaded", "count", len(tokens))
	}
}

func readAdminTokens(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read admin_token_file: %w", err)
	}
	tokens, err := admin.ParseTokenFile(data)
	if err != nil {
		return nil, fmt.Errorf("admin_token_file %s: %w", path, err)
	}
	return tokens, nil
}
