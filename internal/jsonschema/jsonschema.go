// Package jsonschema is a small JSON Schema (draft 2020-12) validator for the keywords
// kanban-doctor's --json schemas use. It refuses any keyword it does not implement, so a schema
// cannot silently promise more than the tests check. A library was not worth a new module for
// this subset.
package jsonschema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Schema is a parsed schema.
type Schema struct {
	root map[string]any
}

var knownKeywords = map[string]bool{
	"$schema": true, "$id": true, "title": true, "description": true, "$defs": true,
	"type": true, "properties": true, "required": true, "additionalProperties": true, "items": true,
	"enum": true, "const": true, "$ref": true, "minimum": true, "minLength": true, "pattern": true,
	"format": true, "anyOf": true, "propertyNames": true,
}

// Parse reads a schema document.
func Parse(data []byte) (*Schema, error) {
	var root map[string]any
	if err := json.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("parse schema: %w", err)
	}
	return &Schema{root: root}, nil
}

// Load reads the schema file at path.
func Load(path string) (*Schema, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Validate returns every violation of doc against the schema, each as "path: problem".
func (v *Schema) Validate(doc any) []string {
	var errs []string
	v.check(v.root, doc, "$", &errs)
	return errs
}

func (v *Schema) check(s map[string]any, x any, path string, errs *[]string) {
	fail := func(format string, args ...any) { *errs = append(*errs, path+": "+fmt.Sprintf(format, args...)) }
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !knownKeywords[k] {
			fail("schema uses unsupported keyword %q", k)
		}
	}
	if ref, ok := s["$ref"].(string); ok {
		name, found := strings.CutPrefix(ref, "#/$defs/")
		defs, _ := v.root["$defs"].(map[string]any)
		sub, ok := defs[name].(map[string]any)
		if !found || !ok {
			fail("unresolvable $ref %q", ref)
			return
		}
		v.check(sub, x, path, errs)
	}
	if t, ok := s["type"]; ok {
		var types []string
		switch tt := t.(type) {
		case string:
			types = []string{tt}
		case []any:
			for _, e := range tt {
				types = append(types, e.(string))
			}
		}
		matched := false
		for _, ty := range types {
			if typeIs(ty, x) {
				matched = true
			}
		}
		if !matched {
			fail("type %s, want %v", jsonType(x), types)
			return
		}
	}
	if c, ok := s["const"]; ok && !jsonEqual(c, x) {
		fail("value %v, want const %v", x, c)
	}
	if e, ok := s["enum"].([]any); ok {
		found := false
		for _, c := range e {
			if jsonEqual(c, x) {
				found = true
			}
		}
		if !found {
			fail("value %v not in enum %v", x, e)
		}
	}
	if anyOf, ok := s["anyOf"].([]any); ok {
		ok := false
		var why []string
		for _, alt := range anyOf {
			var sub []string
			v.check(alt.(map[string]any), x, path, &sub)
			if len(sub) == 0 {
				ok = true
				break
			}
			why = append(why, sub...)
		}
		if !ok {
			fail("matches none of anyOf: %s", strings.Join(why, "; "))
		}
	}
	switch xv := x.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		for _, r := range asStrings(s["required"]) {
			if _, ok := xv[r]; !ok {
				fail("missing required %q", r)
			}
		}
		names := make([]string, 0, len(xv))
		for k := range xv {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			if pn, ok := s["propertyNames"].(map[string]any); ok {
				v.check(pn, k, path+"."+k+"(name)", errs)
			}
			if ps, ok := props[k].(map[string]any); ok {
				v.check(ps, xv[k], path+"."+k, errs)
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					fail("property %q is not in the schema", k)
				}
			case map[string]any:
				v.check(ap, xv[k], path+"."+k, errs)
			}
		}
	case []any:
		if items, ok := s["items"].(map[string]any); ok {
			for i, e := range xv {
				v.check(items, e, fmt.Sprintf("%s[%d]", path, i), errs)
			}
		}
	case float64:
		if m, ok := s["minimum"].(float64); ok && xv < m {
			fail("%v below minimum %v", xv, m)
		}
	case string:
		if m, ok := s["minLength"].(float64); ok && float64(len([]rune(xv))) < m {
			fail("shorter than %v", m)
		}
		if p, ok := s["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(xv) {
			fail("%q does not match %s", xv, p)
		}
		if f, ok := s["format"].(string); ok {
			switch f {
			case "date-time":
				if _, err := time.Parse(time.RFC3339Nano, xv); err != nil {
					fail("%q is not an RFC 3339 date-time", xv)
				}
			default:
				fail("schema uses unsupported format %q", f)
			}
		}
	}
}

func typeIs(ty string, x any) bool {
	switch ty {
	case "object":
		_, ok := x.(map[string]any)
		return ok
	case "array":
		_, ok := x.([]any)
		return ok
	case "string":
		_, ok := x.(string)
		return ok
	case "boolean":
		_, ok := x.(bool)
		return ok
	case "null":
		return x == nil
	case "number":
		_, ok := x.(float64)
		return ok
	case "integer":
		f, ok := x.(float64)
		return ok && f == math.Trunc(f)
	}
	return false
}

func jsonType(x any) string {
	for _, t := range []string{"null", "boolean", "integer", "number", "string", "array", "object"} {
		if typeIs(t, x) {
			return t
		}
	}
	return fmt.Sprintf("%T", x)
}

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func asStrings(x any) []string {
	l, _ := x.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		out = append(out, e.(string))
	}
	return out
}
