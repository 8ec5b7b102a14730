package probe

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

const journalKiller = "probe-test-journal-killer" // rewrites every row in one transaction, then SIGKILLs itself

func init() {
	reexec.Register(journalKiller, func(args []string) int {
		db, err := sql.Open("sqlite", "file:"+args[0]+"?_pragma=journal_mode(DELETE)&_pragma=cache_size(1)")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 8
		}
		db.SetMaxOpenConns(1)
		for _, q := range []string{"BEGIN", "UPDATE tasks SET body = 'y' || body"} {
			if _, err := db.Exec(q); err != nil {
				fmt.Fprintln(os.Stderr, q, err)
				return 8
			}
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL) // inside the transaction, its pages spilled to the file
		return 0
	})
}

// TestHotJournalIsInconclusiveWithTheFix: a writer process killed inside a rollback-journal
// transaction leaves a hot journal that a read-only probe may not roll back (SQLITE_READONLY_ROLLBACK).
// That is no verdict with the fix named, not an operational "attempt to write a readonly database".
// The probe leaves the journal where it is: diagnosis never writes.
func TestHotJournalIsInconclusiveWithTheFix(t *testing.T) {
	db := filepath.Join(t.TempDir(), board.DBName)
	h, err := sqlitex.Open(db, sqlitex.Options{ReadWrite: true, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Exec(`CREATE TABLE tasks(id INTEGER PRIMARY KEY, body TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<3000) INSERT INTO tasks(body) SELECT printf('%0200d', x) FROM c`); err != nil {
		t.Fatal(err)
	}
	h.Close()
	cmd, err := reexec.Command(context.Background(), journalKiller, db)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := cmd.CombinedOutput()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("writer did not die by its signal: %v: %s", cmd.ProcessState, out)
	}
	before, err := os.ReadFile(db + "-journal")
	if err != nil || len(before) == 0 {
		t.Fatalf("no hot journal left: %v", err)
	}
	res, err := Check(context.Background(), board.New("default", db), Options{})
	if err != nil {
		t.Fatalf("Check: %v (want no error, an inconclusive verdict)", err)
	}
	if res.Verdict != Inconclusive || len(res.Findings) == 0 || res.Findings[0].Code != "hot-journal" ||
		!strings.Contains(res.Findings[0].Hint, "roll it back") {
		t.Fatalf("verdict %s, findings %+v: want inconclusive with a hot-journal finding and its fix", res.Verdict, res.Findings)
	}
	after, err := os.ReadFile(db + "-journal")
	if err != nil || string(after) != string(before) {
		t.Fatalf("the probe changed or removed the journal: %v", err)
	}
	t.Logf("%s: %s (fix: %s)", res.Verdict, res.Findings[0].Message, res.Findings[0].Hint)
}
