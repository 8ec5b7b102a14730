package pagecheck

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/internal/fixture"
	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
	"github.com/kanban-doctor/kanban-doctor/internal/testenv"
)

// sqliteSays runs SQLite's own pass on a fresh connection: ok, or what it said.
func sqliteSays(t *testing.T, path string, full bool) (ok bool, said string) {
	t.Helper()
	ctx := context.Background()
	c, closeC, err := sqlitex.Conn(ctx, path, sqlitex.Options{})
	if err != nil {
		return false, "open: " + err.Error()
	}
	defer closeC()
	q := "PRAGMA quick_check"
	if full {
		q = "PRAGMA integrity_check"
	}
	rows, err := c.QueryContext(ctx, q)
	if err != nil {
		return false, err.Error()
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return false, err.Error()
		}
		lines = append(lines, s)
	}
	if err := rows.Err(); err != nil {
		return false, err.Error()
	}
	return len(lines) == 1 && lines[0] == "ok", strings.Join(lines, "; ")
}

// pageSays runs the page check on a fresh connection. passed means it would let verify say ok
// without asking SQLite.
func pageSays(t *testing.T, path string, o Options) (passed bool, rep Report, err error) {
	t.Helper()
	ctx := context.Background()
	c, closeC, err := sqlitex.Conn(ctx, path, sqlitex.Options{})
	if err != nil {
		return false, rep, err
	}
	defer closeC()
	rep, err = Check(ctx, c, o)
	return err == nil && len(rep.Problems) == 0, rep, err
}

