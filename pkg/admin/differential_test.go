package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"reflect"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiongate/sessiongate/pkg/session"
	"github.com/sessiongate/sessiongate/pkg/token"
)

// The differential tests put custom claim names in front of the JSON
// parsers that downstream services actually use, next to the claim
// sessiongate owns, and require: whenever a parser would hand the custom
// value out as the owned claim, sessiongate refuses the name — at the admin
// API, in the signer, and in the session record decoder (records in Redis
// may come from an older version).

// ownedStruct is a struct with one json.RawMessage field per owned claim,
// the way a Go service decodes claims it knows.
var ownedStruct = func() reflect.Type {
	var fields []reflect.StructField
	for i, c := range token.OwnedClaims() {
		fields = append(fields, reflect.StructField{
			Name: "C" + strconv.Itoa(i),
			Type: reflect.TypeOf(json.RawMessage(nil)),
			Tag:  reflect.StructTag(`json:"` + c + `"`),
		})
	}
	return reflect.StructOf(fields)
}()

// claimValues are two distinct values of the owned claim's type, so typed
// decoders (jwt.NumericDate) accept both.
func claimValues(owned string) (mine, theirs string) {
	switch owned {
	case "exp", "nbf", "iat":
		return "1", "2"
	case "roles":
		return `["a"]`, `["b"]`
	}
	return `"a"`, `"b"`
}

