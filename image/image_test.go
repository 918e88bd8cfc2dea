package main

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const testVersion = "v9.8.7-imagetest"

// built is one image build shared by the tests (a build compiles the server).
var built = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "sessiongate-image-test-")
	if err != nil {
		return "", err
	}
	var out strings.Builder
	err = run(context.Background(), []string{"-repo", "..", "-out", filepath.Join(dir, "image.tar"),
		"-layout", filepath.Join(dir, "oci"), "-sbom", filepath.Join(dir, "sbom.spdx.json"),
		"-version", testVersion, "-revision", "0123456789abcdef0123456789abcdef01234567"}, &out)
	if err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "stdout"), []byte(out.String()), 0o644)
})

func image(t *testing.T) (v1.Image, string) {
	t.Helper()
	dir, err := built()
	if err != nil {
		t.Fatalf("building the image: %v", err)
	}
	img, err := tarball.ImageFromPath(filepath.Join(dir, "image.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return img, dir
}

// files lists the image's flattened filesystem: path -> header, and the
// content of the files named in want.
func files(t *testing.T, img v1.Image, want ...string) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	hs, data := map[string]*tar.Header{}, map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := "/" + strings.TrimSuffix(h.Name, "/")
		hs[p] = h
		if slices.Contains(want, p) {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			data[p] = b
		}
	}
	return hs, data
}

// TestImage: the tarball is written and its digest printed; the config runs
// the binary as nonroot with the documented entrypoint and OCI labels; the
// filesystem has no shell and nothing writable but /tmp; the binary taken
// out of the layer runs `version`.
func TestImage(t *testing.T) {
	img, dir := image(t)
	id, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	stdout, _ := os.ReadFile(filepath.Join(dir, "stdout"))
	m := regexp.MustCompile(`image: digest (sha256:[0-9a-f]{64}) \(image ID (sha256:[0-9a-f]{64})\)`).FindStringSubmatch(string(stdout))
	if m == nil || m[2] != id.String() {
		t.Fatalf("the build did not print the digest and image ID %s:\n%s", id, stdout)
	}
	t.Logf("image digest %s, image ID %s", m[1], m[2])

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" {
		t.Errorf("user = %q, want 65532:65532", c.User)
	}
	if !slices.Equal(c.Entrypoint, Entrypoint) || !slices.Equal(c.Cmd, Cmd) {
		t.Errorf("entrypoint %q cmd %q", c.Entrypoint, c.Cmd)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	for k, want := range map[string]string{
		"org.opencontainers.image.source":   SourceURL,
		"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
		"org.opencontainers.image.version":  testVersion,
	} {
		if c.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], want)
		}
	}
	for _, p := range ExposedPorts {
		if _, ok := c.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed", p)
		}
	}

	hs, data := files(t, img, BinaryPath, "/etc/passwd", SBOMPath)
	for _, sh := range []string{"/bin/sh", "/bin/bash", "/bin/busybox", "/usr/bin/sh"} {
		if _, ok := hs[sh]; ok {
			t.Errorf("the image has a shell: %s", sh)
		}
	}
	for p, h := range hs {
		writable := h.Mode&0o002 != 0
		if writable && p != "/tmp" {
			t.Errorf("%s is world-writable (mode %o)", p, h.Mode)
		}
	}
	if h, ok := hs[CABundle]; !ok || h.Size == 0 {
		t.Errorf("no CA bundle at %s", CABundle)
	}
	if h := hs[BinaryPath]; h == nil || h.Uid != 0 || h.Mode&0o022 != 0 || h.Mode&0o111 == 0 {
		t.Errorf("%s: want root-owned, executable, not writable by others: %+v", BinaryPath, h)
	}
	if !regexp.MustCompile(`(?m)^nonroot:x:65532:65532:`).Match(data["/etc/passwd"]) {
		t.Errorf("/etc/passwd has no nonroot 65532:\n%s", data["/etc/passwd"])
	}

	// The binary from the layer: static, runs here, says its version.
	bin := filepath.Join(t.TempDir(), "sessiongate")
	if err := os.WriteFile(bin, data[BinaryPath], 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != testVersion {
		t.Errorf("sessiongate version from the image: %q, %v; want %s", out, err, testVersion)
	}
	if f, err := exec.Command("file", bin).Output(); err == nil && !strings.Contains(string(f), "statically linked") {
		t.Errorf("binary is not static: %s", f)
	}

	// The SBOM in the image equals the one written beside it.
	side, err := os.ReadFile(filepath.Join(dir, "sbom.spdx.json"))
	if err != nil || string(side) != string(data[SBOMPath]) {
		t.Errorf("SBOM in the image differs from -sbom output (%v)", err)
	}
}

