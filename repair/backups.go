package repair

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/kanban-doctor/kanban-doctor/backup"
	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
	"github.com/kanban-doctor/kanban-doctor/probe"
)

// Comparison names the newest healthy backup of the board and how its row counts compare with
// the repaired output, so an operator can choose between them.
type Comparison struct {
	Dir     string         `json:"dir"`
	Checked int            `json:"backups_checked"`
	Path    string         `json:"path,omitempty"` // empty: no healthy backup found
	Time    time.Time      `json:"time,omitzero"`
	Tables  []TableCompare `json:"tables,omitempty"`
	// Skipped are newer backups that were not healthy, with their verdicts.
	Skipped []string `json:"skipped,omitempty"`
}

// TableCompare is one table's row count in the backup and in the repaired output.
type TableCompare struct {
	Name     string `json:"name"`
	Backup   int64  `json:"backup_rows"`
	Repaired int64  `json:"repaired_rows"`
	Diff     int64  `json:"diff"` // repaired - backup
}

// candidate is one backup file of the board: a corrupt backup (board.ScanBackups naming) or a
// snapshot written by kanban-doctor backup (backup.List naming).
type candidate struct {
	name, path string
	time       time.Time
}

// compareBackups lists the board's backups in dir, newest first, probes each as a static file
// until one is healthy, and compares its row counts with the repaired tables.
func compareBackups(ctx context.Context, o Options, b board.Board, dir string, tables []TableReport) (*Comparison, error) {
	cmp := &Comparison{Dir: dir}
	dbName := filepath.Base(b.DB)
	inv, err := board.ScanBackups(filepath.Join(dir, dbName))
	if err != nil {
		return cmp, err
	}
	var cands []candidate
	for _, u := range inv.Units {
		cands = append(cands, candidate{u.Name, u.Main.Path, u.Time})
	}
	snaps, err := backup.List(dir, dbName)
	if err != nil {
		return cmp, err
	}
	for _, l := range snaps {
		cands = append(cands, candidate{filepath.Base(l.Path), l.Path, l.Time})
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].time.After(cands[j].time) })
	for _, c := range cands {
		if err := ctx.Err(); err != nil {
			return cmp, err
		}
		cmp.Checked++
		r, err := o.check()(ctx, board.New(c.name, c.path), probe.Options{Full: true, Static: true, NoChild: true})
		if err != nil || r.Verdict != probe.Healthy {
			why := string(r.Verdict)
			if err != nil {
				why = err.Error()
			}
			cmp.Skipped = append(cmp.Skipped, fmt.Sprintf("%s: %s", c.name, why))
			continue
		}
		counts, err := backupCounts(ctx, c.path)
		if err != nil {
			cmp.Skipped = append(cmp.Skipped, fmt.Sprintf("%s: %v", c.name, err))
			continue
		}
		cmp.Path, cmp.Time = c.path, c.time
		for _, t := range tables {
			n := counts[t.Name]
			cmp.Tables = append(cmp.Tables, TableCompare{Name: t.Name, Backup: n, Repaired: t.RowsWritten, Diff: t.RowsWritten - n})
		}
		return cmp, nil
	}
	return cmp, nil
}

func backupCounts(ctx context.Context, path string) (map[string]int64, error) {
	conn, closeFn, err := sqlitex.Conn(ctx, path, sqlitex.Options{})
	if err != nil {
		return nil, err
	}
	defer closeFn()
	counts, _, err := countRows(ctx, conn)
	return counts, err
}
