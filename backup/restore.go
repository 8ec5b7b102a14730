package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// Restore modes in RestoreResult.Mode.
const (
	ModeOnline  = "online"  // through SQLite's backup API into the live board (other processes wait)
	ModeOffline = "offline" // file replacement, only with no process holding the board open
)

// RestoreResult describes a restore (or, with DryRun, the plan for one).
type RestoreResult struct {
	From      string `json:"from"`
	DB        string `json:"db"`
	Mode      string `json:"mode"`
	DryRun    bool   `json:"dry_run"`
	FromTasks int64  `json:"from_tasks"`
	FromPages int    `json:"from_pages"`
	// Plan is every step, in order: done ones for a restore, intended ones for a dry run.
	Plan []string `json:"plan"`
	// Openers are the processes that had the board open when it was checked.
	Openers Openers `json:"openers"`
	// Before is the snapshot of the board taken before it was overwritten; Quarantined the
	// content-addressed copy made instead when the board was too damaged to snapshot.
	Before      *Result `json:"backup_before,omitempty"`
	Quarantined string  `json:"quarantined_before,omitempty"`
	// Removed are the stale -wal/-shm files an offline restore removed.
	Removed  []string `json:"removed,omitempty"`
	Check    string   `json:"check,omitempty"` // quick_check of the restored board
	Tasks    int64    `json:"tasks"`           // rows in tasks after the restore
	Duration float64  `json:"duration_seconds"`
}

// fileInfo is what inspect learns about a database through a read-only connection.
type fileInfo struct {
	findings []string
	pageSize int
	pages    int
	tasks    int64
	missing  []string // kanban tables that are absent
}

// inspect runs integrity_check (full) or quick_check on a fresh read-only connection and looks for
// the kanban tables.
func inspect(ctx context.Context, path string, full bool) (fileInfo, error) {
	var fi fileInfo
	conn, closeFn, err := sqlitex.Conn(ctx, path, sqlitex.Options{})
	if err != nil {
		return fi, err
	}
	defer closeFn()
	if err := conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&fi.pageSize); err != nil {
		return fi, fmt.Errorf("check %s: %w", path, err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&fi.pages); err != nil {
		return fi, fmt.Errorf("check %s: %w", path, err)
	}
	pragma := "PRAGMA quick_check"
	if full {
		pragma = "PRAGMA integrity_check"
	}
	if fi.findings, err = checkRows(ctx, conn, pragma); err != nil {
		return fi, fmt.Errorf("check %s: %w", path, err)
	}
	for _, t := range kanban.Tables {
		var n int
		if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type='table' AND name=?", t).Scan(&n); err != nil {
			return fi, fmt.Errorf("check %s: %w", path, err)
		}
		if n == 0 {
			fi.missing = append(fi.missing, t)
		}
	}
	if len(fi.missing) == 0 && fi.findings == nil {
		if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM tasks").Scan(&fi.tasks); err != nil {
			return fi, fmt.Errorf("check %s: %w", path, err)
		}
	}
	return fi, closeFn()
}

