package probe

import (
	"context"
	"os"
	"testing"

	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// BenchmarkFullCheck compares ways to run integrity_check on the board named by KD_BENCH_DB (make
// one with: go run ./bench/genboard -mb 350 /tmp/big.db): one whole-database integrity_check,
// quick_check beside integrity_check(T) per table, and quick_check beside the index cross-check
// split in rowid ranges. bench/verify.sh compares the CLI with the C sqlite3 side by side.
func BenchmarkFullCheck(b *testing.B) {
	db := os.Getenv("KD_BENCH_DB")
	if db == "" {
		b.Skip("KD_BENCH_DB not set")
	}
	ctx := context.Background()
	for _, bc := range []struct {
		name    string
		workers int
		split   bool
	}{{"serial", 1, false}, {"per-table", defaultWorkers(), false}, {"split", defaultWorkers(), true}} {
		b.Run(bc.name, func(b *testing.B) {
			split := bc.split
			splitIndexCheck = &split
			defer func() { splitIndexCheck = nil }()
			for i := 0; i < b.N; i++ {
				c, closeC, err := sqlitex.Conn(ctx, db, sqlitex.Options{})
				if err != nil {
					b.Fatal(err)
				}
				var a answer
				if bc.workers == 1 {
					a = runPass(ctx, c, pragmaFor(true, ""))
				} else {
					a = fullParallel(ctx, c, db, sqlitex.Options{}, bc.workers)
				}
				closeC()
				if !a.ok() {
					b.Fatalf("not ok: %s", a.summary())
				}
			}
		})
	}
}
