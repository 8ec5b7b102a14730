package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/kanban-doctor/kanban-doctor/backup"
	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/exitcode"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
	"github.com/kanban-doctor/kanban-doctor/probe"
	"github.com/kanban-doctor/kanban-doctor/reports"
)

func backupCommand() *cli.Command {
	return &cli.Command{
		Name:  "backup",
		Usage: "write a consistent, checked, content-addressed copy of a live board through SQLite",
		Description: "The copy is made with SQLite's online backup API (never a file copy; --compact uses VACUUM INTO),\n" +
			"in a temp file in the destination directory, fsynced, quick_checked from a fresh connection, hashed,\n" +
			"then named <db>.backup.<UTC timestamp>.<16 hex of its sha256>.db and the directory fsynced.\n" +
			"Other processes keep writing meanwhile. Temps of an interrupted run are removed by the next run.",
		ArgsUsage: "[PATH]",
		Flags: []cli.Flag{
			jsonFlag,
			&cli.StringFlag{Name: "out", Usage: "destination directory, or a file name that must not exist (default: beside the board)"},
			&cli.BoolFlag{Name: "compact", Usage: "copy with VACUUM INTO (smaller, rebuilt; not page-for-page)"},
			&cli.IntFlag{Name: "keep", Usage: "after writing, remove older backups of the board in the destination beyond the newest `N`"},
			busyTimeoutFlag(5*time.Second, "how long to wait for a lock on the board (`D`: 5s, 2m; a bare number is milliseconds)"),
			&cli.BoolFlag{Name: "dry-run", Usage: "write and remove nothing: say where the backup would go and what --keep would remove"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return exitcode.Errorf(exitcode.Usage, "backup takes one PATH, got %d", c.NArg())
			}
			busyMS, err := busyTimeoutMS(c)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			if c.IsSet("keep") && c.Int("keep") < 1 {
				return exitcode.Errorf(exitcode.Usage, "--keep must be at least 1")
			}
			boards, err := discoverAll(c.Args().Slice(), board.Options{})
			if err != nil {
				return err
			}
			o := backup.Options{Out: c.String("out"), Compact: c.Bool("compact"), Keep: c.Int("keep"), BusyTimeout: busyMS, DryRun: c.Bool("dry-run")}
			if len(boards) > 1 && o.Out != "" && !isDir(o.Out) {
				if _, err := os.Lstat(o.Out); err == nil {
					return exitcode.Errorf(exitcode.Usage, "--out %s is a file but PATH holds %d boards: give a directory", o.Out, len(boards))
				}
				// Several boards go into one directory per board under --out: make it (a dry
				// run writes nothing and checks the nearest existing parent instead).
				if !o.DryRun {
					if err := os.MkdirAll(o.Out, 0o755); err != nil {
						return exitcode.Wrap(exitcode.Operational, err)
					}
				}
			}
			var results []backup.Result
			var skipped []reports.BackupSkip
			var errs []error
			for _, b := range boards {
				if b.AwaitingDB() {
					skipped = append(skipped, reports.BackupSkip{Board: b.Name, DB: b.DB, Reason: board.AwaitingDBNote})
					continue
				}
				o := o
				made := ""
				if len(boards) > 1 && o.Out != "" {
					// Every board's file is kanban.db: one subdirectory per board keeps their
					// backups (and --keep) apart.
					o.Out = filepath.Join(o.Out, b.Name)
					if !o.DryRun && !isDir(o.Out) { // a dry run writes nothing, not even the directory
						if err := os.MkdirAll(o.Out, 0o755); err != nil {
							errs = append(errs, exitcode.Wrap(exitcode.Operational, err))
							continue
						}
						made = o.Out
					}
				}
				if o.Out != "" && !isDir(o.Out) {
					if name := board.OwnFile(o.Out, b.DB); name != "" {
						errs = append(errs, exitcode.Errorf(exitcode.Usage, "--out %s is the board's own %s: the board's writers own that name (the next one removes or rewrites it); name another file", o.Out, name))
						continue
					}
				}
				if o.DryRun {
					if err := dryRunWritable(o.Out, b.DB); err != nil {
						errs = append(errs, err)
						continue
					}
				}
				r, err := backup.Snapshot(c.Context, b.DB, o)
				if err != nil {
					if made != "" {
						os.Remove(made) // only if still empty: no directory left behind for a backup not written
					}
					errs = append(errs, backupFailure(c.Context, b, err))
					continue
				}
				results = append(results, r)
			}
			if c.Bool("json") {
				if err := reports.JSON(c.App.Writer, "backup", reports.BackupResult{Backups: results, Skipped: skipped, Errors: errorStrings(errs)}); err != nil {
					return exitcode.Wrap(exitcode.Operational, err)
				}
			} else {
				if err := reports.BackupText(c.App.Writer, results); err != nil {
					return exitcode.Wrap(exitcode.Operational, err)
				}
				for _, sk := range skipped {
					fmt.Fprintf(c.App.Writer, "skipped %s: %s\n", sk.Board, sk.Reason)
				}
			}
			return worstError(c.App.ErrWriter, errs)
		},
	}
}

