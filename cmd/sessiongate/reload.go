package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/sessiongate/sessiongate/pkg/admin"
	"github.com/sessiongate/sessiongate/pkg/config"
	"github.com/sessiongate/sessiongate/pkg/token"
)

// watchInterval is how often watched files are re-read for new content.
const watchInterval = 10 * time.Second

// A fileSet is files read and put into service together: the signing keys,
// the admin tokens, the admin TLS certificate.
type fileSet struct {
	name  string // in logs: "signing keys"
	paths []string
	// load reads and checks the files. It returns what puts them into
	// service and log attributes describing them (never their content); on
	// error nothing has changed.
	load func() (apply func(), attrs []any, err error)
}

// watcher keeps file sets in service as their content changes, so a
// Kubernetes Secret update (a rotated key, token or certificate) applies
// without a signal, which a distroless pod cannot easily be sent.
//
// Content hashes rather than mtimes are compared, and every poll re-opens
// each path, because Kubernetes updates a mounted Secret by atomically
// re-pointing a "..data" symlink: the visible path never changes and the new
// files may carry old timestamps.
//
// Every set behaves the same when its files go bad (bad PEM, a weak key, a
// half-written file): the error is logged once, the current value keeps
// serving, and the set is read again as soon as its content changes.
type watcher struct {
	log *slog.Logger

	mu   sync.Mutex
	sets map[string]*watched // by name
}

type watched struct {
	fileSet
	seen [sha256.Size]byte // content last read, whether it loaded or not
}

func newWatcher(log *slog.Logger) *watcher {
	return &watcher{log: log, sets: make(map[string]*watched)}
}

// start loads set for the first time and watches it from then on. The
// content is fingerprinted before it is read, so a change in between is
// seen by the next poll. An error is the caller's to report: at startup it
// is fatal.
func (w *watcher) start(set fileSet) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := fingerprint(set.paths)
	apply, _, err := set.load()
	if err != nil {
		return err
	}
	apply()
	w.sets[set.name] = &watched{set, seen}
	return nil
}

// replace re-reads set, whose paths may differ from the ones watched (a
// SIGHUP that names other key files). Only if it loads is it applied and
// watched from then on; otherwise the current value and watch stay.
func (w *watcher) replace(set fileSet) {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := fingerprint(set.paths)
	if w.apply(set) {
		w.sets[set.name] = &watched{set, seen}
	}
}

// poll re-reads every set whose content changed since it was last read.
func (w *watcher) poll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.sets {
		fp := fingerprint(s.paths)
		if fp == s.seen {
			continue
		}
		// Recorded even if it fails to load, so a bad file is reported
		// once instead of on every tick.
		s.seen = fp
		w.apply(s.fileSet)
	}
}

// apply loads set and puts it into service, or logs why not and keeps the
// current value.
func (w *watcher) apply(set fileSet) bool {
	apply, attrs, err := set.load()
	if err != nil {
		// err names files and the parse problem, never their content.
		w.log.Error(set.name+" invalid; keeping the current ones", "err", err)
		return false
	}
	apply()
	w.log.Info(set.name+" reloaded", attrs...)
	return true
}

// run polls every interval until ctx ends.
func (w *watcher) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.poll()
		}
	}
}

// fingerprint hashes the content of every named file in order. Read errors are
// folded into the hash so that a file disappearing and reappearing is seen
// as a change.
func fingerprint(paths []string) [sha256.Size]byte {
	h := sha256.New()
	for _, p := range paths {
		if p == "" {
			continue
		}
		data, err := os.ReadFile(p) // follows symlinks afresh on every call
		if err != nil {
			h.Write([]byte("\x00error:" + err.Error()))
		} else {
			c := sha256.Sum256(data)
			h.Write(c[:])
		}
		h.Write([]byte{0})
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// keySet is the signing and verification key files, put into the signer.
func (g *gate) keySet(files token.KeyFiles) fileSet {
	return fileSet{
		name:  "signing keys",
		paths: append(slices.Clone(files.Signing), files.Verification...),
		load: func() (func(), []any, error) {
			ks, err := files.Load()
			if err != nil {
				return nil, nil, err
			}
			return func() { g.signer.SetKeys(ks) },
				[]any{"active_kid", ks.ActiveKID(), "alg", ks.Algorithm(), "keys", len(ks.KIDs())}, nil
		},
	}
}

// adminTokenSet is the admin token file, put into the admin API.
func (g *gate) adminTokenSet(path string) fileSet {
	return fileSet{
		name:  "admin tokens",
		paths: []string{path},
		load: func() (func(), []any, error) {
			tokens, err := readAdminTokens(path)
			if err != nil {
				return nil, nil, err
			}
			return func() { g.admin.SetTokens(tokens) }, []any{"count", len(tokens)}, nil
		},
	}
}

// revocationTokenSet is revocations.token_file, put into the revocation
// feed. Same format as the admin token file.
func (g *gate) revocationTokenSet(path string) fileSet {
	return fileSet{
		name:  "revocation feed tokens",
		paths: []string{path},
		load: func() (func(), []any, error) {
			data, err := os.ReadFile(path)
			if err != nil {
				return nil, nil, fmt.Errorf("read revocations.token_file: %w", err)
			}
			tokens, err := admin.ParseTokenFile(data)
			if err != nil {
				return nil, nil, fmt.Errorf("revocations.token_file %s: %w", path, err)
			}
			return func() { g.revocations.SetTokens(tokens) }, []any{"count", len(tokens)}, nil
		},
	}
}

// adminTLSSet is the admin listener's certificate, key and client CA, put
// into the config its next handshakes use.
func (g *gate) adminTLSSet(files admin.TLSFiles) fileSet {
	return fileSet{
		name:  "admin TLS files",
		paths: []string{files.CertFile, files.KeyFile, files.ClientCAFile},
		load: func() (func(), []any, error) {
			cfg, err := files.Load()
			if err != nil {
				return nil, nil, err
			}
			return func() { g.adminTLS.Store(cfg) }, nil, nil
		},
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

// adminListenerTLS is the admin listener's TLS config: each handshake uses
// the certificate last loaded, so a renewed one applies without a restart.
func (g *gate) adminListenerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return g.adminTLS.Load(), nil },
	}
}

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
			g.reload()
		}
	}
}

// reload applies what is safe to change live from the config file and the
// files it names: signing keys (including a changed list of key files, which
// is how the rotation runbook moves from step to step), route rules and
// admin tokens. An invalid config or key file changes nothing.
func (g *gate) reload() {
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
	spiffe, err := authzSPIFFE(cfg.Services)
	if err != nil {
		g.log.Error("config reload failed; keeping current config", "err", err)
		return
	}
	if len(cfg.Token.SigningKeys) > 0 {
		g.files.replace(g.keySet(keyFiles(cfg)))
	}
	g.authz.SetRoutes(routes)
	g.authz.SetSPIFFE(spiffe)
	if cfg.AdminTokenFile != "" {
		g.files.replace(g.adminTokenSet(cfg.AdminTokenFile))
	}
	if cfg.Revocations.TokenFile != "" {
		// Checked when a follower connects: streams already open stay.
		g.files.replace(g.revocationTokenSet(cfg.Revocations.TokenFile))
	}
	g.log.Info("reloaded: signing keys, routes, services.spiffe*, admin tokens and revocation feed tokens applied; other keys need a restart")
}
