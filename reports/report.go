package reports

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/health"
	"github.com/kanban-doctor/kanban-doctor/probe"
)

// timeLayout is how reports print a moment: second precision with the zone, so a pasted report
// is unambiguous.
const timeLayout = "2006-01-02 15:04:05 MST"

func fmtTime(t time.Time) string { return t.Format(timeLayout) }

func fmtBytes(n int64) string { return humanize.IBytes(uint64(n)) }

// fmtDuration prints a check's duration rounded for people.
func fmtDuration(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(time.Millisecond).String()
	}
	return d.String()
}

// fmtSeconds prints a bucket width ("5m", "1h", "2d").
func fmtSeconds(s int64) string {
	switch {
	case s%86400 == 0:
		return fmt.Sprintf("%dd", s/86400)
	case s%3600 == 0:
		return fmt.Sprintf("%dh", s/3600)
	case s%60 == 0:
		return fmt.Sprintf("%dm", s/60)
	}
	return fmt.Sprintf("%ds", s)
}

// ANSI colours for the text report.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiDim    = "\x1b[2m"
)

type painter bool

func (p painter) paint(code, s string) string {
	if !p || s == "" {
		return s
	}
	return code + s + ansiReset
}

func verdictColor(v probe.Verdict) string {
	switch v {
	case probe.Healthy:
		return ansiGreen
	case probe.Corrupt:
		return ansiRed + ansiBold
	}
	return ansiYellow
}

// verdictLine is the one-line verdict of a board: "healthy (quick_check, 0 re-checks, 12ms)".
func verdictLine(b health.Board) string {
	if b.NoDatabase {
		return board.AwaitingDBNote
	}
	if b.Check == nil {
		return "not checked: " + b.Error
	}
	c := b.Check
	s := string(c.Verdict)
	if c.Class != probe.ClassNone {
		s += " (" + string(c.Class) + ")"
	}
	detail := []string{c.Mode, plural(c.Rechecks, "re-check", "re-checks")}
	if c.Child != "" {
		detail = append(detail, "clean child said "+clip(firstLine(c.Child), 60))
	}
	detail = append(detail, fmtDuration(c.Duration))
	return s + " [" + strings.Join(detail, ", ") + "]"
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// clip shortens s to at most n runes, marking the cut.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return humanize.Comma(int64(n)) + " " + many
}

// filesLine describes the live files: "wal, DB 12 MiB, WAL 3.1 MiB, SHM 32 KiB".
func filesLine(b health.Board) string {
	parts := []string{b.JournalMode}
	if b.Exists {
		parts = append(parts, "DB "+fmtBytes(b.Size))
	}
	if b.HasWAL {
		parts = append(parts, "WAL "+fmtBytes(b.WALSize))
	} else {
		parts = append(parts, "no WAL file")
	}
	if b.HasSHM {
		parts = append(parts, "SHM "+fmtBytes(b.SHMSize))
	}
	s := strings.Join(parts, ", ")
	if b.HeaderError != "" {
		s += " (header: " + b.HeaderError + ")"
	}
	return s
}

// backupsLine summarises the inventory: "73 units, 1.2 GiB: 60 timestamped, 13 content; 4 distinct contents".
func backupsLine(bk health.Backups) string {
	if bk.Units == 0 && bk.Orphans == 0 {
		return "none"
	}
	var gens []string
	for _, g := range bk.Generations {
		gens = append(gens, humanize.Comma(int64(g.Units))+" "+string(g.Generation))
	}
	s := fmt.Sprintf("%s, %s", plural(bk.Units, "unit", "units"), fmtBytes(bk.Bytes))
	if len(gens) > 0 {
		s += " (" + strings.Join(gens, ", ") + ")"
	}
	s += "; " + plural(bk.DistinctContents, "distinct content", "distinct contents")
	if bk.Checked {
		s += fmt.Sprintf(", %s healthy", humanize.Comma(int64(bk.HealthyContents)))
	}
	if bk.WithWAL > 0 {
		s += fmt.Sprintf("; %s with -wal", humanize.Comma(int64(bk.WithWAL)))
	}
	if bk.Orphans > 0 {
		s += fmt.Sprintf("; %s orphan companions", humanize.Comma(int64(bk.Orphans)))
	}
	return s
}

func burstLine(i int, b health.Burst) string {
	return fmt.Sprintf("burst %d: %s, %s over %s (%.0f/min), %s", i+1, fmtTime(b.Start),
		plural(b.Units, "backup", "backups"), b.End.Sub(b.Start).Round(time.Second), b.PerMinute, fmtBytes(b.Bytes))
}

func contentHealth(c health.Content) string {
	switch {
	case c.Check == nil:
		return "not checked"
	case c.Check.Error != "":
		return "check failed: " + c.Check.Error
	case c.Check.Class != probe.ClassNone:
		return string(c.Check.Verdict) + " (" + string(c.Check.Class) + ")"
	}
	return string(c.Check.Verdict)
}

