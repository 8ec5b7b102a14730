// Package backup takes consistent copies of a live board through SQLite (online backup API or
// VACUUM INTO), names them by content, quarantines damaged boards, and restores from a copy.
//
// Files: Snapshot writes <db>.backup.<UTC timestamp>.<16 hex of sha256>.db (see Name), Quarantine
// writes <db>.corrupt.<16 hex of sha256>.bak (board.FormatContent). Each is built in an atomicfile
// temp (".<name>.kdtmp-*") in the destination directory, fsynced, checked or hashed, then linked
// under its final name, so a final name only ever holds a complete file; a killed run's temps are
// removed by the next run. No function here opens, reads, hashes or closes a live board's main file
// or -shm: every read of a board goes through a SQLite connection, and hashes are taken of the
// finished copy.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// Errors; each is wrapped with the path it concerns.
var (
	// ErrCheckFailed is returned when a finished copy fails quick_check or integrity_check.
	ErrCheckFailed = errors.New("copy fails quick_check")
	// ErrExists is returned when the output file already exists with other content.
	ErrExists = errors.New("already exists")
	// ErrNotDatabase is returned when a file is not a SQLite database.
	ErrNotDatabase = errors.New("not a SQLite database")
	// ErrCorrupt is returned by Restore when the file to restore from fails integrity_check.
	ErrCorrupt = errors.New("fails integrity_check")
	// ErrNoSchema is returned by Restore when the file to restore from lacks a kanban table.
	ErrNoSchema = errors.New("not a kanban board")
	// ErrInUse is returned by an offline Restore while some process holds the board open.
	ErrInUse = errors.New("board is in use")
)

// Options controls Snapshot and Restore.
type Options struct {
	// Out is the destination: a directory (the default name is used there) or a file name that must
	// not exist. Empty means the database's own directory.
	Out string
	// Compact copies with VACUUM INTO instead of the backup API (smaller, rebuilt b-trees; not a
	// page-for-page copy, so not for forensics).
	Compact bool
	// Keep, when > 0, removes our older backups of the board in the destination directory beyond the
	// newest Keep (never the one just written).
	Keep int
	// PagesPerStep is the backup step size (0: DefaultPagesPerStep; negative: all in one step) of a
	// copy straight into the temp file; a copy through memory is always one step.
	PagesPerStep int
	// MemoryLimit is the largest board (bytes) a backup-API snapshot copies into memory first, to
	// write, hash and check it side by side (0: MemoryCopyLimit; negative: never, always copy
	// straight into the temp file).
	MemoryLimit int64
	// BusyTimeout in milliseconds for the connections to the board (0: 5000 for backups, 120000 for
	// an online restore, which waits on writers for the write lock).
	BusyTimeout int
	// DryRun checks and reports what would be done, changing nothing (Snapshot: where the copy
	// would go and which backups Keep would remove; Restore: the plan).
	DryRun bool
	// Offline (Restore) replaces the file instead of restoring through SQLite; only when no process
	// has the board open.
	Offline bool
	Logger  *slog.Logger
	// Now is the clock for backup names (tests pin it); nil means time.Now.
	Now func() time.Time
}

