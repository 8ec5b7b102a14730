package reports

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kanban-doctor/kanban-doctor/internal/jsonschema"
)

// The validator is internal/jsonschema; these wrap it for the tests here.

type schemaValidator struct{ s *jsonschema.Schema }

func (v *schemaValidator) validate(doc any) []string { return v.s.Validate(doc) }

func loadSchema(t *testing.T, command string) *schemaValidator {
	t.Helper()
	s, err := jsonschema.Load(filepath.Join("schema", command+".schema.json"))
	if err != nil {
		t.Fatalf("schema: %v", err)
	}
	return &schemaValidator{s}
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
