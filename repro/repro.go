// Package repro is the race harness: it reproduces the mechanisms that make integrity guards cry
// wolf on a live multi-process kanban board and scores guard strategies against the ground truth.
package repro

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
)

// The scenarios (mechanisms), in the order the matrix shows them. These names are a contract.
const (
	Clean     = "clean"      // ordinary probe connections: the control
	LockDrop  = "lock-drop"  // the probe's own process opens and closes the DB's -shm, main file and -wal
	Immutable = "immutable"  // the probe connection opens with immutable=1
	FileCopy  = "file-copy"  // the probe checks a plain copy of the live files
	WALUnlink = "wal-unlink" // -wal and -shm are unlinked while connections are open (two WAL generations)
	Injected  = "injected"   // real corruption injected mid-run: the true-positive control
	// IndexDesync rewrites the rowid of a few index entries mid-run (one write transaction): the
	// index-only damage REINDEX repairs, on an index the writers use and on one they do not.
	IndexDesync = "index-desync"
	// WriterKill SIGKILLs a writer inside a write transaction whose uncommitted pages already
	// spilled into the WAL: nothing is damaged, and the next writer reuses those frames.
	WriterKill = "writer-kill"
)

// Scenarios lists every scenario.
var Scenarios = []string{Clean, LockDrop, Immutable, FileCopy, WALUnlink, Injected, IndexDesync, WriterKill}

// injects reports whether the scenario damages the board on purpose (the truth is then a timeline).
func injects(scenario string) bool { return scenario == Injected || scenario == IndexDesync }

// The built-in strategies. "exec:CMD" runs an external guard.
const (
	Legacy   = "legacy"    // first non-ok answer -> quarantine by plain file copy
	Retry    = "retry"     // three fresh connections in the same process, 250/500 ms backoff
	SameConn = "same-conn" // re-check on the same connection only
	Doctor   = "doctor"    // the probe package
)

// Strategies lists the built-in strategies (doctor only when it is compiled in).
func Strategies() []string {
	s := []string{Legacy, Retry, SameConn}
	if doctorCheck != nil {
		s = append(s, Doctor)
	}
	return s
}

// ExecPrefix starts an external-guard strategy: "exec:CMD", CMD run by sh with {db} replaced,
// one process per check. ServePrefix starts one that serves every check of a cell from one
// process: "exec-serve:CMD", one JSON request per line on stdin, one answer per line on stdout.
const (
	ExecPrefix  = "exec:"
	ServePrefix = "exec-serve:"
)

// Errors returned by Run.
var (
	// ErrUsage is returned when an option is invalid (unknown scenario, strategy or schedule).
	ErrUsage = errors.New("invalid option")
)

// Options configures a run. The zero value runs the default matrix.
type Options struct {
	Dir      string        // work directory (default: a new temporary directory)
	Keep     bool          // keep the work directory (always kept when Dir is given)
	Duration time.Duration // time per cell (default 1s)
	Seed     uint64        // every random choice derives from it (default 1)
	Writers  int           // writer processes per cell (default 3)
	Tasks    int           // tasks in the generated board (default 1000)
	// Checkpoint is PASSIVE, FULL, RESTART, TRUNCATE or mixed (default mixed); CheckpointEvery is
	// a period ("10ms", the default) run by the harness on its own connection, or "Ncommits", run
	// by each writer after every N of its commits.
	Checkpoint      string
	CheckpointEvery string
	Scenarios       []string // default: all
	Strategies      []string // default: legacy, retry, same-conn, doctor
	// ServeRestartEvery restarts an exec-serve guard after every N checks (0: never).
	ServeRestartEvery int
	// Progress, when set, is called after each cell.
	Progress func(done, total int, c Cell)
	Logger   *slog.Logger

	pause time.Duration // between a writer's transactions (tests)
}

