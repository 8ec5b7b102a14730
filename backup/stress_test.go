package backup

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
)

// soak reports whether the long versions run (KD_SOAK=1).
func soak() bool { return os.Getenv("KD_SOAK") == "1" }

// Acceptance 1: three writer processes commit and checkpoint (PASSIVE, FULL, RESTART, TRUNCATE in
// turn) while we take consecutive backups. Every backup passes integrity_check under the C sqlite3
// CLI, carries the sha256 its name says, and holds every task id the writers' ledgers listed
// before that backup started.
func TestSnapshotsUnderWriterFleetHoldEveryCommittedTask(t *testing.T) {
	n := 100
	if soak() {
		n = 300 // the board grows by about 200 tasks a second meanwhile, so each backup takes longer
	}
	ctx := context.Background()
	dir := t.TempDir()
	db := genBoard(t, dir, 200, true)
	outDir := filepath.Join(dir, "out")
	os.Mkdir(outDir, 0o755)
	fleet, err := kanban.StartWriters(ctx, db, 3, dir, kanban.WriterOptions{Seed: 1, AutoCheckpoint: 0, CheckpointEvery: 10, CheckpointMode: "mixed"})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Stop()
	var took time.Duration
	minTasks, maxTasks := 0, 0
	for i := 0; i < n; i++ {
		before, err := fleet.Committed()
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		r, err := Snapshot(ctx, db, Options{Out: outDir})
		took += time.Since(t0)
		if err != nil {
			t.Fatalf("backup %d: %v", i, err)
		}
		if got := cliCheck(t, r.Path); got != "ok" {
			t.Fatalf("backup %d: sqlite3 integrity_check: %s", i, got)
		}
		if p, _ := ParseName("kanban.db", filepath.Base(r.Path)); sha256File(t, r.Path)[:16] != p.Hash {
			t.Fatalf("backup %d: content does not match its name", i)
		}
		have := taskIDs(t, r.Path)
		for id := range before {
			if !have[id] {
				t.Fatalf("backup %d lacks task %s, committed (ledger) before it started", i, id)
			}
		}
		if i == 0 {
			minTasks = len(have)
		}
		maxTasks = len(have)
		os.Remove(r.Path) // keep the disk small; the next backup is checked the same way
	}
	if err := fleet.Stop(); err != nil {
		t.Fatalf("writers: %v", err)
	}
	committed, _ := fleet.Committed()
	if len(committed) < 100 {
		t.Fatalf("writers committed only %d tasks: the backups did not run under load", len(committed))
	}
	t.Logf("%d backups under 3 writers: all integrity_check ok and complete; tasks %d..%d; mean backup %v; %d tasks committed",
		n, minTasks, maxTasks, took/time.Duration(n), len(committed))
}

// Acceptance 2: SIGKILL at random moments during a backup (a child process backing up a board of
// tens of MB) never leaves an incomplete file under a final name; the temps it leaves are
// recognisable and the next run removes them.
func TestSnapshotKilledAtRandomMomentsNeverLeavesAPartialBackup(t *testing.T) {
	rounds := 25
	if soak() {
		rounds = 200
	}
	ctx := context.Background()
	dir := t.TempDir()
	db := genBoard(t, dir, 8000, true)
	outDir := filepath.Join(dir, "out")
	os.Mkdir(outDir, 0o755)
	// Even rounds copy through memory, odd rounds page by page straight into the temp file.
	run := func(kill time.Duration, path string) (killed bool) {
		cmd, err := reexec.Command(ctx, snapshotChild, db, outDir, path)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		if kill <= 0 {
			if err := <-done; err != nil {
				t.Fatalf("backup child: %v", err)
			}
			return false
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("backup child: %v", err)
			}
			return false
		case <-time.After(kill):
			syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			<-done
			return true
		}
	}
	// How long one whole run takes (start-up included), so kills land anywhere in it.
	t0 := time.Now()
	run(0, "memory")
	run(0, "file")
	full := time.Since(t0) / 2
	rng := rand.New(rand.NewPCG(42, 4))
	midCopy, partial, finals := 0, 0, 0
	verified := map[string]bool{} // final names already checked (a final file never changes)
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	dbSize := fi.Size()
	for i := 0; i < rounds; i++ {
		execSQL(t, db, "UPDATE tasks SET priority = priority + 1 WHERE rowid % 7 = 0") // new content
		run(time.Duration(rng.Int64N(int64(full)+int64(full)/5)), []string{"memory", "file"}[i%2])
		temps := 0
		for _, n := range dirNames(t, outDir) {
			p := filepath.Join(outDir, n)
			switch pn, ok := ParseName("kanban.db", n); {
			case ok && verified[n]:
			case ok:
				verified[n] = true
				if got := sha256File(t, p); got[:16] != pn.Hash {
					t.Fatalf("round %d: final-named %s holds content %s", i, n, got[:16])
				}
				if got := cliCheck(t, p); got != "ok" {
					t.Fatalf("round %d: final-named %s: integrity_check %s", i, n, got)
				}
			case strings.HasSuffix(n, ".source") && verified[strings.TrimSuffix(n, ".source")]:
				// the record of which board a backup was made from, written after the backup
			case atomicfile.IsTemp(n):
				temps++
				if fi, err := os.Stat(p); err == nil && fi.Size() < dbSize {
					partial++ // killed while the pages were being copied
				}
			default:
				t.Fatalf("round %d: unexpected file %s", i, n)
			}
		}
		if temps > 1 {
			t.Fatalf("round %d: %d temps: the previous run's temp was not cleaned", i, temps)
		}
		midCopy += temps
	}
	r, err := Snapshot(ctx, db, Options{Out: outDir})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range dirNames(t, outDir) {
		if atomicfile.IsTemp(n) {
			t.Fatalf("temp %s survived the next run", n)
		}
		if _, ok := ParseName("kanban.db", n); ok {
			finals++
		}
	}
	if midCopy < rounds/5 || partial < 3 {
		t.Fatalf("only %d of %d kills left a temp, %d of them mid-copy; the test does not test much", midCopy, rounds, partial)
	}
	t.Logf("%d kills (whole run %v): %d left a temp (%d mid-copy, the rest while checking or hashing), all cleaned by the next run (last cleaned %d); %d complete backups, all intact",
		rounds, full.Round(time.Millisecond), midCopy, partial, len(r.CleanedTemps), finals)
}
