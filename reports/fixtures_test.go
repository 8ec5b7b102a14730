package reports

import (
	"fmt"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/health"
	"github.com/kanban-doctor/kanban-doctor/probe"
)

// Fixed inputs for the golden files: every value a renderer prints is pinned here, so a golden
// only changes when the rendering does.

var goldenTime = time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)

var goldenEnv = health.Environment{SQLiteVersion: "3.54.1", GoVersion: "go1.26.0", OS: "linux", Arch: "amd64"}

// stormUnits are backups in three bursts (5, 4 and 3 units, one second apart) plus one lone
// backup: the timestamped generation, then content-addressed ones.
func stormUnits() []board.Unit {
	var us []board.Unit
	add := func(t time.Time, gen board.Generation, size int64, wal bool) {
		name := board.FormatTimestamped("kanban.db", t, 0)
		if gen == board.GenContent {
			name = board.FormatContent("kanban.db", fmt.Sprintf("%08xdeadbeef", len(us)))
		}
		u := board.Unit{Name: name, Gen: gen, Time: t, Main: board.File{Path: "/hermes/" + name, Size: size, ModTime: t}}
		if wal {
			u.WAL = &board.File{Path: "/hermes/" + name + "-wal", Size: 4152, ModTime: t}
		}
		us = append(us, u)
	}
	base := time.Date(2026, 5, 3, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 5; i++ {
		add(base.Add(time.Duration(i)*time.Second), board.GenTimestamped, 229376, true)
	}
	add(base.Add(40*time.Minute), board.GenTimestamped, 229376, false)
	for i := 0; i < 4; i++ {
		add(base.Add(2*time.Hour+time.Duration(i)*time.Second), board.GenTimestamped, 229376, true)
	}
	for i := 0; i < 3; i++ {
		add(base.Add(5*time.Hour+time.Duration(i)*time.Second), board.GenContent, 233472, false)
	}
	return us
}

func goldenReport() health.Report {
	units := stormUnits()
	tl := health.BuildTimeline(units, health.TimelineOptions{})
	contents := []health.Content{
		{SHA256: "5e1f0c7d9a8b6c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d", WALSHA256: "aa11bb22cc33dd44ee55ff6600112233445566778899aabbccddeeff00112233", Size: 229376, WALSize: 4152, HasWAL: true,
			Units: 9, Bytes: 9 * (229376 + 4152), First: units[0].Time, Last: units[9].Time, Example: units[0].Main.Path,
			Check: &health.ContentCheck{Verdict: probe.Healthy, Findings: []probe.Finding{}}},
		{Size: 229376, Units: 1, Bytes: 229376, First: units[5].Time, Last: units[5].Time, Example: units[5].Main.Path,
			Check: &health.ContentCheck{Verdict: probe.Healthy, Findings: []probe.Finding{}}},
		{SHA256: "0123456789abcdef00112233445566778899aabbccddeeff0011223344556677", Size: 233472, Units: 3, Bytes: 3 * 233472,
			First: units[10].Time, Last: units[12].Time, Example: units[10].Main.Path,
			Check: &health.ContentCheck{Verdict: probe.Corrupt, Class: probe.ClassIndex, Findings: []probe.Finding{
				{Code: "index-entries", Severity: "error", Message: "wrong # of entries in index idx_tasks_status"}}}},
	}
	healthy := health.Board{Name: "default", DB: "/hermes/kanban.db", Exists: true, JournalMode: "wal",
		Size: 12 << 20, HasWAL: true, WALSize: 3 << 20, HasSHM: true, SHMSize: 32 << 10, Verdict: probe.FalsePositive,
		Check: &probe.Result{Name: "default", DB: "/hermes/kanban.db", Verdict: probe.FalsePositive, Mode: "quick_check",
			Findings: []probe.Finding{{Code: "false-positive", Severity: "warning",
				Message: "this process saw \"database disk image is malformed\"; a clean child process says ok",
				Hint:    "kanban-doctor verify /hermes/kanban.db"}},
			Hazards: []probe.Hazard{{Code: "deleted-sidecar", Message: "2 processes hold a deleted kanban.db-wal open",
				Pids: []int{4242, 4243}, Paths: []string{"/hermes/kanban.db-wal (deleted)"}}},
			FirstAnswer: []string{"*** in database main ***", "Tree 4 page 12: btreeInitPage() returns error code 11"},
			Rechecks:    2, Child: "ok", Duration: 1234 * time.Millisecond},
		Backups: health.Backups{Units: len(units), Bytes: 0, WithWAL: 9, DistinctContents: len(contents), Contents: contents,
			Checked: true, HealthyContents: 2,
			Generations: []health.GenerationCount{{Generation: board.GenTimestamped, Units: 10}, {Generation: board.GenContent, Units: 3}}},
		Timeline: tl}
	for _, u := range units {
		healthy.Backups.Bytes += u.Bytes()
		if u.Gen == board.GenTimestamped {
			healthy.Backups.Generations[0].Bytes += u.Bytes()
		} else {
			healthy.Backups.Generations[1].Bytes += u.Bytes()
		}
	}
	corrupt := health.Board{Name: "ops", DB: "/hermes/kanban/boards/ops/kanban.db", Exists: true, JournalMode: "wal",
		Size: 5 << 20, Verdict: probe.Corrupt,
		Check: &probe.Result{Name: "ops", DB: "/hermes/kanban/boards/ops/kanban.db", Verdict: probe.Corrupt, Class: probe.ClassIndex,
			Mode: "integrity_check",
			Findings: []probe.Finding{
				{Code: "index-entries", Severity: "error", Message: "wrong # of entries in index idx_tasks_status",
					Hint: "kanban-doctor repair --apply /hermes/kanban/boards/ops/kanban.db"},
				{Code: "index-row-missing", Severity: "error", Message: "row 17 missing from index idx_tasks_status"}},
			Hazards:     []probe.Hazard{},
			FirstAnswer: []string{"wrong # of entries in index idx_tasks_status", "row 17 missing from index idx_tasks_status"},
			Rechecks:    2, Child: "wrong # of entries in index idx_tasks_status", Duration: 87 * time.Millisecond},
		Backups:  health.Backups{Generations: []health.GenerationCount{}, Contents: []health.Content{}},
		Timeline: health.BuildTimeline(nil, health.TimelineOptions{})}
	missing := health.Board{Name: "archive-me", DB: "/hermes/kanban/boards/archive-me/kanban.db", JournalMode: "missing",
		Error:    "check /hermes/kanban/boards/archive-me/kanban.db: no such file or directory",
		Backups:  health.Backups{Generations: []health.GenerationCount{}, Contents: []health.Content{}},
		Timeline: health.BuildTimeline(nil, health.TimelineOptions{})}
	rep := health.Report{Environment: goldenEnv, Boards: []health.Board{healthy, corrupt, missing}, ExitCode: 8}
	rep.NextSteps = health.NextSteps(rep)
	return rep
}

func goldenBoards() []board.Report {
	units := stormUnits()
	inv := board.Inventory{Units: units}
	b := board.New("default", "/hermes/kanban.db")
	b.Exists, b.Size, b.HasWAL, b.WALSize, b.HasSHM, b.SHMSize, b.JournalMode = true, 12<<20, true, 3<<20, true, 32<<10, "wal"
	ops := board.New("ops", "/hermes/kanban/boards/ops/kanban.db")
	ops.Exists, ops.Size, ops.JournalMode = true, 5<<20, "rollback"
	return []board.Report{{Board: b, Backups: board.Summarize(inv, false)}, {Board: ops, Backups: board.Summarize(board.Inventory{}, false)}}
}
