// Package envtmpl renders the Envoy configuration template in envoy/.
//
// It is deliberately smaller than envsubst or text/template: the only syntax
// is ${NAME} with NAME made of upper-case letters, digits and underscores,
// and every name must have a non-empty value. A typo in the template or a
// variable the caller forgot is an error that names it, never an empty
// string silently written into a proxy configuration. A "$" not followed by
// "{" is left alone, so Envoy's own syntax never needs escaping.
package envtmpl

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
)

// placeholder matches anything that looks like an attempt at a variable, so
// that malformed ones (${lower}, ${A-B}, an unclosed ${) are reported rather
// than copied through.
var placeholder = regexp.MustCompile(`\$\{([^}\n]*)(\}?)`)

var validName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// Names returns the distinct variable names the template uses, sorted.
func Names(tmpl string) ([]string, error) {
	seen := map[string]bool{}
	var bad []string
	for _, m := range placeholder.FindAllStringSubmatch(tmpl, -1) {
		name, closed := m[1], m[2] == "}"
		if !closed || !validName.MatchString(name) {
			bad = append(bad, m[0])
			continue
		}
		seen[name] = true
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("envtmpl: malformed placeholder(s) %s: want ${NAME} with NAME in [A-Z][A-Z0-9_]*", strings.Join(bad, ", "))
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// Render replaces every ${NAME} in tmpl with vars[NAME]. It fails, naming all
// offenders at once, if a name is missing or empty in vars, or if a value
// contains a line break (which could inject YAML structure). Extra entries in
// vars are ignored so that one variable set can serve several templates.
func Render(tmpl string, vars map[string]string) (string, error) {
	names, err := Names(tmpl)
	if err != nil {
		return "", err
	}
	var missing, unsafe []string
	for _, n := range names {
		v, ok := vars[n]
		switch {
		case !ok || v == "":
			missing = append(missing, n)
		case strings.ContainsAny(v, "\r\n"):
			unsafe = append(unsafe, n)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("envtmpl: no value for %s", strings.Join(missing, ", "))
	}
	if len(unsafe) > 0 {
		return "", fmt.Errorf("envtmpl: value of %s contains a line break", strings.Join(unsafe, ", "))
	}
	return placeholder.ReplaceAllStringFunc(tmpl, func(m string) string {
		return vars[m[2:len(m)-1]]
	}), nil
}

// RenderFile reads the template at path and renders it with vars; errors
// name the file.
func RenderFile(path string, vars map[string]string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	out, err := Render(string(b), vars)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// FromEnviron collects the values of the given names from the process
// environment; names that are unset stay absent, so Render reports them.
func FromEnviron(names []string) map[string]string {
	vars := make(map[string]string, len(names))
	for _, n := range names {
		if v, ok := os.LookupEnv(n); ok {
			vars[n] = v
		}
	}
	return vars
}
