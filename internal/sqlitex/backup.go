package sqlitex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"

	"modernc.org/sqlite"
)

// backupAPI is modernc's online backup API on a driver connection.
type backupAPI interface {
	NewBackup(dstURI string) (*sqlite.Backup, error)
	NewRestore(srcURI string) (*sqlite.Backup, error)
}

// BackupTo copies the database behind conn into the database at dstURI with SQLite's online
// backup API (a consistent snapshot read under SQLite's locks; damaged pages copied verbatim).
// pagesPerStep <= 0 copies everything in one step under one read lock, so concurrent writers
// cannot make it restart; with steps, ctx is checked between them, and the caller should hold a
// read transaction on conn so the snapshot stays fixed.
func BackupTo(ctx context.Context, conn *sql.Conn, dstURI string, pagesPerStep int) error {
	return withBackupAPI(conn, func(b backupAPI) error { return run(ctx, b.NewBackup, dstURI, pagesPerStep) })
}

// RestoreFrom copies the database at srcURI over the database behind conn (SQLite's backup API in
// the restore direction: under the destination's write lock, safe while other processes have it
// open; they wait on the lock).
func RestoreFrom(ctx context.Context, conn *sql.Conn, srcURI string, pagesPerStep int) error {
	return withBackupAPI(conn, func(b backupAPI) error { return run(ctx, b.NewRestore, srcURI, pagesPerStep) })
}

func withBackupAPI(conn *sql.Conn, fn func(backupAPI) error) error {
	return conn.Raw(func(dc any) error {
		b, ok := dc.(backupAPI)
		if !ok {
			return errors.New("driver connection has no backup API")
		}
		return fn(b)
	})
}

// run drives a backup or restore to completion, checking ctx between steps.
func run(ctx context.Context, open func(string) (*sqlite.Backup, error), uri string, pagesPerStep int) error {
	if pagesPerStep <= 0 {
		pagesPerStep = -1
	}
	b, err := open(uri)
	if err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			b.Finish()
			return err
		}
		more, err := b.Step(int32(pagesPerStep))
		if err != nil {
			b.Finish()
			return err
		}
		if !more {
			return b.Finish()
		}
	}
}

// MarkRollback sets the file-format bytes (header offsets 18 and 19) of a finished copy from 2
// (WAL) to 1 (rollback journal), as VACUUM INTO does: the copy is one self-contained file and
// opening it, even read-only, leaves no -wal/-shm beside it. Call it only on a private copy no
// connection has open.
func MarkRollback(f *os.File) error {
	var b [2]byte
	if _, err := f.ReadAt(b[:], 18); err != nil {
		return fmt.Errorf("read header of %s: %w", f.Name(), err)
	}
	if b[0] != 2 || b[1] != 2 {
		return nil
	}
	if _, err := f.WriteAt([]byte{1, 1}, 18); err != nil {
		return fmt.Errorf("write header of %s: %w", f.Name(), err)
	}
	return nil
}
