package envtmpl

import (
	"strings"
	"testing"
)

func TestRenderReplacesEveryOccurrence(t *testing.T) {
	got, err := Render("a: ${HOST}:${PORT}\nb: ${HOST}\n", map[string]string{"HOST": "127.0.0.1", "PORT": "8080", "EXTRA": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "a: 127.0.0.1:8080\nb: 127.0.0.1\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestRenderLeavesOtherDollarsAlone(t *testing.T) {
	in := `regex: "^/a$" cost: $5 fmt: "%REQ(:PATH)%"`
	got, err := Render(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got != in {
		t.Fatalf("got %q, want it unchanged", got)
	}
}

func TestRenderErrors(t *testing.T) {
	for _, tc := range []struct {
		name, tmpl string
		vars       map[string]string
		want       string
	}{
		{"missing names all listed", "${A} ${B} ${C}", map[string]string{"B": "x"}, "no value for A, C"},
		{"empty counts as missing", "${A}", map[string]string{"A": ""}, "no value for A"},
		{"lower-case name", "${host}", map[string]string{"host": "x"}, "malformed placeholder"},
		{"default syntax is not supported", "${A:-x}", map[string]string{"A": "x"}, "malformed placeholder"},
		{"unclosed", "${A", map[string]string{"A": "x"}, "malformed placeholder"},
		{"empty name", "${}", nil, "malformed placeholder"},
		{"line break in value", "${A}", map[string]string{"A": "x\nadmin: {}"}, "line break"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(tc.tmpl, tc.vars)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestNamesSortedAndDistinct(t *testing.T) {
	got, err := Names("${B} ${A} ${B}")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "A,B" {
		t.Fatalf("got %v", got)
	}
}
