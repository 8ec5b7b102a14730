package reports

import (
	"io"
	"time"

	"github.com/kanban-doctor/kanban-doctor/backup"
	"github.com/kanban-doctor/kanban-doctor/dedupe"
	"github.com/kanban-doctor/kanban-doctor/probe"
	"github.com/kanban-doctor/kanban-doctor/repair"
	"github.com/kanban-doctor/kanban-doctor/repro"
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

// restoreDoc is the restore command's JSON body.
type restoreDoc struct {
	Restore backup.RestoreResult `json:"restore"`
}

func goldenRestore() restoreDoc {
	b := goldenBackup().Backups[0]
	b.Path = "/backups/kanban.db.before-restore.2026-11-27T030000Z.db"
	return restoreDoc{Restore: backup.RestoreResult{
		From: "/backups/kanban.db.2026-11-20T030000Z.0123456789abcdef.db", DB: "/hermes/kanban.db", Mode: "online",
		FromTasks: 2000, FromPages: 3000,
		Plan: []string{"check the source (quick_check): ok", "snapshot the board before overwriting it",
			"copy the source into the board through the backup API (readers and writers wait)", "quick_check the restored board"},
		Before: &b, Check: "ok", Tasks: 2000, Duration: 0.77,
	}}
}

func goldenRepro() repro.Result {
	return repro.Result{Seed: 1, DurationMs: 3000, Writers: 3, Checkpoint: "mixed", CheckpointEvery: "250ms",
		Scenarios: []string{"fd-close", "immutable"}, Strategies: []string{"legacy", "doctor"},
		Cells: []repro.Cell{
			{Scenario: "fd-close", Strategy: "legacy", Checks: 120, Suspicious: 118, CorruptVerdicts: 118, FalsePositives: 118,
				BackupsWritten: 118, BackupBytes: 118 * 1572864, BackupsChecked: 118, BackupsCorrupt: 41, CorruptShare: 41.0 / 118,
				CommitsPerSec: 790, LedgerTasks: 2370, Checkpoints: 12, P50ms: 21, P99ms: 48, TruthOK: true,
				Answers: []string{"database disk image is malformed (11)"}},
			{Scenario: "fd-close", Strategy: "doctor", Checks: 96, Suspicious: 95, CorruptVerdicts: 0, CommitsPerSec: 801,
				LedgerTasks: 2403, Checkpoints: 12, P50ms: 64, P99ms: 131, TruthOK: true, Hazards: map[string]int{"own-fd-close": 95}},
			{Scenario: "immutable", Strategy: "legacy", Checks: 140, Suspicious: 140, CorruptVerdicts: 140, FalsePositives: 140,
				BackupsWritten: 140, BackupBytes: 140 * 1572864, BackupsChecked: 140, BackupsCorrupt: 52, CorruptShare: 52.0 / 140,
				CommitsPerSec: 786, LedgerTasks: 2358, Checkpoints: 12, P50ms: 18, P99ms: 40, TruthOK: true},
			{Scenario: "immutable", Strategy: "doctor", Checks: 90, Suspicious: 90, CommitsPerSec: 795, LedgerTasks: 2385,
				Checkpoints: 12, P50ms: 70, P99ms: 150, TruthOK: true, Notes: []string{"every suspicious answer cleared by the clean child"}},
		},
		Seconds: 13.2, CI: &repro.CIReport{Passed: false, Failures: []string{"fd-close/legacy: 118 false positives (allowed 0)"}},
	}
}

// commandCases are the goldens of the commands other packages own: text, JSON and Markdown each.
func commandCases() []goldenCase {
	v, b, d, r := goldenVerify(), goldenBackup(), goldenDedupe(), goldenRepair()
	rs, rp := goldenRestore(), goldenRepro()
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
		{"restore", rs, func(w io.Writer) error { return RestoreText(w, rs.Restore) }},
		{"repro", rp, func(w io.Writer) error { return ReproText(w, rp) }},
	}
	errDoc := ErrorResult{Error: ErrorInfo{Code: 8, Status: "operational", Path: "/hermes/kanban/boards/ops/kanban.db",
		Message: "/hermes/kanban/boards/ops/kanban.db: no such file or directory"}}
	out0 := []goldenCase{{"error.json", func(w io.Writer) error { return JSON(w, "verify", errDoc) }}}
	out := out0
	for _, c := range cmds {
		out = append(out,
			goldenCase{c.name + ".txt", c.text},
			goldenCase{c.name + ".json", func(w io.Writer) error { return JSON(w, c.name, c.body) }},
			goldenCase{c.name + ".md", func(w io.Writer) error { return Markdown(w, c.name, goldenEnv, c.text) }},
		)
	}
	return out
}
