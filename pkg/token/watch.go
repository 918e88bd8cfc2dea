package token

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"time"
)

// DefaultWatchInterval is used by WatchKeys when interval <= 0.
const DefaultWatchInterval = 10 * time.Second

// Reload loads the key files and, only if they are valid, passes the new set
// to apply (typically Signer.SetKeys). On failure the error is logged and
// returned and apply is not called, so the keys in service stay untouched.
// It is meant for SIGHUP handlers and is what WatchKeys calls on change.
func Reload(files KeyFiles, log *slog.Logger, apply func(*KeySet)) error {
	if log == nil {
		log = slog.Default()
	}
	ks, err := files.Load()
	if err != nil {
		// err names files and the parse problem, never key bytes.
		log.Error("signing key reload failed; keeping current keys", "error", err)
		return err
	}
	apply(ks)
	log.Info("signing keys reloaded",
		"active_kid", ks.ActiveKID(),
		"alg", ks.Algorithm(),
		"keys", len(ks.keys))
	return nil
}

// WatchKeys polls the key files every interval and calls Reload when their
// content changes, until ctx is done. Content hashes rather than mtimes are
// compared, and every poll re-opens each path, because Kubernetes updates a
// mounted Secret by atomically re-pointing a "..data" symlink: the visible
// path never changes and the new files may carry old timestamps.
//
// On start it reloads once (an equivalent set if nothing changed): files can
// change between the caller's initial LoadKeySet and the first fingerprint,
// and that update must not be missed. A broken update (bad PEM, weak key,
// half-written file) is logged once and ignored; the keys in service stay,
// and the watcher retries as soon as the content changes again.
func WatchKeys(ctx context.Context, files KeyFiles, interval time.Duration, log *slog.Logger, apply func(*KeySet)) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	if log == nil {
		log = slog.Default()
	}
	paths := files.all()
	last := fingerprint(paths)
	_ = Reload(files, log, apply)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fp := fingerprint(paths)
		if fp == last {
			continue
		}
		// Record the new state even if it fails to load, so a bad file is
		// reported once instead of on every tick.
		last = fp
		log.Info("signing key files changed; reloading")
		_ = Reload(files, log, apply)
	}
}

// fingerprint hashes the content of every file in order. Read errors are
// folded into the hash so that a file disappearing and reappearing is seen
// as a change.
func fingerprint(files []string) [sha256.Size]byte {
	h := sha256.New()
	for _, f := range files {
		data, err := os.ReadFile(f) // follows symlinks afresh on every call
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
