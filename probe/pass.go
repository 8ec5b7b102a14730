package probe

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
	"github.com/kanban-doctor/kanban-doctor/probe/pagecheck"
)

// maxLines caps how many lines of one answer are kept.
const maxLines = 200

// answer is what one integrity pass said: the lines that were not "ok", or the error that ended it.
type answer struct {
	Lines     []string `json:"lines,omitempty"`
	Code      int      `json:"code,omitempty"` // extended SQLite result code of the error, 0 if none
	Err       string   `json:"err,omitempty"`
	Cancelled bool     `json:"cancelled,omitempty"` // the context ended: never a finding about the DB
	Changed   bool     `json:"changed,omitempty"`   // the file shrank or was replaced under the check
}

func (a answer) ok() bool {
	return len(a.Lines) == 0 && a.Code == 0 && a.Err == "" && !a.Cancelled && !a.Changed
}

// kind sorts the error that ended the pass.
func (a answer) kind() sqlitex.Kind {
	if a.Code == 0 {
		if a.Err != "" {
			return sqlitex.KindOther
		}
		return sqlitex.KindNone
	}
	return sqlitex.ClassifyCode(a.Code)
}

// busy reports a pass that could not get its locks in time.
func (a answer) busy() bool { return !a.Cancelled && a.kind() == sqlitex.KindBusy }

// interrupted reports a pass ended by its context (cancelled, timed out).
func (a answer) interrupted() bool { return a.Cancelled || a.kind() == sqlitex.KindInterrupt }

// operational reports an error that says the file cannot be opened at all (permission, cantopen).
func (a answer) operational() bool {
	k := a.kind()
	return !a.Cancelled && (k == sqlitex.KindCantOpen || k == sqlitex.KindPerm)
}

// suspicious reports an answer that claims damage: non-ok lines or a corrupt, not-a-database, I/O
// or unexpected error.
func (a answer) suspicious() bool {
	return !a.ok() && !a.busy() && !a.interrupted() && !a.operational() && !a.Changed
}

// summary is the answer in one short line.
func (a answer) summary() string {
	var parts []string
	for i, l := range a.Lines {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("... (%d lines)", len(a.Lines)))
			break
		}
		parts = append(parts, l)
	}
	if a.Err != "" {
		parts = append(parts, a.Err)
	}
	if len(parts) == 0 {
		return "ok"
	}
	return strings.Join(parts, "; ")
}

func (a answer) all() []string {
	out := append([]string{}, a.Lines...)
	if a.Err != "" {
		out = append(out, a.Err)
	}
	return out
}

func errAnswer(ctx context.Context, err error) answer {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return answer{Cancelled: true, Err: contextMessage(ctx, err)}
	}
	return answer{Code: sqlitex.Code(err), Err: err.Error()}
}

func contextMessage(ctx context.Context, err error) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	return "cancelled"
}

// mmapMax is how much of the file the page check maps (modernc's build allows up to
// 0x7fff0000 bytes): reading mapped pages instead of one pread per page is what makes the page
// check faster than SQLite's own pass here. A fault on a mapped page (another process shrank the
// file) becomes an inconclusive answer, never a crash (pagecheck.ErrFileChanged).
const mmapMax = 0x7fff0000

// pageCheck runs the page check (probe/pagecheck: every page read through SQLite on c, checked
// in Go on all cores) and reports done when its answer stands: the database passed, or it is
// busy, locked out, cancelled or changed under the check. Otherwise (it reported something, or
// does not cover this schema) SQLite's own pass must judge: the page check's rules are as strict
// as SQLite's or stricter, and it never decides damage on its own. Quick mode compares index
// contents too, except for the largest table, as quickPass does.
func pageCheck(ctx context.Context, c *sql.Conn, full bool) (a answer, done bool) {
	if noPageCheck {
		return answer{}, false
	}
	rep, err := pagecheck.Check(ctx, c, pagecheck.Options{Full: full, ContentsButLargest: !full, MmapMax: mmapMax})
	switch {
	case err == nil && len(rep.Problems) == 0:
		return answer{}, true
	case errors.Is(err, pagecheck.ErrFileChanged):
		return answer{Err: "the database file shrank or was replaced while it was being read (a memory-mapped page faulted): " +
			"a process changed it outside SQLite", Changed: true}, true
	case err != nil:
		if a := errAnswer(ctx, err); a.busy() || a.interrupted() || a.operational() {
			return a, true // do not wait for the same lock twice
		}
	}
	return answer{}, false
}

