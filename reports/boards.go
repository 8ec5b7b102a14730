package reports

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"

	"github.com/kanban-doctor/kanban-doctor/board"
)

// BoardsText prints the board inventory as a table followed by per-board backup details.
func BoardsText(w io.Writer, reps []board.Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BOARD\tJOURNAL\tDB\tWAL\tBACKUPS\tBACKUP BYTES\tPATH")
	for _, r := range reps {
		wal := "-"
		if r.HasWAL {
			wal = humanize.IBytes(uint64(r.WALSize))
		}
		db := "-"
		if r.Exists {
			db = humanize.IBytes(uint64(r.Size))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.JournalMode, db, wal,
			humanize.Comma(int64(r.Backups.Count)), humanize.IBytes(uint64(r.Backups.Bytes)), r.DB)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range reps {
		if r.HeaderError != "" {
			fmt.Fprintf(w, "%s: %s: %s\n", r.Name, r.DB, r.HeaderError)
		}
	}
	for _, r := range reps {
		s := r.Backups
		if s.Count == 0 && s.Orphans == 0 {
			continue
		}
		var gens []string
		for g, n := range s.ByGeneration {
			gens = append(gens, fmt.Sprintf("%s %s", humanize.Comma(int64(n)), g))
		}
		sort.Strings(gens)
		line := fmt.Sprintf("\n%s: %s backup units (%s), %s", r.Name, humanize.Comma(int64(s.Count)),
			strings.Join(gens, ", "), humanize.IBytes(uint64(s.Bytes)))
		if s.WithWAL > 0 {
			line += fmt.Sprintf(", %d with -wal", s.WithWAL)
		}
		if s.Orphans > 0 {
			line += fmt.Sprintf(", %d orphan companions", s.Orphans)
		}
		if s.First != nil {
			line += fmt.Sprintf("; first %s, last %s", s.First.Format("2006-01-02 15:04:05"), s.Last.Format("2006-01-02 15:04:05"))
		}
		fmt.Fprintln(w, line)
	}
	return nil
}
