package admin

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
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

// Load reads the files and returns the admin listener's TLS config: the
// server certificate and, with a client CA, mutual TLS. Errors name the
// files, never their content.
func (f TLSFiles) Load() (*tls.Config, error) {
	raw, err := f.read()
	if err != nil {
		return nil, err
	}
	return f.build(raw)
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

// clientCN returns the common name of the verified client certificate, or
// "" when the connection has none (no TLS, or no client CA configured).
func clientCN(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return ""
	}
	return r.TLS.VerifiedChains[0][0].Subject.CommonName
}
