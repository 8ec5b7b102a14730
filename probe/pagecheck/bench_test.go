package pagecheck

import (
	"context"
	"os"
	"testing"

	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// BenchmarkCheck runs the page check on the board named by KD_BENCH_DB (make one with
// go run ./bench/genboard -mb 350 /tmp/big.db), in verify's quick and full modes, with the file
// memory-mapped and with pread, so each choice the README states can be re-measured.
// bench/verify.sh compares the whole CLI with the C sqlite3 side by side.
func BenchmarkCheck(b *testing.B) {
	db := os.Getenv("KD_BENCH_DB")
	if db == "" {
		b.Skip("KD_BENCH_DB not set")
	}
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		o    Options
	}{
		{"quick-mmap", Options{ContentsButLargest: true, MmapMax: 0x7fff0000}},
		{"quick-pread", Options{ContentsButLargest: true}},
		{"full-mmap", Options{Full: true, MmapMax: 0x7fff0000}},
		{"full-pread", Options{Full: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				c, closeC, err := sqlitex.Conn(ctx, db, sqlitex.Options{})
				if err != nil {
					b.Fatal(err)
				}
				rep, err := Check(ctx, c, bc.o)
				closeC()
				if err != nil || len(rep.Problems) > 0 {
					b.Fatalf("%v %q", err, rep.Problems)
				}
			}
		})
	}
}
