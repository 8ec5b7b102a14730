package backup

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
)

// benchBoard is KD_BENCH_DB (e.g. the ~350 MB genboard board of bench/backup.sh) or a small
// generated board.
func benchBoard(b *testing.B) string {
	if p := os.Getenv("KD_BENCH_DB"); p != "" {
		return p
	}
	return genBoard(b, b.TempDir(), 2000, true)
}

// BenchmarkSnapshot is the whole backup: copy, fsync, quick_check, sha256, rename.
func BenchmarkSnapshot(b *testing.B) {
	db := benchBoard(b)
	out := b.TempDir()
	fi, _ := os.Stat(db)
	b.SetBytes(fi.Size())
	for b.Loop() {
		r, err := Snapshot(context.Background(), db, Options{Out: out})
		if err != nil {
			b.Fatal(err)
		}
		os.Remove(r.Path)
	}
}

// BenchmarkSnapshotPhases times each phase of a backup on its own, to show where the time goes.
func BenchmarkSnapshotPhases(b *testing.B) {
	db := benchBoard(b)
	ctx := context.Background()
	fi, _ := os.Stat(db)
	tmp := func(b *testing.B) *atomicfile.File {
		f, err := atomicfile.Create(filepath.Join(b.TempDir(), "copy"), 0o644)
		if err != nil {
			b.Fatal(err)
		}
		return f
	}
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(fi.Size())
		for b.Loop() {
			f := tmp(b)
			if err := copyInto(ctx, db, f.TempPath(), false, 0, 0, snapshotPragmas...); err != nil {
				b.Fatal(err)
			}
			f.Abort()
		}
	})
	f := tmp(b)
	defer f.Abort()
	if err := copyInto(ctx, db, f.TempPath(), false, 0, 0); err != nil {
		b.Fatal(err)
	}
	b.Run("quick_check", func(b *testing.B) {
		b.SetBytes(fi.Size())
		for b.Loop() {
			if _, _, _, err := checkFile(ctx, f.TempPath(), false, checkPragmas...); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(fi.Size())
		for b.Loop() {
			if _, _, err := hashFile(f.File); err != nil {
				b.Fatal(err)
			}
		}
	})
}
