package commands

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/exitcode"
	"github.com/kanban-doctor/kanban-doctor/probe"
	"github.com/kanban-doctor/kanban-doctor/reports"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "check each board's database without crying wolf: healthy, transient, false-positive, corrupt or inconclusive",
		Description: "Checks on one read-only connection that follows SQLite's locking (quick_check; integrity_check with --full).\n" +
			"A bad answer is re-checked on the same connection, then confirmed by a clean child process before the\n" +
			"board is called corrupt. Busy or locked is inconclusive, never corruption. Hazards (deleted -wal/-shm\n" +
			"held open, network filesystems, starved checkpoints, init-lock holders) are reported beside the verdict.\n" +
			"Exit status: the worst board's (0 healthy, 1 transient/false-positive, 2 corrupt, 3 inconclusive, 8 error).",
		ArgsUsage: "[PATH...]",
		Flags: []cli.Flag{
			jsonFlag,
			&cli.BoolFlag{Name: "full", Usage: "PRAGMA integrity_check (index contents too; uses several connections) instead of quick_check"},
			&cli.IntFlag{Name: "reverify", Value: 2, Usage: "same-connection re-checks of a bad answer before the child confirms (`N`, 0 none)"},
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "how long to wait for a lock, and to bound each check pass"},
			&cli.BoolFlag{Name: "backup", Usage: "after a confirmed corrupt verdict, write <db>.corrupt.<16 hex>.bak (SQLite backup API; once per content)"},
			&cli.BoolFlag{Name: "archived", Usage: "include boards under kanban/boards/_archived/"},
		},
		Action: func(c *cli.Context) error {
			if c.Int("reverify") < 0 {
				return exitcode.Errorf(exitcode.Usage, "--reverify must be 0 or more")
			}
			if c.Duration("timeout") <= 0 {
				return exitcode.Errorf(exitcode.Usage, "--timeout must be positive")
			}
			reverify := c.Int("reverify")
			if reverify == 0 {
				reverify = -1 // probe.Options: negative means none
			}
			opts := probe.Options{Full: c.Bool("full"), Reverify: reverify, Timeout: c.Duration("timeout"), Backup: c.Bool("backup")}
			// The discovery every command uses: a file named on the command line must be a SQLite
			// database (else 8), unless it sits at a board's DB path (kanban.db): a damaged board is
			// what verify is for, and it is called corrupt (not-a-database, 2).
			boards, err := discoverAll(c.Args().Slice(), board.Options{Archived: c.Bool("archived")})
			if err != nil {
				return err
			}
			var out []reports.VerifyBoard
			codes := []int{}
			for _, b := range boards {
				res, err := probe.Check(c.Context, b, opts)
				vb := reports.VerifyBoard{Result: res}
				if err != nil && b.AwaitingDB() {
					vb.NoDatabase = true
					codes = append(codes, exitcode.OK)
				} else if err != nil {
					vb.Error = fmt.Sprintf("verify %v", err)
					codes = append(codes, exitcode.Operational)
				} else {
					codes = append(codes, res.Verdict.ExitCode())
				}
				out = append(out, vb)
			}
			if c.Bool("json") {
				err = reports.JSON(c.App.Writer, "verify", struct {
					Boards []reports.VerifyBoard `json:"boards"`
				}{out})
			} else {
				err = reports.VerifyText(c.App.Writer, out)
			}
			if err != nil {
				return exitcode.Wrap(exitcode.Operational, err)
			}
			var errLines []string
			for _, b := range out {
				if b.Error != "" {
					errLines = append(errLines, b.Error)
				}
			}
			return boardErrors(c.App.ErrWriter, exitcode.Worst(codes...), errLines)
		},
	}
}
