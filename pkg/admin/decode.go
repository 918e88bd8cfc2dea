package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"
)

// decode reads a JSON body strictly: unknown fields, a repeated key, bytes
// that are not UTF-8 and trailing data are all 400. encoding/json alone
// would keep the last of two "subject" keys and turn invalid UTF-8 into
// U+FFFD, so what it stored could differ from what a proxy or log in front
// of it read.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errStatus(http.StatusUnsupportedMediaType, "content-type must be application/json")
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errStatus(http.StatusRequestEntityTooLarge, "body too large")
		}
		return errStatus(http.StatusBadRequest, "read body: "+err.Error())
	}
	if !utf8.Valid(body) {
		return errStatus(http.StatusBadRequest, "invalid json: not valid UTF-8")
	}
	if err := checkDuplicateKeys(body); err != nil {
		return errStatus(http.StatusBadRequest, "invalid json: "+err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errStatus(http.StatusBadRequest, "invalid json: "+err.Error())
	}
	// dec.More is not enough here: at the top level it reports false for a
	// stray "]" or "}", which would let `{...}]` through. Only the end of
	// the body may follow the value.
	if _, err := dec.Token(); err != io.EOF {
		return errStatus(http.StatusBadRequest, "invalid json: trailing data")
	}
	if err := exactFields(body, reflect.TypeOf(v)); err != nil {
		return errStatus(http.StatusBadRequest, "invalid json: "+err.Error())
	}
	return nil
}

// exactFields refuses an object key that is not exactly the JSON name of a
// field of t, recursing into struct-typed fields; maps (claims) keep any key.
// encoding/json matches names case-insensitively, with Unicode folding
// ("SUBJECT", "\u017Fubject" are "subject"), and keeps the last of two
// spellings, so {"subject":"alice","Subject":"mallory"} would pass the
// duplicate-key check and store mallory while a log or proxy reads alice.
func exactFields(raw []byte, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil // null or not an object: the typed decode has judged it
	}
	fields := make(map[string]reflect.Type, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			fields[name] = f.Type
		}
	}
	for k, v := range obj {
		ft, ok := fields[k]
		if !ok {
			return fmt.Errorf("unknown field %q", k)
		}
		if err := exactFields(v, ft); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}

// checkDuplicateKeys walks the JSON tokens and refuses an object that names
// a key twice. Syntax errors are left to the real decode.
func checkDuplicateKeys(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	type frame struct {
		keys   map[string]bool
		object bool
		key    bool // the next string token in this object is a key
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		var top *frame
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		if top != nil && top.object && top.key {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				continue
			}
			k, _ := tok.(string)
			if top.keys[k] {
				return fmt.Errorf("duplicate key %q", k)
			}
			top.keys[k] = true
			top.key = false
			continue
		}
		if top != nil && top.object {
			top.key = true // this token is the value; the next is a key
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{keys: map[string]bool{}, object: true, key: true})
		case json.Delim('['):
			stack = append(stack, frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}
