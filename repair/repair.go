// Package repair fixes a damaged kanban board with the least destructive remedy for what the probe
// found (REINDEX, VACUUM, or a row-by-row salvage into a fresh file) and reports exactly what was
// lost, working on a copy and never on the input unless asked to.
package repair

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
	"github.com/kanban-doctor/kanban-doctor/probe"
)

// Errors returned by Repair, each wrapped with the path it concerns.
var (
	// ErrUnrecoverable is returned when nothing can be read from the input (its header is destroyed
	// or it is not a SQLite database at all): no output is written.
	ErrUnrecoverable = errors.New("nothing can be salvaged")
	// ErrInconclusive is returned when the diagnosis reached no verdict (busy, locked, timed out).
	ErrInconclusive = errors.New("no verdict: not repairing")
	// ErrOutputExists is returned when the output file exists and Force is not set.
	ErrOutputExists = errors.New("output file already exists (use --force to replace it)")
	// ErrBoardChanged is returned by an in-place repair when other processes committed to the board
	// after its snapshot was taken: restoring would overwrite their commits, so nothing is restored.
	ErrBoardChanged = errors.New("other processes wrote to the board during the repair: not restored (stop them, or repair with --out)")
	// ErrOutputIsInput is returned when the output would replace the board's own database or one of
	// its -wal/-shm/-journal files (use --in-place to repair the board itself).
	ErrOutputIsInput = errors.New("output is the board itself or one of its files (use --in-place)")
	// ErrOutputDamaged is returned when the repaired copy does not pass integrity_check; it is not
	// published.
	ErrOutputDamaged = errors.New("repaired copy fails integrity_check")
)

// Actions, in Result.Action. These names are a contract (JSON, README).
const (
	ActionNone    = "none"    // healthy, or a suspicion that a clean re-check cleared
	ActionReindex = "reindex" // index damage: REINDEX on a copy
	ActionVacuum  = "vacuum"  // freelist damage: VACUUM on a copy
	ActionSalvage = "salvage" // table b-tree damage: rebuild row by row into a fresh file
	ActionCopy    = "copy"    // the snapshot SQLite took is already healthy (e.g. a header that overstated the size)
)

// Methods, in TableReport.Method: how a table's rows were read.
const (
	MethodSQL     = "sql"     // SQLite's own cursor read every row
	MethodPages   = "pages"   // cursor failed: the b-tree was walked page by page
	MethodReindex = "reindex" // rows untouched, indexes rebuilt
	MethodVacuum  = "vacuum"  // rows copied by VACUUM
	MethodCopy    = "copy"    // rows as the backup API copied them
)

// CheckFunc diagnoses a board; probe.Check is the one used outside tests.
type CheckFunc func(ctx context.Context, b board.Board, o probe.Options) (probe.Result, error)

// Options controls Repair.
type Options struct {
	// Out is the output file; empty means "<db>.repaired" beside the input. With InPlace it is
	// only the temporary name of the repaired copy.
	Out string
	// Force lets the output replace an existing file of that name.
	Force bool
	// InPlace restores the repaired copy into the input through SQLite's backup API (under
	// SQLite's locks, so running processes see a consistent switch), after a verified backup.
	InPlace bool
	// DryRun diagnoses and returns the plan, writing nothing.
	DryRun bool
	// Backups is a directory of earlier copies of this board to compare against (newest healthy
	// one is named with its row counts).
	Backups string
	// Static says the input is not a live board (no hazard scan).
	Static bool
	// Timeout bounds the wait for the board's locks (diagnosis and snapshot); 0 means 30s.
	Timeout time.Duration
	// Check replaces probe.Check (tests).
	Check  CheckFunc
	Logger *slog.Logger
}

