package reports

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"

	"github.com/kanban-doctor/kanban-doctor/repro"
)

// ReproText prints the harness matrix (one row per scenario and strategy), the notes that matter
// (lost commits while integrity_check says ok, injected damage, errors) and the --ci failures.
func ReproText(w io.Writer, res repro.Result) error {
	fmt.Fprintf(w, "repro: %d cells, %d ms each, %d writers, checkpoint %s every %s, seed %d, %.1f s\n\n",
		len(res.Cells), res.DurationMs, res.Writers, res.Checkpoint, res.CheckpointEvery, res.Seed, res.Seconds)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tSTRATEGY\tCHECKS\tSUSPICIOUS\tCORRUPT\tFALSE+\tFALSE-\tBACKUPS\tBACKUP BYTES\tBAD BACKUPS\tTASKS/S\tLOST\tP50\tP99")
	for _, c := range res.Cells {
		bad := "-"
		if c.BackupsChecked > 0 {
			bad = fmt.Sprintf("%d/%d", c.BackupsCorrupt, c.BackupsChecked)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%.0f\t%d\t%s\t%s\n", c.Scenario, c.Strategy,
			c.Checks, c.Suspicious, c.CorruptVerdicts, c.FalsePositives, c.FalseNegatives, c.BackupsWritten,
			humanize.IBytes(uint64(c.BackupBytes)), bad, c.CommitsPerSec, c.LostCommits, ms(c.P50ms), ms(c.P99ms))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var notes []string
	for _, c := range res.Cells {
		if c.Error != "" {
			notes = append(notes, fmt.Sprintf("%s: error: %s", c.Name(), c.Error))
		}
		if len(c.Hazards) > 0 && !(len(c.Hazards) == 1 && c.Hazards["open-processes"] > 0) {
			var hs []string
			for _, k := range slices.Sorted(maps.Keys(c.Hazards)) {
				if k == "open-processes" {
					continue // always there on a live board: in the JSON only
				}
				hs = append(hs, fmt.Sprintf("%s in %d/%d checks", k, c.Hazards[k], c.Checks))
			}
			notes = append(notes, fmt.Sprintf("%s: hazards reported: %s", c.Name(), strings.Join(hs, ", ")))
		}
		if c.GuardDamage > 0 {
			notes = append(notes, fmt.Sprintf("%s: GUARD DAMAGE: %s", c.Name(), strings.Join(c.GuardDamageDetail, "; ")))
		}
		if c.Repaired {
			notes = append(notes, fmt.Sprintf("%s: repaired %.0f ms after the injection", c.Name(), c.RepairLatencyMs))
		}
		if c.Inconclusive > 0 || c.GuardErrors > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d inconclusive, %d guard errors (neither scored as corrupt)", c.Name(), c.Inconclusive, c.GuardErrors))
		}
		if c.BackupsPruned > 0 {
			notes = append(notes, fmt.Sprintf("%s: backups %d written, %d pruned, %d left", c.Name(), c.BackupsWritten, c.BackupsPruned, c.BackupsLeft))
		}
		for _, n := range c.Notes {
			notes = append(notes, fmt.Sprintf("%s: %s", c.Name(), n))
		}
		if c.Injection != "" && c.Strategy == firstStrategy(res) {
			notes = append(notes, fmt.Sprintf("%s: %s", c.Scenario, c.Injection))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	if res.Dir != "" {
		fmt.Fprintf(w, "\nboards, ledgers and backups kept in %s\n", res.Dir)
	}
	switch {
	case res.CI == nil:
	case res.CI.Passed:
		fmt.Fprintln(w, "\nci: ok (legacy still reproduces the false positives; no false positive in clean; no board damaged; doctor: no false positive, no false negative)")
	default:
		fmt.Fprintf(w, "\nci: FAIL (%d)\n", len(res.CI.Failures))
		for _, f := range res.CI.Failures {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
	return nil
}

func firstStrategy(res repro.Result) string {
	if len(res.Strategies) > 0 {
		return res.Strategies[0]
	}
	return ""
}

func ms(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.2fs", v/1000)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.0fms", v), ".0")
}
