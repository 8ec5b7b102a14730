package repair

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/kanban-doctor/kanban-doctor/backup"
	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// pagesPerStep is how many pages one backup step copies between context checks.
const pagesPerStep = 4096

// snapshot copies the database at src into the (empty) temp file of dst through SQLite's online
// backup API: one read transaction under SQLite's locks, WAL content included, damaged pages
// copied verbatim. writable_schema lets SQLite read a file shorter than its header says. The copy
// is then marked as a rollback-journal file (header bytes 18-19), so opening it needs no -wal.
func snapshot(ctx context.Context, src string, dst *atomicfile.File, busyTimeout int) error {
	conn, closeFn, err := sqlitex.Conn(ctx, src, sqlitex.Options{BusyTimeout: busyTimeout, Pragmas: []string{"writable_schema(1)"}})
	if err != nil {
		return err
	}
	defer closeFn()
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		return fmt.Errorf("begin read of %s: %w", src, err)
	}
	defer conn.ExecContext(context.Background(), "ROLLBACK")
	// Start the read transaction (and fail early on a file SQLite cannot read at all).
	var n int
	if err := conn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&n); err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	uri := sqlitex.DSN(dst.TempPath(), sqlitex.Options{ReadWrite: true, BusyTimeout: -1, Pragmas: []string{"journal_mode(OFF)", "synchronous(OFF)"}})
	if err := sqlitex.BackupTo(ctx, conn, uri, sqlitex.StepOptions{PagesPerStep: pagesPerStep}); err != nil {
		return fmt.Errorf("snapshot %s: %w", src, err)
	}
	conn.ExecContext(context.Background(), "ROLLBACK")
	if err := closeFn(); err != nil {
		return err
	}
	removeCompanions(dst.TempPath())
	return sqlitex.MarkRollback(dst.File)
}

// countRows counts the rows of every ordinary table on conn (table scans, no index trusted).
func countRows(ctx context.Context, conn *sql.Conn) (map[string]int64, []string, error) {
	rows, err := conn.QueryContext(ctx, "SELECT name FROM sqlite_schema WHERE type='table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY rowid")
	if err != nil {
		return nil, nil, fmt.Errorf("list tables: %w", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("list tables: %w", err)
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("list tables: %w", err)
	}
	counts := map[string]int64{}
	for _, n := range names {
		var c int64
		if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM "+quote(n)+" NOT INDEXED").Scan(&c); err != nil {
			return nil, nil, fmt.Errorf("count rows of %s: %w", n, err)
		}
		counts[n] = c
	}
	return counts, names, nil
}

// fixInPlace runs REINDEX or VACUUM on our own copy at path and reports the row counts before and
// after per table.
func fixInPlace(ctx context.Context, path, action string) ([]TableReport, error) {
	conn, closeFn, err := sqlitex.Conn(ctx, path, sqlitex.Options{ReadWrite: true, BusyTimeout: -1,
		Pragmas: []string{"journal_mode(MEMORY)", "synchronous(OFF)"}})
	if err != nil {
		return nil, err
	}
	defer closeFn()
	before, names, err := countRows(ctx, conn)
	if err != nil {
		return nil, err
	}
	stmt, method := "REINDEX", MethodReindex
	if action == ActionVacuum {
		stmt, method = "VACUUM", MethodVacuum
	}
	if _, err := conn.ExecContext(ctx, stmt); err != nil {
		return nil, fmt.Errorf("%s %s: %w", strings.ToLower(stmt), path, err)
	}
	after, _, err := countRows(ctx, conn)
	if err != nil {
		return nil, err
	}
	out := make([]TableReport, 0, len(names))
	for _, n := range names {
		out = append(out, TableReport{Name: n, Method: method, RowsRead: before[n], RowsWritten: after[n]})
	}
	return out, closeFn()
}