// Cell is the score of one strategy in one scenario. The JSON names are a contract.
type Cell struct {
	Scenario string `json:"scenario"`
	Strategy string `json:"strategy"`
	// Checks run; how many first answers were not ok; how many checks ended in a corrupt verdict.
	Checks          int `json:"checks"`
	Suspicious      int `json:"suspicious_first_answers"`
	CorruptVerdicts int `json:"corrupt_verdicts"`
	Inconclusive    int `json:"inconclusive"`
	// FalsePositives: corrupt verdicts while the ground truth was healthy. FalseNegatives: checks
	// that started after the injected damage and did not report it. Unscored: checks that
	// overlapped the injection.
	FalsePositives int `json:"false_positives"`
	FalseNegatives int `json:"false_negatives"`
	Unscored       int `json:"unscored"`
	// SplitBrainCorrupt: in wal-unlink, corrupt verdicts after the reset (unscored).
	SplitBrainCorrupt int `json:"split_brain_corrupt,omitempty"`
	// GuardErrors: checks whose guard answered outside the contract (exec: an exit status other
	// than 0-3; exec-serve: no answer, or one that is not a verdict).
	GuardErrors int `json:"guard_errors"`
	// Backups the strategy wrote in the board directory (kanban.db.corrupt.*.bak, counted by
	// watching the directory as they appear), how many it pruned again, how many are left, their
	// bytes with companions, and what a clean check found in them.
	BackupsWritten int     `json:"backups_written"`
	BackupsPruned  int     `json:"backups_pruned"`
	BackupsLeft    int     `json:"backups_left"`
	BackupBytes    int64   `json:"backup_bytes"`
	BackupsChecked int     `json:"backups_checked"`
	BackupsCorrupt int     `json:"backups_corrupt"`
	CorruptShare   float64 `json:"backups_corrupt_share"`
	// Writer side: commits (all transactions), tasks in the ledgers, tasks missing from the board.
	CommitsPerSec float64  `json:"commits_per_sec"`
	LedgerTasks   int      `json:"ledger_tasks"`
	LostCommits   int      `json:"lost_commits"`
	LostSample    []string `json:"lost_sample,omitempty"`
	Checkpoints   int      `json:"checkpoints"`
	// WriterErrors counts the writers that failed, by error code ("SQLITE_CORRUPT_INDEX (779)").
	WriterErrors map[string]int `json:"writer_errors,omitempty"`
	// GuardDamage counts the signs that the strategy damaged the board: in a cell with no
	// injection the truth fails, commits are lost or a writer dies with a corruption code; in an
	// injection cell the truth names damage past what was injected, or commits are lost.
	GuardDamage       int      `json:"guard_damage"`
	GuardDamageDetail []string `json:"guard_damage_detail,omitempty"`
	// Repaired: in an injection cell, a clean-process integrity_check said ok after the injection
	// and the final truth is healthy; RepairLatencyMs runs from the injection's commit to the start
	// of that first ok check.
	Repaired        bool    `json:"repaired"`
	RepairLatencyMs float64 `json:"repair_latency_ms,omitempty"`
	// EventMs is when the mid-run event started, in ms from the cell's start (0: none).
	EventMs float64 `json:"event_ms,omitempty"`
	// Time from the start of a check to its final verdict; GuardP50ms/GuardP99ms the guard's own
	// time without process start (exec-serve: the checks that did not start the guard process;
	// exec: the whole process, which cannot be told apart; built-in strategies: the check).
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	GuardP50ms float64 `json:"guard_p50_ms"`
	GuardP99ms float64 `json:"guard_p99_ms"`
	// GuardStarts counts the exec-serve guard processes started in the cell.
	GuardStarts int `json:"guard_starts,omitempty"`
	// Ground truth: a clean-process integrity_check once the writers stopped.
	TruthOK     bool     `json:"truth_integrity_ok"`
	TruthDetail string   `json:"truth_detail,omitempty"`
	Injection   string   `json:"injection,omitempty"`
	Answers     []string `json:"sample_answers,omitempty"`
	// Hazards counts the checks whose result named each hazard (doctor only), e.g.
	// {"deleted-wal": 12} in wal-unlink, where integrity_check itself says ok.
	Hazards map[string]int `json:"hazards,omitempty"`
	Notes   []string       `json:"notes,omitempty"`
	Error   string         `json:"error,omitempty"`
	Seconds float64        `json:"seconds"`
}

// Name is "scenario/strategy".
func (c Cell) Name() string { return c.Scenario + "/" + c.Strategy }

