// Package stormgen writes corrupt-backup storms like the ones users reported: bursts of identical
// real kanban databases under both name generations, some with -wal/-shm companions, plus
// distinct backups of the same size.
package stormgen

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// Options shape a storm.
type Options struct {
	Bursts   int // bursts of one content each; default 40
	PerBurst int // timestamped backups per burst; default 197
	Distinct int // single backups of distinct contents, same task count; default 20
	PageSize int // page size of the generated boards; default 4096 (512 makes small files for huge storms)
	Tasks    int // tasks per generated board (about 3.7 KB each, plus the schema); default 45 (~265 KB)
	Seed     uint64
	// CompanionEvery: every Nth burst (N > 0) is copied from a live WAL board with its -wal and
	// -shm, the way the guard copied them. 0 means none.
	CompanionEvery int
	// ContentNamed adds one content-addressed copy (kanban.db.corrupt.<sha256:16>.bak) per burst.
	ContentNamed bool
	PerSecond    int           // backups per second in a burst (.1 ... .N-1 collisions); default 7
	Start        time.Time     // first burst; default 2026-05-10 03:00 local
	Gap          time.Duration // between burst starts; default 1 hour
	DBName       string        // default kanban.db
}

// Storm describes what Generate wrote.
type Storm struct {
	Units      int   `json:"units"`
	Files      int   `json:"files"`
	Bytes      int64 `json:"bytes"`
	Contents   int   `json:"contents"`   // distinct contents
	Duplicates int   `json:"duplicates"` // redundant units (units minus contents)
}

// content is one backup content: a main file and optional companions.
type content struct{ main, wal, shm []byte }

// Generate writes the storm into dir (created if missing). The live board, if any, is not touched.
func Generate(ctx context.Context, dir string, o Options) (Storm, error) {
	if o.Bursts == 0 {
		o.Bursts = 40
	}
	if o.PerBurst == 0 {
		o.PerBurst = 197
	}
	if o.Distinct == 0 {
		o.Distinct = 20
	}
	if o.Tasks == 0 {
		o.Tasks = 45
	}
	if o.PerSecond == 0 {
		o.PerSecond = 7
	}
	if o.Start.IsZero() {
		o.Start = time.Date(2026, 5, 10, 3, 0, 0, 0, time.Local)
	}
	if o.Gap == 0 {
		o.Gap = time.Hour
	}
	if o.DBName == "" {
		o.DBName = board.DBName
	}
	var st Storm
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return st, fmt.Errorf("generate storm: %w", err)
	}
	work, err := os.MkdirTemp("", "kd-storm-")
	if err != nil {
		return st, fmt.Errorf("generate storm: %w", err)
	}
	defer os.RemoveAll(work)
	write := func(name string, c content, t time.Time) error {
		parts := []struct {
			suffix string
			data   []byte
		}{{"", c.main}, {"-wal", c.wal}, {"-shm", c.shm}}
		for _, p := range parts {
			if p.data == nil {
				continue
			}
			path := filepath.Join(dir, name+p.suffix)
			if err := os.WriteFile(path, p.data, 0o644); err != nil {
				return fmt.Errorf("generate storm: %w", err)
			}
			if err := os.Chtimes(path, t, t); err != nil {
				return fmt.Errorf("generate storm: %w", err)
			}
			st.Files++
			st.Bytes += int64(len(p.data))
		}
		st.Units++
		return nil
	}
	for b := 0; b < o.Bursts+o.Distinct; b++ {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		seed := o.Seed*1000 + uint64(b) + 1
		withComp := b < o.Bursts && o.CompanionEvery > 0 && b%o.CompanionEvery == o.CompanionEvery-1
		c, err := makeContent(ctx, filepath.Join(work, fmt.Sprint(b)), o, seed, withComp)
		if err != nil {
			return st, err
		}
		st.Contents++
		start := o.Start.Add(time.Duration(b) * o.Gap)
		if b >= o.Bursts { // a distinct single backup, between bursts
			t := o.Start.Add(time.Duration(b-o.Bursts)*o.Gap + o.Gap/2)
			if err := write(board.FormatTimestamped(o.DBName, t, 0), c, t); err != nil {
				return st, err
			}
			continue
		}
		n := o.PerBurst
		for i := 0; i < n; i++ {
			t := start.Add(time.Duration(i/o.PerSecond) * time.Second)
			if err := write(board.FormatTimestamped(o.DBName, t, i%o.PerSecond), c, t); err != nil {
				return st, err
			}
		}
		if o.ContentNamed {
			sum := sha256.Sum256(c.main)
			t := start.Add(time.Duration(n/o.PerSecond+1) * time.Second)
			if err := write(board.FormatContent(o.DBName, hex.EncodeToString(sum[:8])), c, t); err != nil {
				return st, err
			}
			n++
		}
	}
	st.Duplicates = st.Units - st.Contents
	return st, nil
}

// makeContent generates one board. With companions it is made the way the guard's backups were:
// a WAL board with uncheckpointed commits, copied by a separate process (cp) while this process
// holds a connection (this process never opens the board's files itself).
func makeContent(ctx context.Context, dir string, o Options, seed uint64, companions bool) (content, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return content{}, err
	}
	db := filepath.Join(dir, "kanban.db")
	if err := kanban.Generate(ctx, db, kanban.GenOptions{Tasks: o.Tasks, Seed: seed, WAL: companions, PageSize: o.PageSize}); err != nil {
		return content{}, err
	}
	if !companions {
		b, err := os.ReadFile(db)
		return content{main: b}, err
	}
	conn, err := sqlitex.Open(db, sqlitex.Options{ReadWrite: true, Pragmas: []string{"wal_autocheckpoint(0)", "busy_timeout(5000)"}})
	if err != nil {
		return content{}, err
	}
	defer conn.Close()
	conn.SetMaxOpenConns(1)
	w := &kanban.Writer{DB: conn, Name: "storm", Rand: rand.New(rand.NewPCG(seed, 1))}
	for i := 0; i < 5; i++ {
		if _, err := w.CreateTask(ctx); err != nil {
			return content{}, fmt.Errorf("generate storm: write: %w", err)
		}
	}
	cp := filepath.Join(dir, "copy")
	if err := os.Mkdir(cp, 0o755); err != nil {
		return content{}, err
	}
	if out, err := exec.CommandContext(ctx, "cp", db, db+"-wal", db+"-shm", cp).CombinedOutput(); err != nil {
		return content{}, fmt.Errorf("generate storm: cp: %v: %s", err, out)
	}
	var c content
	for _, p := range []struct {
		dst  *[]byte
		name string
	}{{&c.main, "kanban.db"}, {&c.wal, "kanban.db-wal"}, {&c.shm, "kanban.db-shm"}} {
		b, err := os.ReadFile(filepath.Join(cp, p.name))
		if err != nil {
			return content{}, err
		}
		*p.dst = b
	}
	return c, nil
}
