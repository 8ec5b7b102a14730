// Package health assembles a board's health report: the probe's verdict with findings and hazards,
// the board's files, its corrupt-backup inventory with distinct contents, and a timeline of backup
// creation that makes bursts visible.
package health

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
	"github.com/kanban-doctor/kanban-doctor/internal/exitcode"
	_ "github.com/kanban-doctor/kanban-doctor/internal/sqlitex" // registers the "sqlite" driver
	"github.com/kanban-doctor/kanban-doctor/probe"
)

// CheckFunc checks one board; it is probe.Check.
type CheckFunc func(ctx context.Context, b board.Board, o probe.Options) (probe.Result, error)

// Progress receives the progress of long work (reports.Progress implements it).
type Progress interface {
	Start(desc string, total int64, bytes bool)
	Add(n int64)
	Done()
}

// Options for Build.
type Options struct {
	Check CheckFunc     // required: probe.Check
	Probe probe.Options // for the live boards
	// CheckContents runs the probe on one unit of every distinct backup content (as a static file).
	CheckContents bool
	Timeline      TimelineOptions
	Progress      Progress     // nil: none
	Logger        *slog.Logger // nil: silent
}

// Environment is what a bug report needs to know about the machine and the build.
type Environment struct {
	SQLiteVersion string `json:"sqlite_version"` // select sqlite_version() in this build
	GoVersion     string `json:"go_version"`
	OS            string `json:"os"`
	Arch          string `json:"arch"`
}

// Report is the health report of every board asked for.
type Report struct {
	Environment Environment `json:"environment"`
	Boards      []Board     `json:"boards"`
	// ExitCode summarises the boards: the worst of their verdicts' codes, 8 when a board could not
	// be checked.
	ExitCode int `json:"exit_code"`
	// NextSteps is what to do now, most urgent first, with the exact commands (see NextSteps).
	NextSteps []string `json:"next_steps"`
}

// Board is one board's health.
type Board struct {
	Name        string `json:"name"`
	DB          string `json:"db"`
	Archived    bool   `json:"archived,omitempty"`
	Exists      bool   `json:"exists"`
	JournalMode string `json:"journal_mode"`
	Size        int64  `json:"size"`
	HasWAL      bool   `json:"has_wal"`
	WALSize     int64  `json:"wal_size"`
	HasSHM      bool   `json:"has_shm"`
	SHMSize     int64  `json:"shm_size"`
	HeaderError string `json:"header_error,omitempty"`
	// Verdict is Check.Verdict; empty when the check could not run (see Error).
	Verdict probe.Verdict `json:"verdict,omitempty"`
	Check   *probe.Result `json:"check"`
	Error   string        `json:"error,omitempty"`
	// NoDatabase: board.json and no kanban.db yet (hermes creates it on first use). A normal
	// state: no check, no error, exit 0 for this board; its backups are still inventoried.
	NoDatabase bool `json:"no_database,omitempty"`

	Backups  Backups  `json:"backups"`
	Timeline Timeline `json:"timeline"`
}

// Backups is a board's corrupt-backup inventory as the report shows it.
type Backups struct {
	Units            int               `json:"units"`
	Bytes            int64             `json:"bytes"`
	Generations      []GenerationCount `json:"generations"`
	WithWAL          int               `json:"with_wal"`
	WithSHM          int               `json:"with_shm"`
	Orphans          int               `json:"orphan_companions"`
	DistinctContents int               `json:"distinct_contents"`
	Contents         []Content         `json:"contents"`
	Checked          bool              `json:"contents_checked"`
	HealthyContents  int               `json:"healthy_contents"`
}

// GenerationCount is how many units (and bytes) one naming generation holds.
type GenerationCount struct {
	Generation board.Generation `json:"generation"`
	Units      int              `json:"units"`
	Bytes      int64            `json:"bytes"`
}

// ErrNoChecker is returned by Build when Options.Check is nil.
var ErrNoChecker = errors.New("no checker given")

