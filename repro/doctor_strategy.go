package repro

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
	"github.com/kanban-doctor/kanban-doctor/probe"
)

// doctorCheck is the doctor strategy's judge: the probe package (a variable so the strategy list
// can tell whether it is compiled in).
var doctorCheck func(context.Context, board.Board, probe.Options) (probe.Result, error) = probe.Check

// doctor asks the probe package. In file-copy it judges a copy made the safe way (SQLite's online
// backup API on a locked connection), never a plain copy of live files.
func (p *checker) doctor(ctx context.Context, r *record) {
	if doctorCheck == nil {
		r.Verdict, r.Answer = verdictInconclusive, "doctor strategy not compiled in"
		return
	}
	path := p.db
	opts := probe.Options{Full: true, Params: p.params()}
	if p.scenario == FileCopy {
		p.copyN++
		dir := filepath.Join(p.scratch, fmt.Sprintf("snap-%d", p.copyN))
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, "kanban.db")
		if err := snapshot(ctx, p.db, path); err != nil {
			r.Verdict, r.Answer = verdictInconclusive, short(err.Error())
			return
		}
		opts.Static = true
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	res, err := doctorCheck(ctx, board.New("repro", path), opts)
	if err != nil {
		r.Verdict, r.Answer = verdictInconclusive, short(err.Error())
		return
	}
	for _, h := range res.Hazards {
		r.Hazards = append(r.Hazards, h.Code)
	}
	r.FirstOK = res.Verdict == probe.Healthy
	if !r.FirstOK {
		r.Answer = short(string(res.Verdict) + ": " + strings.Join(res.FirstAnswer, "; "))
	}
	switch res.Verdict {
	case probe.Corrupt:
		r.Verdict = verdictCorrupt
	case probe.Inconclusive:
		r.Verdict = verdictInconclusive
	default:
		r.Verdict = verdictOK
	}
}

// snapshot copies the live DB at src to dst with SQLite's online backup API, on a locked
// read-only connection: a consistent copy even under write load.
func snapshot(ctx context.Context, src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	conn, closeFn, err := sqlitex.Conn(ctx, src, sqlitex.Options{BusyTimeout: 5000})
	if err != nil {
		return err
	}
	defer closeFn()
	return conn.Raw(func(dc any) error {
		b, ok := dc.(interface {
			NewBackup(string) (*sqlite.Backup, error)
		})
		if !ok {
			return fmt.Errorf("snapshot %s: driver has no backup API", src)
		}
		bk, err := b.NewBackup(dst)
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", src, err)
		}
		for {
			more, err := bk.Step(-1)
			if err != nil {
				bk.Finish()
				return fmt.Errorf("snapshot %s: %w", src, err)
			}
			if !more {
				break
			}
		}
		if err := bk.Finish(); err != nil {
			return fmt.Errorf("snapshot %s: %w", src, err)
		}
		return nil
	})
}
