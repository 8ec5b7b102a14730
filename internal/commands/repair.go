package commands

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/exitcode"
	"github.com/kanban-doctor/kanban-doctor/repair"
	"github.com/kanban-doctor/kanban-doctor/reports"
)

func repairCommand() *cli.Command {
	return &cli.Command{
		Name:  "repair",
		Usage: "fix a damaged board with the least destructive remedy and say exactly what was lost",
		Description: "Diagnoses first (integrity_check, confirmed by a clean child process), then works on a snapshot taken\n" +
			"through SQLite's backup API: index damage -> REINDEX, freelist damage -> VACUUM, table b-tree damage,\n" +
			"truncation and the rest -> salvage (a fresh file with the same schema, every readable row copied table by\n" +
			"table, page by page past damaged pages, indexes built after the data). The result must pass\n" +
			"integrity_check before it is written (atomically, to --out, default PATH.repaired). The input is never\n" +
			"modified unless --in-place: then the damaged board is backed up first and the repaired copy is restored\n" +
			"into it through SQLite's backup API, under its locks. --dry-run prints the plan.\n" +
			"Exit status: 0 repaired with no row lost (or nothing to repair), 1 repaired but rows were lost (see the\n" +
			"report) or a suspicion was cleared, 2 corrupt and not repaired (dry run, or nothing can be salvaged),\n" +
			"3 no verdict (busy), or --in-place found other processes writing, 4 usage (including --out naming the\n" +
			"board's own files), 8 operational error.",
		ArgsUsage: "PATH",
		Flags: []cli.Flag{
			jsonFlag,
			&cli.StringFlag{Name: "out", Usage: "write the repaired database to `FILE` (default PATH.repaired)"},
			&cli.BoolFlag{Name: "in-place", Usage: "repair the board itself (after a verified backup; through SQLite's backup API)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "diagnose and print the plan; write nothing"},
			&cli.BoolFlag{Name: "force", Usage: "let --out replace an existing file"},
			&cli.StringFlag{Name: "backups", Usage: "compare with the newest healthy backup of this board in `DIR`"},
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "how long to wait for the board's locks"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return exitcode.Errorf(exitcode.Usage, "repair takes one PATH (a kanban.db or a board directory), got %d", c.NArg())
			}
			if c.Duration("timeout") <= 0 {
				return exitcode.Errorf(exitcode.Usage, "--timeout must be positive")
			}
			if c.Bool("in-place") && c.String("out") != "" {
				return exitcode.Errorf(exitcode.Usage, "--in-place and --out exclude each other")
			}
			if dir := c.String("backups"); dir != "" { // checked before any work: a typo must not surface as a note after the repair
				fi, err := os.Stat(dir)
				if err != nil {
					var pe *os.PathError
					if errors.As(err, &pe) {
						err = pe.Err
					}
					return exitcode.Wrap(exitcode.Operational, fmt.Errorf("--backups %s: %w", dir, err))
				}
				if !fi.IsDir() {
					return exitcode.Errorf(exitcode.Usage, "--backups %s: not a directory", dir)
				}
			}
			boards, err := board.Discover(c.Args().First(), board.Options{})
			if err != nil {
				return exitcode.Wrap(exitcode.Operational, err)
			}
			if len(boards) != 1 {
				return exitcode.Errorf(exitcode.Usage, "%s holds %d boards: name the kanban.db to repair", c.Args().First(), len(boards))
			}
			res, rerr := repair.Repair(c.Context, boards[0], repair.Options{
				Out: c.String("out"), InPlace: c.Bool("in-place"), DryRun: c.Bool("dry-run"),
				Force: c.Bool("force"), Backups: c.String("backups"), Timeout: c.Duration("timeout"),
			})
			code := repairStatus(res, rerr)
			if rerr == nil || res.Verdict != "" {
				var err error
				if c.Bool("json") {
					doc := struct {
						Repair repair.Result `json:"repair"`
						Error  string        `json:"error,omitempty"`
					}{Repair: res}
					if rerr != nil {
						doc.Error = rerr.Error()
					}
					err = reports.JSON(c.App.Writer, "repair", doc)
				} else if rerr == nil {
					err = reports.RepairText(c.App.Writer, res)
				}
				if err != nil {
					return exitcode.Wrap(exitcode.Operational, err)
				}
			}
			if rerr != nil {
				return exitcode.Wrap(code, rerr)
			}
			return exitcode.Status(code)
		},
	}
}

// repairStatus maps a repair's outcome to the exit-code contract.
func repairStatus(res repair.Result, err error) int {
	var e *exitcode.Error
	switch {
	case err == nil:
	case errors.As(err, &e):
		return e.Code
	case errors.Is(err, repair.ErrOutputIsInput):
		return exitcode.Usage
	case errors.Is(err, repair.ErrUnrecoverable):
		return exitcode.Corrupt
	case errors.Is(err, repair.ErrInconclusive), errors.Is(err, repair.ErrBoardChanged),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return exitcode.Inconclusive
	default:
		return exitcode.Of(backupError(err))
	}
	switch {
	case res.DryRun && res.Verdict == "corrupt":
		return exitcode.Corrupt
	case res.Action == repair.ActionNone && !res.Written:
		return res.Verdict.ExitCode()
	case !res.Lossless():
		return exitcode.Warning
	}
	return exitcode.OK
}
