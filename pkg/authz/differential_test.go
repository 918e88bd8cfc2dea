package authz

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// Differential tests: sessiongate's reading of each input a decision
// depends on, against the parsers on the other side, run for real: Go's
// net/http and net/url, Python 3's http.cookies, urllib.parse and
// str.upper, and Node's decodeURIComponent and path.posix. Whenever any of
// them would see the session cookie, a protected path or a restricted
// method, sessiongate's decision must be the restrictive one, and what it
// passes upstream must hold no session credential in any of their
// readings. A missing interpreter fails the test: a differential against
// nothing proves nothing.

// pyDiff reads a JSON request on stdin and answers each kind of input the
// way Python reads it.
const pyDiff = `
import json, sys, re, unicodedata, posixpath, http.cookies, urllib.parse
req = json.load(sys.stdin)
def cookies(h):
    c = http.cookies.SimpleCookie()
    try:
        c.load(h)
    except Exception:
        return None
    return [[k, v.value] for k, v in c.items()]
ign = re.compile('[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]')
def norm(x):
    # Dot segments resolved as RFC 3986 does: a trailing slash stays.
    n = posixpath.normpath(x)
    return n + '/' if x.endswith('/') and not n.endswith('/') else n
def paths(p):
    d = urllib.parse.unquote(p.split('?')[0])
    return [d, norm(d), norm(ign.sub('', d)), norm(unicodedata.normalize('NFKC', ign.sub('', d))).casefold()]
print(json.dumps({
    "version": sys.version.split()[0],
    "cookies": [cookies(h) for h in (req["cookies"] or [])],
    "methods": [m.upper() for m in (req["methods"] or [])],
    "paths": [paths(p) for p in (req["paths"] or [])],
    "authorization": [a.split() for a in (req["authorization"] or [])],
}))
`

// nodeDiff does the same for the path and method readings Node offers.
const nodeDiff = `
const path = require('path');
let buf = '';
process.stdin.on('data', d => buf += d);
process.stdin.on('end', () => {
  const req = JSON.parse(buf);
  const ign = /[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]/g;
  const paths = (req.paths || []).map(p => {
    let d;
    try { d = decodeURIComponent(p.split('?')[0]); } catch (e) { return []; }
    return [d, path.posix.normalize(d), path.posix.normalize(d.replace(ign, '')),
            path.posix.normalize(d.replace(ign, '').normalize('NFKC')).toLowerCase()];
  });
  process.stdout.write(JSON.stringify({
    version: process.version,
    methods: (req.methods || []).map(m => m.toUpperCase()),
    paths,
    authorization: (req.authorization || []).map(a => a.split(/\s+/)),
  }));
});
`

type diffRequest struct {
	Cookies       []string `json:"cookies"`
	Methods       []string `json:"methods"`
	Paths         []string `json:"paths"`
	Authorization []string `json:"authorization"`
}

type diffAnswer struct {
	Version       string       `json:"version"`
	Cookies       [][][]string `json:"cookies"`
	Methods       []string     `json:"methods"`
	Paths         [][]string   `json:"paths"`
	Authorization [][]string   `json:"authorization"`
}

// runDiff runs one interpreter over every input at once.
func runDiff(t *testing.T, interp, script string, req diffRequest) diffAnswer {
	t.Helper()
	bin, err := exec.LookPath(interp)
	if err != nil {
		t.Fatalf("%s is needed for the differential tests and is not on PATH: %v", interp, err)
	}
	in, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-c", script}
	if interp == "node" {
		args = []string{"-e", script}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(string(in))
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s: %v\n%s", interp, err, stderr)
	}
	var a diffAnswer
	if err := json.Unmarshal(out, &a); err != nil {
		t.Fatalf("%s answer: %v", interp, err)
	}
	t.Logf("differential parser: %s %s (%s)", interp, a.Version, bin)
	return a
}

func logGoVersion(t *testing.T) {
	t.Helper()
	t.Logf("differential parser: Go %s net/http, net/url, path", runtime.Version())
}

// goCookies is how a Go upstream reads a cookie header.
func goCookies(h string) [][]string {
	r := &http.Request{Header: http.Header{"Cookie": {h}}}
	var out [][]string
	for _, c := range r.Cookies() {
		out = append(out, []string{c.Name, c.Value})
	}
	return out
}

