package reports

import (
	"io"
	"time"

	"github.com/kanban-doctor/kanban-doctor/backup"
	"github.com/kanban-doctor/kanban-doctor/dedupe"
	"github.com/kanban-doctor/kanban-doctor/probe"
	"github.com/kanban-doctor/kanban-doctor/repair"
)

// Pinned results of the commands other packages own, for their golden files. Values are
// realistic (taken from runs on the fixture corpus and generated storms) but fixed.

// repairDoc is the repair command's JSON body.
type repairDoc struct {
	Repair repair.Result `json:"repair"`
	Error  string        `json:"error,omitempty"`
}

func goldenVerify() []VerifyBoard {
	rep := goldenReport()
	return []VerifyBoard{
		{Result: *rep.Boards[0].Check},
		{Result: *rep.Boards[1].Check},
		{Result: probe.Result{Name: "archive-me", DB: "/hermes/kanban/boards/archive-me/kanban.db", Findings: []probe.Finding{}, Hazards: []probe.Hazard{}},
			Error: "verify /hermes/kanban/boards/archive-me/kanban.db: no such file or directory"},
	}
}

func goldenBackup() BackupResult {
	return BackupResult{Backups: []backup.Result{{
		Source: "/hermes/kanban.db", Path: "/backups/kanban.db.2026-11-27T030000Z.5e1f0c7d9a8b6c4d.db", Method: "backup-api",
		Bytes: 12582912, SHA256: "5e1f0c7d9a8b6c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d", PageSize: 4096, Pages: 3072,
		Check: "ok", Started: goldenTime, Duration: 0.412, Pruned: []string{"/backups/kanban.db.2026-11-20T030000Z.0123456789abcdef.db"},
	}}, Errors: []string{"backup /hermes/kanban/boards/ops/kanban.db: database is locked (SQLITE_BUSY): retry later or stop the writers"}}
}

func goldenDedupe() DedupeResult {
	base := time.Date(2026, 5, 10, 3, 0, 0, 0, time.UTC)
	files := []string{"/hermes/kanban.db.corrupt.20260510_030000.bak", "/hermes/kanban.db.corrupt.20260510_030000.1.bak",
		"/hermes/kanban.db.corrupt.20260510_030000.2.bak", "/hermes/kanban.db.corrupt.20260510_030001.bak"}
	return DedupeResult{DryRun: true, Report: dedupe.Report{
		HashAlgorithm: "xxh3-128", Dirs: []string{"/hermes"}, Files: 6, Bytes: 6 * 229376, Units: 5, Distinct: 2,
		Groups: []dedupe.Group{{Hash: "8d2c5b0e4f1a3c7e9b6d8f0a2c4e6b8d", Size: 229376, UnitBytes: 229376, Count: 4, Files: files,
			Keep: files[0], First: base, Last: base.Add(time.Second), Duplicates: 3, ReclaimableBytes: 3 * 229376}},
		Duplicates: 3, ReclaimableBytes: 3 * 229376, Reclaimable: "672 KiB", Keep: dedupe.KeepOldest, Action: dedupe.ActionRemove,
		Bursts:  []dedupe.Burst{{Dir: "/hermes", First: base, Last: base.Add(time.Second), Units: 4, Bytes: 4 * 229376, Distinct: 1, Duplicates: 3}},
		Orphans: []dedupe.Orphan{{Path: "/hermes/kanban.db.corrupt.20260509_230000.bak-wal", Part: "wal", Size: 4152}},
		Temps:   []string{}, Unreadable: []dedupe.Skipped{{Path: "/hermes/kanban.db.corrupt.20260511_120000.bak", Reason: "permission denied"}},
		HashedBytes: 4 * 229376,
		Contents: []dedupe.ContentCheck{
			{Hash: "8d2c5b0e4f1a3c7e9b6d8f0a2c4e6b8d", Path: files[0], Units: 4, Verdict: probe.Healthy, Healthy: true},
			{Hash: "17a9c3e5b7d9f1a3c5e7b9d1f3a5c7e9", Path: "/hermes/kanban.db.corrupt.20260510_050000.bak", Units: 1,
				Verdict: probe.Corrupt, Class: probe.ClassIndex, Findings: []probe.Finding{{Code: "corrupt-index", Severity: "error",
					Message: "row 5 missing from index idx_tasks_status"}}},
		},
		HealthyContents: 1, CorruptContents: 1,
	}}
}

func goldenRepair() repairDoc {
	rep := goldenReport()
	diag := *rep.Boards[1].Check
	return repairDoc{Repair: repair.Result{
		DB: "/hermes/kanban/boards/ops/kanban.db", Out: "/hermes/kanban/boards/ops/kanban.db.repaired",
		Verdict: probe.Corrupt, Class: probe.ClassIndex, Action: "reindex",
		Plan:    []string{"snapshot the board through the backup API", "REINDEX on the snapshot", "integrity_check the snapshot", "publish it as kanban.db.repaired"},
		Written: true,
		Tables: []repair.TableReport{{Name: "tasks", Method: "reindex", RowsRead: 400, RowsWritten: 400},
			{Name: "task_events", Method: "reindex", RowsRead: 1800, RowsWritten: 1800}},
		Totals: repair.Totals{RowsRead: 2200, RowsWritten: 2200}, Output: "healthy",
		Notes: []string{"index-only damage: no row was lost"}, Diagnosis: diag, Duration: 0.318,
	}}
}

// commandCases are the goldens of the commands other packages own: text, JSON and Markdown each.
func commandCases() []goldenCase {
	v, b, d, r := goldenVerify(), goldenBackup(), goldenDedupe(), goldenRepair()
	type cmd struct {
		name string
		body any
		text func(io.Writer) error
	}
	cmds := []cmd{
		{"verify", struct {
			Boards []VerifyBoard `json:"boards"`
		}{v}, func(w io.Writer) error { return VerifyText(w, v) }},
		{"backup", b, func(w io.Writer) error { return BackupText(w, b.Backups) }},
		{"dedupe-backups", d, func(w io.Writer) error { return DedupeText(w, d) }},
		{"repair", r, func(w io.Writer) error { return RepairText(w, r.Repair) }},
	}
	var out []goldenCase
	for _, c := range cmds {
		out = append(out,
			goldenCase{c.name + ".txt", c.text},
			goldenCase{c.name + ".json", func(w io.Writer) error { return JSON(w, c.name, c.body) }},
			goldenCase{c.name + ".md", func(w io.Writer) error { return Markdown(w, c.name, goldenEnv, c.text) }},
		)
	}
	return out
}
