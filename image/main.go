// Command image builds sessiongate's release image without a container
// engine: go-containerregistry assembles the layers and the config and writes
// a `docker load`-able tarball and an OCI image layout. It is `make
// image-oci`; the root Dockerfile describes the same image for people with
// Docker (a test keeps the two in step).
//
// The base is distroless-equivalent and built here from files on this
// machine, because no container registry is reachable from where sessiongate
// is built and tested: Debian's CA bundle, an /etc/passwd and /etc/group with
// the distroless "nonroot" user (65532), /tmp and the nonroot home. No shell,
// no libc, no package manager. tzdata is left out: sessiongate never loads a
// time zone. With registry access, pass gcr.io/distroless/static:nonroot as
// --base (`crane pull gcr.io/distroless/static-debian12:nonroot base.tar`).
//
// The build is reproducible: every timestamp is the commit time
// (SOURCE_DATE_EPOCH if set), so the same commit gives the same digest.
//
//	go run . -repo .. -out ../dist/sessiongate.oci.tar -layout ../dist/oci -version v0.1.0
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image is; the Dockerfile must say the same (TestDockerfileAgrees).
const (
	// DistrolessBase is the base the Dockerfile uses and the built-in base
	// stands in for.
	DistrolessBase = "gcr.io/distroless/static-debian12:nonroot"
	NonrootUID     = 65532
	BinaryPath     = "/usr/local/bin/sessiongate"
	SBOMPath       = "/usr/share/sbom/sessiongate.spdx.json"
	CABundle       = "/etc/ssl/certs/ca-certificates.crt"
	DefaultRepo    = "ghcr.io/sessiongate/sessiongate"
	SourceURL      = "https://github.com/sessiongate/sessiongate"
)

var (
	Entrypoint   = []string{BinaryPath}
	Cmd          = []string{"serve", "--config", "/etc/sessiongate/config.yaml"}
	ExposedPorts = []string{"9001/tcp", "9002/tcp", "9003/tcp"}
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

type options struct {
	repo, out, layoutDir, sbomOut, base string
	version, revision, source, arch     string
	epoch                               time.Time
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.repo, "repo", "..", "sessiongate repository root")
	fs.StringVar(&o.out, "out", "", "write a `docker load`-able image tarball here")
	fs.StringVar(&o.layoutDir, "layout", "", "also write an OCI image layout into this directory")
	fs.StringVar(&o.sbomOut, "sbom", "", "also write the SPDX SBOM here (it is in the image at "+SBOMPath+" in any case)")
	fs.StringVar(&o.base, "base", "", "base image: a tarball (crane pull / docker save) or an OCI layout directory; empty = the built-in distroless-equivalent base")
	fs.StringVar(&o.version, "version", "", "version (main.version, OCI version label, tag); default git describe")
	fs.StringVar(&o.revision, "revision", "", "VCS revision for the OCI revision label; default git rev-parse HEAD")
	fs.StringVar(&o.source, "source", SourceURL, "OCI source label")
	fs.StringVar(&o.arch, "arch", runtime.GOARCH, "GOARCH of the binary and the image")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.out == "" && o.layoutDir == "" {
		return errors.New("-out or -layout is required")
	}
	var err error
	if o.repo, err = filepath.Abs(o.repo); err != nil {
		return err
	}
	if o.version == "" {
		if o.version, err = git(ctx, o.repo, "describe", "--tags", "--always", "--dirty"); err != nil {
			return err
		}
	}
	if o.revision == "" {
		if o.revision, err = git(ctx, o.repo, "rev-parse", "HEAD"); err != nil {
			return err
		}
	}
	if o.epoch, err = sourceDateEpoch(ctx, o.repo); err != nil {
		return err
	}

	work, err := os.MkdirTemp("", "sessiongate-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "sessiongate")
	if err := buildBinary(ctx, o, bin); err != nil {
		return err
	}
	sbom, err := SPDX(bin, o)
	if err != nil {
		return err
	}
	base, err := loadBase(o)
	if err != nil {
		return err
	}
	img, err := appImage(base, bin, sbom, o)
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	tag, err := name.NewTag(DefaultRepo + ":" + sanitizeTag(o.version))
	if err != nil {
		return err
	}
	if o.out != "" {
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
			return err
		}
		if err := tarball.WriteToFile(o.out, tag, img); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "image: wrote %s (%s)\n", o.out, tag)
	}
	if o.layoutDir != "" {
		if err := os.RemoveAll(o.layoutDir); err != nil {
			return err
		}
		p, err := layout.Write(o.layoutDir, empty.Index)
		if err != nil {
			return err
		}
		if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": tag.String(),
		})); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "image: wrote OCI layout %s\n", o.layoutDir)
	}
	if o.sbomOut != "" {
		if err := os.WriteFile(o.sbomOut, sbom, 0o644); err != nil {
			return err
		}
	}
	// The manifest digest is what a registry and the OCI layout know the
	// image by; a docker tarball carries no manifest of its own, and `docker
	// load` names the image by its config digest (the image ID).
	id, err := img.ConfigName()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "image: digest %s (image ID %s)\n", digest, id)
	return nil
}

