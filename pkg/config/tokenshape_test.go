package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/*/*.golden from what Validate reports")

// TestTokenShapeGolden loads each testdata/tokenshape/*.yaml, validates it
// (dev mode: no secrets needed) and compares every problem reported, one a
// line, with the .golden file beside it ("ok" for none). Regenerate with
//
//	go test ./pkg/config/ -run TestTokenShapeGolden -update-golden
func TestTokenShapeGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/tokenshape/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			c, err := Load(file, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := "ok\n"
			if err := c.Validate(true); err != nil {
				got = err.Error() + "\n"
			}
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *updateGolden {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("Validate reports:\n%s\nwant (%s):\n%s", got, golden, want)
			}
		})
	}
}

// TestLoadClaimsEmptyList: claims: [] (no custom claim) and an absent
// claims (all of them) must stay apart through the YAML decoder, in the
// file and in SESSIONGATE_ROUTES.
func TestLoadClaimsEmptyList(t *testing.T) {
	const routes = "[{path_prefix: /a/, access: authenticated, claims: []}, {path_prefix: /b/, access: authenticated}, {path_prefix: /c/, access: authenticated, claims: ~}]"
	for name, c := range map[string]*Config{
		"file": mustLoad(t, writeFile(t, "routes: "+routes+"\n"), nil),
		"env":  mustLoad(t, "", []string{"SESSIONGATE_ROUTES=" + routes}),
	} {
		if r := c.Routes[0].Claims; r == nil || len(r) != 0 {
			t.Errorf("%s: claims: [] read as %#v, want an empty list", name, r)
		}
		if r := c.Routes[1].Claims; r != nil {
			t.Errorf("%s: no claims read as %#v, want nil", name, r)
		}
		if r := c.Routes[2].Claims; r != nil {
			t.Errorf("%s: claims: ~ read as %#v, want nil (all)", name, r)
		}
	}
}