func shortHash(c health.Content) string {
	if c.SHA256 == "" {
		return "(unique size)"
	}
	return c.SHA256[:16]
}

// sparkline draws the timeline's buckets as block characters.
func sparkline(tl health.Timeline, p painter) string {
	blocks := []rune(" ▁▂▃▄▅▆▇█")
	max := 0
	for _, b := range tl.Buckets {
		if b.Units > max {
			max = b.Units
		}
	}
	var sb strings.Builder
	for _, b := range tl.Buckets {
		r := blocks[0]
		if b.Units > 0 {
			r = blocks[1+(b.Units*(len(blocks)-2))/max]
			if r == blocks[len(blocks)-1] && b.Units < max {
				r = blocks[len(blocks)-2]
			}
		}
		s := string(r)
		if b.Burst > 0 {
			s = p.paint(ansiRed, s)
		}
		sb.WriteString(s)
	}
	return sb.String()
}

// textContentsMax and mdContentsMax cap the distinct contents listed as text and Markdown (a storm
// of distinct backups can hold hundreds); JSON and HTML list all.
const (
	textContentsMax = 20
	mdContentsMax   = 50
)

// ReportText prints the health report for a terminal; colour when color is true.
func ReportText(w io.Writer, r health.Report, color bool) error {
	p := painter(color)
	ew := &errWriter{w: w}
	for i, b := range r.Boards {
		if i > 0 {
			ew.printf("\n")
		}
		ew.printf("%s  %s\n", p.paint(ansiBold, b.Name), b.DB)
		verdict := verdictLine(b)
		if b.Check != nil {
			verdict = p.paint(verdictColor(b.Check.Verdict), verdict)
		} else {
			verdict = p.paint(ansiRed, verdict)
		}
		ew.printf("  %-10s %s\n", "verdict", verdict)
		ew.printf("  %-10s %s\n", "files", filesLine(b))
		if b.Check != nil {
			if len(b.Check.Findings) == 0 {
				ew.printf("  %-10s none\n", "findings")
			}
			for j, f := range onceHints(b.Check.Findings) {
				label := ""
				if j == 0 {
					label = "findings"
				}
				ew.printf("  %-10s %-7s %s: %s\n", label, f.Severity, f.Code, f.Message)
				if f.Hint != "" {
					ew.printf("  %-10s         fix: %s\n", "", f.Hint)
				}
			}
			if len(b.Check.Hazards) == 0 {
				ew.printf("  %-10s none\n", "hazards")
			}
			for j, h := range b.Check.Hazards {
				label := ""
				if j == 0 {
					label = "hazards"
				}
				ew.printf("  %-10s %s: %s\n", label, p.paint(ansiYellow, h.Code), h.Message)
			}
		}
		ew.printf("  %-10s %s\n", "backups", backupsLine(b.Backups))
		if b.Backups.Checked {
			for i, c := range b.Backups.Contents {
				if i == textContentsMax {
					ew.printf("  %-10s ... %s more (--json or --html list all)\n", "", humanize.Comma(int64(len(b.Backups.Contents)-i)))
					break
				}
				ew.printf("  %-10s %-16s  %s x %s  %s\n", "", shortHash(c), plural(c.Units, "unit", "units"),
					fmtBytes(c.Size), contentHealth(c))
			}
		}
		tl := b.Timeline
		if len(tl.Buckets) > 0 {
			ew.printf("  %-10s %s .. %s, one column per %s\n", "timeline", fmtTime(tl.Start), fmtTime(tl.End), fmtSeconds(tl.BucketSeconds))
			ew.printf("  %-10s |%s|\n", "", sparkline(tl, p))
		}
		for j, bu := range tl.Bursts {
			label := ""
			if j == 0 {
				label = "bursts"
			}
			ew.printf("  %-10s %s\n", label, p.paint(ansiRed, burstLine(j, bu)))
		}
	}
	if len(r.NextSteps) > 0 {
		ew.printf("\n%s\n", p.paint(ansiBold, "next steps"))
		for _, s := range r.NextSteps {
			ew.printf("  %s\n", s)
		}
	}
	return ew.err
}

// errWriter keeps the first write error so renderers can print freely and check once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err != nil {
		return
	}
	_, e.err = fmt.Fprintf(e.w, format, args...)
}

// onceHints returns the findings with each fix shown once: a finding whose hint an earlier one
// already gave carries none (a damaged board repeats one REINDEX or repair line per finding).
func onceHints(fs []probe.Finding) []probe.Finding {
	out := make([]probe.Finding, len(fs))
	seen := map[string]bool{}
	for i, f := range fs {
		if f.Hint != "" && seen[f.Hint] {
			f.Hint = ""
		}
		seen[f.Hint] = true
		out[i] = f
	}
	return out
}