// buildBinary builds with the flags of `make build` (static, trimmed,
// version stamped).
func buildBinary(ctx context.Context, o options, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+o.version, "-o", out, "./cmd/sessiongate")
	cmd.Dir = o.repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, b)
	}
	return nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %v (pass -version/-revision outside a git checkout)", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(b)), nil
}

func sourceDateEpoch(ctx context.Context, repo string) (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		var err error
		if s, err = git(ctx, repo, "log", "-1", "--format=%ct"); err != nil {
			return time.Time{}, err
		}
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// sanitizeTag makes a git describe string a valid tag.
func sanitizeTag(v string) string {
	var b strings.Builder
	for _, r := range v {
		if r == '_' || r == '.' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return strings.TrimLeft(b.String(), ".-")
}

// loadBase reads --base (a tarball or an OCI layout) or builds the
// distroless-equivalent base.
func loadBase(o options) (v1.Image, error) {
	if o.base == "" {
		return MinimalBase(o.arch, o.epoch)
	}
	st, err := os.Stat(o.base)
	if err != nil {
		return nil, fmt.Errorf("--base: %w", err)
	}
	if !st.IsDir() {
		return tarball.ImageFromPath(o.base, nil)
	}
	idx, err := layout.ImageIndexFromPath(o.base)
	if err != nil {
		return nil, fmt.Errorf("--base %s: not an OCI layout: %w", o.base, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.MediaType.IsImage() && (d.Platform == nil || d.Platform.Architecture == o.arch) {
			return idx.Image(d.Digest)
		}
		if d.MediaType.IsIndex() { // a multi-arch image as crane/skopeo write it
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			cm, err := child.IndexManifest()
			if err != nil {
				return nil, err
			}
			for _, c := range cm.Manifests {
				if c.Platform != nil && c.Platform.OS == "linux" && c.Platform.Architecture == o.arch {
					return child.Image(c.Digest)
				}
			}
		}
	}
	return nil, fmt.Errorf("--base %s: no linux/%s image in the layout", o.base, o.arch)
}

// file is one entry of a layer.
type file struct {
	path     string
	mode     int64
	uid, gid int
	data     []byte
	dir      bool
}

// layer builds a deterministic layer: fixed order, fixed times, numeric
// owners only.
func layer(files []file, mtime time.Time, mt types.MediaType) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: strings.TrimPrefix(f.path, "/"), Mode: f.mode, Uid: f.uid, Gid: f.gid,
			ModTime: mtime, Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(mt))
}

const passwd = `root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
`

const group = `root:x:0:
nobody:x:65534:
nonroot:x:65532:
`

// MinimalBase is the distroless-equivalent base: CA bundle, users, /tmp.
func MinimalBase(arch string, epoch time.Time) (v1.Image, error) {
	ca, err := os.ReadFile(CABundle)
	if err != nil {
		return nil, fmt.Errorf("the built-in base needs Debian's CA bundle %s (apt-get install ca-certificates), or pass --base: %w", CABundle, err)
	}
	l, err := layer([]file{
		{path: "/etc", mode: 0o755, dir: true},
		{path: "/etc/group", mode: 0o644, data: []byte(group)},
		{path: "/etc/passwd", mode: 0o644, data: []byte(passwd)},
		{path: "/etc/ssl", mode: 0o755, dir: true},
		{path: "/etc/ssl/certs", mode: 0o755, dir: true},
		{path: CABundle, mode: 0o644, data: ca},
		{path: "/home", mode: 0o755, dir: true},
		{path: "/home/nonroot", mode: 0o700, uid: NonrootUID, gid: NonrootUID, dir: true},
		{path: "/root", mode: 0o700, dir: true},
		{path: "/tmp", mode: 0o1777, dir: true},
	}, epoch, types.OCILayer)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), l)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: epoch}
	cf.Config.User = strconv.Itoa(NonrootUID) + ":" + strconv.Itoa(NonrootUID)
	cf.Config.WorkingDir = "/home/nonroot"
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=" + CABundle}
	cf.History = []v1.History{{Created: v1.Time{Time: epoch}, CreatedBy: "sessiongate image: distroless-equivalent base (CA bundle, nonroot 65532, /tmp)"}}
	return mutate.ConfigFile(img, cf)
}

