package commands

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/dedupe"
	"github.com/kanban-doctor/kanban-doctor/internal/exitcode"
	"github.com/kanban-doctor/kanban-doctor/reports"
)

func dedupeCommand() *cli.Command {
	return &cli.Command{
		Name:  "dedupe-backups",
		Usage: "collapse corrupt-backup storms to one unit per distinct content (dry run unless --apply)",
		Description: "A unit is a backup's main file with its -wal/-shm companions; units are duplicates only when\n" +
			"every part is byte-identical. Without --apply nothing is changed. With --apply each duplicate is\n" +
			"re-checked and compared byte for byte with the kept unit before it is removed, linked or moved.",
		ArgsUsage: "[PATH...]",
		Flags: []cli.Flag{
			jsonFlag,
			&cli.BoolFlag{Name: "apply", Usage: "act on the duplicates (default: dry run, report only)"},
			&cli.StringFlag{Name: "keep", Value: "oldest", Usage: "which unit of a group stays: oldest (the first evidence) or newest"},
			&cli.StringFlag{Name: "action", Value: "remove", Usage: "remove, hardlink (atomic link to the kept unit) or move (needs --to)"},
			&cli.StringFlag{Name: "to", Usage: "quarantine directory for --action move (same filesystem)"},
			&cli.BoolFlag{Name: "check-contents", Usage: "check each distinct content with the probe (healthy database or corrupt)"},
			&cli.BoolFlag{Name: "fail-on-duplicates", Usage: "exit 1 when a dry run finds duplicates"},
			&cli.DurationFlag{Name: "burst-gap", Value: dedupeDefaultGap, Usage: "backups further apart than this start a new burst"},
			&cli.IntFlag{Name: "workers", Value: 2, Usage: "parallel readers while hashing, and parallel lanes while applying"},
			&cli.BoolFlag{Name: "archived", Usage: "include boards under kanban/boards/_archived/"},
		},
		Action: func(c *cli.Context) error {
			ctx := c.Context
			if os.Getenv("GOMEMLIMIT") == "" {
				// A soft GC target, not a cap: keeps a 100,000-file storm near 110 MB peak instead of
				// letting the heap double to ~170 MB (bench/dedupe.sh section 4).
				debug.SetMemoryLimit(dedupeMemoryLimit)
			}
			if c.Bool("apply") && c.Bool("fail-on-duplicates") {
				return exitcode.Errorf(exitcode.Usage, "--fail-on-duplicates is for dry runs, not with --apply")
			}
			if c.Int("workers") < 1 || c.Duration("burst-gap") <= 0 { // were silently taken as 2, or as "every unit its own burst"
				return exitcode.Errorf(exitcode.Usage, "--workers must be at least 1 and --burst-gap positive")
			}
			if c.IsSet("to") && c.String("action") != string(dedupe.ActionMove) {
				return exitcode.Errorf(exitcode.Usage, "--to is only for --action move")
			}
			boards, err := dedupeBoards(c.Args().Slice(), board.Options{Archived: c.Bool("archived")})
			if err != nil {
				return err
			}
			progress := reports.NewProgress(c.App.ErrWriter)
			so := dedupe.Options{Workers: c.Int("workers"), Verify: c.Bool("apply"), Progress: progress}
			po := dedupe.PlanOptions{Keep: dedupe.Keep(c.String("keep")),
				Action: dedupe.Action(c.String("action")), To: c.String("to"), BurstGap: c.Duration("burst-gap")}
			ao := dedupe.ApplyOptions{Workers: c.Int("workers"), Progress: progress}
			var (
				plan     *dedupe.Plan
				applied  *dedupe.Result
				applyErr error
			)
			if c.Bool("apply") && !c.Bool("check-contents") {
				// Acts while it reads (the contents check, when asked for, comes before any action).
				plan, applied, applyErr = dedupe.ScanApply(ctx, boards, so, po, ao)
				if plan == nil {
					return dedupePlanErr(applyErr)
				}
			} else {
				inv, err := dedupe.Scan(ctx, boards, so)
				if err != nil {
					return dedupeErr(err)
				}
				plan, err = dedupe.NewPlan(inv, po)
				if err != nil {
					return dedupePlanErr(err)
				}
				if c.Bool("check-contents") {
					if err := dedupe.CheckContents(ctx, plan, dedupe.CheckOptions{}); err != nil {
						return dedupeErr(err)
					}
				}
				if c.Bool("apply") {
					applied, applyErr = dedupe.Apply(ctx, plan, ao)
				}
			}
			out := reports.DedupeResult{Report: plan.Report, DryRun: !c.Bool("apply"), Applied: applied}
			if c.Bool("json") {
				err = reports.JSON(c.App.Writer, "dedupe-backups", out)
			} else {
				err = reports.DedupeText(c.App.Writer, out)
			}
			if err != nil {
				return exitcode.Wrap(exitcode.Operational, err)
			}
			switch {
			case applyErr != nil:
				return dedupeErr(applyErr)
			case out.Applied != nil && out.Applied.Failed > 0:
				return exitcode.Errorf(exitcode.Operational, "dedupe-backups: %d of %d actions failed (listed above); a rerun finishes them",
					out.Applied.Failed, out.Applied.Done+out.Applied.Failed+out.Applied.Skipped)
			case out.Applied != nil && out.Applied.Skipped > 0:
				return exitcode.Status(exitcode.Warning)
			case out.DryRun && c.Bool("fail-on-duplicates") && (plan.Report.Duplicates > 0 || plan.Report.RedundantOrphans > 0):
				return exitcode.Status(exitcode.Warning)
			}
			return nil
		},
	}
}

const dedupeDefaultGap = 5 * time.Minute

// dedupeMemoryLimit is the soft memory limit dedupe-backups runs under unless GOMEMLIMIT is set.
const dedupeMemoryLimit = 96 << 20

// dedupeBoards resolves the PATH arguments like every command, and also accepts a directory that
// holds corrupt backups but no live board (a quarantine directory, a copied storm).
func dedupeBoards(paths []string, opts board.Options) ([]board.Board, error) {
	if len(paths) == 0 {
		paths = []string{""}
	}
	var all []board.Board
	for _, p := range paths {
		bs, err := discoverAll([]string{p}, opts)
		if err != nil && errors.Is(err, board.ErrNoBoard) && hasBackups(p) {
			abs, aerr := filepath.Abs(p)
			if aerr != nil {
				return nil, exitcode.Wrap(exitcode.Operational, aerr)
			}
			bs, err = []board.Board{board.New("backups", filepath.Join(abs, board.DBName))}, nil
		}
		if err != nil {
			return nil, err
		}
		all = append(all, bs...)
	}
	return all, nil
}

// hasBackups reports whether dir holds at least one corrupt-backup file.
func hasBackups(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	for {
		names, err := f.Readdirnames(1024)
		for _, n := range names {
			if strings.HasPrefix(n, board.DBName+".corrupt.") {
				return true
			}
		}
		if err != nil {
			return false
		}
	}
}

// dedupePlanErr is dedupeErr that also maps invalid plan options to a usage error (exit 4).
func dedupePlanErr(err error) error {
	if errors.Is(err, dedupe.ErrUsage) {
		return exitcode.Wrap(exitcode.Usage, err)
	}
	return dedupeErr(err)
}

// dedupeErr maps an error to the exit-code contract: an interrupted run (a cancelled context:
// SIGINT or SIGTERM) is inconclusive, exit 3; anything else operational, exit 8.
func dedupeErr(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return exitcode.Wrap(exitcode.Inconclusive, err)
	}
	return errAs(exitcode.Operational, err)
}
