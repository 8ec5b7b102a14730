package commands

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
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
			"Strategies: legacy, retry, same-conn, doctor, exec:CMD (CMD run by sh per check, {db} replaced by the\n" +
			"database path; exit 0 = healthy, 1 or 2 = corrupt, 3 = inconclusive, anything else = a guard error) and\n" +
			"exec-serve:CMD (one guard process per cell; one {\"db\",\"check\"} JSON request per line on stdin, one\n" +
			"{\"verdict\",\"message\"} line or the bare word healthy|corrupt|inconclusive back). Guards get\n" +
			"KANBAN_DOCTOR_SCENARIO, KANBAN_DOCTOR_SEED, KANBAN_DOCTOR_DB and KANBAN_DOCTOR_BOARD_DIR.\n" +
			"With --ci: exit 0 only if legacy shows a false positive in lock-drop and immutable, no strategy shows\n" +
			"one in clean or damages a board (guard_damage), no writer fails in clean, and doctor shows no false\n" +
			"positive anywhere and no false negative in injected and index-desync; else exit 2.",
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
			&cli.IntFlag{Name: "serve-restart-every", Usage: "restart an exec-serve guard after every N checks (0: never)"},
			&cli.StringFlag{Name: "junit", Usage: "also write JUnit XML to this file (one test case per cell, the --ci failures as <failure>)"},
			&cli.StringFlag{Name: "checks", Usage: "also write every check's record to this file, one JSON object per line"},
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
			// exec: and exec-serve: strategies may contain commas; only built-in names are split.
			var st []string
			for _, s := range strategies {
				if strings.HasPrefix(s, repro.ExecPrefix) || strings.HasPrefix(s, repro.ServePrefix) {
					st = append(st, s)
				} else {
					st = append(st, splitList(s)...)
				}
			}
			opts := repro.Options{Dir: c.String("dir"), Keep: c.Bool("keep"), Duration: c.Duration("duration"),
				Seed: c.Uint64("seed"), Writers: c.Int("writers"), Tasks: c.Int("tasks"),
				Checkpoint: c.String("checkpoint"), CheckpointEvery: c.String("checkpoint-every"),
				Scenarios: scenarios, Strategies: st, ServeRestartEvery: c.Int("serve-restart-every")}
			if opts.ServeRestartEvery < 0 {
				return exitcode.Errorf(exitcode.Usage, "--serve-restart-every must be 0 or more")
			}
			for _, f := range []string{"junit", "checks"} {
				if p := c.String(f); p != "" {
					if err := writableDir(p); err != nil {
						return exitcode.Errorf(exitcode.Usage, "--%s %s: %v", f, p, err)
					}
				}
			}
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
			if p := c.String("junit"); p != "" {
				if err := writeFileWith(p, func(w io.Writer) error { return repro.WriteJUnit(w, res) }); err != nil {
					return exitcode.Errorf(exitcode.Operational, "write --junit %s: %v", p, err)
				}
			}
			if p := c.String("checks"); p != "" {
				if err := writeFileWith(p, func(w io.Writer) error {
					enc := json.NewEncoder(w)
					for _, r := range res.Checks {
						if err := enc.Encode(r); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					return exitcode.Errorf(exitcode.Operational, "write --checks %s: %v", p, err)
				}
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

// writableDir checks, before a run starts, that the directory a report file goes to exists.
func writableDir(p string) error {
	fi, err := os.Stat(filepath.Dir(p))
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", filepath.Dir(p))
	}
	return nil
}

// writeFileWith writes a report file atomically.
func writeFileWith(p string, f func(io.Writer) error) error {
	return atomicfile.WriteFrom(p, 0o644, f)
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
