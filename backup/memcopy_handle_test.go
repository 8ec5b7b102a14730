package backup

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// TestDriverHandleIsReachable pins the one thing the memory path takes from the driver's
// internals: the sqlite3* handle of a connection. If a modernc upgrade renames or retypes it,
// backups stay correct (they fall back to the copying path) but lose their speed; this test makes
// that visible instead of silent.
func TestDriverHandleIsReachable(t *testing.T) {
	ctx := context.Background()
	conn, closeFn, err := sqlitex.Conn(ctx, filepath.Join(t.TempDir(), "x.db"), sqlitex.Options{ReadWrite: true, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	if err := conn.Raw(func(dc any) error {
		h, err := dbHandle(dc)
		if err == nil && h == 0 {
			t.Error("dbHandle returned a zero handle")
		}
		return err
	}); err != nil {
		t.Fatalf("the memory path cannot reach the driver's handle: %v", err)
	}
}