// noPageCheck turns the page check off (tests that compare it with SQLite's passes).
var noPageCheck bool

// pragmaFor is the statement a pass runs.
func pragmaFor(full bool, table string) string {
	p := "quick_check"
	if full {
		p = "integrity_check"
	}
	if table == "" {
		return "PRAGMA " + p
	}
	return fmt.Sprintf("PRAGMA %s(%s)", p, quoteIdent(table))
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// runPass runs one check statement on c as one read transaction and collects its answer: rows are
// split into lines, the "*** in database main ***" header and "ok" are skipped, and rows.Err is
// checked (SQLite can fail after returning rows).
func runPass(ctx context.Context, c *sql.Conn, stmt string) answer {
	rows, err := c.QueryContext(ctx, stmt)
	if err != nil {
		return errAnswer(ctx, err)
	}
	defer rows.Close()
	var a answer
	for rows.Next() {
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			return errAnswer(ctx, err)
		}
		for _, l := range strings.Split(s.String, "\n") {
			l = strings.TrimSpace(l)
			if l == "" || l == "ok" || strings.HasPrefix(l, "*** in database ") {
				continue
			}
			if len(a.Lines) < maxLines {
				a.Lines = append(a.Lines, l)
			}
		}
	}
	if err := rows.Err(); err != nil {
		e := errAnswer(ctx, err)
		e.Lines = a.Lines
		return e
	}
	if ctx.Err() != nil {
		return answer{Cancelled: true, Err: contextMessage(ctx, ctx.Err()), Lines: a.Lines}
	}
	return a
}

// merge combines answers of parts of one check (a parallel full check): lines de-duplicated in
// order, the most telling error kept (cancelled > busy > any other).
func merge(as ...answer) answer {
	var out answer
	seen := map[string]bool{}
	for _, a := range as {
		for _, l := range a.Lines {
			if !seen[l] && len(out.Lines) < maxLines {
				seen[l] = true
				out.Lines = append(out.Lines, l)
			}
		}
	}
	rank := func(a answer) int {
		switch {
		case a.Cancelled || a.kind() == sqlitex.KindInterrupt:
			return 4
		case a.busy():
			return 3
		case a.operational():
			return 2
		case a.Err != "":
			return 1
		}
		return 0
	}
	best := answer{}
	for _, a := range as {
		if rank(a) > rank(best) {
			best = a
		}
	}
	out.Code, out.Err, out.Cancelled = best.Code, best.Err, best.Cancelled
	return out
}

// job is one part of a parallel check (it crosses to helper processes as JSON).
type job struct {
	Stmt   string   `json:"stmt"` // a PRAGMA, or a cross-check query with Args
	Args   []int64  `json:"args,omitempty"`
	Cross  bool     `json:"cross,omitempty"` // rows are (rowid, missing-from-index-1, ...) for Names
	Names  []string `json:"names,omitempty"`
	Table  string   `json:"table"`  // the table, for the fallback integrity_check(T)
	Weight int64    `json:"weight"` // rowid span: heavier jobs go first
}

// splitIndexCheck, when set, forces the choice between the cross-check in rowid ranges for tables
// with plain indexes (true) and one integrity_check(T) per table (false). Unset, the split is used
// from three workers up: on two cores the per-table way costs less CPU in all and finishes first
// (BenchmarkFullCheck).
var splitIndexCheck *bool