func genBoard(t *testing.T, dir string, o kanban.GenOptions) string {
	t.Helper()
	p := filepath.Join(dir, "kanban.db")
	if err := kanban.Generate(context.Background(), p, o); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestHealthyBoardsPass: generated boards (rollback and WAL, two page sizes) pass in every mode,
// and count the rows and entries SQLite counts.
func TestHealthyBoardsPass(t *testing.T) {
	for _, o := range []kanban.GenOptions{
		{Tasks: 300, Seed: 1},
		{Tasks: 300, Seed: 2, WAL: true},
		{Tasks: 200, Seed: 3, PageSize: 1024, AttachmentBytes: 20000},
	} {
		p := genBoard(t, t.TempDir(), o)
		var rows int64
		c, closeC, err := sqlitex.Conn(context.Background(), p, sqlitex.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(context.Background(), `SELECT (SELECT count(*) FROM tasks) + (SELECT count(*) FROM task_events) +
			(SELECT count(*) FROM task_runs) + (SELECT count(*) FROM task_comments) + (SELECT count(*) FROM task_links) +
			(SELECT count(*) FROM task_attachments) + (SELECT count(*) FROM kanban_notify_subs) + (SELECT count(*) FROM sqlite_sequence) +
			(SELECT count(*) FROM sqlite_schema)`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		closeC()
		for _, opt := range []Options{{}, {ContentsButLargest: true}, {Full: true}, {Full: true, MmapMax: 1 << 30}, {Workers: 1}} {
			passed, rep, err := pageSays(t, p, opt)
			if !passed {
				t.Fatalf("%+v on a healthy board (%+v): %v %q", opt, o, err, rep.Problems)
			}
			if rep.Rows != rows {
				t.Errorf("%+v: %d rows, SQLite counts %d", opt, rep.Rows, rows)
			}
		}
	}
}

// TestNeverOkWhereSQLiteIsNot is the page check's contract, tested the hard way: databases
// corrupted at random (bytes flipped in b-tree headers, cell pointers, records and anywhere;
// pages zeroed, duplicated or swapped; header fields changed). Whenever SQLite's own pass is
// not ok, the page check must not pass. It may be stricter (it then only costs a SQLite pass).
func TestNeverOkWhereSQLiteIsNot(t *testing.T) {
	n := 400
	if testing.Short() {
		n = 100
	}
	if v, err := strconv.Atoi(os.Getenv("KD_PAGECHECK_CASES")); err == nil && v > 0 {
		n = v // a longer run: KD_PAGECHECK_CASES=5000
	}
	seed := uint64(42)
	if v, err := strconv.ParseUint(os.Getenv("KD_PAGECHECK_SEED"), 10, 64); err == nil {
		seed = v
	}
	dir := t.TempDir()
	base := genBoard(t, dir, kanban.GenOptions{Tasks: 120, Seed: 7, AttachmentBytes: 6000})
	orig, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	const ps = 4096
	pages := len(orig) / ps
	rng := rand.New(rand.NewPCG(seed, 7))
	var sqliteBad, pageBad, stricter, agreeOk int
	for i := 0; i < n; i++ {
		b := append([]byte(nil), orig...)
		what := corruptAtRandom(rng, b, ps, pages)
		p := filepath.Join(dir, "case.db")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, full := range []bool{false, true} {
			sqlOK, said := sqliteSays(t, p, full)
			passed, rep, err := pageSays(t, p, Options{Full: full, MmapMax: 1 << 30})
			switch {
			case !sqlOK && passed:
				t.Errorf("case %d (%s), full=%v: SQLite says %q but the page check passed", i, what, full, said)
			case !sqlOK:
				sqliteBad++
				pageBad++
			case !passed:
				stricter++
				t.Logf("case %d (%s), full=%v: stricter than SQLite: %v %.200q", i, what, full, err, rep.Problems)
				if errors.Is(err, ErrFileChanged) {
					t.Errorf("case %d: ErrFileChanged on a file nobody changed", i)
				}
			default:
				agreeOk++
			}
		}
	}
	t.Logf("%d cases x 2 modes: SQLite not ok %d (page check not ok in all), both ok %d, page check stricter %d",
		n, sqliteBad, agreeOk, stricter)
	if sqliteBad < n/4 {
		t.Errorf("only %d of %d checks saw damage: the corruptions are too mild to test anything", sqliteBad, 2*n)
	}
}

// corruptAtRandom damages b (a database of pages pages of ps bytes) in one of several ways and
// says how.
func corruptAtRandom(rng *rand.Rand, b []byte, ps, pages int) string {
	pg := 1 + rng.IntN(pages)
	off := (pg - 1) * ps
	hdr := 0
	if pg == 1 {
		hdr = 100
	}
	switch k := rng.IntN(10); k {
	case 0: // a byte of a b-tree page header
		i := off + hdr + rng.IntN(12)
		b[i] ^= byte(1 + rng.IntN(255))
		return "page header byte"
	case 1: // a cell pointer
		n := int(binary.BigEndian.Uint16(b[off+hdr+3:]))
		if n == 0 {
			n = 1
		}
		i := off + hdr + 8 + 4*int(b[off+hdr]&8^8)/8 + 2*rng.IntN(n)
		b[i+rng.IntN(2)] ^= byte(1 + rng.IntN(255))
		return "cell pointer"
	case 2: // bytes near the end of the page (cell content, record headers)
		for j := 0; j < 1+rng.IntN(4); j++ {
			b[off+ps-1-rng.IntN(ps/2)] ^= byte(1 + rng.IntN(255))
		}
		return "cell content bytes"
	case 3: // anywhere in the page
		b[off+rng.IntN(ps)] ^= byte(1 << rng.IntN(8))
		return "one bit"
	case 4: // zero the page
		clear(b[off+hdr : off+ps])
		return "zeroed page"
	case 5: // copy another page over this one
		src := (rng.IntN(pages)) * ps
		copy(b[off+hdr:off+ps], b[src+hdr:src+ps])
		return "page copied over"
	case 6: // a child or overflow pointer: a random 4-byte page number
		i := off + hdr + rng.IntN(ps-hdr-4)
		binary.BigEndian.PutUint32(b[i:], uint32(1+rng.IntN(pages+3)))
		return "page number"
	case 7: // the freelist header fields
		binary.BigEndian.PutUint32(b[32+4*rng.IntN(2):], uint32(rng.IntN(pages+2)))
		return "freelist header"
	case 8: // a serial type in a record header: one byte after a cell's start
		n := int(binary.BigEndian.Uint16(b[off+hdr+3:]))
		if n == 0 || b[off+hdr] != 0x0d {
			b[off+rng.IntN(ps)] ^= 0x01
			return "one bit (no table leaf)"
		}
		leaf := off + hdr + 8 + 2*rng.IntN(n)
		pc := int(binary.BigEndian.Uint16(b[leaf:]))
		if pc+8 < ps {
			b[off+pc+2+rng.IntN(6)] = byte(rng.IntN(14))
		}
		return "record header"
	default: // a different page count in the header
		binary.BigEndian.PutUint32(b[28:], uint32(pages+rng.IntN(5)-2))
		return "header page count"
	}
}

// TestRowRules: the row-level rules of quick_check (NOT NULL, a number in a TEXT column, numeric
// text in a numeric column, a NaN that reads as NULL) are each caught, by rewriting the declared
// schema over existing rows or patching a value on disk.
func TestRowRules(t *testing.T) {
	sqlite3 := testenv.Tool(t, "sqlite3")
	for _, tc := range []struct {
		name, setup, from, to string
	}{
		{"not null", "CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT); INSERT INTO t(b) VALUES ('x'), (NULL);",
			"b TEXT)", "b TEXT NOT NULL)"},
		{"number in text column", "CREATE TABLE t(a INTEGER PRIMARY KEY, b BLOB); INSERT INTO t(b) VALUES ('x'), (42);",
			"b BLOB)", "b TEXT)"},
		{"numeric text in real column", "CREATE TABLE t(a INTEGER PRIMARY KEY, b BLOB); INSERT INTO t(b) VALUES (' 1.5e3 ');",
			"b BLOB)", "b REAL)"},
		{"text in integer column is fine", "CREATE TABLE t(a INTEGER PRIMARY KEY, b BLOB); INSERT INTO t(b) VALUES ('2024-01-02');",
			"b BLOB)", "b INTEGER)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "r.db")
			sql := tc.setup + "PRAGMA writable_schema=ON; UPDATE sqlite_schema SET sql = replace(sql, '" + tc.from + "', '" + tc.to +
				"') WHERE name = 't'; PRAGMA writable_schema=OFF;"
			if out, err := exec.Command(sqlite3, p, sql).CombinedOutput(); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			sqlOK, said := sqliteSays(t, p, false)
			passed, rep, err := pageSays(t, p, Options{})
			if sqlOK != passed {
				t.Errorf("SQLite ok=%v (%q), page check passed=%v (%v %q)", sqlOK, said, passed, err, rep.Problems)
			}
		})
	}
	t.Run("NaN in a NOT NULL real column", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "n.db")
		if out, err := exec.Command(sqlite3, p, "CREATE TABLE t(a INTEGER PRIMARY KEY, b REAL NOT NULL); INSERT INTO t(b) VALUES (1.25);").CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], math.Float64bits(1.25))
		i := strings.LastIndex(string(b), string(v[:]))
		if i < 0 {
			t.Fatal("value not found in the file")
		}
		binary.BigEndian.PutUint64(b[i:], 0x7ff8000000000001)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		sqlOK, said := sqliteSays(t, p, false)
		passed, rep, _ := pageSays(t, p, Options{})
		if sqlOK || passed {
			t.Errorf("SQLite ok=%v (%q), page check passed=%v (%q): both should see a NULL", sqlOK, said, passed, rep.Problems)
		}
	})
}

