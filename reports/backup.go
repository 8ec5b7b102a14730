package reports

import (
	"fmt"
	"io"

	"github.com/dustin/go-humanize"

	"github.com/kanban-doctor/kanban-doctor/backup"
)

// BackupResult is the JSON body of the backup command.
type BackupResult struct {
	Backups []backup.Result `json:"backups"`
	// Skipped are boards with nothing to back up (board.json and no database yet).
	Skipped []BackupSkip `json:"skipped,omitempty"`
	Errors  []string     `json:"errors,omitempty"`
}

// BackupSkip is a board the backup command passed over, and why.
type BackupSkip struct {
	Board  string `json:"board"`
	DB     string `json:"db"`
	Reason string `json:"reason"`
}

// BackupText prints one block per backup written.
func BackupText(w io.Writer, rs []backup.Result) error {
	for _, r := range rs {
		if r.DryRun {
			fmt.Fprintf(w, "dry run: would back up %s to %s, writing nothing now\n", r.Source, r.Path)
			for _, p := range r.Pruned {
				fmt.Fprintf(w, "  would prune %s\n", p)
			}
			continue
		}
		verb := "wrote"
		if r.Existed {
			verb = "already there"
		}
		fmt.Fprintf(w, "%s %s\n", verb, r.Path)
		fmt.Fprintf(w, "  from %s via %s: %s, %s pages of %d bytes, quick_check %s, %.2fs\n", r.Source, r.Method,
			humanize.IBytes(uint64(r.Bytes)), humanize.Comma(int64(r.Pages)), r.PageSize, r.Check, r.Duration)
		fmt.Fprintf(w, "  sha256 %s\n", r.SHA256)
		for _, p := range r.Pruned {
			fmt.Fprintf(w, "  pruned %s\n", p)
		}
		if n := len(r.CleanedTemps); n > 0 {
			fmt.Fprintf(w, "  removed %d temp files of an interrupted run\n", n)
		}
	}
	return nil
}

// RestoreText prints a restore's plan and outcome.
func RestoreText(w io.Writer, r backup.RestoreResult) error {
	if r.DryRun {
		fmt.Fprintf(w, "dry run: would restore %s into %s (%s), changing nothing now:\n", r.From, r.DB, r.Mode)
	} else {
		fmt.Fprintf(w, "restored %s into %s (%s):\n", r.From, r.DB, r.Mode)
	}
	for i, s := range r.Plan {
		fmt.Fprintf(w, "  %d. %s\n", i+1, s)
	}
	if r.DryRun {
		return nil
	}
	if r.Before != nil {
		fmt.Fprintf(w, "previous content kept in %s\n", r.Before.Path)
	}
	if r.Quarantined != "" {
		fmt.Fprintf(w, "previous (damaged) content quarantined in %s\n", r.Quarantined)
	}
	for _, p := range r.Removed {
		fmt.Fprintf(w, "removed stale %s\n", p)
	}
	_, err := fmt.Fprintf(w, "board now holds %s tasks (backup had %s), quick_check %s\n",
		humanize.Comma(r.Tasks), humanize.Comma(r.FromTasks), r.Check)
	return err
}