// appImage puts the binary and the SBOM on base and sets the config.
func appImage(base v1.Image, bin string, sbom []byte, o options) (v1.Image, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	l, err := layer([]file{
		{path: "/usr", mode: 0o755, dir: true},
		{path: "/usr/local", mode: 0o755, dir: true},
		{path: "/usr/local/bin", mode: 0o755, dir: true},
		{path: BinaryPath, mode: 0o755, data: data},
		{path: "/usr/share", mode: 0o755, dir: true},
		{path: "/usr/share/sbom", mode: 0o755, dir: true},
		{path: SBOMPath, mode: 0o644, data: sbom},
	}, o.epoch, layerType(base))
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(base, mutate.Addendum{Layer: l, History: v1.History{
		Created: v1.Time{Time: o.epoch}, CreatedBy: "sessiongate image: " + BinaryPath + " " + o.version + ", SBOM " + SBOMPath,
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: o.epoch}
	cf.Architecture = o.arch
	cf.Config.User = strconv.Itoa(NonrootUID) + ":" + strconv.Itoa(NonrootUID)
	cf.Config.Entrypoint = Entrypoint
	cf.Config.Cmd = Cmd
	cf.Config.ExposedPorts = map[string]struct{}{}
	for _, p := range ExposedPorts {
		cf.Config.ExposedPorts[p] = struct{}{}
	}
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	for k, v := range Labels(o.version, o.revision, o.source, o.epoch) {
		cf.Config.Labels[k] = v
	}
	return mutate.ConfigFile(img, cf)
}

// layerType matches the new layer to the base's manifest: a Docker-format
// base (docker save) keeps Docker media types, anything else gets OCI ones.
func layerType(base v1.Image) types.MediaType {
	if mt, err := base.MediaType(); err == nil && mt == types.DockerManifestSchema2 {
		return types.DockerLayer
	}
	return types.OCILayer
}

// Labels are the OCI annotations of the image config.
func Labels(version, revision, source string, created time.Time) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "sessiongate",
		"org.opencontainers.image.description": "Envoy ext_authz server: opaque session ID outside, signed JWT inside",
		"org.opencontainers.image.source":      source,
		"org.opencontainers.image.revision":    revision,
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.created":     created.Format(time.RFC3339),
		"org.opencontainers.image.base.name":   DistrolessBase,
	}
}