// cookieHeaders generates cookie headers around the session cookie: its
// name with every kind of byte a parser might trim or fold, beside other
// cookies, with separators parsers disagree on.
func cookieHeaders() []string {
	id := fuzzID
	names := []string{fuzzCookie, " " + fuzzCookie, "\t" + fuzzCookie, fuzzCookie + " ", "\u2000" + fuzzCookie,
		fuzzCookie + "\u2000", "\u00a0" + fuzzCookie, "\u3000" + fuzzCookie, "\ufeff" + fuzzCookie,
		"\u200b" + fuzzCookie, strings.ToLower(fuzzCookie), strings.ToUpper(fuzzCookie), "$" + fuzzCookie,
		`"` + fuzzCookie + `"`, fuzzCookie + "\u00ad", "__Host-\u017fid"}
	values := []string{id, `"` + id + `"`, " " + id, id + " ", "\u2000" + id, id + ",", id + "\u00a0"}
	shapes := []func(pair string) string{
		func(p string) string { return p },
		func(p string) string { return "theme=dark; " + p },
		func(p string) string { return p + "; theme=dark" },
		func(p string) string { return "a=b, " + p },
		func(p string) string { return "a=b," + p },
		func(p string) string { return "a=b " + p },
		func(p string) string { return `a="x; ` + p + `"` },
		func(p string) string { return "$Version=1; " + p },
		func(p string) string { return "copy=" + id + "; " + p },
	}
	var out []string
	for _, n := range names {
		for _, v := range values {
			for _, s := range shapes {
				out = append(out, s(n+"="+v))
			}
		}
	}
	return out
}

// TestDifferentialCookie: a session cookie is read only where a browser
// would have stored it under exactly that name, and whatever the answer,
// neither Go nor Python finds the session cookie or the session ID in the
// cookie header the upstream receives.
func TestDifferentialCookie(t *testing.T) {
	logGoVersion(t)
	headers := cookieHeaders()
	py := runDiff(t, "python3", pyDiff, diffRequest{Cookies: headers})
	if len(py.Cookies) != len(headers) {
		t.Fatalf("python answered %d of %d cookie headers", len(py.Cookies), len(headers))
	}
	p := newPathFixture(t)
	type answer struct {
		route, header, up string
		parsed            [][]string // Python's reading of the client's header
	}
	var answers []answer
	authenticated, public := 0, 0
	for i, h := range headers {
		for _, route := range []string{"/app/x", "/public/x"} {
			req := request("GET", route, withCookie(h))
			resp := p.check(t, req)
			if status(resp) != 200 {
				continue
			}
			if okHas(resp, tokenHeader) {
				authenticated++
				// Authenticated from the cookie: the browser's view (Go's
				// RFC 6265 reading, names never trimmed of anything but
				// ASCII whitespace) must hold exactly that cookie.
				var found []string
				for _, c := range goCookies(h) {
					if c[0] == fuzzCookie {
						found = append(found, c[1])
					}
				}
				if len(found) != 1 || found[0] != p.id {
					t.Errorf("%q authenticated, but Go reads session cookies %q", h, found)
				}
			} else {
				public++
			}
			up := upstream(req.Attributes.Request.Http.Headers, resp)["cookie"]
			answers = append(answers, answer{route, h, up, py.Cookies[i]})
		}
	}
	// Python reads every upstream header in one run.
	var ups []string
	for _, a := range answers {
		ups = append(ups, a.up)
	}
	pyUp := runDiff(t, "python3", pyDiff, diffRequest{Cookies: ups})
	for i, a := range answers {
		// The credential is the ID that Go or Python reads as the session
		// cookie's value in the client's header; no copy of it, and no
		// session cookie, may be in either's reading of the upstream one.
		var ids []string
		for _, jar := range [][][]string{goCookies(a.header), a.parsed} {
			for _, c := range jar {
				if c[0] == fuzzCookie && c[1] != "" {
					ids = append(ids, c[1])
				}
			}
		}
		for parser, jar := range map[string][][]string{"Go": goCookies(a.up), "Python": pyUp.Cookies[i]} {
			for _, c := range jar {
				if c[0] == fuzzCookie || slices.ContainsFunc(ids, func(id string) bool { return strings.Contains(c[1], id) }) {
					t.Errorf("%s %q: %s reads %s=%q in the upstream cookie header %q", a.route, a.header, parser, c[0], c[1], a.up)
				}
			}
		}
	}
	t.Logf("%d cookie headers: %d authenticated, %d public answers checked against Go and Python", len(headers), authenticated, public)
	if authenticated == 0 || public == 0 {
		t.Fatal("no answer of some kind: the generator proves nothing")
	}
}

