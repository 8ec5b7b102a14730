package repro

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestScoreAgainstGroundTruth pins how checks are scored: before the injection the board was
// healthy, after it damaged; overlapping checks and checks after a WAL reset are not scored.
func TestScoreAgainstGroundTruth(t *testing.T) {
	base := time.Unix(1000, 0)
	at := func(ms int) int64 { return base.Add(time.Duration(ms) * time.Millisecond).UnixNano() }
	ev0, ev1 := base.Add(100*time.Millisecond), base.Add(120*time.Millisecond)
	rec := func(t0, t1 int, verdict string) record {
		return record{T0: at(t0), T1: at(t1), FirstOK: verdict == verdictOK, Verdict: verdict}
	}
	for _, tc := range []struct {
		name                string
		scenario            string
		truthOK             bool
		recs                []record
		fp, fn, uns, checks int
	}{
		{"clean, all ok", Clean, true, []record{rec(0, 10, verdictOK), rec(20, 30, verdictOK)}, 0, 0, 0, 2},
		{"lock-drop, a corrupt verdict on a healthy board", LockDrop, true, []record{rec(0, 10, verdictCorrupt), rec(20, 30, verdictOK)}, 1, 0, 0, 2},
		{"inconclusive is not a false positive", Immutable, true, []record{rec(0, 10, verdictInconclusive)}, 0, 0, 0, 1},
		{"injected: corrupt before the injection", Injected, false, []record{rec(0, 50, verdictCorrupt)}, 1, 0, 0, 1},
		{"injected: overlapping the injection", Injected, false, []record{rec(90, 110, verdictOK)}, 0, 0, 1, 1},
		{"injected: missed after the injection", Injected, false, []record{rec(130, 140, verdictOK), rec(150, 160, verdictInconclusive)}, 0, 2, 0, 2},
		{"injected: caught after the injection", Injected, false, []record{rec(130, 140, verdictCorrupt)}, 0, 0, 0, 1},
		{"wal-unlink: after the reset is unscored", WALUnlink, true, []record{rec(0, 50, verdictCorrupt), rec(130, 140, verdictCorrupt)}, 1, 0, 1, 2},
		{"really damaged outside injected: unscored", FileCopy, false, []record{rec(0, 10, verdictCorrupt)}, 0, 0, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Cell{Scenario: tc.scenario, TruthOK: tc.truthOK, TruthDetail: "x"}
			var s0, s1 time.Time
			if tc.scenario == Injected || tc.scenario == WALUnlink {
				s0, s1 = ev0, ev1
			}
			score(&c, tc.recs, s0, s1, time.Time{})
			if c.FalsePositives != tc.fp || c.FalseNegatives != tc.fn || c.Unscored != tc.uns || c.Checks != tc.checks {
				t.Errorf("got fp=%d fn=%d unscored=%d checks=%d, want fp=%d fn=%d unscored=%d checks=%d",
					c.FalsePositives, c.FalseNegatives, c.Unscored, c.Checks, tc.fp, tc.fn, tc.uns, tc.checks)
			}
		})
	}
}

// TestQuarantineNamesLikeTheLegacyGuard: timestamped names, .N on a same-second collision,
// companions copied, nothing replaced.
func TestQuarantineNamesLikeTheLegacyGuard(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "kanban.db")
	for suf, data := range map[string]string{"": "main", "-wal": "wal", "-shm": "shm"} {
		if err := os.WriteFile(db+suf, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := &checker{proberArgs: proberArgs{db: db}}
	var names []string
	for i := 0; i < 3; i++ {
		var r record
		p.quarantine(&r)
		if r.Backup == "" || r.BackupBytes != int64(len("main")+len("wal")+len("shm")) {
			t.Fatalf("backup %d: %+v", i, r)
		}
		names = append(names, filepath.Base(r.Backup))
		for _, suf := range []string{"-wal", "-shm"} {
			if _, err := os.Stat(r.Backup + suf); err != nil {
				t.Errorf("companion %s missing: %v", suf, err)
			}
		}
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			t.Fatalf("name %s used twice: %v", n, names)
		}
		seen[n] = true
		if len(n) < len("kanban.db.corrupt.20060102_150405.bak") || n[:18] != "kanban.db.corrupt." || filepath.Ext(n) != ".bak" {
			t.Errorf("name %q is not a legacy timestamped backup name", n)
		}
	}
}

