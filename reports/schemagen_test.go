package reports

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/probe"
	"github.com/kanban-doctor/kanban-doctor/repro"
)

// Schemas for the commands other packages own are derived from their Go result types, so the
// documented contract follows the code: TestDerivedSchemas regenerates each one and fails when the
// committed file differs (run -update to rewrite, and review the diff as a contract change).
// boards and report have hand-written schemas with descriptions.

// derivedSchemas maps a command to its JSON body type (what follows the envelope).
var derivedSchemas = map[string]reflect.Type{
	"verify": reflect.TypeOf(struct {
		Boards []VerifyBoard `json:"boards"`
	}{}),
	"backup":         reflect.TypeOf(BackupResult{}),
	"dedupe-backups": reflect.TypeOf(DedupeResult{}),
	"repair":         reflect.TypeOf(repairDoc{}),
	"restore":        reflect.TypeOf(restoreDoc{}),
	"repro":          reflect.TypeOf(repro.Result{}),
}

// knownEnums are the string types whose values are a contract.
var knownEnums = map[reflect.Type][]any{
	// "" is what a board that could not be checked carries (verify: see its error field).
	reflect.TypeOf(probe.Verdict("")):    {"", "healthy", "transient", "false-positive", "corrupt", "inconclusive"},
	reflect.TypeOf(probe.Class("")):      {"", "index", "freelist", "btree", "not-a-database", "truncated"},
	reflect.TypeOf(board.Generation("")): {"timestamped", "content", "generic"},
}

var (
	timeType     = reflect.TypeOf(time.Time{})
	durationType = reflect.TypeOf(time.Duration(0))
	marshaler    = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
)

type schemaGen struct {
	defs map[string]any
}

// deriveSchema builds the command's schema: the envelope, then body's fields.
func deriveSchema(command string, body reflect.Type) map[string]any {
	g := &schemaGen{defs: map[string]any{}}
	obj := g.object(body)
	props := obj["properties"].(map[string]any)
	props["tool"] = map[string]any{"const": Tool}
	props["version"] = map[string]any{"type": "string", "minLength": 1}
	props["command"] = map[string]any{"const": command}
	props["generated_at"] = map[string]any{"type": "string", "format": "date-time"}
	req := append([]any{"tool", "version", "command", "generated_at"}, obj["required"].([]any)...)
	out := map[string]any{
		"$schema":              "https://json-schema.org/draft/2020-12/schema",
		"$id":                  "https://github.com/kanban-doctor/kanban-doctor/reports/schema/" + command + ".schema.json",
		"title":                "kanban-doctor " + command + " --json",
		"description":          "Derived from the Go result types by reports/schemagen_test.go; regenerate with go test ./reports/ -run TestDerivedSchemas -update.",
		"type":                 "object",
		"required":             req,
		"additionalProperties": false,
		"properties":           props,
	}
	if len(g.defs) > 0 {
		out["$defs"] = g.defs
	}
	return out
}

func (g *schemaGen) schema(t reflect.Type) map[string]any {
	if e, ok := knownEnums[t]; ok {
		return map[string]any{"enum": e}
	}
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == durationType:
		return map[string]any{"type": "integer"}
	case t.Implements(marshaler) || reflect.PointerTo(t).Implements(marshaler):
		return map[string]any{} // custom encoding: anything
	}
	switch t.Kind() {
	case reflect.Pointer:
		return map[string]any{"anyOf": []any{g.schema(t.Elem()), map[string]any{"type": "null"}}}
	case reflect.Struct:
		name := t.Name()
		if name == "" {
			return g.object(t)
		}
		key := strings.ReplaceAll(t.PkgPath()[strings.LastIndex(t.PkgPath(), "/")+1:]+"."+name, "/", ".")
		if _, ok := g.defs[key]; !ok {
			g.defs[key] = map[string]any{} // break cycles
			g.defs[key] = g.object(t)
		}
		return map[string]any{"$ref": "#/$defs/" + key}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string"}
		}
		return map[string]any{"type": []any{"array", "null"}, "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": []any{"object", "null"}, "additionalProperties": g.schema(t.Elem())}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Interface:
		return map[string]any{}
	}
	panic("schemagen: unsupported type " + t.String())
}

// object is a closed object schema of t's JSON fields; embedded structs are flattened as
// encoding/json does, fields without omitempty/omitzero are required.
func (g *schemaGen) object(t reflect.Type) map[string]any {
	props := map[string]any{}
	req := []any{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			if f.Anonymous && name == "" {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					walk(ft)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			optional := strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")
			s := g.schema(f.Type)
			if optional && f.Type.Kind() == reflect.Pointer {
				s = g.schema(f.Type.Elem()) // omitted rather than null
			}
			props[name] = s
			if !optional {
				req = append(req, name)
			}
		}
	}
	walk(t)
	return map[string]any{"type": "object", "required": req, "additionalProperties": false, "properties": props}
}

// TestDerivedSchemas keeps reports/schema/<command>.schema.json equal to what the Go types say.
func TestDerivedSchemas(t *testing.T) {
	for command, body := range derivedSchemas {
		t.Run(command, func(t *testing.T) {
			got, err := json.MarshalIndent(deriveSchema(command, body), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("schema", command+".schema.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read schema (run with -update to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s no longer matches the Go types: run go test ./reports/ -run TestDerivedSchemas -update and review the contract change", path)
			}
		})
	}
}

// TestDerivedSchemasRejectBrokenDocuments: each derived schema is closed and checks the envelope.
func TestDerivedSchemasRejectBrokenDocuments(t *testing.T) {
	for command := range derivedSchemas {
		data, err := os.ReadFile(filepath.Join("testdata", "golden", command+".json"))
		if err != nil {
			t.Fatal(err)
		}
		v := loadSchema(t, command)
		for name, mutate := range map[string]func(map[string]any){
			"undocumented field": func(d map[string]any) { d["extra"] = true },
			"missing tool":       func(d map[string]any) { delete(d, "tool") },
			"wrong command":      func(d map[string]any) { d["command"] = "report" },
		} {
			doc := decodeJSON(t, data).(map[string]any)
			mutate(doc)
			if errs := v.validate(doc); len(errs) == 0 {
				t.Errorf("%s: %s passed the schema", command, name)
			}
		}
	}
}