// countTables reports the row counts of our own copy at path.
func countTables(ctx context.Context, path, method string) ([]TableReport, error) {
	conn, closeFn, err := sqlitex.Conn(ctx, path, sqlitex.Options{BusyTimeout: -1})
	if err != nil {
		return nil, err
	}
	defer closeFn()
	counts, names, err := countRows(ctx, conn)
	if err != nil {
		return nil, err
	}
	out := make([]TableReport, 0, len(names))
	for _, n := range names {
		out = append(out, TableReport{Name: n, Method: method, RowsRead: counts[n], RowsWritten: counts[n]})
	}
	return out, closeFn()
}

// restoreInPlace writes the verified repaired copy into the live board with backup.Restore: a
// backup of the damaged board is taken first (a snapshot, or a content-addressed quarantine copy
// when it is too damaged to snapshot), then the copy is restored through SQLite's backup API under
// the board's own locks, so running processes see one consistent switch.
func restoreInPlace(ctx context.Context, b board.Board, repaired *atomicfile.File, res *Result, log *slog.Logger) error {
	rr, err := backup.Restore(ctx, repaired.TempPath(), b.DB, backup.Options{Logger: log})
	if err != nil && ctx.Err() == nil && (sqlitex.Classify(err) == sqlitex.KindCorrupt || errors.Is(err, backup.ErrNotDatabase)) {
		// SQLite cannot write into a board this damaged (truncated, bad header): replace the file
		// instead, which backup.Restore does only when no process has the board, -wal or -shm open
		// (else ErrInUse: exit 3). The damaged content was kept by the first attempt.
		log.Info("online restore impossible on the damaged board; replacing the file", "db", b.DB, "err", err)
		first := rr
		rr, err = backup.Restore(ctx, repaired.TempPath(), b.DB, backup.Options{Logger: log, Offline: true})
		if errors.Is(err, backup.ErrInUse) { // its advice ("restore online") is what just failed
			msg, _, _ := strings.Cut(err.Error(), "; stop them")
			err = fmt.Errorf("%s; the board is too damaged for SQLite to write into while it is open: stop them and run repair --in-place again%w", msg, errNote{backup.ErrInUse})
		}
		if rr.Before == nil && rr.Quarantined == "" {
			rr.Before, rr.Quarantined = first.Before, first.Quarantined
		}
	}
	if rr.Before != nil {
		res.Backup = rr.Before.Path
	} else if rr.Quarantined != "" {
		res.Backup = rr.Quarantined
	}
	if err != nil {
		return fmt.Errorf("restore repaired copy into %s: %w", b.DB, err)
	}
	res.Written = true
	return nil
}

// changeWatch holds an idle read-only connection to a board to see, through PRAGMA data_version,
// whether another connection committed since it was opened. It holds no transaction between calls.
type changeWatch struct {
	conn    *sql.Conn
	closeFn func() error
	v0      int64
}

func watchChanges(ctx context.Context, db string, busyTimeout int) (*changeWatch, error) {
	conn, closeFn, err := sqlitex.Conn(ctx, db, sqlitex.Options{BusyTimeout: busyTimeout, Pragmas: []string{"writable_schema(1)"}})
	if err != nil {
		return nil, err
	}
	w := &changeWatch{conn: conn, closeFn: closeFn}
	if err := conn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&w.v0); err != nil {
		closeFn()
		return nil, fmt.Errorf("read data_version of %s: %w", db, err)
	}
	return w, nil
}

// Changed reports whether another connection committed since the watch began.
func (w *changeWatch) Changed(ctx context.Context) (bool, error) {
	var v int64
	if err := w.conn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v); err != nil {
		return false, fmt.Errorf("read data_version: %w", err)
	}
	return v != w.v0, nil
}

func (w *changeWatch) Close() {
	if w != nil && w.closeFn != nil {
		w.closeFn()
		w.closeFn = nil
	}
}

// errNote wraps a sentinel error for errors.Is without adding to the message.
type errNote struct{ err error }

func (e errNote) Error() string { return "" }
func (e errNote) Unwrap() error { return e.err }