// fullParallel is integrity_check spread over the cores. One whole-database quick_check on the
// pinned connection c checks every b-tree, the page accounting, the freelist, NOT NULL and CHECK
// constraints and every index's entry count. What quick_check leaves out is index content and
// UNIQUE: tables with unique, partial or expression indexes (or WITHOUT ROWID) get
// integrity_check(T); the others get a cross-check split in rowid ranges over extra read-only
// connections: every row must have its entry in every index, which with equal entry counts is
// exactly integrity_check's test, reported in nearly its words ("rowid N missing from index X":
// integrity_check numbers rows by position, a range cannot).
// Any non-ok answer is re-checked by the caller with one whole-database integrity_check, and a
// verdict of corruption always comes from that whole-database check in the clean child.
func fullParallel(ctx context.Context, c *sql.Conn, path string, conn sqlitex.Options, workers int) answer {
	split := workers >= 3
	if splitIndexCheck != nil {
		split = *splitIndexCheck
	}
	jobs, err := planJobs(ctx, c, workers, split)
	if err != nil {
		if a := errAnswer(ctx, err); a.busy() || a.interrupted() || a.operational() {
			return a // do not wait for the same lock twice
		}
	}
	if err != nil || len(jobs) == 0 || workers < 2 {
		return runPass(ctx, c, pragmaFor(true, ""))
	}
	return parallelPass(ctx, c, path, conn, workers, jobs)
}

// quickPass is the default check: the whole-database quick_check on c and, on the other cores
// at no cost in wall time, integrity_check(T) of every indexed table except the largest (so index
// contents of tasks, runs, comments and links are compared too; the event log's index contents
// only with --full). With one core it is quick_check alone. The first pass, the re-checks and the
// confirming child all run this same pass, so they judge the same things.
func quickPass(ctx context.Context, c *sql.Conn, path string, conn sqlitex.Options, workers int) answer {
	jobs, err := planJobs(ctx, c, workers, false)
	if err != nil {
		if a := errAnswer(ctx, err); a.busy() || a.interrupted() || a.operational() {
			return a // do not wait for the same lock twice
		}
	}
	if err != nil || len(jobs) < 2 {
		return runPass(ctx, c, pragmaFor(false, ""))
	}
	// planJobs sorts by size: drop the largest table, keep the rest.
	return parallelPass(ctx, c, path, conn, min(workers, 2), jobs[1:])
}

// smallDB is the size below which a parallel pass runs on the pinned connection alone: starting
// a helper process costs more than it saves.
const smallDB = 32 << 20

// parallelPass runs the whole-database quick_check on c beside jobs spread over workers-1 helper
// processes (re-executions of this binary, each with its own read-only connection). Processes,
// not goroutines: modernc's allocator is one global mutex, and two connections in one process
// stall each other badly on a busy machine. Jobs are balanced by weight; c takes the lightest
// share after its quick_check. A helper that cannot run has its jobs run on an extra in-process
// connection instead.
func parallelPass(ctx context.Context, c *sql.Conn, path string, conn sqlitex.Options, workers int, jobs []job) answer {
	var pages, pageSize int64
	c.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages)
	c.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize)
	if workers < 2 || pages*pageSize < smallDB {
		return merge(append([]answer{runPass(ctx, c, pragmaFor(false, ""))}, runJobs(ctx, c, jobs)...)...)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	bins := balance(jobs, workers)
	var mu sync.Mutex
	var parts []answer
	add := func(as ...answer) {
		mu.Lock()
		parts = append(parts, as...)
		mu.Unlock()
		for _, a := range as {
			if a.Cancelled || a.busy() || a.operational() {
				cancel()
			}
		}
	}
	var wg sync.WaitGroup
	for _, bin := range bins[1:] {
		if len(bin) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			as, err := runPartChild(ctx, path, conn, bin)
			if err == nil {
				add(as...)
				return
			}
			if ctx.Err() != nil {
				add(errAnswer(ctx, ctx.Err()))
				return
			}
			hc, closeHC, err := sqlitex.Conn(ctx, path, conn)
			if err != nil {
				add(errAnswer(ctx, err))
				return
			}
			defer closeHC()
			add(runJobs(ctx, hc, bin)...)
		}()
	}
	add(runPass(ctx, c, pragmaFor(false, "")))
	add(runJobs(ctx, c, bins[0])...)
	wg.Wait()
	return merge(parts...)
}