// diffRoutes are rules whose decisions differ by method and case.
var diffRoutes = []Route{
	{PathPrefix: "/reports/", Methods: []string{"POST", "DELETE"}, Access: Deny},
	{PathPrefix: "/orders/", Methods: []string{"POST"}, Access: Authenticated},
	{PathPrefix: "/orders/", Access: Public},
	{PathPrefix: "/static/", Methods: []string{"GET", "HEAD"}, Access: Public},
	{PathPrefix: "/admin/", Methods: []string{"DELETE"}, Access: Authenticated, Roles: []string{"admin"}},
}

// rank orders decisions by what they let through: the restrictive one is
// the larger.
func rank(d decision) int {
	switch d {
	case decPublic:
		return 0
	case decAllowed:
		return 1
	}
	return 2
}

// refDecision is what the rules say for a request as an upstream reads
// it, for the fixture's role-less session: exact method, exact path prefix.
func refDecision(routes []Route, method, p string) decision {
	for _, r := range routes {
		if (len(r.Methods) == 0 || slices.Contains(r.Methods, method)) && strings.HasPrefix(p, r.PathPrefix) {
			switch {
			case r.Access == Public:
				return decPublic
			case r.Access == Deny || len(r.Roles) > 0:
				return decForbidden
			}
			return decAllowed
		}
	}
	return decAllowed
}

// TestDifferentialMethod: whatever method an upstream acts on (as sent,
// Go's reading of the request line, Python's str.upper, Node's
// toUpperCase), sessiongate never lets through more than the rules give
// that method.
func TestDifferentialMethod(t *testing.T) {
	logGoVersion(t)
	var methods []string
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"} {
		l := strings.ToLower(m)
		methods = append(methods, m, l, strings.ToUpper(l[:1])+l[1:], l[:len(l)-1]+strings.ToUpper(l[len(l)-1:]))
	}
	methods = append(methods, "po\u017ft", "\u0131tem", "DEL\u0130TE", "GET ", "G\tET", "", "DELETE\x00", "dele\u212ae")
	py := runDiff(t, "python3", pyDiff, diffRequest{Methods: methods})
	node := runDiff(t, "node", nodeDiff, diffRequest{Methods: methods})
	p := newPathFixtureWith(t, diffRoutes)
	checked := 0
	for i, m := range methods {
		views := []string{m, py.Methods[i], node.Methods[i]}
		if r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(m + " /x HTTP/1.1\r\nHost: a\r\n\r\n"))); err == nil {
			views = append(views, r.Method)
		}
		for _, target := range []string{"/reports/1", "/orders/1", "/static/a.css", "/admin/x", "/other"} {
			got := p.decide(t, m, target)
			if got == decOther {
				t.Fatalf("%q %s: unexpected answer", m, target)
			}
			for _, v := range views {
				if want := refDecision(diffRoutes, v, target); rank(got) < rank(want) {
					t.Errorf("%q %s answered %v, but an upstream reading the method as %q gets %v", m, target, got, v, want)
				}
			}
			checked++
		}
	}
	t.Logf("%d method/path pairs checked against Go, Python and Node readings", checked)
}

// diffPaths generates paths from rule prefixes, tricks around dot segments
// and separators, and tails that lead somewhere protected.
func diffPaths() []string {
	heads := []string{"/public/", "/static/", "/app/", "/admin/", "/blocked/"}
	mids := []string{"", ".", "..", "...", ".%20", "..%20", "..%3F", "..%23", "%2e%2e", "%C2%AD..", "..%C2%AD", "%E2%80%8B..",
		".%E2%80%8B.", "%EF%BB%BF..", "..%EF%BB%BF", "%E2%80%A5", "%EF%BC%8E%EF%BC%8E", "%C0%AE%C0%AE", "%C2%AD", "%E2%81%A0",
		"%2f", "%5c", "adm%C4%B1n", "ADMIN", "%E2%84%AA", "caf%C3%A9", "x"}
	tails := []string{"/admin/x", "/blocked/x", "/x", "admin/x", ""}
	var out []string
	for _, h := range heads {
		for _, m := range mids {
			for _, tl := range tails {
				out = append(out, h+m+tl)
			}
		}
	}
	return out
}

