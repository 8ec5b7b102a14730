// Command genstorm writes a corrupt-backup storm for the dedupe benchmark: by default about 7,900
// backups of ~256 KB (real kanban boards) in 40 bursts of identical databases plus 20 distinct, ~2.1 GB.
//
//	go run ./bench/genstorm [-bursts 40] [-per-burst 197] [-distinct 20] [-tasks 45] [-companions 0] DIR
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/kanban-doctor/kanban-doctor/internal/stormgen"
)

func main() {
	var o stormgen.Options
	flag.IntVar(&o.Bursts, "bursts", 40, "bursts of identical backups")
	flag.IntVar(&o.PerBurst, "per-burst", 197, "timestamped backups per burst")
	flag.IntVar(&o.Distinct, "distinct", 20, "distinct single backups")
	flag.IntVar(&o.Tasks, "tasks", 45, "tasks per board (~3.7 KB each)")
	flag.IntVar(&o.PageSize, "page-size", 4096, "page size of the boards (512: small files for huge storms)")
	flag.IntVar(&o.CompanionEvery, "companions", 0, "every Nth burst carries -wal/-shm companions (0: none)")
	flag.BoolVar(&o.ContentNamed, "content-named", true, "add one content-addressed copy per burst")
	seed := flag.Uint64("seed", 1, "seed")
	flag.Parse()
	o.Seed = *seed
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: genstorm [flags] DIR")
		os.Exit(4)
	}
	st, err := stormgen.Generate(context.Background(), flag.Arg(0), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "genstorm:", err)
		os.Exit(8)
	}
	json.NewEncoder(os.Stdout).Encode(st)
}
