package authz

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// testRefreshShape is shaped like a refresh token (the prefix and 43
// base64url characters, a canonical last one); no store knows it.
const testRefreshShape = "sgr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

func TestParseForm(t *testing.T) {
	tests := []struct {
		body string
		want []formParam // nil: refused
	}{
		{"grant_type=refresh_token&refresh_token=" + testRefreshShape,
			[]formParam{{"grant_type", "refresh_token"}, {"refresh_token", testRefreshShape}}},
		{"a=b+c%20d%2B", []formParam{{"a", "b c d+"}}},
		{"%67rant_type=x", []formParam{{"grant_type", "x"}}},
		{"a=%C3%A9", []formParam{{"a", "é"}}},
		{"a=", []formParam{{"a", ""}}},
		{"a=b=c", []formParam{{"a", "b=c"}}},
		{"a=%3D%26", []formParam{{"a", "=&"}}},
		{"a=1&b=2&c=3", []formParam{{"a", "1"}, {"b", "2"}, {"c", "3"}}},

		{"", nil},
		{strings.Repeat("a", maxFormBody+1), nil},
		{"a=1&a=2", nil},
		{"a=1&a=1", nil},
		{"a=&a=1", nil},      // Python's parse_qs drops the first: refuse, not pick
		{"a=1&%61=2", nil},   // the same name, once escaped
		{"a=1;b=2", nil},     // Go refuses ';', Python keeps it in the value
		{"a=1&&b=2", nil},    // an empty pair
		{"a=1&", nil},        // a trailing empty pair
		{"a", nil},           // no '=': Python drops it, Go keeps it
		{"=1", nil},          // empty name
		{"a=%zz", nil},       // Go refuses, Python keeps it literal
		{"a=%4", nil},        // truncated escape
		{"a=%", nil},         // truncated escape
		{"a=%FF", nil},       // not UTF-8: Python reads U+FFFD
		{"a=%C0%AE", nil},    // overlong UTF-8
		{"a=%00", nil},       // NUL
		{"a=%0D%0Ax", nil},   // CRLF
		{"a=%C2%85", nil},    // C1 control (NEL)
		{"a=%E2%80%A8", nil}, // line separator
		{"a=\u00e9", nil},    // raw non-ASCII
		{"a=b c", nil},       // raw space
		{"a=b\tc", nil},      // raw tab
		{"a=b\n", nil},       // trailing newline (echo | curl -d @-)
		{"a=\x00", nil},      // raw NUL
		{"a=\x7f", nil},      // raw DEL
		{strings.Repeat("a=1&", maxFormParams) + "z=1", nil},
	}
	for _, tt := range tests {
		got, desc := parseForm(tt.body)
		if tt.want == nil {
			if desc == "" {
				t.Errorf("parseForm(%.60q) = %v, want a refusal", tt.body, got)
			}
			continue
		}
		if desc != "" || !slices.Equal(got, tt.want) {
			t.Errorf("parseForm(%.60q) = %v, %q; want %v", tt.body, got, desc, tt.want)
		}
	}
}

func TestFormContentType(t *testing.T) {
	tests := []struct {
		v  string
		ok bool
	}{
		{"application/x-www-form-urlencoded", true},
		{"Application/X-WWW-Form-URLEncoded", true},
		{"application/x-www-form-urlencoded; charset=utf-8", true},
		{"application/x-www-form-urlencoded;charset=UTF-8", true},
		{`application/x-www-form-urlencoded; charset="utf-8"`, true},
		{"application/x-www-form-urlencoded ; charset=us-ascii", true},
		{" application/x-www-form-urlencoded ", true},

		{"", false},
		{"application/json", false},
		{"text/plain", false},
		{"multipart/form-data; boundary=x", false},
		{"application/x-www-form-urlencoded, application/json", false}, // two headers joined by Envoy
		{"application/x-www-form-urlencodedx", false},
		{"application/x-www-form-urlencoded; charset=iso-8859-1", false},
		{"application/x-www-form-urlencoded; charset", false},
		{"application/x-www-form-urlencoded; =x", false},
		{"application/x-www-form-urlencoded; a=\"x\\\"\"", false},
		{"\u00a0application/x-www-form-urlencoded", false}, // mime.ParseMediaType trims it (strings.TrimSpace)
		{"application/x-www-form-urlencoded\u2000", false},
		{"application/x-www-form-urlencoded\r\n", false},
		{"application/x-www-form-urlencoded\x00", false},
	}
	for _, tt := range tests {
		if got := formContentType(tt.v); got != tt.ok {
			t.Errorf("formContentType(%q) = %v, want %v", tt.v, got, tt.ok)
		}
	}
}