// Restore puts the content of the backup file from back into the board at dbPath. It first checks
// that from is a healthy SQLite database (integrity_check) holding the kanban tables, then takes a
// Snapshot of the current board (or, when the board is too damaged for that, a Quarantine copy),
// then restores: by default through SQLite's backup API on a read-write connection to the live
// board, which is safe while other processes have it open (they wait on the write lock); with
// Options.Offline by replacing the file, only when no process has the board, its -wal or its -shm
// open (checked in /proc before and again right before acting), after removing the stale -wal and
// -shm so no old WAL is paired with the restored file. With Options.DryRun it checks and reports
// the plan, and writes nothing.
func Restore(ctx context.Context, from, dbPath string, o Options) (RestoreResult, error) {
	t0 := time.Now()
	res := RestoreResult{From: from, DB: dbPath, Mode: ModeOnline, DryRun: o.DryRun}
	if o.Offline {
		res.Mode = ModeOffline
	}
	if err := requireDatabase(from); err != nil {
		return res, err
	}
	if err := requireBoard(dbPath); err != nil && !(o.Offline && errors.Is(err, ErrNotDatabase)) {
		return res, err
	}
	if sameFile(from, dbPath) {
		return res, fmt.Errorf("%s: is the board itself", from)
	}
	fi, err := inspect(ctx, from, true)
	if err != nil {
		if k := sqlitex.Classify(err); k == sqlitex.KindCorrupt || k == sqlitex.KindNotADatabase {
			return res, fmt.Errorf("%s: %w: %s", from, ErrCorrupt, sqliteMessage(err))
		}
		return res, err
	}
	if fi.findings != nil {
		return res, fmt.Errorf("%s: %w: %s", from, ErrCorrupt, fi.findings[0])
	}
	if len(fi.missing) > 0 {
		return res, fmt.Errorf("%s: %w: no table %s", from, ErrNoSchema, strings.Join(fi.missing, ", "))
	}
	res.FromTasks, res.FromPages = fi.tasks, fi.pages
	res.Plan = append(res.Plan, fmt.Sprintf("check %s: integrity_check ok, kanban schema, %d tasks", from, fi.tasks))

	sidecars := []string{dbPath + "-wal", dbPath + "-shm"}
	if res.Openers, err = FindOpeners(append([]string{dbPath}, sidecars...)...); err != nil {
		return res, err
	}
	if o.Offline && res.Openers.InUse() {
		return res, inUseError(dbPath, res.Openers)
	}
	// Offline, nobody (this process included) has the board open, so its header may be read
	// directly. Online, the board is only ever read through SQLite.
	wal := false
	if o.Offline {
		if hdr, err := board.ReadHeader(dbPath); err == nil {
			wal = hdr.WriteVersion == 2
		}
	}
	res.Plan = append(res.Plan, fmt.Sprintf("back up %s to %s (a quarantine copy %s if it is too damaged to back up)",
		dbPath, filepath.Join(filepath.Dir(dbPath), Name(filepath.Base(dbPath), o.now(), "<sha256>")), board.FormatContent(filepath.Base(dbPath), "<sha256>")))
	if o.Offline {
		for _, s := range sidecars {
			if _, err := os.Lstat(s); err == nil {
				res.Plan = append(res.Plan, "remove stale "+s)
			}
		}
		mode := "rollback"
		if wal {
			mode = "wal"
		}
		res.Plan = append(res.Plan, fmt.Sprintf("replace %s with a copy of %s (journal mode %s)", dbPath, from, mode))
	} else {
		res.Plan = append(res.Plan, fmt.Sprintf("restore %s into %s through SQLite (%d other processes have it open; they wait for the write lock)",
			from, dbPath, len(res.Openers.Pids)))
	}
	if o.DryRun {
		res.Duration = time.Since(t0).Seconds()
		return res, nil
	}

	if o.Offline {
		if err := backupBefore(ctx, dbPath, o, &res); err != nil {
			return res, err
		}
		err = restoreOffline(ctx, from, dbPath, wal, sidecars, o, &res)
	} else {
		err = restoreOnlineBackedUp(ctx, from, dbPath, o, &res)
	}
	if err != nil {
		return res, err
	}
	after, err := inspect(ctx, dbPath, false)
	if err != nil {
		return res, fmt.Errorf("check restored %s: %w", dbPath, err)
	}
	if after.findings != nil {
		return res, fmt.Errorf("check restored %s: %w: %s", dbPath, ErrCheckFailed, after.findings[0])
	}
	res.Check, res.Tasks = "ok", after.tasks
	res.Duration = time.Since(t0).Seconds()
	return res, nil
}

