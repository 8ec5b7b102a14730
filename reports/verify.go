package reports

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/probe"
)

// VerifyBoard is one board of the verify command: the probe result, or the error that kept it
// from being checked (missing, unreadable, empty file), or NoDatabase for a board hermes has made
// but not used yet (board.json, no kanban.db: a normal state, exit 0).
type VerifyBoard struct {
	probe.Result
	Error      string `json:"error,omitempty"`
	NoDatabase bool   `json:"no_database,omitempty"`
}

// VerifyText prints one line per board (verdict, class, database, mode, time), then its findings,
// hints, hazards and backup, indented.
func VerifyText(w io.Writer, boards []VerifyBoard) error {
	color := Color(w)
	paint := func(v probe.Verdict, s string) string {
		if !color {
			return s
		}
		code := map[probe.Verdict]string{probe.Healthy: "32", probe.Transient: "33", probe.FalsePositive: "33",
			probe.Corrupt: "31;1", probe.Inconclusive: "35"}[v]
		if code == "" {
			return s
		}
		return "\x1b[" + code + "m" + s + "\x1b[0m"
	}
	var b strings.Builder
	for _, vb := range boards {
		r := vb.Result
		if vb.Error != "" {
			fmt.Fprintf(&b, "%s: error: %s\n", r.Name, vb.Error)
			continue
		}
		if vb.NoDatabase {
			fmt.Fprintf(&b, "%s: %s  %s\n", r.Name, board.AwaitingDBNote, r.DB)
			continue
		}
		verdict := string(r.Verdict)
		if r.Class != "" {
			verdict += " (" + string(r.Class) + ")"
		}
		fmt.Fprintf(&b, "%s: %s  %s  [%s, %s", r.Name, paint(r.Verdict, verdict), r.DB, r.Mode, r.Duration.Round(time.Millisecond))
		if r.Rechecks > 0 {
			fmt.Fprintf(&b, ", %d re-checks", r.Rechecks)
		}
		if r.Child != "" {
			fmt.Fprintf(&b, ", child: %s", oneLineCap(r.Child, 60))
		}
		b.WriteString("]\n")
		seen := map[string]int{}
		for _, f := range r.Findings {
			// A damaged index gives one line per row: the first few say it, the rest are counted
			// (--json has them all).
			if seen[f.Code]++; seen[f.Code] > findingRepeats {
				continue
			}
			fmt.Fprintf(&b, "  %-7s %s: %s\n", f.Severity, f.Code, f.Message)
			if f.Hint != "" && (f.Code == "corrupt-"+string(r.Class) || r.Verdict != probe.Corrupt) {
				fmt.Fprintf(&b, "          fix: %s\n", f.Hint)
			}
		}
		for _, f := range r.Findings {
			if n := seen[f.Code] - findingRepeats; n > 0 {
				fmt.Fprintf(&b, "          ... and %d more %s findings (--json lists them all)\n", n, f.Code)
				seen[f.Code] = 0
			}
		}
		for _, h := range r.Hazards {
			fmt.Fprintf(&b, "  hazard  %s: %s\n", h.Code, h.Message)
		}
		if r.Backup != "" {
			fmt.Fprintf(&b, "  backup  %s\n", r.Backup)
		}
	}
	if len(boards) > 1 {
		b.WriteString(verifySummary(boards) + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// findingRepeats is how many findings of one code verify's text prints per board.
const findingRepeats = 3

// verifySummary is the last line of a multi-board verify: how many boards got each verdict, worst
// first ("5 boards: 1 corrupt, 1 error, 2 healthy, 1 no database yet").
func verifySummary(boards []VerifyBoard) string {
	order := []string{string(probe.Corrupt), "error", string(probe.Inconclusive), string(probe.FalsePositive),
		string(probe.Transient), string(probe.Healthy), "no database yet"}
	n := map[string]int{}
	for _, vb := range boards {
		switch {
		case vb.Error != "":
			n["error"]++
		case vb.NoDatabase:
			n["no database yet"]++
		default:
			n[string(vb.Verdict)]++
		}
	}
	var parts []string
	for _, k := range order {
		if n[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[k], k))
		}
	}
	return fmt.Sprintf("%d boards: %s", len(boards), strings.Join(parts, ", "))
}

func oneLineCap(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
