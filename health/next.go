package health

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/kanban-doctor/kanban-doctor/probe"
)

// NextSteps is what the report recommends, most urgent first, each with the exact command where
// one exists: the fix of every corrupt board, the boards that could not be checked or judged, and
// what the backups cost and whether they were false alarms. Empty when there is nothing to do.
func NextSteps(r Report) []string {
	var fix, unchecked, unsure, backups []string
	for _, b := range r.Boards {
		switch {
		case b.Error != "":
			unchecked = append(unchecked, fmt.Sprintf("%s: could not be checked (%s)", b.Name, firstLine(b.Error)))
		case b.Check == nil:
		case b.Check.Verdict == probe.Corrupt:
			line := fmt.Sprintf("%s (%s)", b.Name, b.Check.Class)
			if h := fixHint(*b.Check); h != "" {
				line += ": " + h
			}
			fix = append(fix, line)
		case b.Check.Verdict == probe.Inconclusive:
			unsure = append(unsure, fmt.Sprintf("%s: no verdict (busy or locked): run `kanban-doctor verify %s` again when its writers are quiet",
				b.Name, shellWord(b.DB)))
		}
		bk := b.Backups
		if bk.Units == 0 {
			continue
		}
		var reclaim int64
		for _, c := range bk.Contents {
			if c.Units > 1 {
				reclaim += c.Bytes - c.Bytes/int64(c.Units)
			}
		}
		line := fmt.Sprintf("%s: %s hold %s", b.Name, plural(bk.Units, "backup"), plural(bk.DistinctContents, "distinct content"))
		if bk.Checked && bk.HealthyContents == len(bk.Contents) && len(bk.Contents) > 0 {
			line += ", every one a healthy database: the backups were false alarms"
		} else if bk.Checked {
			line += fmt.Sprintf(", %d of them healthy databases", bk.HealthyContents)
		}
		if reclaim > 0 {
			line += fmt.Sprintf("; %s reclaimable with `kanban-doctor dedupe-backups --apply %s`",
				humanize.IBytes(uint64(reclaim)), shellWord(filepath.Dir(b.DB)))
		}
		if !bk.Checked {
			line += " (`report --check-contents` tells whether they are healthy)"
		}
		backups = append(backups, line)
	}
	out := []string{}
	if len(fix) > 0 {
		verb := "need"
		if len(fix) == 1 {
			verb = "needs"
		}
		out = append(out, fmt.Sprintf("%s %s a fix:", plural(len(fix), "board"), verb))
		for _, l := range fix {
			out = append(out, "  "+l)
		}
	}
	out = append(out, unchecked...)
	out = append(out, unsure...)
	out = append(out, backups...)
	return out
}

// fixHint is the fix of the verdict's own class (the finding "corrupt-<class>").
func fixHint(r probe.Result) string {
	for _, f := range r.Findings {
		if f.Code == "corrupt-"+string(r.Class) && f.Hint != "" {
			return "`" + f.Hint + "`"
		}
	}
	for _, f := range r.Findings {
		if f.Hint != "" {
			return "`" + f.Hint + "`"
		}
	}
	return ""
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return humanize.Comma(int64(n)) + " " + what + "s"
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// shellWord quotes a path for pasting into a shell when it needs it.
func shellWord(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
