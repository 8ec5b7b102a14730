package reports

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// pinGolden fixes the clock and the version so goldens are stable; it restores them afterwards.
func pinGolden(t *testing.T) {
	t.Helper()
	oldNow, oldVersion := Now, version
	Now = func() time.Time { return goldenTime }
	version = "v0.0.0-golden"
	t.Setenv("NO_COLOR", "1")
	t.Cleanup(func() { Now, version = oldNow, oldVersion })
}

// goldenCase is one rendering of one command. Commands add their cases here as they land.
type goldenCase struct {
	file   string // under testdata/golden
	render func(w io.Writer) error
}

func goldenCases() []goldenCase {
	rep := goldenReport()
	boards := goldenBoards()
	boardsJSON := func(w io.Writer) error {
		return JSON(w, "boards", struct {
			Boards any `json:"boards"`
		}{boards})
	}
	boardsText := func(w io.Writer) error { return BoardsText(w, boards) }
	return []goldenCase{
		{"boards.txt", boardsText},
		{"boards.json", boardsJSON},
		{"boards.md", func(w io.Writer) error { return Markdown(w, "boards", goldenEnv, boardsText) }},
		{"report.txt", func(w io.Writer) error { return ReportText(w, rep, false) }},
		{"report.ansi.txt", func(w io.Writer) error { return ReportText(w, rep, true) }},
		{"report.json", func(w io.Writer) error { return JSON(w, "report", rep) }},
		{"report.md", func(w io.Writer) error { return ReportMarkdown(w, rep) }},
		{"report.html", func(w io.Writer) error { return ReportHTML(w, rep) }},
	}
}

// TestGolden pins every command's text, JSON and Markdown (and the report's HTML) byte for byte.
// Run `go test ./reports/ -run TestGolden -update` after an intended change and review the diff.
func TestGolden(t *testing.T) {
	pinGolden(t)
	for _, c := range append(goldenCases(), commandCases()...) {
		t.Run(c.file, func(t *testing.T) {
			var buf bytes.Buffer
			if err := c.render(&buf); err != nil {
				t.Fatalf("render: %v", err)
			}
			path := filepath.Join("testdata", "golden", c.file)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run with -update to create it): %v", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("%s differs from the golden file; run go test ./reports/ -run TestGolden -update and review the diff.\n--- got ---\n%s", c.file, buf.String())
			}
		})
	}
}
