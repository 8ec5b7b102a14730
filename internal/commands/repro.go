package commands

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kanban-doctor/kanban-doctor/internal/exitcode"
	"github.com/kanban-doctor/kanban-doctor/reports"
	"github.com/kanban-doctor/kanban-doctor/repro"
)

func reproCommand() *cli.Command {
	return &cli.Command{
		Name:  "repro",
		Usage: "race harness: reproduce the false-corruption mechanisms on a live board and score guard strategies",
		Description: "Makes a realistic board in a temporary directory, and for every scenario x strategy cell runs writer\n" +
			"processes (wal_autocheckpoint=0, the harness schedules checkpoints), a prober process that applies the\n" +
			"scenario and checks with the strategy, then a clean-process integrity_check and the writers' ledgers as\n" +
			"ground truth. Prints the matrix; removes the directory unless --keep or --dir.\n" +
			"Scenarios: " + strings.Join(repro.Scenarios, ", ") + ".\n" +
			"Strategies: legacy, retry, same-conn, doctor, and exec:CMD (CMD run by sh, {db} replaced by the\n" +
			"database path; exit 0 = healthy, anything else = corrupt).\n" +
			"With --ci: exit 0 only if legacy shows a false positive in lock-drop and immutable, no strategy shows\n" +
			"one in clean, and doctor shows none anywhere and no false negative in injected; else exit 2.",
		Flags: []cli.Flag{
			jsonFlag,
			&cli.BoolFlag{Name: "ci", Usage: "apply the CI rules; exit 2 naming the failing cell"},
			&cli.DurationFlag{Name: "duration", Value: time.Second, Usage: "time per cell"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed for every random choice (writers, checkpoint modes, pauses)"},
			&cli.StringFlag{Name: "checkpoint", Value: "mixed", Usage: "checkpoint mode: PASSIVE, FULL, RESTART, TRUNCATE or mixed"},
			&cli.StringFlag{Name: "checkpoint-every", Value: "10ms", Usage: "checkpoint schedule: a period (10ms, run by the harness) or Ncommits (run by each writer)"},
			&cli.StringSliceFlag{Name: "scenario", Usage: "scenario to run (repeatable or comma-separated; default all)"},
			&cli.GenericFlag{Name: "strategy", Value: &listValue{}, Usage: "strategy to score (repeatable or comma-separated; default legacy, retry, same-conn, doctor); exec:CMD is taken whole"},
			&cli.IntFlag{Name: "writers", Value: 3, Usage: "writer processes per cell"},
			&cli.IntFlag{Name: "tasks", Value: 1000, Usage: "tasks in the generated board"},
			&cli.BoolFlag{Name: "keep", Usage: "keep the temporary directory (boards, ledgers, backups)"},
			&cli.StringFlag{Name: "dir", Usage: "work in this (new or empty) directory and keep it"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return exitcode.Errorf(exitcode.Usage, "repro takes no arguments (got %q)", c.Args().First())
			}
			var scenarios []string
			for _, s := range c.StringSlice("scenario") {
				scenarios = append(scenarios, splitList(s)...)
			}
			strategies := c.Generic("strategy").(*listValue).items
			// exec: strategies may contain commas; only built-in names are split.
			var st []string
			for _, s := range strategies {
				if strings.HasPrefix(s, repro.ExecPrefix) {
					st = append(st, s)
				} else {
					st = append(st, splitList(s)...)
				}
			}
			opts := repro.Options{Dir: c.String("dir"), Keep: c.Bool("keep"), Duration: c.Duration("duration"),
				Seed: c.Uint64("seed"), Writers: c.Int("writers"), Tasks: c.Int("tasks"),
				Checkpoint: c.String("checkpoint"), CheckpointEvery: c.String("checkpoint-every"),
				Scenarios: scenarios, Strategies: st}
			if opts.Duration <= 0 {
				return exitcode.Errorf(exitcode.Usage, "--duration must be positive")
			}
			if opts.Writers < 1 {
				return exitcode.Errorf(exitcode.Usage, "--writers must be 1 or more")
			}
			if opts.Tasks < 20 {
				return exitcode.Errorf(exitcode.Usage, "--tasks must be 20 or more")
			}
			if opts.Seed == 0 {
				return exitcode.Errorf(exitcode.Usage, "--seed must be 1 or more")
			}
			bar := reports.NewProgress(c.App.ErrWriter)
			bar.Start("repro cells", -1, false)
			opts.Progress = func(done, total int, cell repro.Cell) {
				if done == 1 {
					bar.Start("repro cells", int64(total), false)
					bar.Add(1)
					return
				}
				bar.Add(1)
			}
			res, err := repro.Run(c.Context, opts)
			bar.Done()
			if errors.Is(err, repro.ErrUsage) {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			if err != nil && c.Context.Err() != nil {
				return exitcode.Errorf(exitcode.Inconclusive, "repro: interrupted (%v); every child process was stopped", c.Context.Err())
			}
			if err != nil {
				return errAs(exitcode.Operational, fmt.Errorf("repro: %w", err))
			}
			var fails []string
			if c.Bool("ci") {
				fails = repro.CI(&res)
			}
			if c.Bool("json") {
				if err := reports.JSON(c.App.Writer, "repro", res); err != nil {
					return exitcode.Wrap(exitcode.Operational, err)
				}
			} else if err := reports.ReproText(c.App.Writer, res); err != nil {
				return exitcode.Wrap(exitcode.Operational, err)
			}
			if len(fails) > 0 {
				return exitcode.Errorf(exitcode.Corrupt, "repro --ci failed: %s", strings.Join(fails, "; "))
			}
			return nil
		},
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// listValue is a repeatable flag that keeps each value whole (an exec: command may hold commas).
type listValue struct{ items []string }

func (l *listValue) Set(s string) error { l.items = append(l.items, s); return nil }
func (l *listValue) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.items, " ")
}
