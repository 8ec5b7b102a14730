package backup

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
	"github.com/kanban-doctor/kanban-doctor/internal/testenv"
)

// lockBoard has a separate sqlite3 process hold an exclusive lock on the (rollback-mode) board at
// db for hold, and returns once the lock is held.
func lockBoard(t *testing.T, db string, hold time.Duration) {
	t.Helper()
	flag := db + ".locked"
	cmd := exec.Command(testenv.Tool(t, "sqlite3"), db, "BEGIN EXCLUSIVE", "DELETE FROM task_events WHERE id < 10",
		".shell touch '"+flag+"'; sleep "+hold.String()[:len(hold.String())-1], "COMMIT")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(flag); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the sqlite3 process did not take the lock")
}

// TestCancelEndsAWaitForALockedBoard: Ctrl-C (a cancelled context) ends a backup's or a restore's
// wait for a board another process holds locked at once, not when the busy timeout runs out; and
// without cancellation the busy timeout still bounds the wait and reads as busy.
func TestCancelEndsAWaitForALockedBoard(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "kanban.db")
	if err := kanban.Generate(context.Background(), db, kanban.GenOptions{Tasks: 200, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	from := filepath.Join(t.TempDir(), "from.db")
	if err := kanban.Generate(context.Background(), from, kanban.GenOptions{Tasks: 100, Seed: 4}); err != nil {
		t.Fatal(err)
	}
	lockBoard(t, db, 15*time.Second)

	for _, tc := range []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"backup", func(ctx context.Context) error {
			_, err := Snapshot(ctx, db, Options{BusyTimeout: 20000, Out: t.TempDir()})
			return err
		}},
		{"restore", func(ctx context.Context) error {
			_, err := Restore(ctx, from, db, Options{BusyTimeout: 20000})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(300*time.Millisecond, cancel)
			start := time.Now()
			err := tc.run(ctx)
			took := time.Since(start)
			if err == nil {
				t.Fatal("succeeded on a locked board")
			}
			if took > 3*time.Second {
				t.Fatalf("returned %v after the cancel (busy timeout 20s): %v", took, err)
			}
			t.Logf("cancelled after 300ms, returned after %v: %v", took.Round(time.Millisecond), err)
		})
	}

	t.Run("budget", func(t *testing.T) {
		start := time.Now()
		_, err := Snapshot(context.Background(), db, Options{BusyTimeout: 500, Out: t.TempDir()})
		took := time.Since(start)
		if err == nil || sqlitex.Classify(err) != sqlitex.KindBusy {
			t.Fatalf("want a busy error, got %v", err)
		}
		if took < 400*time.Millisecond || took > 4*time.Second {
			t.Fatalf("busy timeout 500ms, waited %v", took)
		}
	})
}
