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

// BenchmarkPragmaVariants measures whether a bigger page cache or memory-mapped reads would speed
// up the checks verify runs (whole-database quick_check, and integrity_check of the largest table,
// which is the longest part of a parallel full check) on the board named by KD_BENCH_DB. Each
// setting is given in the DSN (_pragma), so it applies to the very connection that runs the
// check, and is read back before the check: a setting SQLite ignored fails the benchmark instead
// of silently measuring the default. Measured on the 350 MB board (README verify section): a
// 256 MiB cache is slower; mmap trims quick_check here only when one process maps the file again
// and again, not in a fresh process (which verify and its helpers are), so SQLite's passes use
// neither. (The page check does map the file: its cost is reading pages, not SQLite's CPU, and it
// recovers the fault a file truncated by another process causes.)
func BenchmarkPragmaVariants(b *testing.B) {
	db := os.Getenv("KD_BENCH_DB")
	if db == "" {
		b.Skip("KD_BENCH_DB not set")
	}
	ctx := context.Background()
	largest := func() string {
		c, closeC, err := sqlitex.Conn(ctx, db, sqlitex.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer closeC()
		jobs, err := planJobs(ctx, c, 2, false)
		if err != nil || len(jobs) == 0 {
			b.Fatalf("plan jobs: %v (%d jobs)", err, len(jobs))
		}
		return jobs[0].Table
	}()
	for _, check := range []string{pragmaFor(false, ""), pragmaFor(true, largest)} {
		for _, v := range []struct {
			name, pragma, readBack string
			want                   int64
		}{
			{"default", "", "mmap_size", 0},
			{"mmap-1GiB", "mmap_size(1073741824)", "mmap_size", 1 << 30},
			{"cache-256MiB", "cache_size(-262144)", "cache_size", -262144},
		} {
			b.Run(check+"/"+v.name, func(b *testing.B) {
				var pragmas []string
				if v.pragma != "" {
					pragmas = []string{v.pragma}
				}
				for i := 0; i < b.N; i++ {
					c, closeC, err := sqlitex.Conn(ctx, db, sqlitex.Options{Pragmas: pragmas})
					if err != nil {
						b.Fatal(err)
					}
					var got int64
					if err := c.QueryRowContext(ctx, "PRAGMA "+v.readBack).Scan(&got); err != nil || got != v.want {
						closeC()
						b.Fatalf("PRAGMA %s reads back %d (%v), want %d: the setting is not applied", v.readBack, got, err, v.want)
					}
					a := runPass(ctx, c, check)
					closeC()
					if !a.ok() {
						b.Fatalf("not ok: %s", a.summary())
					}
				}
			})
		}
	}
}
