package repro

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExecContractThreeWay: a guard whose exit status cycles through 0, 3, 2, 1 and 7 in the
// clean control is scored by the contract: 3 is inconclusive (never a false positive), 1 and 2
// corrupt (false positives here), 7 an error of the guard; each check's record carries its exit.
func TestExecContractThreeWay(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "guard.sh")
	counter := filepath.Join(dir, "n")
	os.WriteFile(script, []byte(`#!/bin/sh
n=$(cat "$2" 2>/dev/null || echo 0); echo $((n+1)) > "$2"
[ "$KANBAN_DOCTOR_SCENARIO" = clean ] || exit 9
case $((n % 5)) in 0) exit 0;; 1) echo busy; exit 3;; 2) echo malformed; exit 2;; 3) exit 1;; *) exit 7;; esac
`), 0o755)
	res, err := Run(context.Background(), Options{Duration: 600 * time.Millisecond, Scenarios: []string{Clean},
		Strategies: []string{ExecPrefix + script + " {db} " + counter}, Tasks: 100})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Cells[0]
	want := map[int]string{0: "healthy", 3: verdictInconclusive, 2: verdictCorrupt, 1: verdictCorrupt, 7: verdictError}
	count := map[int]int{}
	for _, r := range res.Checks {
		if want[r.Exit] != r.Verdict {
			t.Errorf("check %d: exit %d scored %q, want %q", r.N, r.Exit, r.Verdict, want[r.Exit])
		}
		count[r.Exit]++
	}
	t.Logf("checks=%d by exit %v: inconclusive=%d corrupt=%d fp=%d guard_errors=%d", c.Checks, count, c.Inconclusive, c.CorruptVerdicts, c.FalsePositives, c.GuardErrors)
	if c.Checks < 5 || len(res.Checks) != c.Checks {
		t.Fatalf("%d checks, %d records", c.Checks, len(res.Checks))
	}
	if c.Inconclusive != count[3] || c.FalsePositives != count[1]+count[2] || c.CorruptVerdicts != count[1]+count[2] || c.GuardErrors != count[7] {
		t.Errorf("cell %+v does not match the exits %v", c, count)
	}
}

// TestExecServeProtocol: one guard process per cell answering JSON lines or bare words,
// restarted every 4 checks; an answer outside the contract is a guard error.
func TestExecServeProtocol(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "serve.sh")
	os.WriteFile(good, []byte(`#!/bin/sh
n=0
while read -r req; do
  n=$((n+1))
  case "$req" in *'"db":"'"$KANBAN_DOCTOR_DB"'"'*) ;; *) echo "bad request $req"; continue;; esac
  if [ $((n % 2)) = 0 ]; then echo healthy; else echo '{"verdict":"healthy","message":"fine"}'; fi
done
`), 0o755)
	bad := filepath.Join(dir, "bad.sh")
	os.WriteFile(bad, []byte("#!/bin/sh\nwhile read -r req; do echo maybe; done\n"), 0o755)
	res, err := Run(context.Background(), Options{Duration: 600 * time.Millisecond, Scenarios: []string{Clean}, Tasks: 100,
		Strategies: []string{ServePrefix + good, ServePrefix + bad}, ServeRestartEvery: 4})
	if err != nil {
		t.Fatal(err)
	}
	g, b := res.Cells[0], res.Cells[1]
	t.Logf("good: checks=%d starts=%d guard p50 %.1f ms p99 %.1f ms (check p50 %.1f ms); bad: checks=%d errors=%d",
		g.Checks, g.GuardStarts, g.GuardP50ms, g.GuardP99ms, g.P50ms, b.Checks, b.GuardErrors)
	if g.Checks < 8 || g.Suspicious != 0 || g.GuardErrors != 0 || g.CorruptVerdicts != 0 {
		t.Errorf("good guard: %+v", g)
	}
	if wantStarts := (g.Checks + 3) / 4; g.GuardStarts != wantStarts {
		t.Errorf("good guard: %d processes started for %d checks, want %d (restart every 4)", g.GuardStarts, g.Checks, wantStarts)
	}
	if b.GuardErrors != b.Checks || b.FalsePositives != 0 {
		t.Errorf("bad guard: %d errors in %d checks, %d false positives", b.GuardErrors, b.Checks, b.FalsePositives)
	}
}

// referenceGuard returns the command of the Python reference guard, or skips without python3.
func referenceGuard(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the reference guard against live cells")
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	g, err := filepath.Abs("testdata/guard.py")
	if err != nil {
		t.Fatal(err)
	}
	return py + " " + g
}

// guardLog counts the lines of a reference guard's log by their first word.
func guardLog(t *testing.T, path string) map[string]int {
	t.Helper()
	out := map[string]int{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		w, _, _ := strings.Cut(sc.Text(), " ")
		out[w]++
	}
	return out
}