// Result is a whole run.
type Result struct {
	Seed            uint64   `json:"seed"`
	DurationMs      int64    `json:"cell_duration_ms"`
	Writers         int      `json:"writers"`
	Checkpoint      string   `json:"checkpoint"`
	CheckpointEvery string   `json:"checkpoint_every"`
	Scenarios       []string `json:"scenarios"`
	Strategies      []string `json:"strategies"`
	Dir             string   `json:"dir,omitempty"`
	Cells           []Cell   `json:"cells"`
	// Checks holds one record per check of every cell, in order (see CheckRecord).
	Checks  []CheckRecord `json:"checks,omitempty"`
	Seconds float64       `json:"seconds"`
	// CI is filled by CI (the --ci rules): whether they passed and which cells broke them.
	CI *CIReport `json:"ci,omitempty"`
}

// CheckRecord is one check as the harness saw it: times in ms from the cell's start, the verdict
// (healthy, corrupt, inconclusive or error), the guard's exit status (exec:; -1 otherwise), the
// backups that appeared in the board directory while it ran, and the guard's message.
type CheckRecord struct {
	Cell    string  `json:"cell"`
	N       int     `json:"n"`
	StartMs float64 `json:"start_ms"`
	EndMs   float64 `json:"end_ms"`
	GuardMs float64 `json:"guard_ms"`
	Verdict string  `json:"verdict"`
	Exit    int     `json:"exit"`
	Backups int     `json:"backups"`
	Message string  `json:"message,omitempty"`
	// Spawn: this check started the exec-serve guard process (its time includes process start).
	Spawn bool `json:"spawn,omitempty"`
}

// CIReport is the outcome of the --ci rules.
type CIReport struct {
	Passed   bool     `json:"passed"`
	Failures []string `json:"failures"`
}

// schedule is a parsed --checkpoint-every.
type schedule struct {
	every   time.Duration
	commits int
}

func parseSchedule(s string) (schedule, error) {
	if n, ok := strings.CutSuffix(s, "commits"); ok {
		v, err := strconv.Atoi(n)
		if err != nil || v <= 0 {
			return schedule{}, fmt.Errorf("%w: checkpoint-every %q: want a duration like 25ms or a count like 50commits", ErrUsage, s)
		}
		return schedule{commits: v}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return schedule{}, fmt.Errorf("%w: checkpoint-every %q: want a duration like 25ms or a count like 50commits", ErrUsage, s)
	}
	return schedule{every: d}, nil
}

var checkpointModes = []string{"PASSIVE", "FULL", "RESTART", "TRUNCATE"}

