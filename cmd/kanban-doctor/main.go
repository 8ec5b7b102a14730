// Command kanban-doctor diagnoses and repairs the SQLite databases behind multi-process kanban boards.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kanban-doctor/kanban-doctor/internal/commands"
	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
)

func main() {
	reexec.Init() // a child of ourselves (confirmation probe, harness writer) runs and exits here
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := commands.Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
