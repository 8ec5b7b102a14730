package probe

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	lib "modernc.org/sqlite/lib"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// fileFacts is what the confirming process learned about the DB file before it opened a
// connection (stat and the 100-byte header; never read while a connection is open).
type fileFacts struct {
	Size      int64         `json:"size"`
	Header    *board.Header `json:"header,omitempty"`
	HeaderErr string        `json:"header_err,omitempty"`
	NotDB     bool          `json:"not_db,omitempty"`
}

// headerPages is the in-header page count when SQLite itself would trust it (nonzero, and the
// change counter equals the version-valid-for number), else 0.
func (f fileFacts) headerPages() int64 {
	h := f.Header
	if h == nil || h.PageCount == 0 || h.ChangeCounter != h.VersionValid {
		return 0
	}
	return int64(h.PageCount)
}

// truncated reports a file shorter than its own header says it is.
func (f fileFacts) truncated() bool {
	if f.Header == nil {
		return false
	}
	n := f.headerPages()
	return n > 0 && f.Size < n*int64(f.Header.PageSize)
}

var (
	reIndexLine = regexp.MustCompile(`^(row \d+ missing from index|rowid \d+ missing from index|wrong # of entries in index|non-unique entry in index) (\S+)`)
	reTreeLine  = regexp.MustCompile(`^Tree (\d+) page (\d+)`)
	reFreeLine  = regexp.MustCompile(`^(Freelist: |freelist leaf count too big)`)
	reNeverUsed = regexp.MustCompile(`^Page (\d+):? (is )?never used`)
)

// schemaRoots maps b-tree root pages to (type, name); it is empty when the schema cannot be read.
type schemaRoots map[int64][2]string

func readRoots(ctx context.Context, c *sql.Conn) schemaRoots {
	m := schemaRoots{1: {"table", "sqlite_schema"}}
	rows, err := c.QueryContext(ctx, `SELECT type, name, rootpage FROM sqlite_schema WHERE rootpage > 0`)
	if err != nil {
		return m
	}
	defer rows.Close()
	for rows.Next() {
		var typ, name string
		var root int64
		if rows.Scan(&typ, &name, &root) == nil {
			m[root] = [2]string{typ, name}
		}
	}
	return m
}

// evidence sorts the lines of a confirmed bad answer.
type evidence struct {
	index, freelist, indexTree, tableTree, other int
	names                                        map[string]bool // indexes named in index lines
}

// class is what the messages alone say: index-only lines -> index, freelist-only lines -> freelist,
// anything touching a table b-tree, an index b-tree's pages or an unknown message -> btree.
func (e evidence) class() Class {
	switch {
	case e.tableTree > 0 || e.other > 0:
		return ClassBtree
	case e.index > 0 && e.freelist == 0 && e.indexTree == 0:
		return ClassIndex
	case e.freelist > 0 && e.index == 0 && e.indexTree == 0:
		return ClassFreelist
	}
	return ClassBtree
}

func sortLines(a answer, roots schemaRoots) evidence {
	e := evidence{names: map[string]bool{}}
	for _, l := range a.Lines {
		switch {
		case reIndexLine.MatchString(l):
			e.index++
			e.names[reIndexLine.FindStringSubmatch(l)[2]] = true
		case reFreeLine.MatchString(l), reNeverUsed.MatchString(l):
			e.freelist++
		case reTreeLine.MatchString(l):
			root, _ := strconv.ParseInt(reTreeLine.FindStringSubmatch(l)[1], 10, 64)
			if r, ok := roots[root]; ok && r[0] == "index" {
				e.indexTree++
				e.names[r[1]] = true
			} else {
				e.tableTree++
			}
		default:
			e.other++
		}
	}
	if a.Code == lib.SQLITE_CORRUPT_INDEX {
		e.index++
	} else if a.Err != "" {
		e.other++
	}
	return e
}

// trialLimit is the largest database the class is confirmed for by a trial fix on a private copy.
const trialLimit = 2 << 30

