package reports

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// This file holds a small JSON Schema (draft 2020-12) validator for the keywords our schemas use.
// It refuses any keyword it does not implement, so a schema cannot silently promise more than the
// tests check. A library was not worth a new module for this subset.

type schemaValidator struct {
	root map[string]any
}

var knownKeywords = map[string]bool{
	"$schema": true, "$id": true, "title": true, "description": true, "$defs": true,
	"type": true, "properties": true, "required": true, "additionalProperties": true, "items": true,
	"enum": true, "const": true, "$ref": true, "minimum": true, "minLength": true, "pattern": true,
	"format": true, "anyOf": true, "propertyNames": true,
}

func loadSchema(t *testing.T, command string) *schemaValidator {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("schema", command+".schema.json"))
	if err != nil {
		t.Fatalf("read schema: %v", err)
	}
	var root map[string]any
	if err := json.Unmarshal(data, &root); err != nil {
		t.Fatalf("parse schema %s: %v", command, err)
	}
	return &schemaValidator{root: root}
}

// validate returns every violation of doc against the schema, each as "path: problem".
func (v *schemaValidator) validate(doc any) []string {
	var errs []string
	v.check(v.root, doc, "$", &errs)
	return errs
}

func (v *schemaValidator) check(s map[string]any, x any, path string, errs *[]string) {
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

func decodeJSON(t *testing.T, data []byte) any {
	t.Helper()
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("output is not JSON: %v", err)
	}
	return doc
}

// TestSchemasValidateGoldens checks every JSON golden against its command's schema.
func TestSchemasValidateGoldens(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no JSON goldens: %v", err)
	}
	for _, f := range files {
		command := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(command, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range loadSchema(t, command).validate(decodeJSON(t, data)) {
				t.Error(e)
			}
		})
	}
}

// TestSchemaCoversEveryCommand: every schema file belongs to a command with a JSON golden, and
// every JSON golden has a schema, so the README's list of contracts stays complete.
func TestSchemaCoversEveryCommand(t *testing.T) {
	schemas, _ := filepath.Glob(filepath.Join("schema", "*.schema.json"))
	for _, s := range schemas {
		command := strings.TrimSuffix(filepath.Base(s), ".schema.json")
		if _, err := os.Stat(filepath.Join("testdata", "golden", command+".json")); err != nil {
			t.Errorf("schema %s has no JSON golden", s)
		}
	}
}

// TestSchemaRejectsBrokenDocuments proves the validator and the schemas can fail: each mutation
// of a valid report must be caught.
func TestSchemaRejectsBrokenDocuments(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "golden", "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	v := loadSchema(t, "report")
	cases := []struct {
		name   string
		mutate func(doc map[string]any)
		want   string
	}{
		{"missing tool", func(d map[string]any) { delete(d, "tool") }, `missing required "tool"`},
		{"wrong command", func(d map[string]any) { d["command"] = "boards" }, "want const"},
		{"bad timestamp", func(d map[string]any) { d["generated_at"] = "yesterday" }, "RFC 3339"},
		{"undocumented field", func(d map[string]any) { d["extra"] = 1 }, `property "extra" is not in the schema`},
		{"unknown verdict", func(d map[string]any) { board0(d)["verdict"] = "fine" }, "not in enum"},
		{"size as string", func(d map[string]any) { board0(d)["size"] = "12" }, "type string"},
		{"negative wal", func(d map[string]any) { board0(d)["wal_size"] = -1.0 }, "below minimum"},
		{"finding without code", func(d map[string]any) {
			delete(board0(d)["check"].(map[string]any)["findings"].([]any)[0].(map[string]any), "code")
		}, `missing required "code"`},
		{"short sha", func(d map[string]any) {
			board0(d)["backups"].(map[string]any)["contents"].([]any)[0].(map[string]any)["sha256"] = "abc"
		}, "does not match"},
		{"check neither object nor null", func(d map[string]any) { board0(d)["check"] = "ok" }, "anyOf"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := decodeJSON(t, data).(map[string]any)
			c.mutate(doc)
			errs := v.validate(doc)
			if !strings.Contains(strings.Join(errs, "\n"), c.want) {
				t.Errorf("violations %q do not mention %q", errs, c.want)
			}
		})
	}
}

func board0(d map[string]any) map[string]any { return d["boards"].([]any)[0].(map[string]any) }

// TestErrorSchemaRejectsBrokenDocuments: the error envelope's schema can fail too.
func TestErrorSchemaRejectsBrokenDocuments(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "golden", "error.json"))
	if err != nil {
		t.Fatal(err)
	}
	v := loadSchema(t, "error")
	errObj := func(d map[string]any) map[string]any { return d["error"].(map[string]any) }
	cases := []struct {
		name   string
		mutate func(doc map[string]any)
		want   string
	}{
		{"exit 0 is no error", func(d map[string]any) { errObj(d)["code"] = 0.0 }, "not in enum"},
		{"unknown status", func(d map[string]any) { errObj(d)["status"] = "bad" }, "not in enum"},
		{"no message", func(d map[string]any) { delete(errObj(d), "message") }, `missing required "message"`},
		{"unknown command", func(d map[string]any) { d["command"] = "fix" }, "not in enum"},
		{"a result beside the error", func(d map[string]any) { d["boards"] = []any{} }, `property "boards" is not in the schema`},
	}
	for _, c := range cases {
		doc := decodeJSON(t, data).(map[string]any)
		if errs := v.validate(doc); len(errs) != 0 {
			t.Fatalf("golden invalid: %v", errs)
		}
		c.mutate(doc)
		errs := v.validate(doc)
		if !strings.Contains(strings.Join(errs, "\n"), c.want) {
			t.Errorf("%s: got %q, want an error containing %q", c.name, errs, c.want)
		}
	}
}
