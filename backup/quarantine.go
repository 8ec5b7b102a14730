package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// Quarantine keeps a copy of a (suspected) damaged board beside it, content-addressed:
// <db>.corrupt.<first 16 hex of the sha256 of the copy's bytes>.bak (board.FormatContent). The copy
// is made through SQLite's backup API (pages verbatim, corrupt ones included, under proper locking;
// only the journal-mode header bytes 18/19 are set to rollback, see sqlitex.MarkRollback)
// into an atomicfile temp, fsynced and hashed; when a file of that name already holds the same
// content nothing new is written and created is false, so repeated calls never make a storm.
//
// Only when SQLite cannot read the file at all (not a database, or the copy itself fails on
// damage) is the main file copied byte for byte, with no connection of ours open. That fallback
// opens the board's file directly: callers must not hold a connection to the board themselves.
func Quarantine(ctx context.Context, dbPath string) (path string, created bool, err error) {
	if err := requireFile(dbPath); err != nil {
		return "", false, err
	}
	dir, dbName := filepath.Split(dbPath)
	if dir == "" {
		dir = "."
	}
	if _, err := cleanTemps(dir, dbName+".corrupt"); err != nil {
		return "", false, err
	}
	f, err := atomicfile.Create(filepath.Join(dir, dbName+".corrupt"), 0o644)
	if err != nil {
		return "", false, err
	}
	defer f.Abort()
	err = requireBoard(dbPath)
	if err == nil {
		err = copyInto(ctx, dbPath, f.TempPath(), false, DefaultPagesPerStep, 0)
	}
	if err == nil {
		err = sqlitex.MarkRollback(f.File)
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", false, ctx.Err()
		}
		switch k := sqlitex.Classify(err); {
		case k == sqlitex.KindNotADatabase, k == sqlitex.KindCorrupt, k == sqlitex.KindIO, k == sqlitex.KindNone && isNotDatabase(err):
			// SQLite cannot read it: keep the bytes as they are. No connection of ours is open now.
			if err := copyBytes(dbPath, f.File); err != nil {
				return "", false, err
			}
		default:
			return "", false, fmt.Errorf("quarantine %s: %w", dbPath, err)
		}
	}
	removeCompanions(f.TempPath())
	if err := f.Sync(); err != nil {
		return "", false, fmt.Errorf("sync %s: %w", f.TempPath(), err)
	}
	sum, _, err := hashFile(f.File)
	if err != nil {
		return "", false, err
	}
	path = filepath.Join(dir, board.FormatContent(dbName, sum[:16]))
	existed, err := publish(f, path, sum)
	if err != nil {
		return "", false, err
	}
	return path, !existed, nil
}

func isNotDatabase(err error) bool {
	return err != nil && (errors.Is(err, ErrNotDatabase) || errors.Is(err, board.ErrNotDatabase))
}

// requireFile checks path is an existing regular file.
func requireFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, unwrapPathError(err))
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	return nil
}

// copyBytes copies the file src into dst from the start (truncating what dst held).
func copyBytes(src string, dst *os.File) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, unwrapPathError(err))
	}
	defer in.Close()
	if err := dst.Truncate(0); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if _, err := dst.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if _, err := io.Copy(dst, in); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}
