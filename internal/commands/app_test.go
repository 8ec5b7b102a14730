package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/kanban-doctor/kanban-doctor/internal/exitcode"
	"github.com/kanban-doctor/kanban-doctor/internal/jsonschema"
	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
)

func TestFlagsFirst(t *testing.T) {
	app := New(io.Discard, io.Discard)
	cases := []struct{ in, want string }{
		{"kd verify DB --json", "kd verify --json DB"},
		{"kd verify DB --timeout 2s A", "kd verify --timeout 2s DB A"},
		{"kd verify DB --timeout=2s", "kd verify --timeout=2s DB"},
		{"kd verify DB --reverify -1", "kd verify --reverify -1 DB"},
		{"kd dedupe-backups DIR --apply --action move --to Q", "kd dedupe-backups --apply --action move --to Q DIR"},
		{"kd verify DB --bogus", "kd verify --bogus DB"},
		{"kd verify -- -odd", "kd verify -- -odd"},
		{"kd verify --json DB -- --weird", "kd verify --json -- DB --weird"},
		{"kd verify DB -- plain", "kd verify DB plain"},
		{"kd verify - --json", "kd verify --json -"},
		{"kd --help", "kd --help"},
		{"kd nosuch DB --json", "kd nosuch DB --json"},
		{"kd", "kd"},
	}
	for _, c := range cases {
		got := flagsFirst(app, strings.Fields(c.in))
		if want := strings.Fields(c.want); !reflect.DeepEqual(got, want) {
			t.Errorf("flagsFirst(%q) = %q, want %q", c.in, got, want)
		}
	}
}

// Every command given --json prints one JSON document on stdout even when it fails before it has
// a result: the error envelope (reports/schema/error.schema.json), with the exit status as its
// code. A success prints the command's own document with the same envelope head.
func TestJSONErrorEnvelope(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nosuch", "kanban.db")
	notes := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notes, []byte(strings.Repeat("not a database ", 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := [][]string{
		{"boards", missing},
		{"verify", missing},
		{"verify", notes},
		{"verify", "--reverify", "-1", missing},
		{"verify", missing, "--no-such-flag"},
		{"report", missing},
		{"backup", missing},
		{"backup", "--busy-timeout", "-1", missing},
		{"restore", "--from", missing, missing},
		{"dedupe-backups", missing},
		{"repair", missing},
		{"repro", "--duration", "-1s"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := Run(context.Background(), append([]string{"kanban-doctor", c[0], "--json"}, c[1:]...), &stdout, &stderr)
		if code == exitcode.OK {
			t.Errorf("%v: exit 0, want an error", c)
			continue
		}
		var doc struct {
			Tool        string `json:"tool"`
			Version     string `json:"version"`
			Command     string `json:"command"`
			GeneratedAt string `json:"generated_at"`
			Error       struct {
				Code    int    `json:"code"`
				Status  string `json:"status"`
				Message string `json:"message"`
				Path    string `json:"path"`
			} `json:"error"`
		}
		dec := json.NewDecoder(&stdout)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&doc); err != nil {
			t.Errorf("%v: stdout is not the error envelope: %v (%q)", c, err, stdout.String())
			continue
		}
		if dec.More() {
			t.Errorf("%v: more than one document on stdout", c)
		}
		e := doc.Error
		if doc.Tool != "kanban-doctor" || doc.Version == "" || doc.Command != c[0] || doc.GeneratedAt == "" {
			t.Errorf("%v: envelope head %+v", c, doc)
		}
		if e.Code != code || e.Status != exitcode.Name(code) || e.Message == "" {
			t.Errorf("%v: error %+v, exit %d", c, e, code)
		}
		if !strings.Contains(stderr.String(), e.Message) {
			t.Errorf("%v: message %q is not the stderr line %q", c, e.Message, stderr.String())
		}
		if strings.Contains(e.Message, missing) && e.Path != missing {
			t.Errorf("%v: path %q, want %q", c, e.Path, missing)
		}
	}
}

// TestJSONAgainstSchemas runs every command with --json for real, on a success and on an error,
// and validates what it printed against the committed schemas (reports/schema): the command's
// own schema on a success, error.schema.json on an error.
func TestJSONAgainstSchemas(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "board", "kanban.db")
	if err := os.MkdirAll(filepath.Dir(db), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := kanban.Generate(context.Background(), db, kanban.GenOptions{Tasks: 100, Seed: 1, WAL: true}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		name := filepath.Join(dir, "board", "kanban.db.corrupt.2026050112000"+strconv.Itoa(i)+".bak")
		if err := os.WriteFile(name, []byte("same copy"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bdir := filepath.Join(dir, "backups")
	if err := os.Mkdir(bdir, 0o755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "nosuch", "kanban.db")
	schema := func(name string) *jsonschema.Schema {
		s, err := jsonschema.Load(filepath.Join("..", "..", "reports", "schema", name+".schema.json"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	errSchema := schema("error")
	type run struct {
		args []string
		ok   bool
	}
	runs := []run{
		{[]string{"boards", db}, true},
		{[]string{"verify", db}, true},
		{[]string{"report", db}, true},
		{[]string{"backup", "--out", bdir, db}, true},
		{[]string{"dedupe-backups", filepath.Dir(db)}, true},
		{[]string{"repair", "--dry-run", db}, true},
		{[]string{"repro", "--duration", "200ms", "--scenario", "clean", "--strategy", "doctor"}, true},
		{[]string{"boards", missing}, false},
		{[]string{"verify", missing}, false},
		{[]string{"report", missing}, false},
		{[]string{"backup", missing}, false},
		{[]string{"restore", "--from", missing, db}, false},
		{[]string{"dedupe-backups", missing}, false},
		{[]string{"repair", missing}, false},
		{[]string{"repro", "--duration", "-1s"}, false},
	}
	for _, r := range runs {
		var stdout, stderr bytes.Buffer
		code := Run(context.Background(), append([]string{"kanban-doctor", r.args[0], "--json"}, r.args[1:]...), &stdout, &stderr)
		if r.ok && code != exitcode.OK {
			t.Errorf("%v: exit %d: %s", r.args, code, stderr.String())
			continue
		}
		var doc any
		if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
			t.Errorf("%v: stdout is not one JSON document: %v", r.args, err)
			continue
		}
		s := errSchema
		if r.ok {
			s = schema(r.args[0])
		}
		for _, e := range s.Validate(doc) {
			t.Errorf("%v: %s", r.args, e)
		}
	}
	// restore needs a backup to restore from: the one backup wrote.
	backups, _ := filepath.Glob(filepath.Join(bdir, "kanban.db.backup.*.db"))
	if len(backups) != 1 {
		t.Fatalf("backups written: %v", backups)
	}
	var stdout, stderr bytes.Buffer
	if code := Run(context.Background(), []string{"kanban-doctor", "restore", "--json", "--dry-run", "--from", backups[0], db}, &stdout, &stderr); code != 0 {
		t.Fatalf("restore --dry-run: exit %d: %s", code, stderr.String())
	}
	var doc any
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, e := range schema("restore").Validate(doc) {
		t.Errorf("restore: %s", e)
	}
}
