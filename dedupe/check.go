package dedupe

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/zeebo/xxh3"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
	"github.com/kanban-doctor/kanban-doctor/probe"
)

// ContentCheck is the probe's verdict on one distinct content (checked on a private copy of its
// kept unit, so SQLite never opens, and can never write to, the backup itself).
type ContentCheck struct {
	Hash     string          `json:"hash"`  // xxh3-128 of the main file
	Path     string          `json:"path"`  // the kept unit's main file
	Units    int             `json:"units"` // units holding this content
	Verdict  probe.Verdict   `json:"verdict,omitempty"`
	Class    probe.Class     `json:"class,omitempty"`
	Healthy  bool            `json:"healthy"` // a healthy database: the corruption verdict that made it was false
	Findings []probe.Finding `json:"findings,omitempty"`
	Error    string          `json:"error,omitempty"`
}

// CheckOptions for CheckContents.
type CheckOptions struct {
	Full   bool         // integrity_check instead of quick_check
	TmpDir string       // where private copies go; "" means os.TempDir()
	Logger *slog.Logger // nil: silent
}

// CheckContents checks every distinct content of the plan with the probe on a static private copy
// and records the verdicts in p.Report.Contents (plus HealthyContents and CorruptContents).
func CheckContents(ctx context.Context, p *Plan, o CheckOptions) error {
	inv := p.inv
	p.Report.Contents = []ContentCheck{}
	for gi := range p.groups {
		g := &p.groups[gi]
		k := &inv.units[g.kept]
		cc := ContentCheck{Path: inv.path(k.parts[PartMain]), Units: len(g.units)}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("check contents: %w", err)
		}
		res, sum, err := checkCopy(ctx, inv, k, o)
		cc.Hash = hexSum(sum)
		if err != nil {
			cc.Error = err.Error()
		} else {
			cc.Verdict, cc.Class, cc.Findings = res.Verdict, res.Class, res.Findings
			switch res.Verdict {
			case probe.Healthy, probe.Transient, probe.FalsePositive:
				cc.Healthy = true
				p.Report.HealthyContents++
			case probe.Corrupt:
				p.Report.CorruptContents++
			}
		}
		p.Report.Contents = append(p.Report.Contents, cc)
	}
	return nil
}

// checkCopy copies unit k into a fresh private directory as kanban.db (+ -wal, -shm), probes it,
// and removes the copy. It returns the main file's xxh3-128 as read.
func checkCopy(ctx context.Context, inv *Inventory, k *unit, o CheckOptions) (probe.Result, xxh3.Uint128, error) {
	var sum xxh3.Uint128
	dir, err := os.MkdirTemp(o.TmpDir, "kd-dedupe-check-")
	if err != nil {
		return probe.Result{}, sum, fmt.Errorf("check contents: %w", err)
	}
	defer os.RemoveAll(dir)
	db := filepath.Join(dir, board.DBName)
	for pt, fi := range k.parts {
		if fi < 0 {
			continue
		}
		f := &inv.files[fi]
		h := xxh3.New128()
		if err := copyFile(f, db+partSuffix[pt], h); err != nil {
			return probe.Result{}, sum, err
		}
		if Part(pt) == PartMain {
			sum = h.Sum128()
		}
	}
	res, err := probe.Check(ctx, board.New("backup", db), probe.Options{Static: true, Full: o.Full, Logger: o.Logger})
	if err != nil {
		return res, sum, fmt.Errorf("check %s: %w", f0(inv, k), err)
	}
	return res, sum, nil
}

func f0(inv *Inventory, k *unit) string { return inv.path(k.parts[PartMain]) }

// copyFile copies a scanned file (never through a symlink, refusing one that changed since the
// scan) to dst through the atomic-write helper, feeding h on the way.
func copyFile(f *file, dst string, h io.Writer) error {
	src, err := os.OpenFile(f.Path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("copy %s: %w", f.Path, err)
	}
	defer src.Close()
	if why := sameFile(src, f.File); why != "" {
		return fmt.Errorf("copy %s: %s", f.Path, why)
	}
	return atomicfile.WriteFrom(dst, 0o600, func(w io.Writer) error {
		_, err := io.Copy(io.MultiWriter(w, h), src)
		return err
	})
}