// TestReferenceGuardBackupsAndInconclusive is acceptance 1: the backups the harness counts
// (written, pruned, left) are the guard's own log under its keep-10 cap, and every exit-3 answer
// of the guard (lock-drop applied in its own process: I/O errors) is inconclusive, never a false
// positive.
func TestReferenceGuardBackupsAndInconclusive(t *testing.T) {
	guard := referenceGuard(t)
	dir := t.TempDir()
	res, err := Run(context.Background(), Options{Dir: dir, Duration: 3500 * time.Millisecond, Scenarios: []string{Injected},
		Strategies: []string{ServePrefix + guard + " --serve --keep 10"}})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Cells[0]
	log := guardLog(t, filepath.Join(dir, "cells", "00-injected-00", "guard.log"))
	t.Logf("injected: checks=%d corrupt=%d; harness: written=%d pruned=%d left=%d bytes=%d bad=%d/%d; guard log: %v",
		c.Checks, c.CorruptVerdicts, c.BackupsWritten, c.BackupsPruned, c.BackupsLeft, c.BackupBytes, c.BackupsCorrupt, c.BackupsChecked, log)
	if c.BackupsWritten != log["written"] || c.BackupsPruned != log["pruned"] || c.BackupsLeft != log["written"]-log["pruned"] {
		t.Errorf("harness counted written=%d pruned=%d left=%d, the guard logged %v", c.BackupsWritten, c.BackupsPruned, c.BackupsLeft, log)
	}
	if c.BackupsPruned == 0 || c.BackupsLeft != 10 {
		t.Errorf("want the keep-10 cap to prune: written=%d pruned=%d left=%d", c.BackupsWritten, c.BackupsPruned, c.BackupsLeft)
	}
	if c.BackupsChecked == 0 || c.BackupBytes == 0 {
		t.Errorf("backups not checked or weighed: %+v", c)
	}
	perCheck := 0
	for _, r := range res.Checks {
		perCheck += r.Backups
	}
	if perCheck != c.BackupsWritten {
		t.Errorf("per-check records hold %d backups, the cell %d", perCheck, c.BackupsWritten)
	}

	res, err = Run(context.Background(), Options{Duration: 1500 * time.Millisecond, Scenarios: []string{LockDrop},
		Strategies: []string{ExecPrefix + guard + " --no-reindex {db}"}})
	if err != nil {
		t.Fatal(err)
	}
	c = res.Cells[0]
	exits := map[int]int{}
	for _, r := range res.Checks {
		exits[r.Exit]++
		if r.Exit == ExitInconclusive && r.Verdict != verdictInconclusive {
			t.Errorf("check %d: exit 3 scored %s", r.N, r.Verdict)
		}
	}
	t.Logf("lock-drop in the guard's process: checks=%d exits=%v inconclusive=%d fp=%d", c.Checks, exits, c.Inconclusive, c.FalsePositives)
	if c.Inconclusive != exits[3] || c.FalsePositives != exits[1]+exits[2] {
		t.Errorf("exit 3 answers: %d, inconclusive %d; exit 1/2 answers: %d, false positives %d", exits[3], c.Inconclusive, exits[1]+exits[2], c.FalsePositives)
	}
}

// TestReferenceGuardRepairsIndexDesync is acceptance 2 for the guard that writes: REINDEX on
// index-only findings repairs the live board, scored repaired with a latency and no damage.
func TestReferenceGuardRepairsIndexDesync(t *testing.T) {
	guard := referenceGuard(t)
	res, err := Run(context.Background(), Options{Duration: 1500 * time.Millisecond, Scenarios: []string{IndexDesync},
		Strategies: []string{ServePrefix + guard + " --serve"}})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Cells[0]
	t.Logf("index-desync: checks=%d corrupt=%d fp=%d fn=%d repaired=%v latency=%.0f ms damage=%d truth_ok=%v lost=%d answers=%q",
		c.Checks, c.CorruptVerdicts, c.FalsePositives, c.FalseNegatives, c.Repaired, c.RepairLatencyMs, c.GuardDamage, c.TruthOK, c.LostCommits, c.Answers)
	if !c.Repaired || c.RepairLatencyMs <= 0 || !c.TruthOK {
		t.Errorf("not scored repaired: %+v", c)
	}
	if c.GuardDamage != 0 || c.LostCommits != 0 || c.FalsePositives != 0 {
		t.Errorf("the repair damaged the board or cried wolf: damage %v, lost %d, fp %d", c.GuardDamageDetail, c.LostCommits, c.FalsePositives)
	}
}

