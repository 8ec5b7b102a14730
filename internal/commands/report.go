package commands

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/health"
	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
	"github.com/kanban-doctor/kanban-doctor/internal/exitcode"
	"github.com/kanban-doctor/kanban-doctor/probe"
	"github.com/kanban-doctor/kanban-doctor/reports"
)

func reportCommand() *cli.Command {
	return &cli.Command{
		Name:  "report",
		Usage: "a health report per board: verdict, findings with fixes, hazards, files, backup inventory and burst timeline",
		Description: "Checks each board through the probe (read-only), hashes its corrupt backups (static files; the live DB\n" +
			"is never read outside SQLite) and prints the report as text, JSON or Markdown; --html also writes a\n" +
			"self-contained HTML page. The exit status is the worst board verdict.",
		ArgsUsage: "[PATH...]",
		Flags: []cli.Flag{
			jsonFlag,
			&cli.BoolFlag{Name: "markdown", Usage: "print Markdown for a bug report (versions, check output, findings, inventory)"},
			&cli.StringFlag{Name: "html", Usage: "also write a self-contained HTML report to `FILE` (- for stdout)"},
			&cli.BoolFlag{Name: "check-contents", Usage: "check one backup of every distinct content: which backups are healthy"},
			&cli.BoolFlag{Name: "full", Usage: "run integrity_check instead of quick_check"},
			&cli.DurationFlag{Name: "timeout", Usage: "bound for one check (busy timeout included); 0 means the probe's default (30s)"},
			&cli.BoolFlag{Name: "archived", Usage: "include boards under kanban/boards/_archived/"},
			&cli.DurationFlag{Name: "burst-gap", Value: health.DefaultBurstGap, Usage: "backups closer than this belong to one burst"},
			&cli.IntFlag{Name: "min-burst", Value: health.DefaultMinBurst, Usage: "backups needed to call a run a burst"},
		},
		Action: func(c *cli.Context) error {
			if c.Bool("json") && c.Bool("markdown") {
				return exitcode.Errorf(exitcode.Usage, "report: --json and --markdown are exclusive")
			}
			html := c.String("html")
			if html == "-" && (c.Bool("json") || c.Bool("markdown")) {
				return exitcode.Errorf(exitcode.Usage, "report: --html - prints HTML on stdout; it cannot be combined with --json or --markdown")
			}
			if html != "" && html != "-" && isDir(html) {
				return exitcode.Errorf(exitcode.Usage, "report: --html %s: is a directory; name the HTML file to write", html)
			}
			if c.Int("min-burst") < 2 || c.Duration("burst-gap") <= 0 {
				return exitcode.Errorf(exitcode.Usage, "report: --min-burst must be at least 2 and --burst-gap positive")
			}
			boards, err := discoverAll(c.Args().Slice(), board.Options{Archived: c.Bool("archived")})
			if err != nil {
				return err
			}
			rep, err := health.Build(c.Context, boards, health.Options{
				Check:         probe.Check,
				Probe:         probe.Options{Full: c.Bool("full"), Timeout: c.Duration("timeout")},
				CheckContents: c.Bool("check-contents"),
				Timeline:      health.TimelineOptions{BurstGap: c.Duration("burst-gap"), MinBurst: c.Int("min-burst")},
				Progress:      reports.NewProgress(c.App.ErrWriter),
			})
			if err != nil {
				if c.Context.Err() != nil { // interrupted: no verdict, never "corrupt" or "operational"
					return exitcode.Wrap(exitcode.Inconclusive, err)
				}
				return errAs(exitcode.Operational, err)
			}
			if html != "" && html != "-" {
				if err := atomicfile.WriteFrom(html, 0o644, func(w io.Writer) error { return reports.ReportHTML(w, rep) }); err != nil {
					return exitcode.Wrap(exitcode.Operational, err)
				}
			}
			out := c.App.Writer
			switch {
			case html == "-":
				err = reports.ReportHTML(out, rep)
			case c.Bool("json"):
				err = reports.JSON(out, "report", rep)
			case c.Bool("markdown"):
				err = reports.ReportMarkdown(out, rep)
			default:
				err = reports.ReportText(out, rep, reports.Color(out))
			}
			if err != nil {
				return exitcode.Wrap(exitcode.Operational, err)
			}
			// The report is printed; stderr names every board that failed, one line each, and the
			// exit status is the multi-board rule's (a corrupt board wins over another's error).
			var errLines []string
			for _, b := range rep.Boards {
				if b.Error != "" {
					errLines = append(errLines, fmt.Sprintf("report %s: %s", b.Name, b.Error))
				}
			}
			return boardErrors(c.App.ErrWriter, rep.ExitCode, errLines)
		},
	}
}
