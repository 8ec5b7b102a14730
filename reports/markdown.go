package reports

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/kanban-doctor/kanban-doctor/health"
)

// Markdown wraps any command's text output into a Markdown document for pasting into a bug
// report: a title, the versions maintainers ask for, and the output in a fenced block. Commands
// with a richer Markdown of their own (report) use it instead.
func Markdown(w io.Writer, command string, env health.Environment, text func(io.Writer) error) error {
	var out bytes.Buffer
	if err := text(&out); err != nil {
		return err
	}
	ew := &errWriter{w: w}
	ew.printf("# kanban-doctor %s\n\n", command)
	writeEnvMarkdown(ew, env)
	ew.printf("\n%s\n", fence(out.String(), ""))
	return ew.err
}

func writeEnvMarkdown(ew *errWriter, env health.Environment) {
	ew.printf("| | |\n| --- | --- |\n")
	ew.printf("| generated | %s |\n", Now().Format("2006-01-02 15:04:05 MST"))
	ew.printf("| kanban-doctor | %s |\n", mdCell(Version()))
	ew.printf("| SQLite | %s |\n", mdCell(env.SQLiteVersion))
	ew.printf("| Go | %s %s/%s |\n", mdCell(env.GoVersion), mdCell(env.OS), mdCell(env.Arch))
}

// fence puts s in a fenced code block whose fence is longer than any backtick run inside s.
func fence(s, lang string) string {
	f := "```"
	for strings.Contains(s, f) {
		f += "`"
	}
	s = strings.TrimRight(s, "\n")
	return f + lang + "\n" + s + "\n" + f
}

// code is an inline code span that survives backticks in s.
func code(s string) string {
	if s == "" {
		return ""
	}
	f := "`"
	for strings.Contains(s, f) {
		f += "`"
	}
	pad := ""
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		pad = " "
	}
	return f + pad + s + pad + f
}

// mdCell makes s safe inside a table cell.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "\\", "\\\\")
	s = strings.ReplaceAll(s, "|", "\\|")
	s = strings.ReplaceAll(s, "\r", "")
	return strings.ReplaceAll(s, "\n", "<br>")
}

// mdCode is a code span inside a table cell.
func mdCode(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(code(s), "|", "\\|"), "\n", " ")
}

// ReportMarkdown renders the health report as Markdown for a bug report: versions, then per board
// the verdict, the check's raw output, findings with fixes, hazards, files, backup inventory and
// bursts.
func ReportMarkdown(w io.Writer, r health.Report) error {
	ew := &errWriter{w: w}
	ew.printf("# kanban-doctor report\n\n")
	writeEnvMarkdown(ew, r.Environment)
	ew.printf("| exit status | %d |\n", r.ExitCode)
	if len(r.NextSteps) > 0 {
		ew.printf("\n## Next steps\n\n")
		for _, s := range r.NextSteps {
			if strings.HasPrefix(s, "  ") {
				ew.printf("  - %s\n", strings.TrimSpace(s))
			} else {
				ew.printf("- %s\n", s)
			}
		}
	}
	for _, b := range r.Boards {
		verdict := "not checked"
		if b.NoDatabase {
			verdict = "no database yet"
		}
		if b.Check != nil {
			verdict = string(b.Check.Verdict)
			if b.Check.Class != "" {
				verdict += " (" + string(b.Check.Class) + ")"
			}
		}
		ew.printf("\n## Board %s: **%s**\n\n", code(b.Name), verdict)
		ew.printf("| | |\n| --- | --- |\n")
		ew.printf("| database | %s |\n", mdCode(b.DB))
		ew.printf("| files | %s |\n", mdCell(filesLine(b)))
		if b.Check != nil || b.NoDatabase {
			ew.printf("| check | %s |\n", mdCell(verdictLine(b)))
		}
		if b.Error != "" {
			ew.printf("| error | %s |\n", mdCell(b.Error))
		}
		if c := b.Check; c != nil {
			if len(c.FirstAnswer) > 0 {
				ew.printf("\n### %s output\n\n%s\n", c.Mode, fence(strings.Join(c.FirstAnswer, "\n"), ""))
			}
			if c.Child != "" {
				ew.printf("\nClean child process said:\n\n%s\n", fence(c.Child, ""))
			}
			ew.printf("\n### Findings\n\n")
			if len(c.Findings) == 0 {
				ew.printf("None.\n")
			}
			for _, f := range onceHints(c.Findings) {
				ew.printf("- **%s** %s: %s\n", f.Severity, code(f.Code), strings.ReplaceAll(f.Message, "\n", " "))
				if f.Hint != "" {
					ew.printf("  fix: %s\n", code(f.Hint))
				}
			}
			ew.printf("\n### Hazards\n\n")
			if len(c.Hazards) == 0 {
				ew.printf("None.\n")
			}
			for _, h := range c.Hazards {
				ew.printf("- %s: %s", code(h.Code), strings.ReplaceAll(h.Message, "\n", " "))
				if len(h.Pids) > 0 {
					ew.printf(" (pids %s)", joinInts(h.Pids))
				}
				ew.printf("\n")
				for _, p := range h.Paths {
					ew.printf("  - %s\n", code(p))
				}
			}
		}
		writeBackupsMarkdown(ew, b)
	}
	return ew.err
}

func writeBackupsMarkdown(ew *errWriter, b health.Board) {
	bk := b.Backups
	ew.printf("\n### Corrupt backups\n\n%s.\n", backupsLine(bk))
	if bk.Units == 0 {
		return
	}
	ew.printf("\n| generation | units | bytes |\n| --- | ---: | ---: |\n")
	for _, g := range bk.Generations {
		ew.printf("| %s | %s | %s |\n", g.Generation, humanize.Comma(int64(g.Units)), fmtBytes(g.Bytes))
	}
	ew.printf("\n| content (sha256) | size | units | first | last | health |\n| --- | ---: | ---: | --- | --- | --- |\n")
	for i, c := range bk.Contents {
		if i == mdContentsMax {
			ew.printf("| ... | | %s more contents | | | |\n", humanize.Comma(int64(len(bk.Contents)-i)))
			break
		}
		size := fmtBytes(c.Size)
		if c.HasWAL {
			size += " + WAL " + fmtBytes(c.WALSize)
		}
		ew.printf("| %s | %s | %s | %s | %s | %s |\n", mdCode(shortHash(c)), size, humanize.Comma(int64(c.Units)),
			fmtTime(c.First), fmtTime(c.Last), mdCell(contentHealth(c)))
	}
	tl := b.Timeline
	ew.printf("\n### Backup timeline\n\n%s .. %s, one column per %s:\n\n%s\n", fmtTime(tl.Start), fmtTime(tl.End),
		fmtSeconds(tl.BucketSeconds), fence("|"+sparkline(tl, false)+"|", ""))
	if len(tl.Bursts) == 0 {
		ew.printf("\nNo bursts.\n")
		return
	}
	ew.printf("\n| burst | start | end | backups | rate | bytes |\n| ---: | --- | --- | ---: | ---: | ---: |\n")
	for i, u := range tl.Bursts {
		ew.printf("| %d | %s | %s | %s | %.0f/min | %s |\n", i+1, fmtTime(u.Start), fmtTime(u.End),
			humanize.Comma(int64(u.Units)), u.PerMinute, fmtBytes(u.Bytes))
	}
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}