// TestUnsupportedSchemas: what the page check does not judge, it says so (SQLite then judges).
func TestUnsupportedSchemas(t *testing.T) {
	sqlite3 := testenv.Tool(t, "sqlite3")
	for _, ddl := range []string{
		"CREATE TABLE t(a TEXT PRIMARY KEY, b) WITHOUT ROWID;",
		"CREATE TABLE t(a INTEGER, b TEXT, CHECK (a > 0));",
		"CREATE TABLE t(a, b); CREATE INDEX i ON t(a) WHERE b > 0;",
		"CREATE TABLE t(a, b); CREATE INDEX i ON t(a + b);",
		"CREATE TABLE t(a TEXT COLLATE NOCASE); CREATE INDEX i ON t(a);",
		"CREATE TABLE t(a INTEGER) STRICT;",
		"CREATE TABLE t(a, b AS (a + 1));",
	} {
		p := filepath.Join(t.TempDir(), "u.db")
		if out, err := exec.Command(sqlite3, p, ddl+"INSERT INTO t(a) VALUES (1);").CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", ddl, err, out)
		}
		if _, _, err := pageSays(t, p, Options{Full: true}); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: err = %v, want ErrUnsupported", ddl, err)
		}
	}
}

// TestFileShrinksUnderTheCheck: another process truncates the database between the walk and the
// scan. With the file memory-mapped, reading a page past the new end faults: the check must end
// with ErrFileChanged, not a crash, and the connection must still close. Without mmap the short
// reads must never pass either.
func TestFileShrinksUnderTheCheck(t *testing.T) {
	truncate := testenv.Tool(t, "truncate")
	base := genBoard(t, t.TempDir(), kanban.GenOptions{Tasks: 1500, Seed: 9})
	orig, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { TestHookBeforeScan = nil }()
	for _, mmap := range []int64{1 << 30, 0} {
		p := filepath.Join(t.TempDir(), "shrinking.db")
		if err := os.WriteFile(p, orig, 0o644); err != nil {
			t.Fatal(err)
		}
		TestHookBeforeScan = func() {
			if out, err := exec.Command(truncate, "-s", strconv.Itoa(len(orig)*2/5), p).CombinedOutput(); err != nil {
				t.Errorf("truncate: %v: %s", err, out)
			}
		}
		ctx := context.Background()
		c, closeC, err := sqlitex.Conn(ctx, p, sqlitex.Options{})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Check(ctx, c, Options{Full: true, MmapMax: mmap})
		switch {
		case mmap > 0 && !errors.Is(err, ErrFileChanged):
			t.Errorf("mmap: err = %v (%d problems), want ErrFileChanged", err, len(rep.Problems))
		case mmap == 0 && err == nil && len(rep.Problems) == 0:
			t.Errorf("pread: a file truncated to 40%% passed")
		}
		t.Logf("mmap=%d: err=%v problems=%d", mmap, err, len(rep.Problems))
		done := make(chan error, 1)
		go func() { done <- closeC() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("closing the connection after the check hangs")
		}
	}
}

// TestFixtures: on every testdata/corrupt fixture the page check passes exactly where SQLite's
// pass of the same mode says ok (quick mode here also compares index contents, as verify's quick
// mode does, so it is held to integrity_check where that differs).
func TestFixtures(t *testing.T) {
	all, err := fixture.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range all {
		db, err := f.CopyDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range []Options{{ContentsButLargest: true, MmapMax: 1 << 30}, {Full: true}} {
			quickOK, _ := sqliteSays(t, db, false)
			fullOK, said := sqliteSays(t, db, true)
			passed, rep, err := pageSays(t, db, o)
			if passed && (!quickOK || !fullOK) {
				t.Errorf("%s %+v: passed, SQLite says %q", f.Name, o, said)
			}
			if !passed && fullOK {
				t.Errorf("%s %+v: %v %q where SQLite says ok", f.Name, o, err, rep.Problems)
			}
		}
	}
}