// backupFailure gives a failed backup its exit status. A copy that fails its check means the
// board's own content may be damaged: only the probe judges that, so the board is checked (on one
// read-only connection, confirmed by a clean child) and a confirmed corruption exits 2, whatever
// else failed in the same run.
func backupFailure(ctx context.Context, b board.Board, err error) error {
	if !errors.Is(err, backup.ErrCheckFailed) {
		return backupError(err)
	}
	res, perr := probe.Check(ctx, b, probe.Options{})
	if perr == nil && res.Verdict == probe.Corrupt {
		what := "corrupt"
		if res.Class != probe.ClassNone {
			what += " (" + string(res.Class) + ")"
		}
		return exitcode.Errorf(exitcode.Corrupt, "back up %s: the board is %s, confirmed by a clean child process; no backup written (see kanban-doctor verify %s)", b.DB, what, b.DB)
	}
	return backupError(err)
}

// dryRunWritable fails when the backup of db could not be written: the destination (out, or the
// board's directory), or its nearest existing ancestor when it is yet to be made, is not writable
// by this user. A dry run must not promise what the real run cannot do.
func dryRunWritable(out, db string) error {
	dir := filepath.Dir(db)
	if out != "" {
		dir = out
		if fi, err := os.Stat(out); (err == nil && !fi.IsDir()) || (err != nil && filepath.Ext(out) != "") {
			dir = filepath.Dir(out) // a file name to create
		}
	}
	for {
		fi, err := os.Stat(dir)
		if err == nil {
			if !fi.IsDir() {
				return exitcode.Errorf(exitcode.Operational, "backup %s: %s is not a directory", db, dir)
			}
			if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
				return exitcode.Errorf(exitcode.Operational, "backup %s: cannot write in %s: %v", db, dir, err)
			}
			return nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}

// backupError gives a backup or restore failure its exit status: a refusal to restore from a file
// that is not a healthy kanban board, or any other failure to do the job, is operational (8); a
// busy board (another process holds the lock past the timeout, or --offline with the board open)
// is inconclusive (3).
func backupError(err error) error {
	var e *exitcode.Error
	switch {
	case errors.As(err, &e):
		return err
	case errors.Is(err, backup.ErrInUse), sqlitex.Classify(err) == sqlitex.KindBusy:
		return exitcode.Wrap(exitcode.Inconclusive, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded): // interrupted: no result, not an operational error
		return exitcode.Wrap(exitcode.Inconclusive, err)
	}
	return errAs(exitcode.Operational, err)
}

// worstError ends a backup run: the lone error is returned for Run to print; several are
// printed one line each and the worst status (exitcode.Worst: corrupt wins) is returned.
func worstError(stderr io.Writer, errs []error) error {
	if len(errs) <= 1 {
		if len(errs) == 0 {
			return nil
		}
		return errs[0]
	}
	codes := make([]int, len(errs))
	lines := make([]string, len(errs))
	for i, e := range errs {
		codes[i], lines[i] = exitcode.Of(e), e.Error()
	}
	return boardErrors(stderr, exitcode.Worst(codes...), lines)
}

func errorStrings(errs []error) []string {
	var s []string
	for _, e := range errs {
		s = append(s, e.Error())
	}
	return s
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