func (o *Options) normalize() (schedule, error) {
	if o.Duration == 0 {
		o.Duration = time.Second
	}
	if o.Duration < 200*time.Millisecond {
		return schedule{}, fmt.Errorf("%w: duration %s: want at least 200ms per cell", ErrUsage, o.Duration)
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Writers == 0 {
		o.Writers = 3
	}
	if o.Writers < 1 || o.Writers > 32 {
		return schedule{}, fmt.Errorf("%w: writers %d: want 1 to 32", ErrUsage, o.Writers)
	}
	if o.ServeRestartEvery < 0 {
		return schedule{}, fmt.Errorf("%w: serve-restart-every %d: want 0 (never) or more", ErrUsage, o.ServeRestartEvery)
	}
	if o.Tasks == 0 {
		o.Tasks = 1000
	}
	if o.Tasks < 20 {
		return schedule{}, fmt.Errorf("%w: tasks %d: want at least 20", ErrUsage, o.Tasks)
	}
	if o.Checkpoint == "" {
		o.Checkpoint = "mixed"
	}
	mode := strings.ToUpper(o.Checkpoint)
	if mode != "MIXED" && !slices.Contains(checkpointModes, mode) {
		return schedule{}, fmt.Errorf("%w: checkpoint %q: want PASSIVE, FULL, RESTART, TRUNCATE or mixed", ErrUsage, o.Checkpoint)
	}
	o.Checkpoint = mode
	if mode == "MIXED" {
		o.Checkpoint = "mixed"
	}
	if o.CheckpointEvery == "" {
		o.CheckpointEvery = "10ms"
	}
	sch, err := parseSchedule(o.CheckpointEvery)
	if err != nil {
		return sch, err
	}
	if len(o.Scenarios) == 0 {
		o.Scenarios = Scenarios
	}
	for _, s := range o.Scenarios {
		if !slices.Contains(Scenarios, s) {
			return sch, fmt.Errorf("%w: scenario %q: want one of %s", ErrUsage, s, strings.Join(Scenarios, ", "))
		}
	}
	if len(o.Strategies) == 0 {
		o.Strategies = Strategies()
	}
	for _, s := range o.Strategies {
		if err := validStrategy(s); err != nil {
			return sch, err
		}
	}
	if o.pause == 0 {
		o.pause = time.Millisecond // real boards are busy, not saturated; gaps let the harness inject
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return sch, nil
}

func validStrategy(s string) error {
	if cmd, ok := strings.CutPrefix(s, ServePrefix); ok {
		if strings.TrimSpace(cmd) == "" {
			return fmt.Errorf("%w: strategy %q: exec-serve: needs a command, e.g. exec-serve:'./guard --serve'", ErrUsage, s)
		}
		return nil
	}
	if cmd, ok := strings.CutPrefix(s, ExecPrefix); ok {
		if strings.TrimSpace(cmd) == "" {
			return fmt.Errorf("%w: strategy %q: exec: needs a command, e.g. exec:'./guard {db}'", ErrUsage, s)
		}
		return nil
	}
	if s == Doctor && doctorCheck == nil {
		return fmt.Errorf("%w: strategy doctor: the probe package is not compiled into this build", ErrUsage)
	}
	if !slices.Contains([]string{Legacy, Retry, SameConn, Doctor}, s) {
		return fmt.Errorf("%w: strategy %q: want legacy, retry, same-conn, doctor, exec:CMD or exec-serve:CMD", ErrUsage, s)
	}
	return nil
}

// Run runs every scenario against every strategy and returns the matrix. The caller's main (or
// TestMain) must call reexec.Init: writers, probers and the ground-truth check are child
// processes of this binary. Cancelling ctx stops every child.
func Run(ctx context.Context, o Options) (Result, error) {
	sch, err := o.normalize()
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	res := Result{Seed: o.Seed, DurationMs: o.Duration.Milliseconds(), Writers: o.Writers, Checkpoint: o.Checkpoint,
		CheckpointEvery: o.CheckpointEvery, Scenarios: o.Scenarios, Strategies: o.Strategies}
	dir := o.Dir
	if dir == "" {
		dir, err = os.MkdirTemp("", "kanban-doctor-repro-")
		if err != nil {
			return res, fmt.Errorf("create work dir: %w", err)
		}
		if !o.Keep {
			defer os.RemoveAll(dir)
		}
	} else {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return res, fmt.Errorf("create work dir: %w", err)
		}
		if ents, err := os.ReadDir(dir); err != nil {
			return res, fmt.Errorf("read work dir: %w", err)
		} else if len(ents) > 0 {
			return res, fmt.Errorf("%w: dir %s: not empty (the harness writes boards and backups there)", ErrUsage, dir)
		}
	}
	if o.Keep || o.Dir != "" {
		res.Dir = dir
	}
	template := filepath.Join(dir, "template", "kanban.db")
	if err := os.MkdirAll(filepath.Dir(template), 0o755); err != nil {
		return res, fmt.Errorf("create template dir: %w", err)
	}
	if err := kanban.Generate(ctx, template, kanban.GenOptions{Tasks: o.Tasks, Seed: o.Seed, WAL: true}); err != nil {
		return res, fmt.Errorf("generate board: %w", err)
	}
	total := len(o.Scenarios) * len(o.Strategies)
	n := 0
	for si, sc := range o.Scenarios {
		for gi, st := range o.Strategies {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			seed := o.Seed + uint64(si)*1000 + uint64(gi)
			cdir := filepath.Join(dir, "cells", fmt.Sprintf("%02d-%s-%02d", si, sc, gi))
			c, checks := runCell(ctx, cellSpec{scenario: sc, strategy: st, dir: cdir, template: template, seed: seed,
				opts: &o, sch: sch})
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			res.Cells = append(res.Cells, c)
			res.Checks = append(res.Checks, checks...)
			n++
			if o.Progress != nil {
				o.Progress(n, total, c)
			}
			if !o.Keep && o.Dir == "" {
				os.RemoveAll(cdir) // backups of a storm add up; the matrix keeps the figures
			}
		}
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// copyTemplate copies the generated board into a cell's directory.
func copyTemplate(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return atomicfile.WriteFrom(dst, 0o644, func(w io.Writer) error {
		_, err := io.Copy(w, f)
		return err
	})
}

// percentile returns the p-th percentile (0..1) of ds in milliseconds.
func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s))+0.5) - 1
	i = max(0, min(i, len(s)-1))
	return float64(s[i].Microseconds()) / 1000
}

