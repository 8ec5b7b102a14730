package probe

import (
	"context"
	"maps"
	"testing"

	"github.com/kanban-doctor/kanban-doctor/internal/fixture"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// TestParallelFullCheckAgreesWithIntegrityCheck: on every fixture, the parallel full pass (one
// whole-database quick_check beside integrity_check(T) per table) is ok exactly when one
// whole-database integrity_check is ok, and the class derived from its answer is the same.
func TestParallelFullCheckAgreesWithIntegrityCheck(t *testing.T) {
	all, err := fixture.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range all {
		t.Run(f.Name, func(t *testing.T) {
			db, err := f.CopyDir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			facts := readFacts(db) // before the connection exists
			ctx := context.Background()
			c, closeC, err := sqlitex.Conn(ctx, db, sqlitex.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer closeC()
			whole := runPass(ctx, c, pragmaFor(true, ""))
			for _, split := range []bool{true, false} {
				splitIndexCheck = &split
				par := fullParallel(ctx, c, db, sqlitex.Options{}, 3)
				splitIndexCheck = nil
				if whole.ok() != par.ok() || whole.suspicious() != par.suspicious() {
					t.Fatalf("split=%v: whole %q (ok %v), parallel %q (ok %v)", split, whole.summary(), whole.ok(), par.summary(), par.ok())
				}
				if whole.ok() {
					continue
				}
				cw, _ := classify(ctx, c, facts, whole, false)
				cp, _ := classify(ctx, c, facts, par, false)
				if cw != cp {
					t.Errorf("split=%v: class from messages: whole %s, parallel %s", split, cw, cp)
				}
			}
		})
	}
}

// execSteps runs each statement on its own read-write connection with writable_schema on.
func execSteps(t *testing.T, db string, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	for _, s := range stmts {
		c, closeC, err := sqlitex.Conn(ctx, db, sqlitex.Options{ReadWrite: true, Pragmas: []string{"writable_schema(1)"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.ExecContext(ctx, s); err != nil {
			closeC()
			t.Fatalf("%s: %v", s, err)
		}
		closeC()
	}
}

// TestSplitCrossCheckFindsIndexDesync: an index of task_events (the table the parallel check
// splits in rowid ranges) misses entries while the counts stay equal, so quick_check cannot see
// it: the split cross-check reports exactly integrity_check's lines, and the class is index.
func TestSplitCrossCheckFindsIndexDesync(t *testing.T) {
	db := fixture.CopyTo(t, "healthy-delete")
	execSteps(t, db,
		"CREATE TABLE saved AS SELECT type, name, tbl_name, rootpage, sql FROM sqlite_schema WHERE name = 'idx_events_task'",
		"DELETE FROM sqlite_schema WHERE name = 'idx_events_task'",
		"UPDATE task_events SET created_at = created_at + 1 WHERE id % 97 = 0",
		"INSERT INTO sqlite_schema SELECT * FROM saved",
		"DROP TABLE saved")
	facts := readFacts(db)
	ctx := context.Background()
	c, closeC, err := sqlitex.Conn(ctx, db, sqlitex.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeC()
	if q := runPass(ctx, c, pragmaFor(false, "")); !q.ok() {
		t.Fatalf("quick_check already sees it (%s): the test would not exercise the cross-check", q.summary())
	}
	whole := runPass(ctx, c, pragmaFor(true, ""))
	if whole.ok() {
		t.Fatal("integrity_check does not see the desync")
	}
	for _, split := range []bool{true, false} {
		splitIndexCheck = &split
		par := fullParallel(ctx, c, db, sqlitex.Options{}, 3)
		splitIndexCheck = nil
		// integrity_check numbers rows by position, the split check by rowid: compare how many
		// lines name which index.
		if got, want := indexLineCounts(par.Lines), indexLineCounts(whole.Lines); !maps.Equal(got, want) {
			t.Errorf("split=%v: parallel lines %q, integrity_check %q", split, par.Lines, whole.Lines)
		}
		if cls, _ := classify(ctx, c, facts, par, true); cls != ClassIndex {
			t.Errorf("split=%v: class %s, want index", split, cls)
		}
	}
}

func indexLineCounts(lines []string) map[string]int {
	m := map[string]int{}
	for _, l := range lines {
		if sm := reIndexLine.FindStringSubmatch(l); sm != nil {
			m[sm[2]]++
		} else {
			m["other: "+l]++
		}
	}
	return m
}

// TestClassFromMessages pins how integrity_check lines (SQLite 3.54.1 wording) sort into classes
// when no trial fix runs.
func TestClassFromMessages(t *testing.T) {
	roots := schemaRoots{2: {"table", "tasks"}, 7: {"index", "idx_tasks_status"}}
	for _, tc := range []struct {
		lines []string
		code  int
		want  Class
	}{
		{[]string{"row 5 missing from index idx_tasks_status", "wrong # of entries in index idx_tasks_status"}, 0, ClassIndex},
		{[]string{"rowid 9 missing from index idx_events_task"}, 0, ClassIndex},
		{nil, 779, ClassIndex}, // SQLITE_CORRUPT_INDEX
		{[]string{"Freelist: size is 12 but should be 9"}, 0, ClassFreelist},
		{[]string{"freelist leaf count too big on page 40", "Page 41: never used"}, 0, ClassFreelist},
		{[]string{"Tree 2 page 205: btreeInitPage() returns error code 11", "wrong # of entries in index idx_tasks_status"}, 0, ClassBtree},
		{[]string{"Tree 7 page 90: btreeInitPage() returns error code 11"}, 0, ClassBtree}, // index tree: open, trial decides
		{[]string{"Rowid 17 out of order"}, 0, ClassBtree},
		{nil, 11, ClassBtree}, // SQLITE_CORRUPT with no lines
	} {
		a := answer{Lines: tc.lines, Code: tc.code}
		if tc.code != 0 {
			a.Err = "error"
		}
		got := sortLines(a, roots).class()
		if got != tc.want {
			t.Errorf("%q code %d: %s, want %s", tc.lines, tc.code, got, tc.want)
		}
	}
}