// TestImageLayout: the OCI layout holds the image under the printed digest,
// with the same config as the tarball.
func TestImageLayout(t *testing.T) {
	img, dir := image(t)
	stdout, _ := os.ReadFile(filepath.Join(dir, "stdout"))
	m := regexp.MustCompile(`image: digest (sha256:[0-9a-f]{64})`).FindStringSubmatch(string(stdout))
	if m == nil {
		t.Fatalf("no digest printed:\n%s", stdout)
	}
	want, err := v1.NewHash(m[1])
	if err != nil {
		t.Fatal(err)
	}
	idx, err := layout.ImageIndexFromPath(filepath.Join(dir, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != want {
		t.Fatalf("layout index %+v, want one manifest %s", im.Manifests, want)
	}
	li, err := idx.Image(want)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := li.ConfigName()
	b, _ := img.ConfigName()
	if a != b {
		t.Errorf("layout image config %s, tarball %s", a, b)
	}
}

// TestSBOM: SPDX 2.3 JSON listing the module graph of the binary, with the
// versions of the root go.mod.
func TestSBOM(t *testing.T) {
	_, dir := image(t)
	b, err := os.ReadFile(filepath.Join(dir, "sbom.spdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SPDXVersion string `json:"spdxVersion"`
		Packages    []struct {
			Name    string `json:"name"`
			Version string `json:"versionInfo"`
			Refs    []struct {
				Locator string `json:"referenceLocator"`
			} `json:"externalRefs"`
		} `json:"packages"`
		Relationships []struct {
			Type string `json:"relationshipType"`
		} `json:"relationships"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SPDXVersion != "SPDX-2.3" {
		t.Errorf("spdxVersion %q", doc.SPDXVersion)
	}
	got := map[string]string{}
	for _, p := range doc.Packages {
		got[p.Name] = p.Version
		if len(p.Refs) == 0 || !strings.HasPrefix(p.Refs[0].Locator, "pkg:golang/") {
			t.Errorf("package %s has no Go purl", p.Name)
		}
	}
	if got["github.com/sessiongate/sessiongate"] != testVersion {
		t.Errorf("main package version %q", got["github.com/sessiongate/sessiongate"])
	}
	// Every direct requirement of the root go.mod that the binary links is
	// listed with the go.mod version.
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, m := range regexp.MustCompile(`(?m)^\t(github\.com/redis/go-redis/v9|google\.golang\.org/grpc|github\.com/golang-jwt/jwt/v5) (v\S+)$`).FindAllStringSubmatch(string(gomod), -1) {
		checked++
		if got[m[1]] != m[2] {
			t.Errorf("SBOM: %s = %q, go.mod says %s", m[1], got[m[1]], m[2])
		}
	}
	if checked != 3 {
		t.Fatalf("found %d of 3 reference modules in ../go.mod", checked)
	}
	if len(doc.Relationships) != len(doc.Packages) {
		t.Errorf("%d relationships for %d packages", len(doc.Relationships), len(doc.Packages))
	}
}

// TestImageOnGivenBase: --base takes an image tarball (as `crane pull`
// writes it) and an OCI layout; the result is that base plus one layer.
func TestImageOnGivenBase(t *testing.T) {
	_, dir := image(t)
	epochless, err := MinimalBase("amd64", unixEpoch)
	if err != nil {
		t.Fatal(err)
	}
	base, err := mutate.Config(epochless, v1.Config{User: "65532:65532", Labels: map[string]string{"base": "custom"}})
	if err != nil {
		t.Fatal(err)
	}
	baseTar := filepath.Join(t.TempDir(), "base.tar")
	if err := tarball.WriteToFile(baseTar, mustTag(t, "example.com/base:1"), base); err != nil {
		t.Fatal(err)
	}
	baseLayers, _ := base.Layers()
	for _, b := range []string{baseTar, filepath.Join(dir, "oci")} {
		out := filepath.Join(t.TempDir(), "image.tar")
		var log strings.Builder
		if err := run(context.Background(), []string{"-repo", "..", "-out", out, "-base", b,
			"-version", testVersion, "-revision", "r"}, &log); err != nil {
			t.Fatalf("--base %s: %v", b, err)
		}
		img, err := tarball.ImageFromPath(out, nil)
		if err != nil {
			t.Fatal(err)
		}
		ls, _ := img.Layers()
		if b == baseTar {
			if len(ls) != len(baseLayers)+1 {
				t.Fatalf("--base tarball: %d layers, want base %d + 1", len(ls), len(baseLayers))
			}
			for i := range baseLayers {
				d1, _ := baseLayers[i].Digest()
				d2, _ := ls[i].Digest()
				if d1 != d2 {
					t.Errorf("layer %d is not the base's", i)
				}
			}
			cf, _ := img.ConfigFile()
			if cf.Config.Labels["base"] != "custom" || cf.Config.Labels["org.opencontainers.image.version"] != testVersion {
				t.Errorf("labels %v: want the base's and ours", cf.Config.Labels)
			}
		} else if len(ls) != 3 { // the built image (2 layers) as base: + 1
			t.Errorf("--base layout: %d layers, want 3", len(ls))
		}
	}
}

// TestDockerfileAgrees: the root Dockerfile and this builder describe the
// same image: base, user, entrypoint, command, binary path, ports, labels.
func TestDockerfileAgrees(t *testing.T) {
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var froms, users, entry, cmd, expose, copies []string
	labels := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") {
			continue
		}
		word, rest, _ := strings.Cut(l, " ")
		switch word {
		case "FROM":
			froms = append(froms, strings.Fields(rest)[0])
		case "USER":
			users = append(users, rest)
		case "ENTRYPOINT":
			entry = jsonArray(t, rest)
		case "CMD":
			cmd = jsonArray(t, rest)
		case "EXPOSE":
			expose = strings.Fields(rest)
		case "COPY":
			copies = append(copies, rest)
		case "LABEL":
			for _, kv := range strings.Fields(strings.TrimSuffix(rest, "\\")) {
				k, _, _ := strings.Cut(kv, "=")
				labels[k] = true
			}
		default:
			if k, _, ok := strings.Cut(l, "="); ok && strings.HasPrefix(k, "org.opencontainers.image.") {
				labels[k] = true // continuation lines of LABEL
			}
		}
	}
	if len(froms) == 0 || froms[len(froms)-1] != DistrolessBase {
		t.Errorf("Dockerfile final FROM %v, builder's base stands for %s", froms, DistrolessBase)
	}
	if len(users) == 0 || (users[len(users)-1] != "nonroot:nonroot" && users[len(users)-1] != "65532:65532") {
		t.Errorf("Dockerfile USER %v, want nonroot (65532)", users)
	}
	if !slices.Equal(entry, Entrypoint) || !slices.Equal(cmd, Cmd) {
		t.Errorf("Dockerfile ENTRYPOINT %q CMD %q, builder %q %q", entry, cmd, Entrypoint, Cmd)
	}
	var ports []string
	for _, p := range ExposedPorts {
		ports = append(ports, strings.TrimSuffix(p, "/tcp"))
	}
	if !slices.Equal(expose, ports) {
		t.Errorf("Dockerfile EXPOSE %v, builder %v", expose, ports)
	}
	if !slices.ContainsFunc(copies, func(c string) bool { return strings.HasSuffix(c, " "+BinaryPath) }) {
		t.Errorf("Dockerfile does not COPY the binary to %s: %v", BinaryPath, copies)
	}
	for _, k := range []string{"org.opencontainers.image.source", "org.opencontainers.image.revision", "org.opencontainers.image.version"} {
		if !labels[k] {
			t.Errorf("Dockerfile has no LABEL %s", k)
		}
	}
}

func jsonArray(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("Dockerfile exec-form array %q: %v", s, err)
	}
	return out
}

var unixEpoch = time.Unix(0, 0).UTC()

func mustTag(t *testing.T, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}
