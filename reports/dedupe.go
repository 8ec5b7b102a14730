package reports

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/kanban-doctor/kanban-doctor/dedupe"
)

// DedupeResult is what dedupe-backups prints: the plan's report and, with --apply, what was done.
type DedupeResult struct {
	dedupe.Report
	DryRun  bool           `json:"dry_run"`
	Applied *dedupe.Result `json:"applied,omitempty"`
}

// dedupeListMax caps the groups and bursts listed as text (--json lists all).
const dedupeListMax = 50

// DedupeText prints a dedupe-backups result for people.
func DedupeText(w io.Writer, r DedupeResult) error {
	ew := &dedupeWriter{w: w}
	ew.printf("Scanned %s: %s backup units in %s files, %s; %s distinct contents (%s).\n",
		dedupePlural(len(r.Dirs), "directory", "directories"), humanize.Comma(int64(r.Units)), humanize.Comma(int64(r.Files)),
		humanize.IBytes(uint64(r.Bytes)), humanize.Comma(int64(r.Distinct)), r.HashAlgorithm)
	if len(r.Groups) > 0 {
		ew.printf("\nDuplicate groups (%d):\n", len(r.Groups))
		tw := tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  HASH\tSIZE\tCOUNT\tFIRST\tLAST\tCOMPANIONS\tKEEP")
		for i, g := range r.Groups {
			if i == dedupeListMax {
				fmt.Fprintf(tw, "  ... %d more (--json lists all)\n", len(r.Groups)-i)
				break
			}
			comp := "-"
			switch {
			case g.WALHash != "" && g.SHMHash != "":
				comp = "wal+shm"
			case g.WALHash != "":
				comp = "wal"
			case g.SHMHash != "":
				comp = "shm"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.Hash[:16], humanize.IBytes(uint64(g.UnitBytes)),
				humanize.Comma(int64(g.Count)), dedupeTime(g.First), dedupeTime(g.Last), comp, dedupeBase(g.Keep))
		}
		tw.Flush()
	}
	if len(r.Bursts) > 0 {
		ew.printf("\nBursts (%d, split at gaps over the burst gap):\n", len(r.Bursts))
		tw := tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  FIRST\tLAST\tUNITS\tDISTINCT\tDUPLICATES\tBYTES")
		for i, b := range r.Bursts {
			if i == dedupeListMax {
				fmt.Fprintf(tw, "  ... %d more (--json lists all)\n", len(r.Bursts)-i)
				break
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\n", dedupeTime(b.First), dedupeTime(b.Last), humanize.Comma(int64(b.Units)),
				b.Distinct, humanize.Comma(int64(b.Duplicates)), humanize.IBytes(uint64(b.Bytes)))
		}
		tw.Flush()
	}
	for _, o := range r.Orphans {
		if o.SameAs != "" {
			ew.printf("orphan %s: identical to %s (handled like a duplicate)\n", o.Path, dedupeBase(o.SameAs))
		} else {
			ew.printf("orphan %s: only copy of its content, kept\n", o.Path)
		}
	}
	for _, t := range r.Temps {
		ew.printf("leftover temporary link from a killed run: %s\n", t)
	}
	for _, s := range r.Unreadable {
		ew.printf("skipped %s: %s\n", s.Path, s.Reason)
	}
	if r.Contents != nil {
		ew.printf("\nContents checked: %d healthy databases (the corruption verdict that made them was false), %d corrupt.\n",
			r.HealthyContents, r.CorruptContents)
		for _, c := range r.Contents {
			verdict := string(c.Verdict)
			switch {
			case c.Error != "":
				verdict = "error: " + c.Error
			case c.Healthy && c.Verdict == "healthy":
				verdict = "healthy database"
			case c.Healthy:
				verdict += " (healthy database)"
			case c.Class != "":
				verdict += " (" + string(c.Class) + ")"
			}
			ew.printf("  %s  %s units  %s  %s\n", c.Hash[:16], humanize.Comma(int64(c.Units)), dedupeBase(c.Path), verdict)
		}
	}
	ew.printf("\n%s duplicate units", humanize.Comma(int64(r.Duplicates)))
	if r.RedundantOrphans > 0 {
		ew.printf(" and %d redundant orphan companions", r.RedundantOrphans)
	}
	ew.printf(", %s reclaimable", r.Reclaimable)
	if r.AlreadyLinked > 0 {
		ew.printf(" (%s already hard-linked to their kept copy)", humanize.Comma(int64(r.AlreadyLinked)))
	}
	ew.printf(".\n")
	if r.DryRun {
		if r.Duplicates+r.RedundantOrphans > 0 {
			ew.printf("Dry run: nothing changed. Run with --apply to %s them (keeping the %s of each group).\n", r.Action, r.Keep)
		}
		return ew.err
	}
	a := r.Applied
	if a == nil {
		return ew.err
	}
	verb := map[dedupe.Action]string{dedupe.ActionRemove: "Removed", dedupe.ActionHardlink: "Hard-linked", dedupe.ActionMove: "Moved"}[r.Action]
	ew.printf("%s %s units (%s files), freed %s; skipped %d, failed %d.\n", verb, humanize.Comma(int64(a.Done)),
		humanize.Comma(int64(a.Files)), a.Freed, a.Skipped, a.Failed)
	if len(a.TempsCleaned) > 0 {
		ew.printf("Removed %d temporary links left by a killed run.\n", len(a.TempsCleaned))
	}
	for _, p := range a.Problems {
		ew.printf("%s %s: %s\n", p.Status, p.Path, p.Reason)
	}
	return ew.err
}

func dedupeTime(t time.Time) string { return t.Format("2006-01-02 15:04:05") }

func dedupeBase(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

func dedupePlural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// dedupeWriter keeps the first write error.
type dedupeWriter struct {
	w   io.Writer
	err error
}

func (e *dedupeWriter) Write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(b)
	e.err = err
	return n, err
}

func (e *dedupeWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }
