// Package commands holds kanban-doctor's subcommands: each parses its flags, calls one package
// function and renders the result through reports.
package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kanban-doctor/kanban-doctor/internal/exitcode"
	"github.com/kanban-doctor/kanban-doctor/reports"
)

// Run runs the command line args (args[0] is the program name) and returns the exit status.
// Errors are printed as one line on stderr.
//
// With --json, stdout always carries one document: the command's own, or, when it failed before
// it printed one, the error envelope (reports.ErrorResult) with the same status and message.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	out := &countingWriter{w: stdout}
	app := New(out, stderr)
	args = flagsFirst(app, args)
	err := app.RunContext(ctx, args)
	code := exitcode.Of(err)
	if err != nil && !exitcode.IsQuiet(err) {
		fmt.Fprintf(stderr, "kanban-doctor: %s\n", oneLine(err.Error()))
	}
	if err != nil && out.n == 0 {
		if cmd := jsonCommand(app, args); cmd != "" {
			reports.JSON(stdout, cmd, reports.ErrorResult{Error: reports.ErrorInfo{
				Code: code, Status: exitcode.Name(code), Message: oneLine(err.Error()), Path: errorPath(err)}})
		}
	}
	return code
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// jsonCommand is the subcommand of args (already in flagsFirst order) when it was given --json,
// else "".
func jsonCommand(app *cli.App, args []string) string {
	for i := 1; i < len(args); i++ {
		if isFlagToken(args[i]) {
			continue
		}
		cmd := app.Command(args[i])
		if cmd == nil || !hasFlag(cmd, "json") {
			return ""
		}
		for _, a := range args[i+1:] {
			switch a {
			case "--":
				return ""
			case "--json", "-json", "--json=true", "-json=true":
				return cmd.Name
			}
		}
		return ""
	}
	return ""
}

func hasFlag(cmd *cli.Command, name string) bool {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

// errorPath is the file an error is about: the path of an *fs.PathError in its chain, else the
// first word of its message that names an existing file or directory or looks like a path.
func errorPath(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path != "" {
		return pe.Path
	}
	for _, w := range strings.Fields(err.Error()) {
		w = strings.Trim(w, ":;,()\"'")
		if w == "" || strings.HasPrefix(w, "-") {
			continue
		}
		if _, e := os.Lstat(w); e == nil || strings.Contains(w, "/") {
			return w
		}
	}
	return ""
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
			// the tool itself
			completionCommand(), manCommand(),
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				var names []string
				for _, cmd := range c.App.Commands {
					names = append(names, cmd.Name)
				}
				if s := closest(c.Args().First(), names); s != "" {
					return exitcode.Errorf(exitcode.Usage, "unknown command %q: did you mean %q? (see kanban-doctor --help)", c.Args().First(), s)
				}
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

// flagsFirst lets flags follow operands, as GNU tools and most Go CLIs allow: `verify DB --json`
// and `dedupe-backups DIR --apply` mean what they say. urfave/cli stops parsing flags at the first
// operand, so the subcommand's flags (with the value of those that take one) are moved before its
// operands. "--" ends flags: everything after it stays an operand, in order. An unknown flag is
// moved too, so it is refused as a usage error instead of being taken for a path.
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	// The subcommand is the first argument that is not a flag (the app has no flags that take
	// a value).
	ci := -1
	for i := 1; i < len(args); i++ {
		if args[i] == "--" {
			return args
		}
		if !isFlagToken(args[i]) {
			ci = i
			break
		}
	}
	if ci < 0 {
		return args
	}
	cmd := app.Command(args[ci])
	if cmd == nil {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		tv := true
		if d, ok := f.(interface{ TakesValue() bool }); ok {
			tv = d.TakesValue()
		}
		for _, n := range f.Names() {
			takesValue[n] = tv
		}
	}
	var flags, operands []string
	rest := args[ci+1:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			operands = append(operands, rest[i:]...)
			break
		}
		if !isFlagToken(a) {
			operands = append(operands, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if takesValue[name] && i+1 < len(rest) {
			i++
			flags = append(flags, rest[i])
		}
	}
	out := append(append([]string{}, args[:ci+1]...), flags...)
	// After "--" an operand may look like a flag: then a "--" goes before all operands, where
	// the flag parser consumes it, so that every operand stays one.
	var plain []string
	needDash := false
	for i, o := range operands {
		if o == "--" {
			plain = append(plain, operands[i+1:]...)
			for _, p := range operands[i+1:] {
				needDash = needDash || isFlagToken(p) || p == "--"
			}
			break
		}
		plain = append(plain, o)
	}
	if needDash {
		out = append(out, "--")
	}
	return append(out, plain...)
}

// isFlagToken is what urfave/cli would parse as a flag: a leading "-" and more ("-" alone is an
// operand, as is everything after "--").
func isFlagToken(a string) bool {
	return len(a) > 1 && a[0] == '-' && a != "--"
}

func usageError(c *cli.Context, err error, _ bool) error {
	return exitcode.Wrap(exitcode.Usage, explainFlagError(c, err))
}

var reInvalidValue = regexp.MustCompile(`^invalid value "(.*)" for flag -(\S+): `)

// explainFlagError turns the flag package's "invalid value "5" for flag -timeout: parse error"
// into a line that says what a valid value looks like.
func explainFlagError(c *cli.Context, err error) error {
	if c == nil {
		return err
	}
	var flags []cli.Flag
	if c.Command != nil && c.Command.Name != "" {
		flags = c.Command.Flags
	} else if c.App != nil {
		flags = c.App.Flags
	}
	if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
		var names []string
		for _, f := range flags {
			names = append(names, f.Names()...)
		}
		if s := closest(name, names); s != "" {
			return fmt.Errorf("unknown flag --%s: did you mean --%s?", name, s)
		}
		return fmt.Errorf("unknown flag --%s (see --help)", name)
	}
	m := reInvalidValue.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	want := ""
	for _, f := range flags {
		if !slices.Contains(f.Names(), m[2]) {
			continue
		}
		switch f.(type) {
		case *cli.DurationFlag:
			want = "a duration with its unit, such as 500ms, 30s or 2m"
		case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag:
			want = "a whole number"
		case *cli.Float64Flag:
			want = "a number"
		case *cli.BoolFlag:
			want = "true or false"
		}
	}
	if tail := err.Error()[len(m[0]):]; want == "" && strings.HasPrefix(tail, "want ") {
		want = strings.TrimPrefix(tail, "want ") // a flag type of ours says it already
	}
	if want == "" {
		return err
	}
	return fmt.Errorf("--%s %q: not valid; want %s", m[2], m[1], want)
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

// boardErrors ends a command that ran over several boards: every board's error on stderr, one
// line each, and the exit status of the multi-board rule (exitcode.Worst: a corrupt board wins
// over an error on another board). A lone error is returned for Run to print.
func boardErrors(stderr io.Writer, status int, lines []string) error {
	if len(lines) == 1 {
		return exitcode.Errorf(status, "%s", lines[0])
	}
	for _, l := range lines {
		fmt.Fprintf(stderr, "kanban-doctor: %s\n", oneLine(l))
	}
	return exitcode.Status(status)
}

// closest is the name nearest to typed when it is near enough to be a typo (an edit distance of
// at most 2, or a prefix of at least 3 letters), else "".
func closest(typed string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		d := editDistance(typed, n)
		if len(typed) >= 3 && strings.HasPrefix(n, typed) {
			d = 1
		}
		if d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