func (o Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (o Options) memoryLimit() int64 {
	if o.MemoryLimit == 0 {
		return MemoryCopyLimit
	}
	return max(o.MemoryLimit, 0)
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Method names in Result.Method.
const (
	MethodBackupAPI  = "backup-api"
	MethodVacuumInto = "vacuum-into"
)

// Result describes one snapshot.
type Result struct {
	Source   string    `json:"source"`
	Path     string    `json:"path"`
	Method   string    `json:"method"`
	Bytes    int64     `json:"bytes"`
	SHA256   string    `json:"sha256"`
	PageSize int       `json:"page_size"`
	Pages    int       `json:"pages"`
	Check    string    `json:"check"`             // "ok": the quick_check of the copy, from a fresh connection
	Existed  bool      `json:"existed,omitempty"` // this content was already backed up there: Path is that file
	Started  time.Time `json:"started_at"`
	Duration float64   `json:"duration_seconds"`
	Pruned   []string  `json:"pruned,omitempty"`
	// CleanedTemps are temp files of earlier, killed runs that this run removed.
	CleanedTemps []string `json:"cleaned_temps,omitempty"`
	// DryRun: nothing was written; Path is the destination directory or file, Pruned what Keep
	// would remove once the new backup is there.
	DryRun bool `json:"dry_run,omitempty"`
}

// requireBoard checks, by stat alone, that the live board at path is a regular, non-empty file.
// Whether it is a SQLite database is left to SQLite: the caller may hold a connection to the
// board, and opening and closing its file here would drop that connection's locks.
func requireBoard(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, unwrapPathError(err))
	}
	if fi.IsDir() {
		return fmt.Errorf("%s: is a directory, not a database file", path)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Size() == 0 {
		return fmt.Errorf("%s: empty file, %w", path, ErrNotDatabase)
	}
	return nil
}

// notDatabase names a board SQLite refused as not a database.
func notDatabase(path string, err error) error {
	if sqlitex.Classify(err) == sqlitex.KindNotADatabase {
		return fmt.Errorf("%s: %w (%s)", path, ErrNotDatabase, sqliteMessage(err))
	}
	return err
}

// requireDatabase checks that a file that is not a live board (the file to restore from) is a
// regular, non-empty SQLite file, reading its header before any connection to it is opened.
func requireDatabase(path string) error {
	if err := requireBoard(path); err != nil {
		return err
	}
	if _, err := board.ReadHeader(path); err != nil {
		if errors.Is(err, board.ErrNotDatabase) {
			return fmt.Errorf("%s: %w", path, err)
		}
		return fmt.Errorf("%s: %w", path, unwrapPathError(err))
	}
	return nil
}

// unwrapPathError drops the *PathError wrapper so messages name the path once.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// destination resolves Options.Out for the database dbPath: the directory, and the fixed file name
// (empty when the default content-addressed name is to be used).
func destination(dbPath, out string) (dir, fixed string, err error) {
	if out == "" {
		return filepath.Dir(dbPath), "", nil
	}
	if fi, err := os.Stat(out); err == nil {
		if fi.IsDir() {
			return out, "", nil
		}
		return "", "", fmt.Errorf("%s: %w", out, ErrExists)
	} else if !os.IsNotExist(err) {
		return "", "", fmt.Errorf("%s: %w", out, unwrapPathError(err))
	}
	if strings.HasSuffix(out, string(os.PathSeparator)) {
		return "", "", fmt.Errorf("%s: no such directory", out)
	}
	dir = filepath.Dir(out)
	if fi, err := os.Stat(dir); err != nil {
		return "", "", fmt.Errorf("%s: %w", dir, unwrapPathError(err))
	} else if !fi.IsDir() {
		return "", "", fmt.Errorf("%s: not a directory", dir)
	}
	return dir, out, nil
}

// Snapshot writes a consistent copy of the database at dbPath (which other processes may be
// writing) and returns where it went. The copy is made through SQLite, into memory first for a
// board up to Options.MemoryLimit (see copyCheckHash), and written to a temp file in the
// destination directory, fsynced, quick_checked from a fresh connection, hashed, and only then
// given its final name (Name, or Options.Out when that names a file); the directory is fsynced.
func Snapshot(ctx context.Context, dbPath string, o Options) (Result, error) {
	log := o.logger()
	start, t0 := o.now(), time.Now()
	res := Result{Source: dbPath, Method: MethodBackupAPI, Started: start.UTC()}
	if o.Compact {
		res.Method = MethodVacuumInto
	}
	if err := requireBoard(dbPath); err != nil {
		return res, err
	}
	dir, fixed, err := destination(dbPath, o.Out)
	if err != nil {
		return res, err
	}
	dbName := filepath.Base(dbPath)
	source := sourceID(dbPath)
	if o.DryRun {
		res.DryRun, res.Path = true, dir
		if fixed != "" {
			res.Path = fixed
		} else if o.Keep > 0 {
			// The new backup will be the newest: keep Keep-1 of those already there.
			res.Pruned, err = prune(dir, dbName, source, o.Keep-1, "", true)
		}
		return res, err
	}
	tempFor := filepath.Join(dir, dbName+".backup")
	if fixed != "" {
		tempFor = fixed
	}
	res.CleanedTemps, err = cleanTemps(dir, filepath.Base(tempFor))
	if err != nil {
		return res, err
	}
	if len(res.CleanedTemps) > 0 {
		log.Info("removed temps of an earlier run", "dir", dir, "count", len(res.CleanedTemps))
	}
	f, err := atomicfile.Create(tempFor, 0o644)
	if err != nil {
		return res, err
	}
	defer f.Abort()
	pps := o.PagesPerStep
	if pps < 0 {
		pps = -1
	}
	findings, pageSize, pages, sum, size, err := copyCheckHash(ctx, dbPath, f, o.Compact, pps, o.BusyTimeout, o.memoryLimit())
	if k := sqlitex.Classify(err); k == sqlitex.KindCorrupt || k == sqlitex.KindNotADatabase {
		findings, err = []string{err.Error()}, nil
	}
	if err != nil {
		return res, err
	}
	if findings != nil {
		return res, fmt.Errorf("back up %s: %w: %s (the board itself may be damaged: run kanban-doctor verify %s)",
			dbPath, ErrCheckFailed, findings[0], dbPath)
	}
	res.Check, res.PageSize, res.Pages, res.SHA256, res.Bytes = "ok", pageSize, pages, sum, size
	res.Path = fixed
	if fixed == "" {
		res.Path = filepath.Join(dir, Name(dbName, start, sum[:16]))
		// The same content already backed up here: point at it instead of making a twin.
		if prev := findSame(dir, dbName, source, sum); prev != "" {
			f.Abort()
			res.Path, res.Existed = prev, true
		}
	}
	if !res.Existed {
		if res.Existed, err = publish(f, res.Path, sum); err != nil {
			return res, err
		}
		// Record which board this backup is of, so --keep here never prunes another board's. A
		// name that already held this content (res.Existed) keeps whatever record it has: it may
		// be another board's backup.
		if fixed == "" && !res.Existed {
			if err := writeSource(res.Path, source, sum); err != nil {
				return res, fmt.Errorf("backup %s written, but %w", res.Path, err)
			}
		}
	}
	log.Info("backup written", "source", dbPath, "path", res.Path, "bytes", size, "sha256", sum)
	if o.Keep > 0 && fixed == "" {
		res.Pruned, err = prune(dir, dbName, source, o.Keep, res.Path, false)
		if err != nil {
			return res, err
		}
	}
	res.Duration = time.Since(t0).Seconds()
	return res, nil
}

// findSame returns one of our backups in dir of the board source (by its source record) whose
// content has the sha256 sum, or "". Another board's backup with the same content is not reused:
// that board's --keep may prune it.
func findSame(dir, dbName, source, sum string) string {
	all, err := List(dir, dbName)
	if err != nil {
		return ""
	}
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Hash != sum[:16] {
			continue
		}
		if s, ok := readSource(all[i].Path, all[i].Hash); ok && s == source {
			if h, err := hashPath(all[i].Path); err == nil && h == sum {
				return all[i].Path
			}
		}
	}
	return ""
}