// classify decides the class of a confirmed bad answer from the error code, the file facts and
// the messages; where the messages leave it open (or to prove an index or freelist class), it
// tries the fix on a private copy made with the backup API: REINDEX makes it pass -> index,
// VACUUM makes it pass without losing rows -> freelist, neither -> btree. c is a clean
// connection to the live DB, which is never written.
func classify(ctx context.Context, c *sql.Conn, facts fileFacts, a answer, trial bool) (Class, string) {
	switch {
	case facts.NotDB || a.kind() == sqlitex.KindNotADatabase:
		return ClassNotADatabase, "the file header is not a SQLite database header"
	case facts.truncated():
		return ClassTruncated, fmt.Sprintf("file is %d bytes but its header says %d pages of %d bytes",
			facts.Size, facts.headerPages(), facts.Header.PageSize)
	case a.Code == lib.SQLITE_IOERR_SHORT_READ:
		return ClassTruncated, "a page lies beyond the end of the file (short read)"
	}
	e := sortLines(a, readRoots(ctx, c))
	if e.tableTree > 0 || e.other > 0 {
		return ClassBtree, "table b-tree damage"
	}
	byMessages := e.class()
	if !trial || facts.Size > trialLimit {
		return byMessages, "from the messages"
	}
	cls, why, err := trialFix(ctx, c)
	if err != nil {
		// A read-only root or no writable temp directory: the class stands on the codes and
		// messages alone, and the finding says so (the copy goes where $TMPDIR points).
		return byMessages, "class from the error messages alone; no trial fix on a private copy: " + err.Error() +
			" (set TMPDIR to a writable directory for one)"
	}
	return cls, why
}

// trialFix copies the live DB with the backup API into a private temp directory (under $TMPDIR,
// else /tmp) and tries REINDEX, then VACUUM, on copies.
func trialFix(ctx context.Context, src *sql.Conn) (Class, string, error) {
	dir, err := os.MkdirTemp("", "kanban-doctor-trial-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(dir)
	base := filepath.Join(dir, "copy.db")
	if err := backupTo(ctx, src, base); err != nil {
		return "", "", err
	}
	before, err := rowCounts(ctx, base)
	if err != nil {
		before = nil // damaged tables: VACUUM cannot prove it lost nothing
	}
	reindexed := filepath.Join(dir, "reindex.db")
	if err := copyFile(base, reindexed); err != nil {
		return "", "", err
	}
	if ok, _ := fixAndCheck(ctx, reindexed, "REINDEX"); ok {
		return ClassIndex, "REINDEX on a private copy makes integrity_check pass", nil
	}
	vacuumed := filepath.Join(dir, "vacuum.db")
	if err := copyFile(base, vacuumed); err != nil {
		return "", "", err
	}
	if ok, _ := fixAndCheck(ctx, vacuumed, "VACUUM"); ok && before != nil {
		after, err := rowCounts(ctx, vacuumed)
		if err == nil && equalCounts(before, after) {
			return ClassFreelist, "VACUUM on a private copy makes integrity_check pass with every row kept", nil
		}
	}
	return ClassBtree, "neither REINDEX nor VACUUM on a private copy repairs it", nil
}

func fixAndCheck(ctx context.Context, path, stmt string) (bool, error) {
	c, closeC, err := sqlitex.Conn(ctx, path, sqlitex.Options{ReadWrite: true, BusyTimeout: -1})
	if err != nil {
		return false, err
	}
	defer closeC()
	if _, err := c.ExecContext(ctx, stmt); err != nil {
		return false, err
	}
	a := runPass(ctx, c, pragmaFor(true, ""))
	return a.ok(), nil
}

func rowCounts(ctx context.Context, path string) (map[string]int64, error) {
	c, closeC, err := sqlitex.Conn(ctx, path, sqlitex.Options{BusyTimeout: -1})
	if err != nil {
		return nil, err
	}
	defer closeC()
	rows, err := c.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type='table'`)
	if err != nil {
		return nil, err
	}
	var names []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		names = append(names, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, n := range names {
		var cnt int64
		// NOT INDEXED: count the table b-tree itself, not an index that may be the damaged part.
		if err := c.QueryRowContext(ctx, "SELECT count(*) FROM "+quoteIdent(n)+" NOT INDEXED").Scan(&cnt); err != nil {
			return nil, err
		}
		out[n] = cnt
	}
	return out, nil
}

func equalCounts(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// copyFile copies a private, closed database file (never a live one).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// hint is the runnable command that fixes a class.
func hint(cls Class, db string) string {
	q := shellQuote(db)
	switch cls {
	case ClassIndex:
		return "sqlite3 " + q + " 'REINDEX;'"
	case ClassFreelist:
		return "sqlite3 " + q + " 'VACUUM;'"
	case ClassBtree, ClassTruncated, ClassNotADatabase:
		return "kanban-doctor repair " + q // writes DB.repaired: one per board, so two hints can both be pasted
	}
	return ""
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// lineCode is a finding code for one line of integrity_check output.
func lineCode(l string) string {
	switch {
	case reIndexLine.MatchString(l):
		return "index-entries"
	case reFreeLine.MatchString(l):
		return "freelist"
	case reNeverUsed.MatchString(l):
		return "page-never-used"
	case reTreeLine.MatchString(l):
		return "btree-page"
	}
	return "integrity"
}
