package kanban

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

func TestGenerateIsDeterministicAndHealthy(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	ctx := context.Background()
	for _, p := range []string{a, b} {
		if err := Generate(ctx, p, GenOptions{Tasks: 300, Seed: 7}); err != nil {
			t.Fatal(err)
		}
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) {
		t.Fatalf("same options gave different bytes (%d vs %d)", len(da), len(db))
	}
	conn, closeFn, err := sqlitex.Conn(ctx, a, sqlitex.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	var res string
	if err := conn.QueryRowContext(ctx, "PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check = %q, %v", res, err)
	}
	for _, tbl := range Tables {
		var n int
		if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM "+tbl).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("table %s is empty", tbl)
		}
	}
	var overflow int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM dbstat WHERE pagetype='overflow'").Scan(&overflow); err != nil {
		t.Fatal(err)
	}
	if overflow == 0 {
		t.Error("no overflow pages")
	}
}