// TestCIRulesOnSyntheticMatrices: each --ci rule fails on the cell that breaks it.
func TestCIRulesOnSyntheticMatrices(t *testing.T) {
	good := func() Result {
		var r Result
		for _, sc := range Scenarios {
			for _, st := range []string{Legacy, Doctor, ExecPrefix + "guard {db}"} {
				c := Cell{Scenario: sc, Strategy: st, Checks: 10, TruthOK: !injects(sc)}
				if st == Legacy && (sc == LockDrop || sc == Immutable) {
					c.FalsePositives = 3
				}
				if injects(sc) {
					c.CorruptVerdicts = 5
				}
				r.Cells = append(r.Cells, c)
			}
		}
		return r
	}
	set := func(r *Result, sc, st string, f func(*Cell)) {
		for i := range r.Cells {
			if r.Cells[i].Scenario == sc && r.Cells[i].Strategy == st {
				f(&r.Cells[i])
			}
		}
	}
	for _, tc := range []struct {
		name  string
		spoil func(*Result)
		want  string
	}{
		{"all good", func(*Result) {}, ""},
		{"legacy no longer reproduces lock-drop", func(r *Result) { set(r, LockDrop, Legacy, func(c *Cell) { c.FalsePositives = 0 }) }, "lock-drop/legacy"},
		{"legacy no longer reproduces immutable", func(r *Result) { set(r, Immutable, Legacy, func(c *Cell) { c.FalsePositives = 0 }) }, "immutable/legacy"},
		{"external guard cries wolf in clean", func(r *Result) { set(r, Clean, ExecPrefix+"guard {db}", func(c *Cell) { c.FalsePositives = 1 }) }, "clean/exec:guard {db}"},
		{"doctor false positive", func(r *Result) { set(r, FileCopy, Doctor, func(c *Cell) { c.FalsePositives = 1 }) }, "file-copy/doctor"},
		{"doctor false negative", func(r *Result) { set(r, Injected, Doctor, func(c *Cell) { c.FalseNegatives = 1 }) }, "injected/doctor"},
		{"doctor never saw the damage", func(r *Result) { set(r, Injected, Doctor, func(c *Cell) { c.CorruptVerdicts = 0 }) }, "injected/doctor: no check saw"},
		{"harness error", func(r *Result) { set(r, WALUnlink, Legacy, func(c *Cell) { c.Error = "prober: boom" }) }, "wal-unlink/legacy: prober: boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good()
			tc.spoil(&r)
			fails := CI(&r)
			if r.CI == nil || r.CI.Passed != (tc.want == "") {
				t.Fatalf("CI report %+v, want passed=%v", r.CI, tc.want == "")
			}
			if tc.want == "" {
				return
			}
			if len(fails) != 1 || len(fails[0]) < len(tc.want) || fails[0][:len(tc.want)] != tc.want {
				t.Fatalf("failures %q, want one naming %q", fails, tc.want)
			}
		})
	}
}

// TestWriterErrorCodes: a writer's error is counted by the last SQLite code in it, and only
// primary codes 11 and 26 are corruption.
func TestWriterErrorCodes(t *testing.T) {
	for msg, want := range map[string]string{
		"writer 0: exit status 8: writer w0: database disk image is malformed (11)": "SQLITE_CORRUPT (11)",
		"writer 1: exit status 8: writer w1: index corruption (779)":                "SQLITE_CORRUPT_INDEX (779)",
		"writer 2: exit status 8: writer w2: file is not a database (26)":           "SQLITE_NOTADB (26)",
		"writer 2: exit status 8: writer w2: disk I/O error (4874)":                 "SQLITE_10 (4874)",
		"writer 0: killed after 10s":                                                "killed",
		"writer 0: exit status 8: boom":                                             "other",
	} {
		if got := errorCode(msg); got != want {
			t.Errorf("errorCode(%q) = %q, want %q", msg, got, want)
		}
	}
	for code, want := range map[string]bool{"SQLITE_CORRUPT (11)": true, "SQLITE_CORRUPT_INDEX (779)": true, "SQLITE_NOTADB (26)": true,
		"SQLITE_BUSY (5)": false, "SQLITE_10 (4874)": false, "killed": false} {
		if got := corruptionCode(code); got != want {
			t.Errorf("corruptionCode(%q) = %v, want %v", code, got, want)
		}
	}
}

// TestGrownDamage: index-only findings on a damaged index and findings seen right after the
// injection are explained; anything else is damage past the injection.
func TestGrownDamage(t *testing.T) {
	damaged := []string{"idx_tasks_status", "idx_links_child"}
	base := []string{"Tree 20 page 20: btreeInitPage() returns error code 11"}
	lines := []string{"row 5 missing from index idx_tasks_status", "wrong # of entries in index idx_links_child",
		"Tree 20 page 20: btreeInitPage() returns error code 11", "row 9 missing from index idx_tasks_claim", "Page 204: never used"}
	got := grownDamage(lines, damaged, base)
	if want := []string{"row 9 missing from index idx_tasks_claim", "Page 204: never used"}; !slices.Equal(got, want) {
		t.Errorf("grownDamage = %q, want %q", got, want)
	}
}

// TestParseServeAnswer: JSON answers and bare words; anything else is refused.
func TestParseServeAnswer(t *testing.T) {
	for line, want := range map[string]string{
		`{"verdict":"healthy","message":"ok"}`: verdictOK, `{"verdict":"corrupt","message":"row 3 missing"}`: verdictCorrupt,
		"inconclusive": verdictInconclusive, " healthy \r": verdictOK, "corrupt": verdictCorrupt,
		"ok": "", `{"verdict":"fine"}`: "", `{"verdict":`: "", "": "",
	} {
		got, _, err := parseAnswer(line)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("parseAnswer(%q) = %q, %v; want %q", line, got, err, want)
		}
	}
}