// CI applies the --ci rules to res and returns the failures (each names a cell), also stored in
// res.CI: legacy must show a false positive in lock-drop and immutable (the harness still
// reproduces the bug), every strategy none in clean and no damage to any board (guard_damage),
// no writer may fail in clean, doctor shows no false positive anywhere and no false negative in
// injected and index-desync.
func CI(res *Result) []string {
	var fail []string
	find := func(sc, st string) (Cell, bool) {
		for _, c := range res.Cells {
			if c.Scenario == sc && c.Strategy == st {
				return c, true
			}
		}
		return Cell{}, false
	}
	for _, sc := range []string{LockDrop, Immutable} {
		c, ok := find(sc, Legacy)
		switch {
		case !ok:
			fail = append(fail, fmt.Sprintf("%s/%s: not run (it must reproduce the false positive)", sc, Legacy))
		case c.FalsePositives == 0:
			fail = append(fail, fmt.Sprintf("%s/%s: no false positive in %d checks: the harness no longer reproduces the bug", sc, Legacy, c.Checks))
		}
	}
	for _, c := range res.Cells {
		if c.Error != "" {
			fail = append(fail, fmt.Sprintf("%s: %s", c.Name(), c.Error))
			continue
		}
		if c.Scenario == Clean && c.FalsePositives > 0 {
			fail = append(fail, fmt.Sprintf("%s: %d false positives in the control", c.Name(), c.FalsePositives))
		}
		if c.Strategy == Doctor && c.Scenario != Clean && c.FalsePositives > 0 {
			fail = append(fail, fmt.Sprintf("%s: %d false positives", c.Name(), c.FalsePositives))
		}
		if c.GuardDamage > 0 {
			fail = append(fail, fmt.Sprintf("%s: the strategy damaged the board (%s)", c.Name(), strings.Join(c.GuardDamageDetail, "; ")))
		}
		if c.Scenario == Clean && len(c.WriterErrors) > 0 {
			fail = append(fail, fmt.Sprintf("%s: writers failed in the control: %v", c.Name(), c.WriterErrors))
		}
		if c.Strategy == Doctor && injects(c.Scenario) && c.FalseNegatives > 0 {
			fail = append(fail, fmt.Sprintf("%s: %d false negatives (injected damage not reported)", c.Name(), c.FalseNegatives))
		}
		if c.Strategy == Doctor && injects(c.Scenario) && c.CorruptVerdicts-c.FalsePositives == 0 {
			fail = append(fail, fmt.Sprintf("%s: no check saw the injected damage (cell too short?)", c.Name()))
		}
		if c.Scenario == Clean && !c.TruthOK {
			fail = append(fail, fmt.Sprintf("%s: the control board is not healthy: %s", c.Name(), c.TruthDetail))
		}
	}
	if _, ok := find(Clean, Doctor); !ok {
		fail = append(fail, "clean/doctor: not run")
	}
	if _, ok := find(Injected, Doctor); !ok {
		fail = append(fail, "injected/doctor: not run")
	}
	if _, ok := find(IndexDesync, Doctor); !ok && slices.Contains(res.Scenarios, IndexDesync) {
		fail = append(fail, "index-desync/doctor: not run")
	}
	res.CI = &CIReport{Passed: len(fail) == 0, Failures: append([]string{}, fail...)}
	return fail
}
