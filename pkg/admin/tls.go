package admin

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"
)

// TLSFiles name the admin API's server certificate and key (PEM) and,
// optionally, the CA bundle client certificates must chain to. With a
// client CA every connection must present a certificate it verifies:
// mutual TLS.
type TLSFiles struct {
	CertFile     string
	KeyFile      string
	ClientCAFile string
}

// ServerTLS returns the admin listener's TLS config. The files are re-read
// when their content changes, checked at most once per interval during
// handshakes, so a renewed certificate (a cert-manager Secret, say) is
// picked up without a restart. A bad new file is logged and the old one
// keeps serving.
func ServerTLS(files TLSFiles, interval time.Duration, log *slog.Logger) (*tls.Config, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &tlsReloader{files: files, interval: interval, log: log}
	raw, err := files.read()
	if err != nil {
		return nil, err
	}
	if r.cfg, err = files.build(raw); err != nil {
		return nil, err
	}
	r.raw, r.checked = raw, time.Now()
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: r.get}, nil
}

type tlsReloader struct {
	files    TLSFiles
	interval time.Duration
	log      *slog.Logger

	mu      sync.Mutex
	cfg     *tls.Config
	raw     [3][]byte
	checked time.Time
}

func (r *tlsReloader) get(*tls.ClientHelloInfo) (*tls.Config, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) < r.interval {
		return r.cfg, nil
	}
	r.checked = time.Now()
	raw, err := r.files.read()
	if err == nil && sameFiles(raw, r.raw) {
		return r.cfg, nil
	}
	var cfg *tls.Config
	if err == nil {
		cfg, err = r.files.build(raw)
	}
	if err != nil {
		r.log.Error("admin TLS files changed but are invalid; keeping the current ones", "err", err)
		return r.cfg, nil
	}
	r.cfg, r.raw = cfg, raw
	r.log.Info("admin TLS files reloaded")
	return cfg, nil
}

func (f TLSFiles) read() (raw [3][]byte, err error) {
	for i, p := range [...]string{f.CertFile, f.KeyFile, f.ClientCAFile} {
		if p == "" {
			continue
		}
		if raw[i], err = os.ReadFile(p); err != nil {
			return raw, fmt.Errorf("admin TLS: %w", err)
		}
	}
	return raw, nil
}

func (f TLSFiles) build(raw [3][]byte) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(raw[0], raw[1])
	if err != nil {
		return nil, fmt.Errorf("admin TLS: %s / %s: %w", f.CertFile, f.KeyFile, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if f.ClientCAFile != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw[2]) {
			return nil, fmt.Errorf("admin TLS: %s: no PEM certificate", f.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

func sameFiles(a, b [3][]byte) bool {
	return bytes.Equal(a[0], b[0]) && bytes.Equal(a[1], b[1]) && bytes.Equal(a[2], b[2])
}

// clientCN returns the common name of the verified client certificate, or
// "" when the connection has none (no TLS, or no client CA configured).
func clientCN(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return ""
	}
	return r.TLS.VerifiedChains[0][0].Subject.CommonName
}
