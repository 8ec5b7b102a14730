package sqlitex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"

	"modernc.org/sqlite"
)

// backupAPI is modernc's online backup API on a driver connection.
type backupAPI interface {
	NewBackup(dstURI string) (*sqlite.Backup, error)
	NewRestore(srcURI string) (*sqlite.Backup, error)
}

// StepOptions says how BackupTo and RestoreFrom step.
type StepOptions struct {
	// PagesPerStep <= 0 copies everything in one step under one read lock, so concurrent writers
	// cannot make it restart; with steps, ctx is checked between them, and the caller should hold a
	// read transaction on the source so the snapshot stays fixed.
	PagesPerStep int
	// BusyWait is how long, in all, a step that finds a database busy or locked is retried (the
	// backup API allows it). Give the connections involved a short busy timeout
	// (StepBusyTimeout): SQLite's own wait inside a step does not see a cancelled context, these
	// retries do, so Ctrl-C ends a wait for a lock at once. 0: no retries.
	BusyWait time.Duration
	// Locked, when set, is called once the destination's write lock is held and before any page
	// is written to it: a first step of zero pages takes the locks (retried like any busy step)
	// and copies nothing. An error from Locked ends the run with the destination unchanged.
	// RestoreFrom uses it to back up a WAL board inside the write lock that the restore then
	// writes under, so no commit can fall between that backup and the restore.
	Locked func() error
}

// StepBusyTimeout is the busy timeout (ms) for connections whose waits StepOptions.BusyWait takes over.
const StepBusyTimeout = 100

// BusyWait turns a busy timeout in milliseconds, as Options.BusyTimeout reads it (0 means 5000,
// negative means none), into a StepOptions.BusyWait.
func BusyWait(ms int) time.Duration {
	switch {
	case ms == 0:
		ms = 5000
	case ms < 0:
		ms = 0
	}
	return time.Duration(ms) * time.Millisecond
}

// BackupTo copies the database behind conn into the database at dstURI with SQLite's online
// backup API (a consistent snapshot read under SQLite's locks; damaged pages copied verbatim).
func BackupTo(ctx context.Context, conn *sql.Conn, dstURI string, o StepOptions) error {
	return withBackupAPI(conn, func(b backupAPI) error { return run(ctx, b.NewBackup, dstURI, o) })
}

// RestoreFrom copies the database at srcURI over the database behind conn (SQLite's backup API in
// the restore direction: under the destination's write lock, safe while other processes have it
// open; they wait on the lock).
func RestoreFrom(ctx context.Context, conn *sql.Conn, srcURI string, o StepOptions) error {
	return withBackupAPI(conn, func(b backupAPI) error { return run(ctx, b.NewRestore, srcURI, o) })
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

// run drives a backup or restore to completion, checking ctx between steps and retrying busy
// steps while a run of busy answers has lasted less than o.BusyWait (time spent copying never counts).
func run(ctx context.Context, open func(string) (*sqlite.Backup, error), uri string, o StepOptions) error {
	n := int32(o.PagesPerStep)
	if n <= 0 {
		n = -1
	}
	b, err := open(uri)
	if err != nil {
		return err
	}
	if o.Locked != nil {
		if _, err := step(ctx, b, 0, o.BusyWait); err != nil {
			b.Finish()
			return err
		}
		if err := o.Locked(); err != nil {
			b.Finish() // nothing was written: the destination's transaction is rolled back
			return err
		}
	}
	for {
		more, err := step(ctx, b, n, o.BusyWait)
		if err != nil {
			b.Finish()
			return err
		}
		if !more {
			return b.Finish()
		}
	}
}

// step runs one backup step of n pages, retrying it while it finds a database busy or locked and
// that run of busy answers has lasted less than busyWait; it checks ctx before every attempt.
func step(ctx context.Context, b *sqlite.Backup, n int32, busyWait time.Duration) (bool, error) {
	var busySince time.Time // start of the current run of busy steps
	for {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		stepStart := time.Now()
		more, err := b.Step(n)
		if err == nil {
			return more, nil
		}
		if busySince.IsZero() {
			busySince = stepStart
		}
		if Classify(err) != KindBusy || time.Since(busySince) >= busyWait {
			return false, err
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(20 * time.Millisecond):
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