func runJobs(ctx context.Context, c *sql.Conn, jobs []job) []answer {
	var out []answer
	for _, j := range jobs {
		if ctx.Err() != nil {
			out = append(out, errAnswer(ctx, ctx.Err()))
			break
		}
		out = append(out, runJob(ctx, c, j))
	}
	return out
}

// balance deals jobs (sorted heaviest first) into workers bins, each to the least loaded; bin 0
// is the pinned connection, which starts loaded with the whole-database quick_check (counted as
// half the heaviest job).
func balance(jobs []job, workers int) [][]job {
	bins := make([][]job, workers)
	load := make([]int64, workers)
	if len(jobs) > 0 {
		load[0] = jobs[0].Weight/2 + 1
	}
	for _, j := range jobs {
		k := 0
		for i := range load {
			if load[i] < load[k] {
				k = i
			}
		}
		bins[k] = append(bins[k], j)
		load[k] += j.Weight + 1
	}
	return bins
}

func runJob(ctx context.Context, c *sql.Conn, j job) answer {
	if !j.Cross {
		return runPass(ctx, c, j.Stmt)
	}
	a := crossCheck(ctx, c, j)
	if a.Code&0xff == 1 { // SQLITE_ERROR: the planner refused the query; let SQLite check the table
		return runPass(ctx, c, pragmaFor(true, j.Table))
	}
	return a
}

// crossCheck runs one rowid range of an index cross-check.
func crossCheck(ctx context.Context, c *sql.Conn, j job) answer {
	args := make([]any, len(j.Args))
	for i, a := range j.Args {
		args[i] = a
	}
	rows, err := c.QueryContext(ctx, j.Stmt, args...)
	if err != nil {
		return errAnswer(ctx, err)
	}
	defer rows.Close()
	var a answer
	dest := make([]any, 1+len(j.Names))
	var rowid int64
	flags := make([]bool, len(j.Names))
	dest[0] = &rowid
	for i := range flags {
		dest[i+1] = &flags[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return errAnswer(ctx, err)
		}
		for i, missing := range flags {
			if missing && len(a.Lines) < maxLines {
				a.Lines = append(a.Lines, fmt.Sprintf("rowid %d missing from index %s", rowid, j.Names[i]))
			}
		}
	}
	if err := rows.Err(); err != nil {
		e := errAnswer(ctx, err)
		e.Lines = a.Lines
		return e
	}
	return a
}

