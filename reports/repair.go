package reports

import (
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/kanban-doctor/kanban-doctor/repair"
)

// RepairText prints what repair found and did: the diagnosis and action, the plan (dry run) or
// where the output went, one line per table with its losses, then totals and notes.
func RepairText(w io.Writer, r repair.Result) error {
	var b strings.Builder
	head := string(r.Verdict)
	if r.Class != "" {
		head += " (" + string(r.Class) + ")"
	}
	fmt.Fprintf(&b, "%s: %s -> %s\n", r.DB, head, r.Action)
	if r.DryRun || r.Action == repair.ActionNone && !r.Written {
		label := "plan"
		if !r.DryRun {
			label = "result"
		}
		for _, p := range r.Plan {
			fmt.Fprintf(&b, "  %s: %s\n", label, p)
		}
		if r.DryRun {
			b.WriteString("  dry run: nothing was written\n")
		}
	}
	if r.Written {
		if r.InPlace {
			fmt.Fprintf(&b, "  repaired in place: %s (output integrity_check: %s); the damaged board was kept as %s\n", r.DB, r.Output, r.Backup)
			if len(r.Unchecked) > 0 {
				fmt.Fprintf(&b, "  not checked here: %s (see the notes)\n", strings.Join(r.Unchecked, ", "))
			}
		} else {
			verified := "verified " + r.Output
			if len(r.Unchecked) > 0 {
				verified += ", except " + strings.Join(r.Unchecked, ", ") + ": not checked here, see the notes"
			}
			fmt.Fprintf(&b, "  wrote %s (%s); %s was not modified\n", r.Out, verified, r.DB)
		}
	}
	if len(r.Tables) > 0 {
		fmt.Fprintf(&b, "  %-22s %-8s %9s %9s %6s  %s\n", "table", "method", "read", "written", "lost", "lost rowids / damaged pages")
		for _, t := range r.Tables {
			fmt.Fprintf(&b, "  %-22s %-8s %9d %9d %6d  %s\n", t.Name, t.Method, t.RowsRead, t.RowsWritten, t.RowsLostKnown, tableLoss(t))
		}
		fmt.Fprintf(&b, "  total: %d rows read, %d written, %d known lost, %d lost rowid ranges, %d damaged pages\n",
			r.Totals.RowsRead, r.Totals.RowsWritten, r.Totals.RowsLostKnown, r.Totals.LostRanges, r.Totals.Unreadable)
	}
	if c := r.Compare; c != nil {
		if c.Path == "" {
			fmt.Fprintf(&b, "  backups in %s: no healthy backup among %d\n", c.Dir, c.Checked)
		} else {
			fmt.Fprintf(&b, "  newest healthy backup: %s (%s)\n", c.Path, c.Time.Format("2006-01-02 15:04:05"))
			for _, t := range c.Tables {
				fmt.Fprintf(&b, "    %-22s backup %9d  repaired %9d  (%+d)\n", t.Name, t.Backup, t.Repaired, t.Diff)
			}
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	if r.Written && !r.InPlace && r.Out != "" {
		// The repaired file is not in use until it is put back: say how, with the real paths.
		fmt.Fprintf(&b, "  next: kanban-doctor restore --from %s %s   (backs up the damaged board first; --offline when nothing has it open)\n",
			shellArg(r.Out), shellArg(r.DB))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// shellArg quotes a path for pasting into a shell when it needs it.
func shellArg(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// tableLoss summarises a table's lost rowid ranges and damaged pages in a few words.
func tableLoss(t repair.TableReport) string {
	var parts []string
	if len(t.LostRanges) > 0 {
		var rs []string
		for i, lr := range t.LostRanges {
			if i == 4 {
				rs = append(rs, fmt.Sprintf("+%d more", len(t.LostRanges)-4))
				break
			}
			rs = append(rs, rangeText(lr))
		}
		parts = append(parts, "rowids "+strings.Join(rs, ", "))
	}
	if len(t.UnreadablePages) > 0 {
		p := t.UnreadablePages[0]
		s := fmt.Sprintf("page %d: %s", p.Page, p.Reason)
		if len(t.UnreadablePages) > 1 {
			s += fmt.Sprintf(" (+%d more pages)", len(t.UnreadablePages)-1)
		}
		parts = append(parts, s)
	}
	if t.OrphanRows > 0 {
		parts = append(parts, fmt.Sprintf("%d rows recovered from unattached pages", t.OrphanRows))
	}
	if t.RejectedCells > 0 {
		parts = append(parts, fmt.Sprintf("%d cells failed validation", t.RejectedCells))
	}
	return strings.Join(parts, "; ")
}

func rangeText(lr repair.LostRange) string {
	from, to := fmt.Sprint(lr.From), fmt.Sprint(lr.To)
	if lr.From == math.MinInt64 {
		from = "first"
	}
	if lr.To == math.MaxInt64 {
		to = "last"
	}
	if from == to {
		return from
	}
	return from + "-" + to
}
