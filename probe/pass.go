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
)

// maxLines caps how many lines of one answer are kept.
const maxLines = 200

// answer is what one integrity pass said: the lines that were not "ok", or the error that ended it.
type answer struct {
	Lines     []string `json:"lines,omitempty"`
	Code      int      `json:"code,omitempty"` // extended SQLite result code of the error, 0 if none
	Err       string   `json:"err,omitempty"`
	Cancelled bool     `json:"cancelled,omitempty"` // the context ended: never a finding about the DB
}

func (a answer) ok() bool { return len(a.Lines) == 0 && a.Code == 0 && a.Err == "" && !a.Cancelled }

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
	return !a.ok() && !a.busy() && !a.interrupted() && !a.operational()
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

// fullParallel is integrity_check spread over the cores: one whole-database quick_check on the
// pinned connection c (tree structure, page accounting, freelist, index entry counts) next to
// integrity_check(T) for every table on extra read-only connections (index contents). Together
// they check what one integrity_check checks; any non-ok answer is re-checked by the caller with a
// whole-database integrity_check, so verdicts and classes come from the whole-database check.
func fullParallel(ctx context.Context, c *sql.Conn, path string, conn sqlitex.Options, workers int) answer {
	tables, err := tablesBySize(ctx, c)
	if err != nil || len(tables) == 0 || workers < 2 {
		return runPass(ctx, c, pragmaFor(true, ""))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan string, len(tables))
	for _, t := range tables {
		jobs <- t
	}
	close(jobs)
	var mu sync.Mutex
	var parts []answer
	add := func(a answer) {
		mu.Lock()
		parts = append(parts, a)
		mu.Unlock()
		if a.Cancelled || a.busy() || a.operational() {
			cancel()
		}
	}
	var wg sync.WaitGroup
	for w := 0; w < workers-1; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc, closeHC, err := sqlitex.Conn(ctx, path, conn)
			if err != nil {
				add(errAnswer(ctx, err))
				return
			}
			defer closeHC()
			for t := range jobs {
				if ctx.Err() != nil {
					return
				}
				add(runPass(ctx, hc, pragmaFor(true, t)))
			}
		}()
	}
	whole := runPass(ctx, c, pragmaFor(false, ""))
	add(whole)
	// The pinned connection helps with the remaining tables once its quick_check is done.
	for t := range jobs {
		if ctx.Err() != nil {
			break
		}
		add(runPass(ctx, c, pragmaFor(true, t)))
	}
	wg.Wait()
	return merge(parts...)
}

// tablesBySize lists the tables (largest first, by page count when dbstat is available) that
// integrity_check(T) accepts.
func tablesBySize(ctx context.Context, c *sql.Conn) ([]string, error) {
	rows, err := c.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type='table'`)
	if err != nil {
		return nil, err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	names = append(names, "sqlite_schema")
	// Order by the size of the table's root b-tree range is unknown without reading pages; the
	// event log is by far the largest on kanban boards, so put names hermes grows first.
	weight := map[string]int{"task_events": 100, "tasks": 50, "task_runs": 40, "task_comments": 30, "task_attachments": 20}
	sort.SliceStable(names, func(i, j int) bool { return weight[names[i]] > weight[names[j]] })
	return names, nil
}

// defaultWorkers is how many connections a parallel full check uses.
func defaultWorkers() int {
	n := runtime.GOMAXPROCS(0)
	if n > 4 {
		n = 4
	}
	return n
}