func inUseError(dbPath string, op Openers) error {
	if len(op.Pids) > 0 {
		pids := make([]string, len(op.Pids))
		for i, p := range op.Pids {
			pids[i] = fmt.Sprint(p)
		}
		return fmt.Errorf("%s: %w: open in process %s; stop them or restore online (without --offline)",
			dbPath, ErrInUse, strings.Join(pids, ", "))
	}
	return fmt.Errorf("%s: %w: %d processes could not be checked (permission denied in /proc); run as root or restore online",
		dbPath, ErrInUse, op.Unchecked)
}

// backupBefore snapshots the board about to be overwritten, or quarantines it when it is too
// damaged to pass the snapshot's check.
func backupBefore(ctx context.Context, dbPath string, o Options, res *RestoreResult) error {
	snap, err := Snapshot(ctx, dbPath, Options{BusyTimeout: o.BusyTimeout, Logger: o.Logger, Now: o.Now})
	if err == nil {
		res.Before = &snap
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	notDB := errors.Is(err, ErrNotDatabase)
	if notDB && !o.Offline {
		return fmt.Errorf("%w; an online restore needs SQLite to open the board: use --offline", err)
	}
	k := sqlitex.Classify(err)
	if !notDB && !errors.Is(err, ErrCheckFailed) && k != sqlitex.KindCorrupt && k != sqlitex.KindNotADatabase {
		return fmt.Errorf("back up %s before restoring: %w", dbPath, err)
	}
	q, _, qerr := Quarantine(ctx, dbPath)
	if qerr != nil {
		return fmt.Errorf("quarantine %s before restoring: %w", dbPath, qerr)
	}
	res.Quarantined = q
	return nil
}

// restoreOnlineBackedUp backs up the live board and restores from into it. On a WAL board the
// backup is taken while the restore already holds the board's write lock (readers go on in WAL
// mode, writers wait), so the backup is exactly the content the restore overwrites: a row another
// process commits is either in that backup or committed after the restore, on top of it. Taking
// the backup first and the lock afterwards would lose every row committed in between.
//
// A board that is not in WAL mode (the restore's write lock there is EXCLUSIVE and would shut out
// the backup's own reader), or too damaged to back up (it is quarantined, which may read its file
// directly, so no connection of ours may be open), is backed up first and restored after, as
// before; writers committing in that window are not covered.
func restoreOnlineBackedUp(ctx context.Context, from, dbPath string, o Options, res *RestoreResult) error {
	if isWAL(ctx, dbPath) {
		var snapErr error
		err := restoreOnline(ctx, from, dbPath, o, func() error {
			snap, err := Snapshot(ctx, dbPath, Options{BusyTimeout: o.BusyTimeout, Logger: o.Logger, Now: o.Now})
			if err != nil {
				snapErr = err
				return err
			}
			res.Before = &snap
			return nil
		})
		if snapErr == nil || ctx.Err() != nil {
			return err
		}
		// The backup failed inside the lock: nothing was restored; go the long way below, which
		// quarantines a damaged board (or reports why it cannot be backed up).
	}
	if err := backupBefore(ctx, dbPath, o, res); err != nil {
		return err
	}
	return restoreOnline(ctx, from, dbPath, o, nil)
}

// isWAL reports whether the board is in WAL mode, asked through a short read-only connection.
func isWAL(ctx context.Context, dbPath string) bool {
	conn, closeFn, err := sqlitex.Conn(ctx, dbPath, sqlitex.Options{})
	if err != nil {
		return false
	}
	defer closeFn()
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return false
	}
	return strings.EqualFold(mode, "wal")
}

