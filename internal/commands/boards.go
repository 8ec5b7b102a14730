package commands

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/exitcode"
	"github.com/kanban-doctor/kanban-doctor/reports"
)

func boardsCommand() *cli.Command {
	return &cli.Command{
		Name:      "boards",
		Usage:     "list boards with their files, journal mode and corrupt-backup inventory",
		ArgsUsage: "[PATH...]",
		Flags: []cli.Flag{
			jsonFlag,
			&cli.BoolFlag{Name: "archived", Usage: "include boards under kanban/boards/_archived/"},
			&cli.BoolFlag{Name: "units", Usage: "list every backup unit (JSON: backups.units)"},
		},
		Action: func(c *cli.Context) error {
			boards, err := discoverAll(c.Args().Slice(), board.Options{Archived: c.Bool("archived")})
			if err != nil {
				return err
			}
			reps := make([]board.Report, 0, len(boards))
			for _, b := range boards {
				b.Stat()
				inv, err := board.ScanBackups(b.DB)
				if err != nil {
					return exitcode.Wrap(exitcode.Operational, err)
				}
				reps = append(reps, board.Report{Board: b, Backups: board.Summarize(inv, c.Bool("units"))})
			}
			if c.Bool("json") {
				return reports.JSON(c.App.Writer, "boards", struct {
					Boards []board.Report `json:"boards"`
				}{reps})
			}
			return reports.BoardsText(c.App.Writer, reps)
		},
	}
}

// discoverAll resolves each PATH argument (or the default location) to boards. A PATH that is a
// file must be a SQLite database (or empty, or named kanban.db); anything else is an operational
// error naming it.
func discoverAll(paths []string, opts board.Options) ([]board.Board, error) {
	if len(paths) == 0 {
		paths = []string{""}
	}
	var all []board.Board
	for _, p := range paths {
		// A file at a board's DB path (kanban.db) is a board whatever its header says: a damaged
		// board is what report, restore, dedupe-backups and watch are for (verify and repair call
		// it corrupt, not-a-database). Any other file named must be a SQLite database.
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
			if err := requireDatabase(p); err != nil && !(errors.Is(err, board.ErrNotDatabase) && filepath.Base(p) == board.DBName) {
				return nil, err
			}
		}
		bs, err := board.Discover(p, opts)
		if err != nil {
			return nil, exitcode.Wrap(exitcode.Operational, err)
		}
		for _, b := range bs {
			if b.Note != "" {
				fmt.Fprintf(os.Stderr, "kanban-doctor: note: %s: %s\n", b.Dir, b.Note)
			}
		}
		all = append(all, bs...)
	}
	return all, nil
}

// requireDatabase checks that an explicitly named file is a SQLite database.
func requireDatabase(path string) error {
	if _, err := board.ReadHeader(path); err != nil {
		if errors.Is(err, board.ErrNotDatabase) {
			return exitcode.Errorf(exitcode.Operational, "%s: %w", path, err)
		}
		var pe *os.PathError // "open PATH: permission denied" would name the path twice
		if errors.As(err, &pe) && pe.Path == path {
			err = pe.Err
		}
		return exitcode.Wrap(exitcode.Operational, fmt.Errorf("%s: %w", path, err))
	}
	return nil
}
