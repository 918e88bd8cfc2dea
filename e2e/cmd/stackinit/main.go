// Command stackinit prepares the shared volume of the Docker Compose demo
// stack (e2e/docker-compose.yml) before anything else starts:
//
//   - renders envoy/envoy.yaml.tmpl with the same strict renderer the e2e
//     harness uses (e2e/envtmpl), taking values from the environment, so the
//     Compose stack and the tests run one Envoy configuration;
//   - creates sessiongate's ES256 signing key (with the same code as
//     `sessiongate keygen`) and an admin API token, unless they already
//     exist, so that no secret is committed to the repository and a restart
//     of the stack keeps sessions and tokens valid.
//
// It exists because the runtime images are distroless (no shell for
// envsubst or `sessiongate keygen > file`).
//
//	stackinit -envoy-template /templates/envoy.yaml.tmpl -out /stack
package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sessiongate/sessiongate/e2e/envtmpl"
	"github.com/sessiongate/sessiongate/pkg/token"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "stackinit:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fset := flag.NewFlagSet("stackinit", flag.ContinueOnError)
	tmpl := fset.String("envoy-template", "/templates/envoy.yaml.tmpl", "Envoy configuration template")
	out := fset.String("out", "/stack", "output directory (the shared volume)")
	if err := fset.Parse(args); err != nil {
		return err
	}
	return Init(*tmpl, *out, os.Getenv)
}

// Init writes envoy.yaml, signing-key.pem and admin-token into out. getenv
// supplies the template's variables.
func Init(tmplPath, out string, getenv func(string) string) error {
	b, err := os.ReadFile(tmplPath)
	if err != nil {
		return err
	}
	names, err := envtmpl.Names(string(b))
	if err != nil {
		return fmt.Errorf("%s: %w", tmplPath, err)
	}
	vars := map[string]string{}
	for _, n := range names {
		if v := getenv(n); v != "" {
			vars[n] = v
		}
	}
	rendered, err := envtmpl.Render(string(b), vars)
	if err != nil {
		return fmt.Errorf("%s: %w", tmplPath, err)
	}
	// Envoy runs under its own uid in its image: the config is not secret.
	if err := writeFile(filepath.Join(out, "envoy.yaml"), []byte(rendered), 0o644); err != nil {
		return err
	}
	fmt.Printf("stackinit: wrote %s\n", filepath.Join(out, "envoy.yaml"))

	keyPath := filepath.Join(out, "signing-key.pem")
	if err := createOnce(keyPath, func() ([]byte, error) {
		k, err := token.GenerateKey(token.AlgES256)
		if err != nil {
			return nil, err
		}
		return token.EncodePrivateKeyPEM(k)
	}); err != nil {
		return err
	}
	return createOnce(filepath.Join(out, "admin-token"), func() ([]byte, error) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		return []byte(base64.RawURLEncoding.EncodeToString(b) + "\n"), nil
	})
}

// createOnce writes a 0600 secret unless the file already exists.
func createOnce(path string, gen func() ([]byte, error)) error {
	if _, err := os.Stat(path); err == nil {
		fmt.Printf("stackinit: keeping existing %s\n", path)
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	b, err := gen()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := writeFile(path, b, 0o600); err != nil {
		return err
	}
	fmt.Printf("stackinit: created %s\n", path)
	return nil
}

// writeFile replaces path atomically so that a container starting at the same
// time never reads half a file.
func writeFile(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