// CurrentEnvironment describes this build; the SQLite version comes from an in-memory database.
func CurrentEnvironment(ctx context.Context) Environment {
	v, err := SQLiteVersion(ctx)
	if err != nil {
		v = "unknown (" + err.Error() + ")"
	}
	return Environment{SQLiteVersion: v, GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
}

// SQLiteVersion is what `select sqlite_version()` says in this build, asked of an in-memory
// database (never a board).
func SQLiteVersion(ctx context.Context) (string, error) {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		return "", fmt.Errorf("open sqlite: %w", err)
	}
	defer db.Close()
	var v string
	if err := db.QueryRowContext(ctx, "select sqlite_version()").Scan(&v); err != nil {
		return "", fmt.Errorf("query sqlite_version: %w", err)
	}
	return v, nil
}

// Build checks each board and assembles the report. A board whose check fails operationally
// (unreadable, vanished) gets an Error and the report goes on; a cancelled ctx stops it.
func Build(ctx context.Context, boards []board.Board, o Options) (Report, error) {
	if o.Check == nil {
		return Report{}, ErrNoChecker
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rep := Report{Environment: CurrentEnvironment(ctx), Boards: []Board{}}
	codes := []int{exitcode.OK}
	for _, b := range boards {
		hb, err := buildBoard(ctx, b, o, log)
		if err != nil {
			return Report{}, err
		}
		switch {
		case hb.Error != "":
			codes = append(codes, exitcode.Operational)
		case hb.NoDatabase:
			codes = append(codes, exitcode.OK)
		default:
			codes = append(codes, hb.Verdict.ExitCode())
		}
		rep.Boards = append(rep.Boards, hb)
	}
	rep.ExitCode = exitcode.Worst(codes...)
	rep.NextSteps = NextSteps(rep)
	return rep, nil
}

func buildBoard(ctx context.Context, b board.Board, o Options, log *slog.Logger) (Board, error) {
	// Stat reads the header by opening the DB file: do it before any SQLite connection exists.
	b.Stat()
	hb := Board{Name: b.Name, DB: b.DB, Archived: b.Archived, Exists: b.Exists, JournalMode: b.JournalMode,
		Size: b.Size, HasWAL: b.HasWAL, WALSize: b.WALSize, HasSHM: b.HasSHM, SHMSize: b.SHMSize,
		HeaderError: b.HeaderError}

	inv, err := board.ScanBackups(b.DB)
	if err != nil {
		return hb, fmt.Errorf("report %s: %w", b.Name, err)
	}
	// Hash backups before the live check: no SQLite connection is open while we read files in
	// the board's directory, and units that are the live DB's own inode are never read.
	live, _ := os.Stat(b.DB)
	contents, err := GroupContents(ctx, inv.Units, live, o.Progress)
	if err != nil {
		return hb, fmt.Errorf("report %s: %w", b.Name, err)
	}
	hb.Backups = summarize(inv, contents)
	hb.Timeline = BuildTimeline(inv.Units, o.Timeline)

	log.Debug("checking board", "board", b.Name, "db", b.DB)
	res, err := o.Check(ctx, b, o.Probe)
	if err != nil {
		if ctx.Err() != nil {
			return hb, fmt.Errorf("report %s: %w", b.Name, ctx.Err())
		}
		if b.AwaitingDB() {
			hb.NoDatabase = true
		} else {
			hb.Error = err.Error()
		}
	} else {
		if res.Findings == nil {
			res.Findings = []probe.Finding{}
		}
		if res.Hazards == nil {
			res.Hazards = []probe.Hazard{}
		}
		hb.Check = &res
		hb.Verdict = res.Verdict
	}

	if o.CheckContents && len(hb.Backups.Contents) > 0 {
		if err := checkContents(ctx, hb.Backups.Contents, o, log); err != nil {
			return hb, fmt.Errorf("report %s: %w", b.Name, err)
		}
		hb.Backups.Checked = true
		for _, c := range hb.Backups.Contents {
			if c.Healthy() {
				hb.Backups.HealthyContents++
			}
		}
	}
	return hb, nil
}

// checkContents asks the probe about one unit of each distinct content. The probe reads a scratch
// copy (main file and -wal companion) in a private temporary directory, never the backup itself:
// opening a WAL-mode file makes SQLite create -wal/-shm beside it, which would add companions to
// the inventory being reported.
func checkContents(ctx context.Context, cs []Content, o Options, log *slog.Logger) error {
	if o.Progress != nil {
		o.Progress.Start("checking backup contents", int64(len(cs)), false)
		defer o.Progress.Done()
	}
	scratch, err := os.MkdirTemp("", "kanban-doctor-report-")
	if err != nil {
		return fmt.Errorf("check backup contents: %w", err)
	}
	defer os.RemoveAll(scratch)
	po := o.Probe
	po.Static = true
	for i := range cs {
		log.Debug("checking backup content", "path", cs[i].Example)
		cs[i].Check = checkOne(ctx, cs[i], filepath.Join(scratch, fmt.Sprint(i)), po, o.Check)
		if err := ctx.Err(); err != nil {
			return err
		}
		if o.Progress != nil {
			o.Progress.Add(1)
		}
	}
	return nil
}

func checkOne(ctx context.Context, c Content, dir string, po probe.Options, check CheckFunc) *ContentCheck {
	fail := func(err error) *ContentCheck { return &ContentCheck{Error: err.Error(), Findings: []probe.Finding{}} }
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fail(fmt.Errorf("check %s: %w", c.Example, err))
	}
	defer os.RemoveAll(dir)
	db := filepath.Join(dir, board.DBName)
	if err := copyFile(c.Example, db); err != nil {
		return fail(err)
	}
	if c.HasWAL {
		if err := copyFile(c.Example+"-wal", db+"-wal"); err != nil {
			return fail(err)
		}
	}
	res, err := check(ctx, board.New("backup", db), po)
	if err != nil {
		return fail(errors.New(strings.ReplaceAll(err.Error(), db, c.Example)))
	}
	cc := &ContentCheck{Verdict: res.Verdict, Class: res.Class, Findings: []probe.Finding{}}
	for _, f := range res.Findings {
		// Name the backup, not the scratch copy, in messages; a fix hint for a scratch copy would
		// be misleading, so hints are dropped (repair works on the live board or a restored copy).
		f.Message = strings.ReplaceAll(f.Message, db, c.Example)
		f.Hint = ""
		cc.Findings = append(cc.Findings, f)
	}
	return cc
}

