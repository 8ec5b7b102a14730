package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteFileLeavesOnlyTheFinalName(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.db")
	if err := WriteFile(p, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if string(b) != "two" {
		t.Fatalf("content %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("leftovers: %v", entries)
	}
}

func TestCommitNoReplaceRefusesAnExistingName(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "kanban.db.corrupt.0123456789abcdef.bak")
	os.WriteFile(p, []byte("first"), 0o644)
	f, err := Create(p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("second")
	if err := f.CommitNoReplace(); !errors.Is(err, os.ErrExist) {
		t.Fatalf("err = %v, want ErrExist", err)
	}
	b, _ := os.ReadFile(p)
	if string(b) != "first" {
		t.Fatalf("existing file replaced: %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temp left behind: %v", entries)
	}
}

func TestAbortAndCleanTemps(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "kanban.db.backup.x.db")
	f, _ := Create(p, 0o644)
	if !IsTemp(filepath.Base(f.TempPath())) || !strings.Contains(f.TempPath(), TempMarker) {
		t.Fatalf("temp name %q is not recognisable", f.TempPath())
	}
	f.Abort()
	if _, err := os.Stat(f.TempPath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("Abort left the temp file")
	}
	// A killed writer's debris is cleaned; other files and other prefixes are not.
	g, _ := Create(p, 0o644)
	g.File.Close()
	os.WriteFile(filepath.Join(dir, "keep.db"), nil, 0o644)
	h, _ := Create(filepath.Join(dir, "other.db"), 0o644)
	h.File.Close()
	removed, err := CleanTemps(dir, "kanban.db")
	if err != nil || len(removed) != 1 || removed[0] != g.TempPath() {
		t.Fatalf("removed %v, %v", removed, err)
	}
	if _, err := os.Stat(h.TempPath()); err != nil {
		t.Fatal("CleanTemps removed another prefix's temp")
	}
}
