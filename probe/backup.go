package probe

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// backupTo copies the database behind src into the file dst (new or empty) with SQLite's online
// backup API in one step: the whole copy under one read lock, so concurrent writers cannot make it
// restart; corrupt pages are copied verbatim.
func backupTo(ctx context.Context, src *sql.Conn, dst string) error {
	return sqlitex.BackupTo(ctx, src, "file:"+sqlitex.EscapePath(dst)+"?mode=rwc", sqlitex.StepOptions{})
}

// Quarantine writes a backup-API copy of the database behind src beside dbPath, atomically, as
// <db>.corrupt.<first 16 hex of the sha256 of the copy's bytes>.bak. When a file with that name
// exists, nothing new is written and its name is returned with created=false. The hash is of
// the finished private copy, never of the live file.
func Quarantine(ctx context.Context, src *sql.Conn, dbPath string) (name string, created bool, err error) {
	pending := filepath.Join(filepath.Dir(dbPath), filepath.Base(dbPath)+".corrupt.pending.bak")
	f, err := atomicfile.Create(pending, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("quarantine %s: %w", dbPath, err)
	}
	defer f.Abort()
	tmp := f.TempPath()
	if err := backupTo(ctx, src, tmp); err != nil {
		return "", false, fmt.Errorf("quarantine %s: backup: %w", dbPath, err)
	}
	// SQLite may have left a rollback journal beside the temp copy on a crash; on success it is gone.
	os.Remove(tmp + "-journal")
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", false, fmt.Errorf("quarantine %s: %w", dbPath, err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", false, fmt.Errorf("quarantine %s: hash copy: %w", dbPath, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	final := filepath.Join(filepath.Dir(dbPath), board.FormatContent(filepath.Base(dbPath), sum[:16]))
	if _, err := os.Lstat(final); err == nil {
		return final, false, nil
	}
	if err := f.Retarget(final); err != nil {
		return "", false, fmt.Errorf("quarantine %s: %w", dbPath, err)
	}
	if err := f.CommitNoReplace(); err != nil {
		if errors.Is(err, os.ErrExist) {
			return final, false, nil
		}
		return "", false, fmt.Errorf("quarantine %s: %w", dbPath, err)
	}
	return final, true, nil
}