// copyFile copies a static backup file into the scratch directory.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy backup %s: %w", src, err)
	}
	defer in.Close()
	return atomicfile.WriteFrom(dst, 0o600, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}

func summarize(inv board.Inventory, contents []Content) Backups {
	s := board.Summarize(inv, false)
	bk := Backups{Units: s.Count, Bytes: s.Bytes, WithWAL: s.WithWAL, WithSHM: s.WithSHM, Orphans: s.Orphans,
		DistinctContents: len(contents), Contents: contents, Generations: []GenerationCount{}}
	if bk.Contents == nil {
		bk.Contents = []Content{}
	}
	byGen := map[board.Generation]*GenerationCount{}
	for _, u := range inv.Units {
		g := byGen[u.Gen]
		if g == nil {
			g = &GenerationCount{Generation: u.Gen}
			byGen[u.Gen] = g
		}
		g.Units++
		g.Bytes += u.Bytes()
	}
	for _, g := range byGen {
		bk.Generations = append(bk.Generations, *g)
	}
	rank := map[board.Generation]int{board.GenTimestamped: 0, board.GenContent: 1, board.GenGeneric: 2}
	sort.Slice(bk.Generations, func(i, j int) bool {
		return rank[bk.Generations[i].Generation] < rank[bk.Generations[j].Generation]
	})
	return bk
}
