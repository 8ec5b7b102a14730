package kanban

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

func TestMain(m *testing.M) {
	reexec.Init()
	os.Exit(m.Run())
}

func TestWriterFleetCommitsWhatItsLedgersSay(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "kanban.db")
	ctx := context.Background()
	if err := Init(ctx, db); err != nil {
		t.Fatal(err)
	}
	f, err := StartWriters(ctx, db, 3, dir, WriterOptions{Seed: 1, AutoCheckpoint: 0, CheckpointEvery: 20, CheckpointMode: "mixed"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if err := f.Stop(); err != nil {
		t.Fatal(err)
	}
	ids, err := f.Committed()
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) < 10 {
		t.Fatalf("only %d tasks committed in 1.5s by 3 writers", len(ids))
	}
	conn, closeFn, err := sqlitex.Conn(ctx, db, sqlitex.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	rows, err := conn.QueryContext(ctx, "SELECT id FROM tasks")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for rows.Next() {
		var id string
		rows.Scan(&id)
		have[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for id := range ids {
		if !have[id] {
			t.Errorf("ledger has %s but the board does not", id)
		}
	}
	t.Logf("%d tasks committed and all present", len(ids))
}