// restoreOnline copies from into the live board through SQLite on a read-write connection: one
// write transaction, so other processes see the old or the new content, never a mix. locked, when
// not nil, runs once the board's write lock is held and before anything is written (see
// sqlitex.StepOptions.Locked); its error ends the restore with the board unchanged.
func restoreOnline(ctx context.Context, from, dbPath string, o Options, locked func() error) error {
	bt := o.BusyTimeout
	if bt == 0 {
		bt = 120000
	}
	// The wait for the board's write lock happens inside the backup API, where SQLite's busy wait
	// cannot see ctx: a short wait per step, and retries that spend bt, so Ctrl-C ends it at once.
	conn, closeFn, err := sqlitex.Conn(ctx, dbPath, sqlitex.Options{ReadWrite: true, BusyTimeout: sqlitex.StepBusyTimeout})
	if err != nil {
		return err
	}
	defer closeFn()
	err = sqlitex.RestoreFrom(ctx, conn, sqlitex.DSN(from, sqlitex.Options{}),
		sqlitex.StepOptions{PagesPerStep: steps(o.PagesPerStep), BusyWait: sqlitex.BusyWait(bt), Locked: locked})
	if err != nil {
		if sqlitex.Classify(err) == sqlitex.KindNotADatabase {
			return fmt.Errorf("restore into %s: %w (%s); an online restore needs SQLite to open the board: use --offline", dbPath, ErrNotDatabase, sqliteMessage(err))
		}
		if sqlitex.Classify(err) == sqlitex.KindCorrupt { // the damaged board is backed up; SQLite cannot write over it
			return fmt.Errorf("restore %s into %s: %w (the board is too damaged for SQLite to restore into it: use --offline)", from, dbPath, err)
		}
		if sqlitex.Primary(err) == 8 { // SQLITE_READONLY: a WAL board with another page size
			return fmt.Errorf("restore %s into %s: %w (page sizes differ on a WAL board? use --offline)", from, dbPath, err)
		}
		return fmt.Errorf("restore %s into %s: %w", from, dbPath, err)
	}
	// Move the restored pages from the WAL into the file when nobody is reading (never waits).
	conn.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
	return closeFn()
}

// restoreOffline replaces the board's file with a checked copy of from.
func restoreOffline(ctx context.Context, from, dbPath string, wal bool, sidecars []string, o Options, res *RestoreResult) error {
	// A killed offline restore leaves .<db>.kdtmp-*; remove those nobody holds open.
	if _, err := cleanTemps(filepath.Dir(dbPath), filepath.Base(dbPath)+atomicfile.TempMarker); err != nil {
		return err
	}
	f, err := atomicfile.Create(dbPath, 0o644)
	if err != nil {
		return err
	}
	defer f.Abort()
	if err := copyInto(ctx, from, f.TempPath(), false, o.PagesPerStep, o.BusyTimeout); err != nil {
		return err
	}
	if err := sqlitex.MarkRollback(f.File); err != nil {
		return err
	}
	findings, _, _, err := checkFile(ctx, f.TempPath(), false)
	removeCompanions(f.TempPath())
	if err != nil {
		return err
	}
	if findings != nil {
		return fmt.Errorf("copy of %s: %w: %s", from, ErrCheckFailed, findings[0])
	}
	if wal { // the board was a WAL board: so is the restored file (what PRAGMA journal_mode=WAL writes)
		if _, err := f.WriteAt([]byte{2, 2}, 18); err != nil {
			return fmt.Errorf("write header of %s: %w", f.TempPath(), err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", f.TempPath(), err)
	}
	// Re-check right before acting: nobody may have opened the board meanwhile.
	op, err := FindOpeners(append([]string{dbPath}, sidecars...)...)
	if err != nil {
		return err
	}
	if op.InUse() {
		res.Openers = op
		return inUseError(dbPath, op)
	}
	for _, s := range sidecars {
		if err := os.Remove(s); err == nil {
			res.Removed = append(res.Removed, s)
		} else if !os.IsNotExist(err) {
			return fmt.Errorf("remove %s: %w", s, err)
		}
	}
	if err := atomicfile.SyncDir(filepath.Dir(dbPath)); err != nil {
		return err
	}
	if err := os.Rename(f.TempPath(), dbPath); err != nil {
		return fmt.Errorf("replace %s: %w", dbPath, err)
	}
	return atomicfile.SyncDir(filepath.Dir(dbPath))
}

// sqliteMessage is the SQLite part of err ("database disk image is malformed (11)"), without the
// wrapping that names the path again.
func sqliteMessage(err error) string {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Error()
	}
	return err.Error()
}
