package probe_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/internal/fixture"
	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
	"github.com/kanban-doctor/kanban-doctor/probe"
	"github.com/kanban-doctor/kanban-doctor/probe/pagecheck"
)

const flockChild = "probe-test-flock"

func init() {
	reexec.Register(flockChild, func(args []string) int {
		f, err := os.OpenFile(args[0], os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return 8
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			return 8
		}
		fmt.Println("ready")
		time.Sleep(time.Minute)
		return 0
	})
}

func hazard(res probe.Result, code string) *probe.Hazard {
	for i := range res.Hazards {
		if res.Hazards[i].Code == code {
			return &res.Hazards[i]
		}
	}
	return nil
}

// TestInitLockHolderIsAHazard: another process holding kanban.db.init.lock (a first-connect
// initialisation running or stuck) is reported with its pid; the verdict is unaffected.
func TestInitLockHolderIsAHazard(t *testing.T) {
	db := fixture.CopyTo(t, "healthy-delete")
	cmd, err := reexec.Command(context.Background(), flockChild, db+".init.lock")
	if err != nil {
		t.Fatal(err)
	}
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if sc := bufio.NewScanner(out); !sc.Scan() || sc.Text() != "ready" {
		t.Fatal("lock holder did not start")
	}
	res, err := probe.Check(context.Background(), boardAt(t, db), probe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := hazard(res, probe.HazardInitLock)
	if h == nil || !slices.Contains(h.Pids, cmd.Process.Pid) {
		t.Fatalf("no init-lock hazard naming pid %d: %+v", cmd.Process.Pid, res.Hazards)
	}
	if res.Verdict != probe.Healthy {
		t.Fatalf("verdict %s: hazards must not change it", res.Verdict)
	}
}

// TestLiveBoardHazards: a writer process with the board open is counted, a -wal beyond the limit
// is reported, and a static check (a backup or copy) reports no hazards at all.
func TestLiveBoardHazards(t *testing.T) {
	db, fleet := liveBoard(t, 300, 1)
	time.Sleep(300 * time.Millisecond)
	b := boardAt(t, db)
	res, err := probe.Check(context.Background(), b, probe.Options{WALLimit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if h := hazard(res, probe.HazardOpen); h == nil || !slices.Contains(h.Pids, fleet.Pids()[0]) {
		t.Errorf("no open-processes hazard naming the writer: %+v", res.Hazards)
	}
	if hazard(res, probe.HazardWALLarge) == nil {
		t.Errorf("no wal-large hazard with a 1-byte limit: %+v", res.Hazards)
	}
	if hazard(res, probe.HazardDeletedWAL) != nil || hazard(res, probe.HazardWALMissing) != nil {
		t.Errorf("hazards on a sound live board: %+v", res.Hazards)
	}
	res, err = probe.Check(context.Background(), b, probe.Options{Static: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hazards) != 0 || res.Verdict != probe.Healthy {
		t.Errorf("static check: %s, hazards %+v", res.Verdict, res.Hazards)
	}
}

// TestTruncatedUnderTheCheckNeverCrashes: the board's file is cut to half by another process
// while full checks run on it, at whatever moment that lands. The page check reads the file
// memory-mapped, so a vanished page can be a fault (recovered: inconclusive), the SQLite passes
// read it with pread (an I/O or corruption answer): the process survives and the verdict is one
// of healthy (the check finished first), corrupt/truncated (confirmed) or inconclusive.
func TestTruncatedUnderTheCheckNeverCrashes(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kanban.db")
	if err := kanban.Generate(context.Background(), db, kanban.GenOptions{Tasks: 4000, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(db)
	done := make(chan probe.Result)
	go func() {
		res, err := probe.Check(context.Background(), boardAt(t, db), probe.Options{Full: true, Backoff: time.Millisecond})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	time.Sleep(30 * time.Millisecond) // mid-check: a full check of this board takes longer
	if err := exec.Command("truncate", "-s", fmt.Sprint(fi.Size()/2), db).Run(); err != nil {
		t.Fatal(err)
	}
	res := <-done
	t.Logf("verdict while truncated mid-check: %s/%s", res.Verdict, res.Class)
	switch {
	case res.Verdict == probe.Healthy, res.Verdict == probe.Inconclusive:
	case res.Verdict == probe.Corrupt && res.Class == probe.ClassTruncated:
	default:
		t.Fatalf("verdict %s/%s after truncation: %+v", res.Verdict, res.Class, res.Findings)
	}
	// Once truncated, a check must call it what it is.
	res, err := probe.Check(context.Background(), boardAt(t, db), probe.Options{Full: true, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != probe.Corrupt || res.Class != probe.ClassTruncated {
		t.Fatalf("truncated board: %s/%s", res.Verdict, res.Class)
	}
}

// TestMappedFileShrinkingIsInconclusive: another process truncates the board exactly while the
// page check reads it memory-mapped (the test hook runs between its walk and its scan). The
// fault on a page past the new end is recovered: the verdict is inconclusive with a finding that
// says the file changed, no child is asked, no backup is written, and the process lives on to
// call the truncated board what it is.
func TestMappedFileShrinkingIsInconclusive(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kanban.db")
	if err := kanban.Generate(context.Background(), db, kanban.GenOptions{Tasks: 1500, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(db)
	pagecheck.TestHookBeforeScan = func() {
		if out, err := exec.Command("truncate", "-s", fmt.Sprint(fi.Size()/3), db).CombinedOutput(); err != nil {
			t.Errorf("truncate: %v: %s", err, out)
		}
	}
	res, err := probe.Check(context.Background(), boardAt(t, db), probe.Options{Backup: true})
	pagecheck.TestHookBeforeScan = nil
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != probe.Inconclusive || len(res.Findings) == 0 || res.Findings[0].Code != "file-changed" || res.Backup != "" || res.Child != "" {
		t.Fatalf("verdict %s, child %q, backup %q, findings %+v", res.Verdict, res.Child, res.Backup, res.Findings)
	}
	t.Logf("%s: %s", res.Verdict, res.Findings[0].Message)
	res, err = probe.Check(context.Background(), boardAt(t, db), probe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != probe.Corrupt || res.Class != probe.ClassTruncated {
		t.Fatalf("truncated board afterwards: %s/%s", res.Verdict, res.Class)
	}
}
