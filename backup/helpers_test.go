package backup

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
	"github.com/kanban-doctor/kanban-doctor/internal/testenv"
)

// snapshotChild is a child process that takes one Snapshot of args[0] into args[1] (the kill test),
// through memory, or straight into the temp file when args[2] is "file".
const snapshotChild = "backup-test-snapshot"

func init() {
	reexec.Register(snapshotChild, func(args []string) int {
		o := Options{Out: args[1]}
		if len(args) > 2 && args[2] == "file" {
			o.MemoryLimit = -1
		}
		if _, err := Snapshot(context.Background(), args[0], o); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 8
		}
		return 0
	})
}

func TestMain(m *testing.M) {
	reexec.Init()
	os.Exit(m.Run())
}

// genBoard generates a realistic board of n tasks at dir/kanban.db.
func genBoard(t testing.TB, dir string, n int, wal bool) string {
	t.Helper()
	db := filepath.Join(dir, "kanban.db")
	if err := kanban.Generate(context.Background(), db, kanban.GenOptions{Tasks: n, Seed: 7, WAL: wal}); err != nil {
		t.Fatal(err)
	}
	return db
}

// cliCheck runs integrity_check under the C sqlite3 CLI (read-only), the oracle for our copies.
func cliCheck(t testing.TB, path string) string {
	t.Helper()
	out, err := exec.Command(testenv.Tool(t, "sqlite3"), "-readonly", path, "PRAGMA integrity_check").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("sqlite3 failed: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// sha256File hashes a file no connection of this process holds.
func sha256File(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// taskIDs reads every task id of a database through a read-only connection.
func taskIDs(t testing.TB, path string) map[string]bool {
	t.Helper()
	ctx := context.Background()
	conn, closeFn, err := sqlitex.Conn(ctx, path, sqlitex.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	rows, err := conn.QueryContext(ctx, "SELECT id FROM tasks")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	ids := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// execSQL runs statements on a read-write connection (test setup: damage a board).
func execSQL(t testing.TB, path, stmt string) {
	t.Helper()
	db, err := sqlitex.Open(path, sqlitex.Options{ReadWrite: true, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(stmt); err != nil {
		t.Fatal(err)
	}
}

// leafPage finds a leaf page of table name (dbstat), for damaging it.
func leafPage(t testing.TB, path, name string) int64 {
	t.Helper()
	db, err := sql.Open("sqlite", sqlitex.DSN(path, sqlitex.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var p int64
	if err := db.QueryRow("SELECT pageno FROM dbstat WHERE name=? AND pagetype='leaf' ORDER BY pageno LIMIT 1 OFFSET 3", name).Scan(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

// zeroPageType zeroes the page-type byte of page p (a damaged table b-tree page).
func zeroPageType(t testing.TB, path string, p int64, pageSize int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{0}, (p-1)*pageSize); err != nil {
		t.Fatal(err)
	}
}

// dirNames lists a directory's entries.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, e := range es {
		n = append(n, e.Name())
	}
	return n
}

// pinnedClock returns a clock that advances one second per call from a fixed time.
func pinnedClock() func() time.Time {
	t := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	return func() time.Time { t = t.Add(time.Second); return t }
}
