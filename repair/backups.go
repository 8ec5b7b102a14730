package repair

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"time"

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

// compareBackups scans dir for backups of this board (board.ScanBackups naming), newest first,
// probes each as a static file until one is healthy, and compares its row counts.
func compareBackups(ctx context.Context, o Options, b board.Board, dir string, tables []TableReport) (*Comparison, error) {
	cmp := &Comparison{Dir: dir}
	inv, err := board.ScanBackups(filepath.Join(dir, filepath.Base(b.DB)))
	if err != nil {
		return cmp, err
	}
	units := slices.Clone(inv.Units)
	slices.Reverse(units) // newest first
	for _, u := range units {
		if err := ctx.Err(); err != nil {
			return cmp, err
		}
		cmp.Checked++
		r, err := o.check()(ctx, board.New(u.Name, u.Main.Path), probe.Options{Full: true, Static: true, NoChild: true})
		if err != nil || r.Verdict != probe.Healthy {
			why := string(r.Verdict)
			if err != nil {
				why = err.Error()
			}
			cmp.Skipped = append(cmp.Skipped, fmt.Sprintf("%s: %s", u.Name, why))
			continue
		}
		counts, err := backupCounts(ctx, u.Main.Path)
		if err != nil {
			cmp.Skipped = append(cmp.Skipped, fmt.Sprintf("%s: %v", u.Name, err))
			continue
		}
		cmp.Path, cmp.Time = u.Main.Path, u.Time
		for _, t := range tables {
			c := counts[t.Name]
			cmp.Tables = append(cmp.Tables, TableCompare{Name: t.Name, Backup: c, Repaired: t.RowsWritten, Diff: t.RowsWritten - c})
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
