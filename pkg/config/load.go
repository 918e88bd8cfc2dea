package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Load returns Default overlaid with the YAML file at path (skipped if path
// is "") and then with the SESSIONGATE_* variables in environ, normalised but
// not validated: call Validate next.
//
// Unknown keys, in the file or as SESSIONGATE_* variables, are errors, so
// that a typo cannot silently leave a default in place.
func Load(path string, environ []string) (*Config, error) {
	c := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := decodeYAML(data, &c, "", path); err != nil {
			return nil, err
		}
	}
	if err := c.applyEnv(environ); err != nil {
		return nil, err
	}
	c.normalize()
	return &c, nil
}

// EnvName returns the environment variable that overrides the key at
// yamlPath, e.g. "redis.timeout" → "SESSIONGATE_REDIS_TIMEOUT".
func EnvName(yamlPath string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(yamlPath, ".", "_"))
}

// Keys returns the path of every key that can be set, sorted. "routes" is a
// single key: its items are not addressable one by one.
func Keys() []string {
	ks := make([]string, 0, len(keys()))
	for _, k := range keys() {
		ks = append(ks, k.path)
	}
	sort.Strings(ks)
	return ks
}

// key is a settable leaf of Config: a scalar, a string list or a list of
// structs (routes).
type key struct {
	path  string
	index []int // for reflect.Value.FieldByIndex on a Config
	typ   reflect.Type
}

// keys walks Config's yaml tags once, so that a new field gets its key, its
// environment variable and its README entry without touching a list.
var keys = sync.OnceValue(func() []key {
	var ks []key
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := yamlName(f)
			if name == "" {
				continue
			}
			path := prefix + name
			idx := append(append([]int(nil), index...), i)
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, path+".", idx)
				continue
			}
			ks = append(ks, key{path: path, index: idx, typ: f.Type})
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return ks
})

// yamlName mirrors yaml.v3's naming: the tag if there is one, else the
// lower-cased field name; "" for fields yaml ignores.
func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch name {
	case "-":
		return ""
	case "":
		return strings.ToLower(f.Name)
	}
	return name
}

func (c *Config) applyEnv(environ []string) error {
	byEnv := make(map[string]key, len(keys()))
	for _, k := range keys() {
		byEnv[EnvName(k.path)] = k
	}
	root := reflect.ValueOf(c).Elem()
	var errs []error
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		k, ok := byEnv[name]
		if !ok {
			errs = append(errs, fmt.Errorf("config: environment variable %s names no config key", name))
			continue
		}
		if err := setFromEnv(root.FieldByIndex(k.index), k, name, val); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func setFromEnv(v reflect.Value, k key, name, val string) error {
	switch {
	case k.typ.Kind() == reflect.String:
		// Taken verbatim: parsing it as YAML would eat a " #fragment" or
		// turn "yes" into something else.
		v.SetString(val)
		return nil
	case k.typ.Kind() == reflect.Slice && k.typ.Elem().Kind() == reflect.String:
		var list []string
		for s := range strings.SplitSeq(val, ",") {
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
		v.Set(reflect.ValueOf(list))
		return nil
	case strings.TrimSpace(val) == "":
		// YAML would read an empty value as "nothing" and keep the default,
		// which is not what someone who set the variable meant.
		return fmt.Errorf("config: %s: %s is empty", k.path, name)
	}
	// Everything else (durations, numbers, routes) is read as YAML, so that
	// it means exactly what it would mean in the file.
	return decodeYAML([]byte(val), v.Addr().Interface(), k.path, name)
}

// decodeYAML decodes one YAML document from data into out, which holds the
// key at path. source (a file or an environment variable) only appears in
// errors.
//
// yaml.v3's KnownFields does the real decoding, but its errors name a bare
// field and a Go type ("field tiemout not found in type config.Redis"); the
// checkNode pass before it exists to report every problem by its key path.
func decodeYAML(data []byte, out any, path, source string) error {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("config: %s: %w", source, err)
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config: %s: want a single YAML document", source)
	}
	if errs := checkNode(doc.Content[0], reflect.TypeOf(out).Elem(), path, source); len(errs) > 0 {
		return errors.Join(errs...)
	}
	dec = yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("config: %s: %w", source, err)
	}
	return nil
}

// checkNode reports, by key path, every mapping key that t has no field for
// and every value that does not decode into its field.
//
// It does not follow aliases or merge keys: yaml.v3 bounds alias expansion
// per Decode call, and expanding them here, one field at a time, would undo
// that bound. Whatever they hold is still checked by KnownFields.
func checkNode(n *yaml.Node, t reflect.Type, path, source string) []error {
	var errs []error
	switch {
	case n.Kind == yaml.AliasNode:
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.ShortTag() == "!!merge" {
				continue
			}
			sub := joinPath(path, k.Value)
			f, ok := fieldByName(t, k.Value)
			if !ok {
				errs = append(errs, fmt.Errorf("config: %s: unknown key (%s:%d)", sub, source, k.Line))
				continue
			}
			errs = append(errs, checkNode(v, f.Type, sub, source)...)
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			errs = append(errs, checkNode(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), source)...)
		}
	case t.Kind() == reflect.Int && n.ShortTag() == "!!float":
		// yaml.v3 would quietly truncate 1.5 to 1.
		errs = append(errs, fmt.Errorf("config: %s: must be a whole number, got %q (%s:%d)", path, n.Value, source, n.Line))
	default:
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			errs = append(errs, fmt.Errorf("config: %s: %s (%s:%d)", orTop(path), yamlMsg(err), source, n.Line))
		}
	}
	return errs
}

func fieldByName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); yamlName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func orTop(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

// yamlMsg flattens yaml.v3's multi-line "unmarshal errors" into one line
// without their line numbers, which checkNode reports in its own format.
func yamlMsg(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			if _, rest, ok := strings.Cut(m, ": "); ok && strings.HasPrefix(m, "line ") {
				m = rest
			}
			msgs[i] = m
		}
		return strings.Join(msgs, "; ")
	}
	return err.Error()
}

// normalize puts values that are matched case-insensitively into the one
// spelling the rest of sessiongate compares against.
func (c *Config) normalize() {
	c.LogLevel = strings.ToLower(c.LogLevel)
	for _, s := range []string{"Lax", "Strict", "None"} {
		if strings.EqualFold(c.Cookie.SameSite, s) {
			c.Cookie.SameSite = s
		}
	}
	// HTTP/2 and Envoy carry header names in lower case.
	c.Token.Header = strings.ToLower(c.Token.Header)
	for i := range c.Routes {
		for j, m := range c.Routes[i].Methods {
			c.Routes[i].Methods[j] = strings.ToUpper(m)
		}
	}
}