// pyForm reads each hex-encoded body the way a Python form reader does:
// the bytes decoded as UTF-8, then urllib.parse.parse_qsl with blank
// values kept (ordered pairs) and parse_qs as called by default.
const pyForm = `
import json, sys, urllib.parse
out = []
for h in json.load(sys.stdin):
    s = bytes.fromhex(h).decode('utf-8', 'replace')
    try:
        pairs = urllib.parse.parse_qsl(s, keep_blank_values=True)
        qs = urllib.parse.parse_qs(s)
        out.append({"pairs": [list(p) for p in pairs], "qs": qs})
    except Exception as e:
        out.append({"error": str(e)})
print(json.dumps({"version": sys.version.split()[0], "answers": out}))
`

type pyFormAnswer struct {
	Pairs [][]string          `json:"pairs"`
	QS    map[string][]string `json:"qs"`
	Error string              `json:"error"`
}

// formBodies generates bodies from the pieces parsers disagree on.
func formBodies() []string {
	atoms := []string{
		"grant_type=refresh_token", "refresh_token=" + testRefreshShape, "grant_type=", "refresh_token=",
		"%67rant_type=refresh_token", "grant_type=refresh%5Ftoken", "Grant_Type=refresh_token", "grant_type", "=",
		"a=1", "a", "a==b", "a=%zz", "a=%", "a=%2", "a=+", "a=%2B", "a=%26b%3Dc", "a=%00", "a=%C3%A9", "a=%FF",
		"a=\u00e9", "a=b c", "a=\t", "a=#x", "a=?x", "a=%E2%80%A8", "a=%C2%85", "%61=2", "a=b;c=d", "a=%3B",
	}
	seps := []string{"&", ";", "&&", "&;"}
	var out []string
	out = append(out, atoms...)
	for _, a := range atoms {
		for _, b := range atoms {
			for _, sep := range seps {
				out = append(out, a+sep+b)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		n := 1 + r.IntN(4)
		var parts []string
		for range n {
			parts = append(parts, atoms[r.IntN(len(atoms))])
		}
		out = append(out, strings.Join(parts, seps[r.IntN(len(seps))]))
	}
	return out
}

// TestDifferentialForm: whatever parseForm accepts, Go's url.ParseQuery
// and Python's parse_qsl and parse_qs read the same, name for name and
// value for value; wherever they disagree with each other, parseForm
// refuses.
func TestDifferentialForm(t *testing.T) {
	logGoVersion(t)
	bodies := formBodies()
	hexes := make([]string, len(bodies))
	for i, b := range bodies {
		hexes[i] = hex.EncodeToString([]byte(b))
	}
	var py struct {
		Version string         `json:"version"`
		Answers []pyFormAnswer `json:"answers"`
	}
	runPython(t, pyForm, hexes, &py)
	t.Logf("differential parser: python3 %s urllib.parse", py.Version)
	if len(py.Answers) != len(bodies) {
		t.Fatalf("python answered %d of %d bodies", len(py.Answers), len(bodies))
	}
	accepted, disagree := 0, 0
	for i, body := range bodies {
		ours, desc := parseForm(body)
		goVals, goErr := url.ParseQuery(body)
		pa := py.Answers[i]
		if goErr != nil || pa.Error != "" || !sameForm(goVals, pa.Pairs) {
			disagree++
		}
		if desc != "" {
			continue
		}
		accepted++
		if goErr != nil {
			t.Errorf("%q: accepted, but Go refuses it: %v", body, goErr)
			continue
		}
		if pa.Error != "" {
			t.Errorf("%q: accepted, but Python refuses it: %s", body, pa.Error)
			continue
		}
		var oursPairs [][]string
		oursMap := url.Values{}
		oursQS := map[string][]string{}
		for _, p := range ours {
			oursPairs = append(oursPairs, []string{p.name, p.value})
			oursMap[p.name] = append(oursMap[p.name], p.value)
			if p.value != "" {
				oursQS[p.name] = append(oursQS[p.name], p.value)
			}
		}
		if !equalValues(oursMap, goVals) {
			t.Errorf("%q: we read %v, Go reads %v", body, oursMap, goVals)
		}
		if !slices.EqualFunc(oursPairs, pa.Pairs, slices.Equal[[]string]) {
			t.Errorf("%q: we read %v, Python's parse_qsl reads %v", body, oursPairs, pa.Pairs)
		}
		if !equalValues(oursQS, pa.QS) {
			t.Errorf("%q: we read %v (blank values dropped), Python's parse_qs reads %v", body, oursQS, pa.QS)
		}
	}
	t.Logf("%d bodies: %d accepted, each read alike by Go and Python; %d read differently by Go and Python (all refused)", len(bodies), accepted, disagree)
	if accepted == 0 || disagree == 0 {
		t.Fatal("no body of some kind: the generator proves nothing")
	}
}

// sameForm reports whether Go's and Python's readings agree.
func sameForm(g url.Values, pairs [][]string) bool {
	p := url.Values{}
	for _, kv := range pairs {
		p[kv[0]] = append(p[kv[0]], kv[1])
	}
	return equalValues(g, p)
}

func equalValues(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// runPython runs script with in as JSON on stdin and decodes its JSON
// answer into out. A missing interpreter fails the test.
func runPython(t *testing.T, script string, in, out any) {
	t.Helper()
	bin, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is needed for the differential tests and is not on PATH: %v", err)
	}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-c", script)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	answer, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(answer, out); err != nil {
		t.Fatalf("python3 answer: %v", err)
	}
}

// FuzzParseForm: whatever parseForm accepts is within its bounds, holds
// each name once and no control character, and is read exactly alike by
// Go's url.ParseQuery; re-encoded, it reads back the same.
func FuzzParseForm(f *testing.F) {
	for _, b := range []string{
		"grant_type=refresh_token&refresh_token=" + testRefreshShape,
		"grant_type=refresh_token&refresh_token=" + testRefreshShape + "&client_id=app",
		"a=b+c%20d", "a=1&a=2", "a=1;b=2", "a=%zz", "a=%FF", "a", "=", "&", "a=&a=1", "%67rant_type=x", "a=%C3%A9",
		"a=%E2%80%A8", `{"grant_type":"refresh_token"}`,
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body string) {
		params, desc := parseForm(body)
		if desc != "" {
			if params != nil {
				t.Fatal("a refusal with parameters")
			}
			return
		}
		if len(body) > maxFormBody || len(params) == 0 || len(params) > maxFormParams {
			t.Fatalf("accepted %d bytes, %d parameters", len(body), len(params))
		}
		goVals, err := url.ParseQuery(body)
		if err != nil {
			t.Fatalf("accepted %q, Go refuses it: %v", body, err)
		}
		again := url.Values{}
		for _, p := range params {
			if hasControl(p.name) || hasControl(p.value) || !utf8.ValidString(p.name) || !utf8.ValidString(p.value) {
				t.Fatalf("accepted %q with %q=%q", body, p.name, p.value)
			}
			if len(goVals[p.name]) != 1 || goVals[p.name][0] != p.value {
				t.Fatalf("%q: we read %s=%q, Go reads %q", body, p.name, p.value, goVals[p.name])
			}
			again.Set(p.name, p.value)
		}
		if len(goVals) != len(params) {
			t.Fatalf("%q: we read %d parameters, Go %d", body, len(params), len(goVals))
		}
		round, desc := parseForm(again.Encode())
		if desc != "" && len(again.Encode()) <= maxFormBody {
			t.Fatalf("%q re-encoded as %q is refused: %s", body, again.Encode(), desc)
		}
		if desc == "" && len(round) != len(params) {
			t.Fatalf("%q re-encoded reads %v", body, round)
		}
	})
}