func claimDoc(owned, candidate string, ownedFirst bool) []byte {
	mine, theirs := claimValues(owned)
	k, _ := json.Marshal(candidate)
	var b bytes.Buffer
	b.WriteByte('{')
	if ownedFirst {
		b.WriteString(strconv.Quote(owned) + ":" + mine + ",")
	}
	b.Write(k)
	b.WriteString(":" + theirs)
	if !ownedFirst {
		b.WriteString("," + strconv.Quote(owned) + ":" + mine)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// goTakesOver reports which Go decoders read the candidate's value as the
// owned claim: a struct with the owned fields (encoding/json), and, for the
// registered claims, golang-jwt v5's RegisteredClaims.
func goTakesOver(t testing.TB, owned, candidate string) (structTakes, registeredTakes bool) {
	t.Helper()
	_, theirs := claimValues(owned)
	idx := -1
	for i, c := range token.OwnedClaims() {
		if c == owned {
			idx = i
		}
	}
	for _, first := range []bool{true, false} {
		doc := claimDoc(owned, candidate, first)
		v := reflect.New(ownedStruct)
		if err := json.Unmarshal(doc, v.Interface()); err == nil {
			if string(v.Elem().Field(idx).Bytes()) == theirs {
				structTakes = true
			}
		}
		var rc jwt.RegisteredClaims
		if err := json.Unmarshal(doc, &rc); err != nil {
			continue
		}
		var got any
		switch owned {
		case "iss":
			got = rc.Issuer
		case "sub":
			got = rc.Subject
		case "jti":
			got = rc.ID
		case "aud":
			if len(rc.Audience) == 1 {
				got = rc.Audience[0]
			}
		case "exp":
			got = rc.ExpiresAt
		case "nbf":
			got = rc.NotBefore
		case "iat":
			got = rc.IssuedAt
		default:
			continue
		}
		switch g := got.(type) {
		case string:
			registeredTakes = registeredTakes || strconv.Quote(g) == theirs
		case *jwt.NumericDate:
			registeredTakes = registeredTakes || (g != nil && strconv.FormatInt(g.Unix(), 10) == theirs)
		}
	}
	return structTakes, registeredTakes
}

// refusals reports whether the admin API's validation, the signer and the
// session record decoder each refuse candidate as a custom claim name.
func refusals(t testing.TB, candidate string) (admin, signer, record bool) {
	t.Helper()
	admin = validClaims(map[string]string{candidate: "v"}) != nil

	sg, err := testSigner()
	if err != nil {
		t.Fatal(err)
	}
	_, err = sg.Sign(token.Claims{Subject: "alice", Custom: map[string]string{candidate: "v"},
		ExpiresAt: time.Now().Add(time.Minute)})
	signer = err != nil

	store := session.NewMemoryStore(nil)
	now := time.Now().Truncate(time.Millisecond)
	ref := strings.Repeat("c", session.RefLen)
	if _, err := store.Create(context.Background(), &session.Session{Ref: ref, Subject: "alice",
		Claims: map[string]string{candidate: "v"}, CreatedAt: now, ExpiresAt: now.Add(time.Hour), IdleTimeout: time.Hour}, session.Limit{}); err != nil {
		t.Fatalf("store create: %v", err)
	}
	e, err := store.Touch(context.Background(), ref)
	if err != nil {
		t.Fatalf("store touch: %v", err)
	}
	_, err = e.Session()
	if err != nil && !errors.Is(err, session.ErrCorrupt) {
		t.Fatalf("record decode: %v is not ErrCorrupt", err)
	}
	record = err != nil
	return admin, signer, record
}

// testSigner is shared: a key per fuzz input would be most of the cost.
var testSigner = sync.OnceValues(func() (*token.Signer, error) {
	k, err := token.GenerateKey(token.AlgES256)
	if err != nil {
		return nil, err
	}
	ks, err := token.NewKeySet(k, "")
	if err != nil {
		return nil, err
	}
	return token.NewSigner(ks, "iss"), nil
})

// claimCandidates is the table of reservedClaimCases plus, for every owned
// claim, every spelling Unicode simple folding maps onto it, the claim with
// a default-ignorable code point inserted at each position, its fullwidth
// form, and padded forms; and names that must stay usable.
func claimCandidates() []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, tc := range reservedClaimCases {
		add(tc.claim)
	}
	ignorable := []rune{'\u200b', '\u200c', '\u200d', '\u2060', '\u00ad', '\ufeff', '\u034f', '\u180e', '\u061c'}
	for _, owned := range token.OwnedClaims() {
		spellings := []string{""}
		for _, r := range owned {
			var next []string
			for f := r; ; {
				for _, p := range spellings {
					next = append(next, p+string(f))
				}
				if f = unicode.SimpleFold(f); f == r {
					break
				}
			}
			spellings = next
		}
		for _, s := range spellings {
			add(s)
		}
		for i := 0; i <= len(owned); i++ {
			for _, z := range ignorable {
				add(owned[:i] + string(z) + owned[i:])
			}
		}
		var full strings.Builder
		for _, r := range owned {
			full.WriteRune(r - 'a' + '\uff41')
		}
		add(full.String())
		add(" " + owned)
		add(owned + " ")
		add(owned + "\t")
		add(owned + "\x00")
	}
	for _, ok := range []string{"email", "org", "Org", "subject", "issuer", "tenant_id", "roles2", "k"} {
		add(ok)
	}
	return out
}

func TestClaimNameDifferential(t *testing.T) {
	t.Logf("parsers: Go %s encoding/json, github.com/golang-jwt/jwt/v5 %s", runtime.Version(), moduleVersion(t, "github.com/golang-jwt/jwt/v5"))
	candidates := claimCandidates()
	py := pythonVerdicts(t, candidates)
	var structN, registeredN, pyN, accepted int
	for _, c := range candidates {
		admin, signer, record := refusals(t, c)
		if !admin {
			accepted++
		}
		if admin != signer || admin != record {
			t.Errorf("%q: admin refuses %v, signer %v, record decoder %v: they must agree", c, admin, signer, record)
		}
		for _, owned := range token.OwnedClaims() {
			st, rt := goTakesOver(t, owned, c)
			v := py[[2]string{owned, c}]
			if st {
				structN++
			}
			if rt {
				registeredN++
			}
			if v.any() {
				pyN++
			}
			if (st || rt || v.any()) && !admin {
				t.Errorf("%q is accepted, but it is read as %q by: Go struct %v, jwt.RegisteredClaims %v, Python %+v", c, owned, st, rt, v)
			}
		}
	}
	t.Logf("%d candidates × %d owned claims: Go struct took over %d times, RegisteredClaims %d, Python (duplicate, casefold, NFKC) %d; %d candidates accepted",
		len(candidates), len(token.OwnedClaims()), structN, registeredN, pyN, accepted)
	// The test must have seen each parser alias a name, and sessiongate
	// accept some, or it proves nothing.
	if structN == 0 || registeredN == 0 || pyN == 0 || accepted == 0 {
		t.Fatalf("differential saw no takeover (struct %d, registered %d, python %d) or accepted nothing (%d)", structN, registeredN, pyN, accepted)
	}
}

// FuzzClaimNameDifferential explores names beyond the table: any name Go's
// struct decoding or RegisteredClaims reads as an owned claim must be
// refused by the admin API, the signer and the record decoder alike.
func FuzzClaimNameDifferential(f *testing.F) {
	for _, tc := range reservedClaimCases {
		f.Add(tc.claim)
	}
	f.Add("email")
	f.Fuzz(func(t *testing.T, c string) {
		if len(c) > 4096 {
			c = c[:4096] // a longer name would not fit a session record at all
		}
		admin, signer, record := refusals(t, c)
		if admin != signer || admin != record {
			t.Fatalf("%q: admin refuses %v, signer %v, record decoder %v", c, admin, signer, record)
		}
		if admin {
			return
		}
		if !utf8.ValidString(c) {
			t.Fatalf("accepted a name that is not UTF-8: %q", c)
		}
		for _, owned := range token.OwnedClaims() {
			if st, rt := goTakesOver(t, owned, c); st || rt {
				t.Fatalf("%q accepted, but Go reads it as %q (struct %v, RegisteredClaims %v)", c, owned, st, rt)
			}
		}
	})
}

// moduleVersion is the version of module path this test was built with. A
// test binary's build info lists no dependencies, so it asks the go command
// that is running the test.
func moduleVersion(t *testing.T, path string) string {
	t.Helper()
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("cannot record the version of %s: not in the build info and no go command: %v", path, err)
	}
	out, err := exec.Command(goBin, "list", "-m", "-f", "{{.Version}}", path).Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Fatalf("go list -m %s: %v", path, err)
	}
	return string(bytes.TrimSpace(out))
}