// goPathViews are a Go upstream's readings of a path.
func goPathViews(p string) []string {
	p, _, _ = strings.Cut(p, "?")
	d, err := url.PathUnescape(p)
	if err != nil {
		return nil
	}
	c := path.Clean(d)
	if strings.HasSuffix(d, "/") && !strings.HasSuffix(c, "/") {
		c += "/" // dot segments resolved as RFC 3986 does: a trailing slash stays
	}
	return []string{d, c, strings.ToLower(c)}
}

// TestDifferentialPath: for every reading of a path (Go's PathUnescape and
// path.Clean, Python's unquote and posixpath.normpath, Node's
// decodeURIComponent and path.posix.normalize, each also with default-
// ignorables dropped, NFKC and case folding), sessiongate's answer is at
// least as restrictive as what the rules say for that reading, matched
// exactly and in any case.
func TestDifferentialPath(t *testing.T) {
	logGoVersion(t)
	paths := diffPaths()
	req := diffRequest{Paths: paths}
	py := runDiff(t, "python3", pyDiff, req)
	node := runDiff(t, "node", nodeDiff, req)
	p := newPathFixture(t)
	counts := map[decision]int{}
	for i, raw := range paths {
		got := p.decide(t, "GET", raw)
		if got == decOther {
			t.Fatalf("%q: unexpected answer", raw)
		}
		counts[got]++
		views := append(append(goPathViews(raw), py.Paths[i]...), node.Paths[i]...)
		for _, v := range views {
			for _, vv := range []string{v, strings.ToLower(v)} {
				want := refDecision(fuzzRoutes, "GET", vv)
				for _, r := range fuzzRoutes {
					if r.restrictive() && r.forMethod("GET") && strings.HasPrefix(vv, strings.ToLower(r.PathPrefix)) {
						want = decForbidden
					}
				}
				if rank(got) < rank(want) {
					t.Errorf("%q answered %v, but an upstream reading it as %q gets %v", raw, got, vv, want)
				}
			}
		}
	}
	t.Logf("%d paths checked against Go, Python and Node readings: %v", len(paths), fmt.Sprint(counts))
	if counts[decPublic] == 0 || counts[decAllowed] == 0 || counts[decRefused] == 0 {
		t.Fatal("no answer of some kind: the generator proves nothing")
	}
}

// TestDifferentialAuthorization: after any allow answer, no way of
// splitting the upstream's Authorization header (Go's strings.Fields,
// Python's str.split, Node's split(/\s+/)) yields the session ID.
func TestDifferentialAuthorization(t *testing.T) {
	logGoVersion(t)
	id := fuzzID
	var values []string
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "Token", "Basic", ""} {
		for _, sep := range []string{" ", "  ", "\t", "\u2000", "\u00a0", "\u3000", ",", " ,"} {
			values = append(values, scheme+sep+id, scheme+sep+id+","+scheme+" "+id, scheme+sep+id+"\u2000")
		}
	}
	py := runDiff(t, "python3", pyDiff, diffRequest{Authorization: values})
	node := runDiff(t, "node", nodeDiff, diffRequest{Authorization: values})
	p := newPathFixture(t)
	checked := 0
	for i, v := range values {
		for _, route := range []string{"/app/x", "/public/x"} {
			for _, cookie := range []string{"", fuzzCookie + "=" + id} {
				req := request("GET", route, withHeader("authorization", v))
				if cookie != "" {
					req.Attributes.Request.Http.Headers["cookie"] = cookie
				}
				resp := p.check(t, req)
				if status(resp) != 200 {
					continue
				}
				checked++
				up, ok := upstream(req.Attributes.Request.Http.Headers, resp)["authorization"]
				if !ok {
					continue
				}
				if up != v {
					t.Fatalf("authorization rewritten, not removed: %q", up)
				}
				fields := [][]string{strings.Fields(up), py.Authorization[i], node.Authorization[i]}
				for _, fs := range fields {
					for _, f := range fs {
						if strings.Trim(f, ",") == id {
							t.Errorf("%s %q (cookie %v): an upstream splitting it finds the session ID", route, v, cookie != "")
						}
					}
				}
			}
		}
	}
	t.Logf("%d allow answers checked against Go, Python and Node splits", checked)
	if checked == 0 {
		t.Fatal("no allow answer: the generator proves nothing")
	}
}