func (o Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (o Options) busyTimeout() int {
	if o.Timeout <= 0 {
		return 30000
	}
	return int(o.Timeout / time.Millisecond)
}

func (o Options) check() CheckFunc {
	if o.Check != nil {
		return o.Check
	}
	return probe.Check
}

// TableReport is what happened to one table.
type TableReport struct {
	Name         string `json:"name"`
	WithoutRowid bool   `json:"without_rowid,omitempty"`
	Method       string `json:"method"`
	RowsRead     int64  `json:"rows_read"`
	RowsWritten  int64  `json:"rows_written"`
	// RowsLostKnown counts rows known to be lost: listed by an intact index in a lost range, or
	// whose own cell could not be decoded. Rows on a lost page that no index lists are not counted
	// (LostRanges bounds them).
	RowsLostKnown   int64       `json:"rows_lost_known"`
	LostRowids      []int64     `json:"lost_rowids,omitempty"`
	LostRanges      []LostRange `json:"lost_rowid_ranges,omitempty"`
	UnreadablePages []PageIssue `json:"unreadable_pages,omitempty"`
	RejectedCells   int         `json:"rejected_cells,omitempty"`
	OrphanRows      int64       `json:"rows_from_unattached_pages,omitempty"`
	OrphanPages     []uint32    `json:"unattached_pages_used,omitempty"`
	SQLError        string      `json:"cursor_error,omitempty"`
}

// Totals sums the tables.
type Totals struct {
	RowsRead      int64 `json:"rows_read"`
	RowsWritten   int64 `json:"rows_written"`
	RowsLostKnown int64 `json:"rows_lost_known"`
	LostRanges    int   `json:"lost_rowid_ranges"`
	Unreadable    int   `json:"unreadable_pages"` // pages lost or read only leniently
	RejectedCells int   `json:"rejected_cells"`   // cells on damaged pages that failed validation
}

// Result is what Repair did (or, with DryRun, would do).
type Result struct {
	DB      string        `json:"db"`
	Out     string        `json:"out,omitempty"`
	Verdict probe.Verdict `json:"verdict"`
	Class   probe.Class   `json:"class,omitempty"`
	Action  string        `json:"action"`
	Plan    []string      `json:"plan"`
	DryRun  bool          `json:"dry_run"`
	InPlace bool          `json:"in_place"`
	Written bool          `json:"written"`
	Tables  []TableReport `json:"tables"`
	Totals  Totals        `json:"totals"`
	Output  string        `json:"output_verdict,omitempty"` // the probe's verdict on the published output
	Backup  string        `json:"backup,omitempty"`         // InPlace: the verified copy of the input taken first
	Compare *Comparison   `json:"compare_backup,omitempty"`
	Notes   []string      `json:"notes"`
	// Unchecked names what the output holds that this build could neither open nor check (a
	// virtual table whose module it lacks): "verified" does not cover them.
	Unchecked []string     `json:"unchecked,omitempty"`
	Diagnosis probe.Result `json:"diagnosis"`
	Cleaned   []string     `json:"cleaned_temps,omitempty"`
	Duration  float64      `json:"duration_seconds"`
}

// Lossless reports whether every row read was written and none is known or suspected lost: no
// lost rowid range, no cell that failed validation. A damaged page whose every cell validated
// (e.g. a zeroed page-type byte) does not count as a loss.
func (r Result) Lossless() bool {
	return len(r.Unchecked) == 0 && r.Totals.RowsLostKnown == 0 && r.Totals.LostRanges == 0 && r.Totals.RowsRead == r.Totals.RowsWritten &&
		r.Totals.RejectedCells == 0
}

// DefaultOut is the output name used when Options.Out is empty.
func DefaultOut(db string) string { return db + ".repaired" }

// planFor names the action for a class.
func planFor(c probe.Class) string {
	switch c {
	case probe.ClassIndex:
		return ActionReindex
	case probe.ClassFreelist:
		return ActionVacuum
	}
	return ActionSalvage
}

// Repair diagnoses the board, then fixes a copy of it with the least destructive remedy for the
// damage class and publishes the copy atomically under the output name (or, with InPlace, restores
// it into the board through SQLite after a verified backup). The input is only ever read through
// SQLite (a backup-API snapshot under its locks), and never written unless InPlace.
func Repair(ctx context.Context, b board.Board, o Options) (res Result, err error) {
	t0 := time.Now()
	log := o.logger()
	res = Result{DB: b.DB, DryRun: o.DryRun, InPlace: o.InPlace, Tables: []TableReport{}, Notes: []string{}}
	defer func() { res.Duration = time.Since(t0).Seconds() }()
	if err := requireFile(b.DB); err != nil {
		return res, err
	}
	diag, err := o.check()(ctx, b, probe.Options{Full: true, Static: o.Static, Timeout: o.Timeout, Logger: log})
	res.Diagnosis = diag
	if err != nil {
		if strings.HasPrefix(err.Error(), b.DB+":") { // the probe named the path already
			return res, fmt.Errorf("diagnose %w", err)
		}
		return res, fmt.Errorf("diagnose %s: %w", b.DB, err)
	}
	res.Verdict, res.Class = diag.Verdict, diag.Class
	switch diag.Verdict {
	case probe.Healthy, probe.Transient, probe.FalsePositive:
		res.Action = ActionNone
		res.Plan = []string{fmt.Sprintf("nothing to repair: the board is %s", diag.Verdict)}
		return res, nil
	case probe.Inconclusive:
		res.Action = ActionNone
		why := firstFinding(diag)
		if len(diag.Findings) > 0 && diag.Findings[0].Code == "hot-journal" {
			why += "; " + diag.Findings[0].Hint
		}
		return res, fmt.Errorf("repair %s: %w (%s)", b.DB, ErrInconclusive, why)
	}
	if diag.Class == probe.ClassNotADatabase {
		res.Action = ActionNone
		return res, fmt.Errorf("repair %s: %w: %s", b.DB, ErrUnrecoverable, notDatabaseReason(diag))
	}
	res.Action = planFor(diag.Class)
	out := o.Out
	if out == "" {
		out = DefaultOut(b.DB)
	}
	if o.InPlace {
		out = filepath.Join(filepath.Dir(b.DB), "."+filepath.Base(b.DB)+".repair")
	}
	res.Out = out
	if o.InPlace {
		res.Out = b.DB
	}
	res.Plan = describePlan(res.Action, b.DB, out, o.InPlace)
	if o.DryRun {
		return res, nil
	}
	if !o.InPlace && board.OwnFile(out, b.DB) != "" {
		return res, fmt.Errorf("repair %s: %s: %w", b.DB, out, ErrOutputIsInput)
	}
	if !o.Force && !o.InPlace {
		if _, err := os.Lstat(out); err == nil {
			return res, fmt.Errorf("repair %s: %s: %w", b.DB, out, ErrOutputExists)
		}
	}
	if res.Cleaned, err = atomicfile.CleanTemps(filepath.Dir(out), filepath.Base(out)); err != nil {
		return res, err
	}
	var watch *changeWatch
	if o.InPlace {
		// Commits other processes make after the snapshot would be overwritten by the restore:
		// watch the board's data_version from before the snapshot until just before restoring.
		if watch, err = watchChanges(ctx, b.DB, o.busyTimeout()); err != nil {
			return res, err
		}
		defer watch.Close()
	}
	work, err := atomicfile.Create(out, 0o644)
	if err != nil {
		return res, err
	}
	defer work.Abort()
	defer removeCompanions(work.TempPath())
	log.Info("snapshot", "db", b.DB, "to", work.TempPath())
	if err := snapshot(ctx, b.DB, work, o.busyTimeout()); err != nil {
		switch sqlitex.Classify(err) {
		case sqlitex.KindNotADatabase:
			return res, fmt.Errorf("repair %s: %w: %w", b.DB, ErrUnrecoverable, err)
		case sqlitex.KindBusy:
			return res, fmt.Errorf("repair %s: %w: %w", b.DB, ErrInconclusive, err)
		}
		return res, err
	}
	// Re-check the snapshot (it, not the live board, is what gets repaired) unless the damage is in
	// a table b-tree, where salvage is the plan whatever the snapshot says: a snapshot SQLite could
	// take whole may already be healthy (a header that overstated the size), and a class may read
	// differently on it. Our own static file: no re-checks, no child.
	if diag.Class != probe.ClassBtree {
		again, err := o.check()(ctx, board.New(b.Name, work.TempPath()), probe.Options{Full: true, Static: true, NoChild: true, Reverify: -1, Timeout: o.Timeout, Logger: log})
		removeCompanions(work.TempPath())
		if err != nil {
			return res, fmt.Errorf("diagnose snapshot of %s: %w", b.DB, err)
		}
		if again.Verdict == probe.Healthy {
			res.Notes = append(res.Notes, "the snapshot taken through SQLite is healthy (the damage was outside the pages it copied): it is the output")
			res.Action = ActionCopy
		} else if again.Class != "" && planFor(again.Class) != res.Action {
			res.Notes = append(res.Notes, fmt.Sprintf("the snapshot's class is %s (the board's was %s): planned by the snapshot", again.Class, diag.Class))
			res.Action = planFor(again.Class)
		}
	}
	final := work
	switch res.Action {
	case ActionReindex, ActionVacuum:
		tables, ferr := fixInPlace(ctx, work.TempPath(), res.Action)
		removeCompanions(work.TempPath())
		verdict := probe.Verdict("")
		if ferr == nil {
			verdict, ferr = verify(ctx, o, work.TempPath())
		}
		if ferr == nil && verdict == probe.Healthy {
			res.Tables = tables
			break
		}
		why := fmt.Sprint(ferr)
		if ferr == nil {
			why = "the copy is still " + string(verdict)
		}
		res.Notes = append(res.Notes, fmt.Sprintf("%s did not fix the copy (%s): salvaging instead", res.Action, why))
		res.Action = ActionSalvage
		fallthrough
	case ActionSalvage:
		dst, err := atomicfile.Create(out, 0o644)
		if err != nil {
			return res, err
		}
		defer dst.Abort()
		defer removeCompanions(dst.TempPath())
		tables, notes, unchecked, err := salvage(ctx, work.TempPath(), dst.TempPath(), log)
		res.Notes = append(res.Notes, notes...)
		res.Unchecked = append(res.Unchecked, unchecked...)
		if err != nil {
			if errors.Is(err, ErrUnrecoverable) {
				return res, fmt.Errorf("repair %s: %w", b.DB, err)
			}
			return res, fmt.Errorf("salvage %s: %w", b.DB, err)
		}
		res.Tables = tables
		final = dst
	}
	if res.Action == ActionCopy {
		tables, err := countTables(ctx, work.TempPath(), MethodCopy)
		if err != nil {
			return res, err
		}
		res.Tables = tables
	}
	res.Totals = totals(res.Tables)
	verdict, err := verify(ctx, o, final.TempPath())
	if err != nil {
		return res, fmt.Errorf("verify repaired copy of %s: %w", b.DB, err)
	}
	res.Output = string(verdict)
	if verdict == probe.Inconclusive { // interrupted or timed out: no verdict on the copy, not a damaged copy
		if ctx.Err() != nil {
			return res, fmt.Errorf("verify repaired copy of %s: %w", b.DB, ctx.Err())
		}
		return res, fmt.Errorf("verify repaired copy of %s: %w (the copy is not published)", b.DB, ErrInconclusive)
	}
	if verdict != probe.Healthy {
		return res, fmt.Errorf("repair %s: %w (%s)", b.DB, ErrOutputDamaged, verdict)
	}
	if err := final.Sync(); err != nil {
		return res, fmt.Errorf("sync %s: %w", final.TempPath(), err)
	}
	if o.InPlace {
		changed, err := watch.Changed(ctx)
		watch.Close()
		if err != nil {
			return res, err
		}
		if changed {
			return res, fmt.Errorf("repair %s in place: %w", b.DB, ErrBoardChanged)
		}
		if err := restoreInPlace(ctx, b, final, &res, log); err != nil {
			return res, err
		}
	} else {
		commit := final.CommitNoReplace
		if o.Force {
			commit = final.Commit
		}
		if err := commit(); err != nil {
			return res, fmt.Errorf("write %s: %w", out, err)
		}
		res.Written = true
	}
	if o.Backups != "" {
		cmp, err := compareBackups(ctx, o, b, o.Backups, res.Tables)
		if err != nil {
			res.Notes = append(res.Notes, "backups: "+err.Error())
		}
		res.Compare = cmp
	}
	log.Info("repaired", "db", b.DB, "out", res.Out, "action", res.Action, "rows_written", res.Totals.RowsWritten)
	return res, nil
}

func describePlan(action, db, out string, inPlace bool) []string {
	var p []string
	p = append(p, fmt.Sprintf("snapshot %s through SQLite's backup API into a temporary copy", db))
	switch action {
	case ActionReindex:
		p = append(p, "REINDEX the copy (index-only damage: every row is kept)")
	case ActionVacuum:
		p = append(p, "VACUUM the copy (freelist damage: every row is kept)")
	default:
		p = append(p, "salvage: rebuild the schema in a fresh file, copy every readable row table by table (page by page past damage), then build indexes, triggers and views")
	}
	p = append(p, "verify the result with integrity_check; salvage instead if REINDEX/VACUUM did not fix it")
	if inPlace {
		p = append(p, fmt.Sprintf("quarantine a verified copy of %s, then restore the repaired copy into it through SQLite's backup API (under its locks)", db))
	} else {
		p = append(p, fmt.Sprintf("write %s atomically (temp, fsync, rename); %s is not modified", out, db))
	}
	return p
}

func firstFinding(r probe.Result) string {
	if len(r.Findings) > 0 {
		return r.Findings[0].Message
	}
	if len(r.FirstAnswer) > 0 {
		return r.FirstAnswer[0]
	}
	return string(r.Verdict)
}

func notDatabaseReason(r probe.Result) string {
	if s := firstFinding(r); s != "" && s != string(r.Verdict) {
		return "not a SQLite database (" + s + ")"
	}
	return "not a SQLite database (header destroyed)"
}

func totals(ts []TableReport) Totals {
	var t Totals
	for _, r := range ts {
		t.RowsRead += r.RowsRead
		t.RowsWritten += r.RowsWritten
		t.RowsLostKnown += r.RowsLostKnown
		t.LostRanges += len(r.LostRanges)
		t.Unreadable += len(r.UnreadablePages)
		t.RejectedCells += r.RejectedCells
	}
	return t
}

// verify asks the probe about a finished file of ours (static, full integrity_check).
func verify(ctx context.Context, o Options, path string) (probe.Verdict, error) {
	r, err := o.check()(ctx, board.New("repaired", path), probe.Options{Full: true, Static: true, NoChild: true, Reverify: -1, Logger: o.Logger})
	removeCompanions(path)
	if err != nil {
		return "", err
	}
	return r.Verdict, nil
}

func requireFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("%s: is a directory, not a database file", path)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", path)
	}
	return nil
}

// removeCompanions removes the -wal/-shm/-journal a closed connection to our own temp file left.
func removeCompanions(tmp string) {
	for _, suf := range []string{"-wal", "-shm", "-journal"} {
		os.Remove(tmp + suf)
	}
}
