// Command genboard writes a realistic kanban board of a given size for benchmarks:
//
//	go run ./bench/genboard -mb 350 -wal /tmp/bench/kanban.db
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
)

func main() {
	mb := flag.Int("mb", 350, "approximate size in MiB")
	tasks := flag.Int("tasks", 0, "number of tasks (overrides -mb)")
	seed := flag.Uint64("seed", 1, "seed")
	wal := flag.Bool("wal", false, "leave the board in WAL mode")
	events := flag.Int("events", 40, "average events per task (real boards are event-heavy)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: genboard [-mb N | -tasks N] [-wal] PATH")
		os.Exit(4)
	}
	n := *tasks
	if n == 0 {
		n = *mb * 1024 * 1024 / (kanban.BytesPerTask + (*events-4)*kanban.BytesPerEvent)
	}
	start := time.Now()
	if err := kanban.Generate(context.Background(), flag.Arg(0), kanban.GenOptions{Tasks: n, Seed: *seed, WAL: *wal, Events: *events}); err != nil {
		fmt.Fprintln(os.Stderr, "genboard:", err)
		os.Exit(8)
	}
	fi, _ := os.Stat(flag.Arg(0))
	fmt.Fprintf(os.Stderr, "genboard: %s: %d tasks, %d bytes in %s\n", flag.Arg(0), n, fi.Size(), time.Since(start).Round(time.Millisecond))
}