// planJobs splits the index-content part of integrity_check into jobs, largest first.
func planJobs(ctx context.Context, c *sql.Conn, workers int, split bool) ([]job, error) {
	type tbl struct {
		name string
		wr   bool
	}
	var tables []tbl
	rows, err := c.QueryContext(ctx, `SELECT name, wr FROM pragma_table_list WHERE schema='main' AND type='table'`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var t tbl
		if err := rows.Scan(&t.name, &t.wr); err != nil {
			rows.Close()
			return nil, err
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var big, small []job
	for _, t := range tables {
		idx, simple, err := simpleIndexes(ctx, c, t.name)
		if err != nil {
			return nil, err
		}
		if len(idx) == 0 && simple {
			continue // no index: quick_check has checked everything
		}
		var lo, hi sql.NullInt64
		if !t.wr {
			if err := c.QueryRowContext(ctx, "SELECT (SELECT min(rowid) FROM "+quoteIdent(t.name)+"), (SELECT max(rowid) FROM "+quoteIdent(t.name)+")").Scan(&lo, &hi); err != nil {
				return nil, err
			}
		}
		if t.wr || !simple || !split {
			small = append(small, job{Stmt: pragmaFor(true, t.name), Table: t.name, Weight: hi.Int64 - lo.Int64})
			continue
		}
		if !lo.Valid {
			continue
		}
		var sel, where []string
		var names []string
		for _, ix := range idx {
			var eq []string
			for _, col := range ix.cols {
				eq = append(eq, fmt.Sprintf("i.%s IS t.%s", quoteIdent(col), quoteIdent(col)))
			}
			eq = append(eq, "i.rowid = t.rowid")
			ne := fmt.Sprintf("NOT EXISTS (SELECT 1 FROM %s AS i INDEXED BY %s WHERE %s)",
				quoteIdent(t.name), quoteIdent(ix.name), strings.Join(eq, " AND "))
			sel = append(sel, ne)
			where = append(where, ne)
			names = append(names, ix.name)
		}
		stmt := fmt.Sprintf("SELECT t.rowid, %s FROM %s AS t NOT INDEXED WHERE t.rowid >= ? AND t.rowid <= ? AND (%s)",
			strings.Join(sel, ", "), quoteIdent(t.name), strings.Join(where, " OR "))
		n := int64(workers * 2)
		span := (hi.Int64 - lo.Int64 + n) / n
		for a := lo.Int64; a <= hi.Int64; a += span {
			b := a + span - 1
			if b > hi.Int64 || b < a {
				b = hi.Int64
			}
			big = append(big, job{Stmt: stmt, Args: []int64{a, b}, Cross: true, Names: names, Table: t.name, Weight: b - a})
			if b == hi.Int64 {
				break
			}
		}
	}
	jobs := append(big, small...)
	sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].Weight > jobs[j].Weight })
	return jobs, nil
}

type indexCols struct {
	name string
	cols []string
}

// simpleIndexes lists t's indexes when every one is a plain, non-unique index on named columns
// with the columns' own collation; simple is false otherwise (integrity_check(T) must check it).
func simpleIndexes(ctx context.Context, c *sql.Conn, table string) ([]indexCols, bool, error) {
	rows, err := c.QueryContext(ctx, `SELECT name, "unique", partial FROM pragma_index_list(?)`, table)
	if err != nil {
		return nil, false, err
	}
	var out []indexCols
	simple := true
	for rows.Next() {
		var name string
		var unique, partial bool
		if err := rows.Scan(&name, &unique, &partial); err != nil {
			rows.Close()
			return nil, false, err
		}
		if unique || partial {
			simple = false
		}
		out = append(out, indexCols{name: name})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	for i := range out {
		cr, err := c.QueryContext(ctx, `SELECT x.cid, x.name, x.coll, x.desc,
			coalesce((SELECT 1 FROM pragma_table_xinfo(?) AS tc WHERE tc.cid = x.cid AND tc.hidden = 0), 0)
			FROM pragma_index_xinfo(?) AS x WHERE x.key = 1 ORDER BY x.seqno`, table, out[i].name)
		if err != nil {
			return nil, false, err
		}
		for cr.Next() {
			var cid int
			var name, coll sql.NullString
			var desc, plain bool
			if err := cr.Scan(&cid, &name, &coll, &desc, &plain); err != nil {
				cr.Close()
				return nil, false, err
			}
			if cid < 0 || !name.Valid || !plain || !strings.EqualFold(coll.String, "BINARY") {
				simple = false
			}
			out[i].cols = append(out[i].cols, name.String)
		}
		cr.Close()
		if err := cr.Err(); err != nil {
			return nil, false, err
		}
	}
	return out, simple, nil
}

// defaultWorkers is how many connections a parallel full check uses.
func defaultWorkers() int {
	n := runtime.GOMAXPROCS(0)
	if n > 4 {
		n = 4
	}
	return n
}