// TestReferenceGuardDamageUnderLockDrop is acceptance 3: with the lock-drop mechanism in its own
// process (KANBAN_DOCTOR_SCENARIO through exec-serve), the REINDEX guard turns false index-only
// answers into real damage (guard_damage > 0, --ci fails naming the cell); with REINDEX off it
// damages nothing. Damage needs a REINDEX to race a writer, so up to six seeds are tried.
func TestReferenceGuardDamageUnderLockDrop(t *testing.T) {
	guard := referenceGuard(t)
	damaging := ServePrefix + guard + " --serve"
	var c Cell
	const seeds = 6 // damage needs a REINDEX to race a writer: a loaded machine may need more tries
	for seed := uint64(1); seed <= seeds; seed++ {
		d := 1500 * time.Millisecond
		if seed > 3 {
			d = 3 * time.Second
		}
		res, err := Run(context.Background(), Options{Seed: seed, Duration: d, Scenarios: []string{LockDrop},
			Strategies: []string{damaging}})
		if err != nil {
			t.Fatal(err)
		}
		c = res.Cells[0]
		t.Logf("seed %d, REINDEX on: checks=%d corrupt=%d damage=%d %q writers=%v lost=%d", seed, c.Checks, c.CorruptVerdicts, c.GuardDamage, c.GuardDamageDetail, c.WriterErrors, c.LostCommits)
		if c.GuardDamage > 0 {
			if !ciNames(CI(&res), c.Name()+": the strategy damaged the board") {
				t.Errorf("--ci does not fail the damaging strategy: %v", res.CI.Failures)
			}
			break
		}
	}
	if c.GuardDamage == 0 {
		t.Errorf("REINDEX guard under lock-drop: no damage in %d seeds", seeds)
	}
	res, err := Run(context.Background(), Options{Duration: 1500 * time.Millisecond, Scenarios: []string{LockDrop},
		Strategies: []string{damaging + " --no-reindex"}})
	if err != nil {
		t.Fatal(err)
	}
	c = res.Cells[0]
	t.Logf("REINDEX off: checks=%d corrupt=%d fp=%d damage=%d truth_ok=%v", c.Checks, c.CorruptVerdicts, c.FalsePositives, c.GuardDamage, c.TruthOK)
	if c.GuardDamage != 0 || !c.TruthOK || ciNames(CI(&res), "damaged the board") {
		t.Errorf("the guard without REINDEX damaged the board: %q (truth %v %s)", c.GuardDamageDetail, c.TruthOK, c.TruthDetail)
	}
}

func ciNames(fails []string, sub string) bool {
	for _, f := range fails {
		if strings.Contains(f, sub) {
			return true
		}
	}
	return false
}

// TestREADMEServeExample runs the README's exec-serve example (kept verbatim in
// testdata/serve_guard.py; the test fails when the two drift): no false positive in clean, and in
// lock-drop, applied in the guard's own process through KANBAN_DOCTOR_SCENARIO, it cries wolf
// like the legacy guard does.
func TestREADMEServeExample(t *testing.T) {
	guard := referenceGuard(t)
	py, _, _ := strings.Cut(guard, " ")
	src, err := os.ReadFile("testdata/serve_guard.py")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```python\n"+string(src)+"```\n") {
		t.Errorf("README.md does not show testdata/serve_guard.py verbatim in a python block")
	}
	abs, _ := filepath.Abs("testdata/serve_guard.py")
	res, err := Run(context.Background(), Options{Duration: 800 * time.Millisecond, Scenarios: []string{Clean, LockDrop},
		Strategies: []string{ServePrefix + py + " " + abs}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Cells {
		t.Logf("%s: checks=%d starts=%d corrupt=%d inconclusive=%d fp=%d guard p50 %.1f ms", c.Name(), c.Checks, c.GuardStarts, c.CorruptVerdicts, c.Inconclusive, c.FalsePositives, c.GuardP50ms)
		if c.GuardStarts != 1 || c.GuardErrors != 0 || c.Checks < minChecks {
			t.Errorf("%s: %d guard processes, %d guard errors, %d checks", c.Name(), c.GuardStarts, c.GuardErrors, c.Checks)
		}
		if c.Scenario == Clean && c.FalsePositives != 0 {
			t.Errorf("clean: %d false positives", c.FalsePositives)
		}
		if c.Scenario == LockDrop && c.Suspicious == 0 {
			// The lost lock is a race the writer wins only sometimes: give it longer runs before
			// calling the scenario broken.
			checks := c.Checks
			for try := 0; try < 3 && c.Suspicious == 0; try++ {
				more, err := Run(context.Background(), Options{Duration: 2 * time.Second, Scenarios: []string{LockDrop},
					Strategies: []string{ServePrefix + py + " " + abs}})
				if err != nil {
					t.Fatal(err)
				}
				c = more.Cells[0]
				checks += c.Checks
			}
			if c.Suspicious == 0 {
				t.Errorf("lock-drop in the guard's process: no suspicious answer in %d checks", checks)
			}
		}
	}
}
