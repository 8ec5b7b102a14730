package probe

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"

	lib "modernc.org/sqlite/lib"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// Errors returned by Check, each wrapped with the path it concerns; a verdict (even inconclusive)
// is a Result, not an error.
var (
	ErrEmpty    = errors.New("empty file (0 bytes), no database to check") // returned for a 0-byte DB file
	ErrNotFile  = errors.New("not a regular file")                         // returned for a directory, device or socket
	ErrCantOpen = errors.New("cannot open the database")                   // returned when SQLite cannot open it at all
	ErrNoDBFile = board.ErrNotFound                                        // returned when the DB file does not exist
)

func (o Options) withDefaults() Options {
	if o.Reverify == 0 {
		o.Reverify = 2
	}
	if o.Reverify < 0 {
		o.Reverify = 0
	}
	if o.Backoff <= 0 {
		o.Backoff = 50 * time.Millisecond
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Workers <= 0 {
		o.Workers = defaultWorkers()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

func (o Options) mode() string {
	if o.Full {
		return "integrity_check"
	}
	return "quick_check"
}

// connOptions is how every probe connection opens: read-only, locked, the busy timeout bounded
// by the check's timeout. Params only ever come from the repro harness.
func (o Options) connOptions() sqlitex.Options {
	return sqlitex.Options{BusyTimeout: int(o.Timeout / time.Millisecond), Params: o.Params}
}

// Check judges one board. It follows SQLite's locking on one pinned read-only connection (never
// immutable or nolock unless the harness asks, never a journal-mode change, never a checkpoint),
// re-checks a suspicious answer on the same connection, and only calls a board corrupt when a
// clean child process confirms it. Hazards around the board are reported beside the verdict. The
// DB's header is read before any connection is opened, and not at all when this process already
// has the file open. Operational problems (missing, unreadable, empty, not a file) are errors.
func Check(ctx context.Context, b board.Board, opts Options) (res Result, err error) {
	start := time.Now()
	opts = opts.withDefaults()
	log := opts.Logger.With("board", b.Name, "db", b.DB)
	res = Result{Name: b.Name, DB: b.DB, Mode: opts.mode(), Findings: []Finding{}, Hazards: []Hazard{}}
	defer func() { res.Duration = time.Since(start) }()

	facts, err := preflight(b.DB)
	if err != nil {
		return res, err
	}
	if !opts.Static {
		res.Hazards = append(res.Hazards, scanHazards(b, &facts, opts.WALLimit)...)
	}
	if bypass := bypassParams(opts.Params); bypass != "" {
		res.Hazards = append(res.Hazards, Hazard{Code: HazardUnlockedProbe, Paths: []string{b.DB},
			Message: "the probe connection was opened with " + bypass + ": it reads without SQLite's locks and sees torn pages"})
	}

	c, closeConn, err := sqlitex.Conn(ctx, b.DB, opts.connOptions())
	var first answer
	if err != nil {
		first = errAnswer(ctx, err)
	} else {
		defer func() { closeConn() }()
		pctx, cancel := context.WithTimeout(ctx, opts.Timeout+time.Second)
		if a, done := pageCheck(pctx, c, opts.Full); done {
			first = a
		} else if opts.Full && opts.Workers > 1 {
			first = fullParallel(pctx, c, b.DB, opts.connOptions(), opts.Workers)
		} else {
			first = sqlitePass(pctx, c, b.DB, opts.Full, opts.connOptions(), opts.Workers)
		}
		cancel()
	}
	res.FirstAnswer = capLines(first.all(), 20)
	log.Debug("first answer", "mode", res.Mode, "answer", first.summary())
	switch {
	case first.ok():
		res.Verdict = Healthy
		return res, nil
	case first.operational() && bypassParams(opts.Params) != "":
		// A connection that bypasses locking may fail to open at all (nolock on a WAL board gives
		// SQLITE_CANTOPEN): that says nothing about the file; the clean child will.
	case first.operational() && hotJournal(first):
		// SQLITE_READONLY_ROLLBACK: a writer was killed inside a transaction and left a hot
		// rollback journal, which a read-only connection may not roll back. Nothing is known
		// about the file until a writer has.
		res.Verdict = Inconclusive
		size := ""
		if fi, err := os.Stat(b.DB + "-journal"); err == nil {
			size = fmt.Sprintf(" (%s)", humanize.IBytes(uint64(fi.Size())))
		}
		res.Findings = append(res.Findings, Finding{Code: "hot-journal", Severity: "warning",
			Message: fmt.Sprintf("%s-journal is a hot rollback journal%s: a writer was killed inside a transaction, and a read-only check may not roll it back", filepath.Base(b.DB), size),
			Hint:    fmt.Sprintf("let a writer roll it back (the next hermes process does, or: sqlite3 %s 'PRAGMA quick_check'), then run kanban-doctor verify again; to keep the state before the rollback, copy %s and its -journal together first", shellQuote(b.DB), shellQuote(b.DB))})
		return res, nil
	case first.operational():
		return res, fmt.Errorf("%s: %w: %s", b.DB, ErrCantOpen, first.Err)
	case !first.suspicious():
		res.inconclusive(b, first, "")
		return res, nil
	}

	// Suspicious: re-check on the same connection, each in a new read transaction.
	last := first
	for i := 0; i < opts.Reverify && c != nil; i++ {
		if !sleepCtx(ctx, opts.Backoff<<i) {
			break
		}
		res.Rechecks++
		pctx, cancel := context.WithTimeout(ctx, opts.Timeout+time.Second)
		a := checkPass(pctx, c, b.DB, opts.Full, opts.connOptions(), opts.Workers)
		cancel()
		log.Debug("re-check", "n", res.Rechecks, "answer", a.summary())
		if a.ok() {
			res.Verdict = Transient
			res.Findings = append(res.Findings, Finding{Code: "transient", Severity: "warning",
				Message: fmt.Sprintf("the first %s said %q; re-check %d on the same connection found the database ok",
					res.Mode, first.summary(), res.Rechecks)})
			return res, nil
		}
		last = a
		if a.interrupted() {
			break
		}
	}
	if ctx.Err() != nil {
		res.inconclusive(b, answer{Cancelled: true, Err: contextMessage(ctx, ctx.Err())}, "")
		return res, nil
	}
	if opts.NoChild {
		res.inconclusive(b, last, "not confirmed (no child process): ")
		return res, nil
	}
	// Confirm from a clean child process. Our connection goes first: whatever compromised it
	// must not hold locks while the child looks.
	if c != nil {
		closeConn()
		closeConn = func() error { return nil }
		c = nil
	}
	reply, err := runChild(ctx, b.DB, opts)
	if err != nil {
		res.Child = "failed"
		res.Verdict = Inconclusive
		res.Findings = append(res.Findings, Finding{Code: "confirm-failed", Severity: "warning",
			Message: fmt.Sprintf("%s said %q but the confirming child process failed: %v", res.Mode, last.summary(), err)})
		return res, nil
	}
	ca := reply.Answer
	res.Child = ca.summary()
	switch {
	case ca.ok():
		res.Verdict = FalsePositive
		res.Findings = append(res.Findings, Finding{Code: "false-positive", Severity: "warning",
			Message: fmt.Sprintf("this process's connection said %q (also after %d re-checks); a clean child process found the database ok",
				last.summary(), res.Rechecks),
			Hint: "find what bypasses SQLite's locking in the checking process (see hazards); do not quarantine"})
		return res, nil
	case !confirmsDamage(ca):
		res.inconclusive(b, ca, "the clean child process could not confirm: ")
		return res, nil
	}
	if h := splitGeneration(res.Hazards); h != nil {
		// Processes that write through a deleted -wal/-shm checkpoint into the main file without
		// any lock the child can see: even a clean reader may read torn pages. Not a verdict.
		res.Verdict = Inconclusive
		res.Child = "damage seen, not trusted: " + res.Child
		res.Findings = append(res.Findings, Finding{Code: "unconfirmable", Severity: "warning",
			Message: fmt.Sprintf("the clean child also saw %q, but %s: their checkpoints bypass every lock a reader can take, "+
				"so neither answer can be trusted", ca.summary(), h.Message),
			Hint: "restart the processes named in the hazard, then run kanban-doctor verify again"})
		return res, nil
	}
	res.Verdict = Corrupt
	res.Class = reply.Class
	h := hint(res.Class, b.DB)
	res.Findings = append(res.Findings, Finding{Code: "corrupt-" + string(res.Class), Severity: "error",
		Message: fmt.Sprintf("%s corruption confirmed by a clean child process (%s)", res.Class, reply.Why), Hint: h})
	lines := ca.all()
	for i, l := range lines {
		if i == 20 {
			res.Findings = append(res.Findings, Finding{Code: "more", Severity: "info",
				Message: fmt.Sprintf("... and %d more lines", len(lines)-i)})
			break
		}
		res.Findings = append(res.Findings, Finding{Code: lineCode(l), Severity: "error", Message: l, Hint: h})
	}
	if opts.Backup {
		switch {
		case reply.BackupErr != "":
			res.Findings = append(res.Findings, Finding{Code: "backup-failed", Severity: "warning", Message: reply.BackupErr})
		default:
			res.Backup = reply.Backup
		}
	}
	return res, nil
}

// checkPass is the whole-database check the re-checks and the confirming child run: the page
// check when its answer stands, else one integrity_check with full, else quickPass.
func checkPass(ctx context.Context, c *sql.Conn, path string, full bool, conn sqlitex.Options, workers int) answer {
	if a, done := pageCheck(ctx, c, full); done {
		return a
	}
	return sqlitePass(ctx, c, path, full, conn, workers)
}

// sqlitePass is SQLite's own check: one integrity_check with full, else quickPass.
func sqlitePass(ctx context.Context, c *sql.Conn, path string, full bool, conn sqlitex.Options, workers int) answer {
	if full {
		return runPass(ctx, c, pragmaFor(true, ""))
	}
	return quickPass(ctx, c, path, conn, workers)
}

// splitGeneration returns the hazard that says some process uses another generation of the -wal
// or -shm than a new connection would (deleted inodes held open, or a WAL board whose -wal was
// deleted under open processes), or nil.
func splitGeneration(hz []Hazard) *Hazard {
	for i, h := range hz {
		switch h.Code {
		case HazardDeletedWAL, HazardDeletedSHM, HazardWALMissing:
			return &hz[i]
		}
	}
	return nil
}

// confirmsDamage reports a clean answer that shows real damage (not merely an error).
func confirmsDamage(a answer) bool {
	if !a.suspicious() {
		return false
	}
	if len(a.Lines) > 0 {
		return true
	}
	switch a.kind() {
	case sqlitex.KindCorrupt, sqlitex.KindNotADatabase:
		return true
	}
	return a.Code == lib.SQLITE_IOERR_SHORT_READ
}

func (r *Result) inconclusive(b board.Board, a answer, prefix string) {
	r.Verdict = Inconclusive
	f := Finding{Code: "inconclusive", Severity: "warning", Message: prefix + a.summary()}
	switch {
	case a.Changed:
		f.Code = "file-changed"
		f.Message = prefix + a.Err
		f.Hint = "find what rewrote or truncated the file outside SQLite, then run kanban-doctor verify again"
	case a.interrupted():
		f.Code = "interrupted"
		f.Message = prefix + "check " + a.Err
	case a.busy():
		f.Code = "busy"
		f.Message = prefix + "the database is locked (" + sqlitex.CodeName(a.Code) + ")"
		if pids := busyHolders(b); len(pids) > 0 {
			f.Message += " by " + describePids(pids)
			r.Hazards = append(r.Hazards, Hazard{Code: "lock-holder", Pids: pids, Paths: []string{b.DB},
				Message: "holds a lock that kept the check waiting: " + describePids(pids)})
		}
		f.Hint = "run again when the writer is done, or raise --timeout"
	}
	r.Findings = append(r.Findings, f)
}

// preflight stats the file and reads its header before any connection exists. It never opens
// the DB when this process already has it open (closing any descriptor of the file would drop
// that process's POSIX locks).
func preflight(path string) (fileFacts, error) {
	var facts fileFacts
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return facts, fmt.Errorf("%s: %w", path, ErrNoDBFile)
	case errors.Is(err, fs.ErrPermission):
		return facts, fmt.Errorf("%s: %w", path, fs.ErrPermission)
	case err != nil:
		return facts, fmt.Errorf("%s: %w", path, err)
	case fi.IsDir():
		return facts, fmt.Errorf("%s: is a directory: %w", path, ErrNotFile)
	case !fi.Mode().IsRegular():
		return facts, fmt.Errorf("%s: %w", path, ErrNotFile)
	case fi.Size() == 0:
		return facts, fmt.Errorf("%s: %w", path, ErrEmpty)
	}
	if err := unix.Access(path, unix.R_OK); err != nil {
		return facts, fmt.Errorf("%s: %w", path, fs.ErrPermission)
	}
	facts.Size = fi.Size()
	if countOwnFDs(path) > 0 {
		facts.HeaderErr = "not read: this process already has the file open"
		return facts, nil
	}
	readHeaderInto(path, &facts)
	return facts, nil
}

// readFacts stats path and reads its header; call it only while this process has no connection
// to the database.
func readFacts(path string) fileFacts {
	var f fileFacts
	if fi, err := os.Stat(path); err == nil {
		f.Size = fi.Size()
		readHeaderInto(path, &f)
	}
	return f
}

func readHeaderInto(path string, facts *fileFacts) {
	h, err := board.ReadHeader(path)
	switch {
	case err == nil:
		facts.Header = &h
	case errors.Is(err, board.ErrNotDatabase):
		facts.NotDB = true
		facts.HeaderErr = err.Error()
	default:
		facts.HeaderErr = err.Error()
	}
}

func bypassParams(params []string) string {
	var out []string
	for _, p := range params {
		k, v, _ := strings.Cut(p, "=")
		if (k == "immutable" || k == "nolock") && v != "0" && v != "false" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ", ")
}

func capLines(l []string, n int) []string {
	if len(l) > n {
		return append(l[:n:n], fmt.Sprintf("... and %d more", len(l)-n))
	}
	return l
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// hotJournal reports whether an open failed on a hot rollback journal (SQLITE_READONLY_ROLLBACK).
func hotJournal(a answer) bool {
	return a.Code == 776 || strings.Contains(a.Err, "(776)")
}
