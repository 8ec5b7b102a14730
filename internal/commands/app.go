// Package commands holds kanban-doctor's subcommands: each parses its flags, calls one package
// function and renders the result through reports.
package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kanban-doctor/kanban-doctor/internal/exitcode"
	"github.com/kanban-doctor/kanban-doctor/reports"
)

// Run runs the command line args (args[0] is the program name) and returns the exit status.
// Errors are printed as one line on stderr.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := New(stdout, stderr).RunContext(ctx, args)
	code := exitcode.Of(err)
	if err != nil && !exitcode.IsQuiet(err) {
		fmt.Fprintf(stderr, "kanban-doctor: %s\n", oneLine(err.Error()))
	}
	return code
}

// New builds the application. Only commands that work are registered.
func New(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "kanban-doctor",
		Usage:                "diagnose and repair the SQLite databases behind multi-process kanban boards",
		Version:              reports.Version() + " (revision " + reports.Revision() + ")",
		Writer:               stdout,
		ErrWriter:            stderr,
		HideHelpCommand:      true,
		EnableBashCompletion: false,
		ExitErrHandler:       func(*cli.Context, error) {},
		OnUsageError:         usageError,
		CustomAppHelpTemplate: cli.AppHelpTemplate + "\n" + exitcode.Help + "\n\n" +
			"PATH is a kanban.db, a board directory or a hermes root; with none: $HERMES_KANBAN_DB,\n" +
			"else $HERMES_KANBAN_HOME, else ~/.hermes.\n",
		Commands: []*cli.Command{
			// what is there, what state it is in, then what acts on it, then over time
			boardsCommand(),
			verifyCommand(),
			reportCommand(),
			backupCommand(), restoreCommand(),
			dedupeCommand(),
			repairCommand(),
			watchCommand(),
			reproCommand(),
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return exitcode.Errorf(exitcode.Usage, "unknown command %q (see kanban-doctor --help)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
	}
	for _, cmd := range app.Commands {
		if cmd.OnUsageError == nil {
			cmd.OnUsageError = usageError
		}
		cmd.CustomHelpTemplate = cli.CommandHelpTemplate + "\n" + exitcode.Help + "\n"
	}
	return app
}

func usageError(_ *cli.Context, err error, _ bool) error {
	return exitcode.Wrap(exitcode.Usage, err)
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// jsonFlag is the --json flag every command shares.
var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print one JSON document on stdout"}

// errAs returns err wrapped as an operational error unless it already carries a status.
func errAs(code int, err error) error {
	if err == nil {
		return nil
	}
	var e *exitcode.Error
	if errors.As(err, &e) {
		return err
	}
	return exitcode.Wrap(code, err)
}
