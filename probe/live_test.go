package probe_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"modernc.org/sqlite"

	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
	"github.com/kanban-doctor/kanban-doctor/internal/fixture"
	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
	"github.com/kanban-doctor/kanban-doctor/internal/testenv"
	"github.com/kanban-doctor/kanban-doctor/probe"
)

func soak() bool { return os.Getenv("KD_SOAK") != "" }

// liveBoard generates a WAL board with tasks and starts n writer processes on it that commit
// kanban transactions and run checkpoints of all four modes in turn.
func liveBoard(t *testing.T, tasks, n int) (string, *kanban.Fleet) {
	t.Helper()
	dir := t.TempDir()
	db := filepath.Join(dir, "kanban.db")
	ctx := context.Background()
	if err := kanban.Generate(ctx, db, kanban.GenOptions{Tasks: tasks, Seed: 7, WAL: true}); err != nil {
		t.Fatal(err)
	}
	f, err := kanban.StartWriters(ctx, db, n, dir, kanban.WriterOptions{Seed: 3, AutoCheckpoint: -1,
		CheckpointEvery: 25, CheckpointMode: "mixed"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Stop() })
	return db, f
}

// TestHealthyWhileWritersCommitAndCheckpoint is acceptance 2: three writer processes commit
// kanban transactions and run PASSIVE, FULL, RESTART and TRUNCATE checkpoints while verify runs
// in a loop (quick and full alternately): every verdict is healthy, not even transient.
func TestHealthyWhileWritersCommitAndCheckpoint(t *testing.T) {
	dur := 10 * time.Second
	if soak() {
		dur = 2 * time.Minute
	}
	db, fleet := liveBoard(t, 1500, 3)
	b := boardAt(t, db)
	ctx := context.Background()
	deadline := time.Now().Add(dur)
	checks := 0
	for time.Now().Before(deadline) {
		full := checks%2 == 1
		res, err := probe.Check(ctx, b, probe.Options{Full: full, Backup: true, Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		checks++
		if res.Verdict != probe.Healthy {
			t.Fatalf("check %d (full=%v): %s, findings %+v, first answer %q", checks, full, res.Verdict, res.Findings, res.FirstAnswer)
		}
	}
	if err := fleet.Stop(); err != nil {
		t.Fatal(err)
	}
	ids, err := fleet.Committed()
	if err != nil {
		t.Fatal(err)
	}
	if checks < 5 || len(ids) < 100 {
		t.Fatalf("%d checks, %d commits: the load did not overlap the checks", checks, len(ids))
	}
	t.Logf("%d checks healthy while writers committed %d tasks", checks, len(ids))
	assertNoBackups(t, db)
}

// TestHealthyWhileAnotherProcessVacuums: a separate sqlite3 process deletes events and VACUUMs
// the board again and again (the file shrinks each time) while verify runs in a loop, quick and
// full, on a rollback board and a WAL board. SQLite's locks keep a VACUUM from shrinking the file
// under a reader, so every verdict is healthy, and nothing faults.
func TestHealthyWhileAnotherProcessVacuums(t *testing.T) {
	sqlite3 := testenv.Tool(t, "sqlite3")
	for _, wal := range []bool{false, true} {
		db := filepath.Join(t.TempDir(), "kanban.db")
		ctx := context.Background()
		if err := kanban.Generate(ctx, db, kanban.GenOptions{Tasks: 1500, Seed: 11, WAL: wal}); err != nil {
			t.Fatal(err)
		}
		vctx, stop := context.WithCancel(ctx)
		var vacuums atomic.Int32
		vdone := make(chan struct{})
		go func() {
			defer close(vdone)
			for i := 0; vctx.Err() == nil && i < 40; i++ {
				out, err := exec.Command(sqlite3, "-cmd", ".timeout 5000", db,
					fmt.Sprintf("DELETE FROM task_events WHERE id %% 40 = %d; VACUUM;", i)).CombinedOutput()
				if err != nil {
					t.Errorf("vacuum %d: %v: %s", i, err, out)
					return
				}
				vacuums.Add(1)
			}
		}()
		b := boardAt(t, db)
		checks := 0
		for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); checks++ {
			res, err := probe.Check(ctx, b, probe.Options{Full: checks%2 == 1, Timeout: 20 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != probe.Healthy {
				t.Fatalf("wal=%v check %d: %s %+v", wal, checks, res.Verdict, res.Findings)
			}
		}
		stop()
		<-vdone
		if vacuums.Load() < 3 {
			t.Fatalf("wal=%v: only %d VACUUMs overlapped %d checks", wal, vacuums.Load(), checks)
		}
		t.Logf("wal=%v: %d checks healthy across %d VACUUMs", wal, checks, vacuums.Load())
	}
}

func assertNoBackups(t *testing.T, db string) {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Dir(db))
	for _, e := range ents {
		if strings.Contains(e.Name(), ".corrupt.") || atomicfile.IsTemp(e.Name()) {
			t.Errorf("unexpected file %s", e.Name())
		}
	}
}

// TestCompromisedProbeIsCaughtNotBelieved is acceptance 3: the probe's own process bypasses
// SQLite's locking (a goroutine opening and closing the board's -shm in a loop, which drops the
// process's POSIX locks; or an immutable=1 connection) while writers checkpoint. The bad answers
// survive the same-connection re-checks, the clean child finds the board ok, the verdict is
// false-positive, and no backup is written even with Backup set.
func TestCompromisedProbeIsCaughtNotBelieved(t *testing.T) {
	for _, tc := range []struct {
		name   string
		params []string
		fdLoop bool
	}{
		{name: "shm-open-close-loop", fdLoop: true},
		{name: "immutable", params: []string{"immutable=1"}},
		{name: "nolock", params: []string{"nolock=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := liveBoard(t, 3000, 3)
			b := boardAt(t, db)
			ctx := context.Background()
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var loops atomic.Int64
			if tc.fdLoop {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						if f, err := os.Open(b.SHM); err == nil {
							f.Close()
							loops.Add(1)
						}
					}
				}()
			}
			falsePositives := 0
			for i := 0; i < 60 && falsePositives < 2; i++ {
				res, err := probe.Check(ctx, b, probe.Options{Params: tc.params, Backup: true, Backoff: 5 * time.Millisecond,
					Timeout: 20 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				switch res.Verdict {
				case probe.FalsePositive:
					falsePositives++
					t.Logf("check %d: false-positive; first answer %q", i, res.FirstAnswer)
					if res.Rechecks != 2 || res.Child != "ok" {
						t.Errorf("false-positive after %d re-checks, child %q", res.Rechecks, res.Child)
					}
					if res.Backup != "" {
						t.Errorf("backup written for a false positive: %s", res.Backup)
					}
					if tc.params != nil && !slices.ContainsFunc(res.Hazards, func(h probe.Hazard) bool { return h.Code == probe.HazardUnlockedProbe }) {
						t.Errorf("no hazard explains the immutable probe: %+v", res.Hazards)
					}
				case probe.Corrupt:
					t.Fatalf("a compromised probe was believed: %+v", res)
				}
			}
			close(stop)
			wg.Wait()
			if falsePositives == 0 {
				t.Fatalf("the compromised probe never produced a bad answer (fd loops %d): the test proves nothing", loops.Load())
			}
			assertNoBackups(t, db)
		})
	}
}

// TestDeletedWALHeldOpenIsAHazard is acceptance 4: a writer process keeps its kanban.db-wal open
// after the -wal and -shm are deleted behind its back (what re-running journal_mode=WAL did to
// hermes): verify reports the hazard with the writer's pid, and the verdict is not corrupt.
func TestDeletedWALHeldOpenIsAHazard(t *testing.T) {
	db, fleet := liveBoard(t, 300, 1)
	time.Sleep(200 * time.Millisecond)
	if err := os.Remove(db + "-wal"); err != nil {
		t.Fatal(err)
	}
	os.Remove(db + "-shm")
	res, err := probe.Check(context.Background(), boardAt(t, db), probe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pid := fleet.Pids()[0]
	found := false
	for _, h := range res.Hazards {
		if h.Code == probe.HazardDeletedWAL && slices.Contains(h.Pids, pid) {
			found = true
			if !strings.Contains(h.Message, "kanban.db-wal") {
				t.Errorf("hazard message does not name the file: %s", h.Message)
			}
		}
	}
	if !found {
		t.Fatalf("no %s hazard naming pid %d: %+v", probe.HazardDeletedWAL, pid, res.Hazards)
	}
	if h := hazard(res, probe.HazardWALMissing); h == nil || !slices.Contains(h.Pids, pid) {
		t.Errorf("no wal-missing hazard naming pid %d: %+v", pid, res.Hazards)
	}
	if res.Verdict == probe.Corrupt {
		t.Fatalf("verdict corrupt: %+v", res)
	}
}

// TestBackupIsWrittenOnceAndIsABackupAPICopy is acceptance 5: --backup on a corrupt fixture, ten
// times, leaves exactly one backup, byte-identical to a backup-API copy of the fixture, and no
// temporary file.
func TestBackupIsWrittenOnceAndIsABackupAPICopy(t *testing.T) {
	for _, name := range []string{"table-leaf-type", "index-desync"} {
		t.Run(name, func(t *testing.T) {
			db := fixture.CopyTo(t, name)
			b := boardAt(t, db)
			var first string
			for i := 0; i < 10; i++ {
				res, err := probe.Check(context.Background(), b, probe.Options{Full: true, Backup: true, Backoff: time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				if res.Verdict != probe.Corrupt || res.Backup == "" {
					t.Fatalf("run %d: %s, backup %q, findings %+v", i, res.Verdict, res.Backup, res.Findings)
				}
				if first == "" {
					first = res.Backup
				} else if res.Backup != first {
					t.Fatalf("run %d named %s, first run %s", i, res.Backup, first)
				}
			}
			var backups []string
			ents, _ := os.ReadDir(filepath.Dir(db))
			for _, e := range ents {
				if strings.Contains(e.Name(), ".corrupt.") {
					backups = append(backups, e.Name())
				}
				if atomicfile.IsTemp(e.Name()) {
					t.Errorf("temp file left: %s", e.Name())
				}
			}
			if len(backups) != 1 || filepath.Join(filepath.Dir(db), backups[0]) != first {
				t.Fatalf("backups %v, want exactly %s", backups, first)
			}
			got, err := os.ReadFile(first)
			if err != nil {
				t.Fatal(err)
			}
			want := backupAPICopy(t, db)
			if !bytes.Equal(got, want) {
				t.Fatalf("backup (%d bytes) differs from a backup-API copy (%d bytes)", len(got), len(want))
			}
		})
	}
}

// backupAPICopy copies db with SQLite's backup API into a temp file and returns its bytes.
func backupAPICopy(t *testing.T, db string) []byte {
	t.Helper()
	ctx := context.Background()
	c, closeC, err := sqlitex.Conn(ctx, db, sqlitex.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeC()
	dst := filepath.Join(t.TempDir(), "ref.db")
	err = c.Raw(func(dc any) error {
		bk, err := dc.(interface {
			NewBackup(string) (*sqlite.Backup, error)
		}).NewBackup("file:" + sqlitex.EscapePath(dst) + "?mode=rwc")
		if err != nil {
			return err
		}
		if _, err := bk.Step(-1); err != nil {
			bk.Finish()
			return err
		}
		return bk.Finish()
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
