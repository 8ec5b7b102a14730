package commands

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/exitcode"
	"github.com/kanban-doctor/kanban-doctor/reports"
	"github.com/kanban-doctor/kanban-doctor/watch"
)

func watchCommand() *cli.Command {
	return &cli.Command{
		Name:  "watch",
		Usage: "sidecar: see corrupt-backup storms as they start, verify the live board, contain identical backups",
		Description: "Watches board directories (inotify; --poll where inotify does not work) and prints one JSON line per\n" +
			"event on stdout: backup-created, storm-started, storm-ended, verdict, contained, wal-growth, rescan.\n" +
			"A storm is more than --storm-count new backup units within --storm-window; --quiet without one ends it.\n" +
			"The watcher never opens a live database, its -wal or -shm (stat only); --verify-every and --on-storm verify\n" +
			"probe the board from a child process, one at a time. A directory with no board yet is waited on.\n" +
			"Runs until SIGTERM/SIGINT, then stops its children and exits 0 within 5 s.",
		ArgsUsage: "[PATH...]",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "storm-count", Value: 10, Usage: "a storm is more than `N` new backup units within --storm-window"},
			&cli.DurationFlag{Name: "storm-window", Value: time.Minute, Usage: "the storm detector's window"},
			&cli.DurationFlag{Name: "quiet", Usage: "a storm ends after this long without a new unit (default: --storm-window)"},
			&cli.DurationFlag{Name: "rescan", Value: 5 * time.Minute, Usage: "full rescan every `INTERVAL` as a safety net (0: never)"},
			&cli.DurationFlag{Name: "poll", Usage: "stat-only scans every `INTERVAL` instead of inotify (network filesystems, some container mounts)"},
			&cli.StringSliceFlag{Name: "on-storm", Usage: "when a storm starts: `verify` (probe the live board in a child process) or exec:CMD (sh -c CMD, event in $KANBAN_DOCTOR_EVENT); repeatable, run in order"},
			&cli.DurationFlag{Name: "verify-every", Value: 15 * time.Minute, Usage: "verify every board in a child process after the initial scan, then every `INTERVAL`, one at a time (0: off)"},
			&cli.DurationFlag{Name: "verify-timeout", Value: 2 * time.Minute, Usage: "bound on one verify (periodic or --on-storm)"},
			&cli.DurationFlag{Name: "exec-timeout", Value: 30 * time.Second, Usage: "bound on one --on-storm exec:CMD (its process group is killed after)"},
			&cli.BoolFlag{Name: "contain", Usage: "collapse identical arrivals into hard links of the first copy (byte-compared; every name keeps its content)"},
			&cli.DurationFlag{Name: "settle", Value: 2 * time.Second, Usage: "--contain acts on a unit once no part changed for this long"},
			&cli.StringFlag{Name: "wal-alarm", Value: "64MiB", Usage: "wal-growth event when a -wal reaches `SIZE` (stat only; 0 disables)"},
			&cli.StringFlag{Name: "listen", Usage: "serve /metrics, /livez, /readyz on `ADDR` (a bare :PORT binds 127.0.0.1)"},
			&cli.BoolFlag{Name: "archived", Usage: "also watch boards under kanban/boards/_archived/"},
			&cli.StringFlag{Name: "log-level", Usage: "log to stderr at `LEVEL` (debug, info, warn, error); default silent"},
		},
		Action: func(c *cli.Context) error {
			opts, err := watchOptions(c)
			if err != nil {
				return err
			}
			if a := c.String("listen"); a != "" {
				ln, err := net.Listen("tcp", loopbackDefault(a))
				if err != nil {
					return exitcode.Errorf(exitcode.Operational, "listen %s: %w", a, err)
				}
				opts.Listener = ln
				if opts.Logger != nil {
					opts.Logger.Info("serving metrics", "addr", ln.Addr().String())
				}
			}
			w, err := watch.New(opts)
			if err != nil {
				return exitcode.Wrap(exitcode.Operational, err)
			}
			return errAs(exitcode.Operational, w.Run(c.Context))
		},
	}
}

func watchOptions(c *cli.Context) (watch.Options, error) {
	usage := func(format string, a ...any) (watch.Options, error) {
		return watch.Options{}, exitcode.Errorf(exitcode.Usage, format, a...)
	}
	if c.Int("storm-count") < 1 {
		return usage("--storm-count must be at least 1")
	}
	for _, f := range []string{"storm-window", "verify-timeout", "exec-timeout"} {
		if c.Duration(f) <= 0 {
			return usage("--%s must be positive", f)
		}
	}
	for _, f := range []string{"quiet", "rescan", "poll", "settle", "verify-every"} {
		if c.Duration(f) < 0 {
			return usage("--%s must not be negative", f)
		}
	}
	for _, a := range c.StringSlice("on-storm") {
		if a != "verify" && !(strings.HasPrefix(a, "exec:") && len(a) > len("exec:")) {
			return usage("--on-storm %q: want verify or exec:CMD", a)
		}
	}
	walAlarm := int64(-1)
	if s := c.String("wal-alarm"); s != "0" {
		n, err := humanize.ParseBytes(s)
		if err != nil || n == 0 {
			return usage("--wal-alarm %q: want a size such as 64MiB", s)
		}
		walAlarm = int64(n)
	}
	rescan := c.Duration("rescan")
	if rescan == 0 {
		rescan = -1
	}
	var logger *slog.Logger
	if lv := c.String("log-level"); lv != "" {
		var level slog.Level
		if err := level.UnmarshalText([]byte(lv)); err != nil {
			return usage("--log-level %q: want debug, info, warn or error", lv)
		}
		logger = slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))
	}
	paths := c.Args().Slice()
	if len(paths) == 0 {
		p, err := board.DefaultPath(board.Options{})
		if err != nil {
			return watch.Options{}, exitcode.Wrap(exitcode.Operational, err)
		}
		paths = []string{p}
	}
	// The same checks and one-line errors as every command (missing, unreadable, not a database),
	// except that a directory with no board yet is watched for boards to appear: a sidecar
	// starts beside a gateway that has not made its first board, and must not crash-loop.
	for _, p := range paths {
		_, err := discoverAll([]string{p}, board.Options{Archived: c.Bool("archived")})
		switch {
		case errors.Is(err, board.ErrNoBoard):
			fmt.Fprintf(c.App.ErrWriter, "kanban-doctor: watch %s: no board yet; waiting for kanban.db, board.json or kanban/boards/*/ to appear\n", p)
		case err != nil:
			return watch.Options{}, err
		}
	}
	return watch.Options{
		Paths: paths, Archived: c.Bool("archived"),
		StormCount: c.Int("storm-count"), StormWindow: c.Duration("storm-window"), Quiet: c.Duration("quiet"),
		Rescan: rescan, Poll: c.Duration("poll"),
		WALThreshold: walAlarm,
		OnStorm:      c.StringSlice("on-storm"), VerifyTimeout: c.Duration("verify-timeout"),
		VerifyEvery: c.Duration("verify-every"), ExecTimeout: c.Duration("exec-timeout"),
		ActionOutput: c.App.ErrWriter,
		Contain:      c.Bool("contain"), Settle: c.Duration("settle"),
		Events: c.App.Writer, Version: reports.Version(), Revision: reports.Revision(), Logger: logger,
	}, nil
}

// loopbackDefault binds a bare ":PORT" to loopback; an address with a host is used as given.
func loopbackDefault(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err == nil && host == "" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	if err != nil && !strings.Contains(addr, ":") {
		return net.JoinHostPort("127.0.0.1", addr) // a bare port number
	}
	return addr
}
