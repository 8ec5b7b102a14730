package commands

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kanban-doctor/kanban-doctor/backup"
	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/exitcode"
	"github.com/kanban-doctor/kanban-doctor/reports"
)

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:  "restore",
		Usage: "put a backup back into a board, after backing up what is there",
		Description: "FILE must be a healthy SQLite database (integrity_check) with the kanban tables. The current board\n" +
			"is backed up first (or quarantined as <db>.corrupt.<hash>.bak when too damaged to back up). By default\n" +
			"the restore goes through SQLite's backup API in one write transaction, safe while other processes have\n" +
			"the board open (they wait on the write lock). --offline replaces the file instead, only when no process\n" +
			"has the board, -wal or -shm open (checked in /proc; otherwise exit 3), after removing the stale -wal and\n" +
			"-shm. --dry-run checks and prints the plan, changing nothing.",
		ArgsUsage: "--from FILE PATH",
		Flags: []cli.Flag{
			jsonFlag,
			&cli.StringFlag{Name: "from", Usage: "the backup `FILE` to restore (required)"},
			&cli.BoolFlag{Name: "offline", Usage: "replace the file (only when no process has the board open)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "check and print what would be done; change nothing"},
			busyTimeoutFlag(2*time.Minute, "how long to wait for the write lock, online restore (`D`: 30s, 2m; a bare number is milliseconds)"),
		},
		Action: func(c *cli.Context) error {
			if c.String("from") == "" {
				return exitcode.Errorf(exitcode.Usage, "restore needs --from FILE, the backup to restore")
			}
			if c.NArg() != 1 {
				return exitcode.Errorf(exitcode.Usage, "restore takes one PATH (the board to restore into), got %d", c.NArg())
			}
			busyMS, err := busyTimeoutMS(c)
			if err != nil {
				return exitcode.Wrap(exitcode.Usage, err)
			}
			boards, err := discoverAll(c.Args().Slice(), board.Options{})
			if err != nil {
				return err
			}
			if len(boards) != 1 {
				return exitcode.Errorf(exitcode.Usage, "%s holds %d boards: name the kanban.db to restore into", c.Args().First(), len(boards))
			}
			res, err := backup.Restore(c.Context, c.String("from"), boards[0].DB, backup.Options{
				Offline: c.Bool("offline"), DryRun: c.Bool("dry-run"), BusyTimeout: busyMS})
			if err != nil {
				if c.Context.Err() != nil && !strings.Contains(err.Error(), boards[0].DB) { // a bare "context canceled" on SIGINT
					err = fmt.Errorf("restore %s: %w", boards[0].DB, err)
				}
				return backupError(err)
			}
			if c.Bool("json") {
				err = reports.JSON(c.App.Writer, "restore", struct {
					Restore backup.RestoreResult `json:"restore"`
				}{res})
			} else {
				err = reports.RestoreText(c.App.Writer, res)
			}
			return errAs(exitcode.Operational, err)
		},
	}
}