type pyVerdict struct {
	Last      bool `json:"last"`      // json.loads keeps the candidate's value for the owned key
	Duplicate bool `json:"duplicate"` // the object names a key twice
	Casefold  bool `json:"casefold"`  // candidate.casefold() or .lower() == owned
	NFKC      bool `json:"nfkc"`      // NFKC, then casefold, == owned
}

func (v pyVerdict) any() bool { return v.Last || v.Duplicate || v.Casefold || v.NFKC }

// pyScript reads [[owned, candidate, doc], ...] and answers one verdict per
// entry. Python's json keeps the last duplicate (as Go's does) but matches
// keys exactly; services in Python that look claims up case-insensitively
// use casefold or lower, and some normalise with NFKC first.
const pyScript = `
import json, sys, unicodedata
out = []
for owned, cand, doc in json.load(sys.stdin):
    pairs = []
    last = json.loads(doc, object_pairs_hook=lambda p: (pairs.extend(p), dict(p))[1])
    keys = [k for k, _ in pairs]
    out.append({
        "last": last[owned] not in ("a", 1, ["a"]),
        "duplicate": len(keys) != len(set(keys)),
        "casefold": cand.casefold() == owned or cand.lower() == owned,
        "nfkc": unicodedata.normalize("NFKC", cand).casefold() == owned,
    })
json.dump(out, sys.stdout)
`

func pythonVerdicts(t *testing.T, candidates []string) map[[2]string]pyVerdict {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 not found on PATH (%v): the differential needs it; install python3 (apt-get install python3)", err)
	}
	ver, err := exec.Command(py, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("python3 --version: %v: %s", err, ver)
	}
	t.Logf("parsers: %s json (%s)", strings.TrimSpace(string(ver)), py)
	var in [][3]string
	var keys [][2]string
	for _, c := range candidates {
		if !utf8.ValidString(c) {
			continue
		}
		for _, owned := range token.OwnedClaims() {
			in = append(in, [3]string{owned, c, string(claimDoc(owned, c, true))})
			keys = append(keys, [2]string{owned, c})
		}
	}
	stdin, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", pyScript)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v: %s", err, stderr.String())
	}
	var verdicts []pyVerdict
	if err := json.Unmarshal(stdout, &verdicts); err != nil || len(verdicts) != len(keys) {
		t.Fatalf("python3 answered %d verdicts for %d documents (%v)", len(verdicts), len(keys), err)
	}
	m := make(map[[2]string]pyVerdict, len(keys))
	for i, k := range keys {
		m[k] = verdicts[i]
	}
	return m
}