// SPDX writes an SPDX 2.3 JSON SBOM of the binary from the module graph Go
// embedded in it (the same data as `go version -m`): the main module, every
// dependency module with its version, go.sum hash and purl, and the Go
// toolchain.
func SPDX(bin string, o options) ([]byte, error) {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	type checksum struct {
		Algorithm string `json:"algorithm"`
		Value     string `json:"checksumValue"`
	}
	type ref struct {
		Category string `json:"referenceCategory"`
		Type     string `json:"referenceType"`
		Locator  string `json:"referenceLocator"`
	}
	type pkg struct {
		SPDXID           string     `json:"SPDXID"`
		Name             string     `json:"name"`
		Version          string     `json:"versionInfo,omitempty"`
		Download         string     `json:"downloadLocation"`
		FilesAnalyzed    bool       `json:"filesAnalyzed"`
		Checksums        []checksum `json:"checksums,omitempty"`
		ExternalRefs     []ref      `json:"externalRefs,omitempty"`
		Comment          string     `json:"comment,omitempty"`
		PrimaryPurpose   string     `json:"primaryPackagePurpose,omitempty"`
		LicenseConcluded string     `json:"licenseConcluded"`
		LicenseDeclared  string     `json:"licenseDeclared"`
		CopyrightText    string     `json:"copyrightText"`
	}
	type rel struct {
		Element string `json:"spdxElementId"`
		Type    string `json:"relationshipType"`
		Related string `json:"relatedSpdxElement"`
	}
	id := func(s string) string {
		var b strings.Builder
		for _, r := range s {
			if r == '.' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
				b.WriteRune(r)
			} else {
				b.WriteByte('-')
			}
		}
		return "SPDXRef-Package-" + b.String()
	}
	purl := func(path, version string) ref {
		return ref{"PACKAGE-MANAGER", "purl", "pkg:golang/" + path + "@" + version}
	}
	main := pkg{SPDXID: "SPDXRef-Package-sessiongate", Name: bi.Main.Path, Version: o.version,
		Download: o.source, Checksums: []checksum{{"SHA256", hex.EncodeToString(sum[:])}},
		ExternalRefs: []ref{purl(bi.Main.Path, o.version)}, PrimaryPurpose: "APPLICATION",
		Comment: "static binary " + BinaryPath + ", revision " + o.revision}
	pkgs := []pkg{main, {SPDXID: "SPDXRef-Package-go", Name: "go", Version: bi.GoVersion,
		Download: "https://go.dev/dl/", ExternalRefs: []ref{{"PACKAGE-MANAGER", "purl", "pkg:golang/stdlib@" + strings.TrimPrefix(bi.GoVersion, "go")}}}}
	rels := []rel{{"SPDXRef-DOCUMENT", "DESCRIBES", main.SPDXID}, {main.SPDXID, "DEPENDS_ON", "SPDXRef-Package-go"}}
	for _, d := range bi.Deps {
		m := d
		if d.Replace != nil {
			m = d.Replace
		}
		p := pkg{SPDXID: id(m.Path), Name: m.Path, Version: m.Version,
			Download:     "https://proxy.golang.org/" + m.Path + "/@v/" + m.Version + ".zip",
			ExternalRefs: []ref{purl(m.Path, m.Version)}}
		if m.Sum != "" {
			p.Comment = "go.sum " + m.Sum
		}
		pkgs = append(pkgs, p)
		rels = append(rels, rel{main.SPDXID, "DEPENDS_ON", p.SPDXID})
	}
	for i := range pkgs {
		pkgs[i].LicenseConcluded, pkgs[i].LicenseDeclared, pkgs[i].CopyrightText = "NOASSERTION", "NOASSERTION", "NOASSERTION"
	}
	doc := map[string]any{
		"spdxVersion":       "SPDX-2.3",
		"dataLicense":       "CC0-1.0",
		"SPDXID":            "SPDXRef-DOCUMENT",
		"name":              "sessiongate-" + o.version,
		"documentNamespace": o.source + "/sbom/" + o.version + "-" + o.revision,
		"creationInfo": map[string]any{
			"created":  o.epoch.Format(time.RFC3339),
			"creators": []string{"Tool: sessiongate-image", "Organization: sessiongate"},
		},
		"packages":      pkgs,
		"relationships": rels,
	}
	return json.MarshalIndent(doc, "", "  ")
}
