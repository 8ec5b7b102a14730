package watch

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
	"github.com/kanban-doctor/kanban-doctor/probe"
	"github.com/kanban-doctor/kanban-doctor/reports"
)

const (
	verifyChild = "watch-test-verify" // what `kanban-doctor verify --json DB` does: probe.Check, one JSON document
	mainChild   = "watch-test-main"   // what `kanban-doctor watch` does under main: signals cancel the watcher
)

func init() {
	reexec.Register(verifyChild, func(args []string) int {
		db := args[len(args)-1]
		res, err := probe.Check(context.Background(), board.New("x", db), probe.Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 8
		}
		reports.JSON(os.Stdout, "verify", struct {
			Boards []probe.Result `json:"boards"`
		}{[]probe.Result{res}})
		return res.Verdict.ExitCode()
	})
	reexec.Register(mainChild, func(args []string) int {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		w, err := New(Options{Paths: args[:1], StormCount: 2, Rescan: time.Second,
			OnStorm: []string{"exec:" + args[1]}, ExecTimeout: time.Hour, Events: os.Stdout})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 8
		}
		if err := w.Run(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 8
		}
		return 0
	})
}

// liveBoard generates a real WAL board at dir/kanban.db and starts writer processes on it.
func liveBoard(t *testing.T, dir string, writers int, wo kanban.WriterOptions) *kanban.Fleet {
	t.Helper()
	db := filepath.Join(dir, board.DBName)
	if err := kanban.Generate(context.Background(), db, kanban.GenOptions{Tasks: 300, Seed: 3, WAL: true}); err != nil {
		t.Fatal(err)
	}
	if writers == 0 {
		return nil
	}
	f, err := kanban.StartWriters(context.Background(), db, writers, t.TempDir(), wo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Stop() })
	return f
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func readPid(t *testing.T, path string, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(path)
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && pid > 0 {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s after %s", path, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOnStormVerifyProbesTheLiveBoardFromAChildThenExecSeesTheVerdict(t *testing.T) {
	t.Setenv(reexec.EnvKey, verifyChild) // the verify command below is this test binary as that child
	exe, _ := os.Executable()
	tests := []struct {
		name        string
		corrupt     bool
		wantVerdict string
		wantHealthy float64
	}{
		{"healthy board under three writers: the storm is false positives", false, "healthy", 1},
		{"truncated board: really corrupt", true, "corrupt", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writers := 3
			if tt.corrupt {
				writers = 0
			}
			liveBoard(t, root, writers, kanban.WriterOptions{Seed: 1, AutoCheckpoint: -1, CheckpointMode: "PASSIVE"})
			if tt.corrupt {
				db := filepath.Join(root, board.DBName)
				fi, _ := os.Stat(db)
				if err := os.Truncate(db, fi.Size()/2); err != nil {
					t.Fatal(err)
				}
			}
			envOut := filepath.Join(t.TempDir(), "env")
			r := startWatcher(t, Options{Paths: []string{root}, StormCount: 3,
				OnStorm:       []string{"verify", "exec:env > " + envOut},
				VerifyCommand: []string{exe}, VerifyTimeout: time.Minute})
			stormOf(t, root, 0, 4)
			r.log.waitFor(t, 90*time.Second, "a verdict", func() bool { return len(r.log.all(EventVerdict)) == 1 })
			v := r.log.all(EventVerdict)[0]
			if v.Verdict != tt.wantVerdict || v.Storm != 1 || v.ExitCode == nil || v.Error != "" {
				t.Fatalf("verdict event %+v, want %s for storm 1", v, tt.wantVerdict)
			}
			t.Logf("verdict %s class %q exit %d in %d ms", v.Verdict, v.Class, *v.ExitCode, v.DurationMS)
			if got := r.metric(t, labels("kanban_doctor_board_healthy", "default")); got != tt.wantHealthy {
				t.Fatalf("board_healthy %v, want %v", got, tt.wantHealthy)
			}
			r.log.waitFor(t, 10*time.Second, "the exec action", func() bool {
				b, _ := os.ReadFile(envOut)
				return strings.Contains(string(b), "KANBAN_DOCTOR_VERDICT=")
			})
			env, _ := os.ReadFile(envOut)
			if !strings.Contains(string(env), "KANBAN_DOCTOR_VERDICT="+tt.wantVerdict+"\n") ||
				!strings.Contains(string(env), "KANBAN_DOCTOR_EVENT_NAME=storm-started\n") ||
				!strings.Contains(string(env), "KANBAN_DOCTOR_DB="+filepath.Join(root, board.DBName)+"\n") {
				t.Fatalf("exec environment lacks the event and verdict:\n%s", env)
			}
			for _, line := range strings.Split(string(env), "\n") {
				if js, ok := strings.CutPrefix(line, "KANBAN_DOCTOR_EVENT="); ok {
					var ev Event
					if err := json.Unmarshal([]byte(js), &ev); err != nil || ev.Event != EventStormStarted || ev.Units != 4 {
						t.Fatalf("KANBAN_DOCTOR_EVENT %q: %v", js, err)
					}
				}
			}
		})
	}
}

func TestExecActionIsKilledWithItsChildrenAtTheTimeout(t *testing.T) {
	root := t.TempDir()
	pidFile := filepath.Join(t.TempDir(), "pid")
	r := startWatcher(t, Options{Paths: []string{root}, StormCount: 1,
		OnStorm: []string{"exec:sleep 60 & echo $! > " + pidFile + "; wait"}, ExecTimeout: 300 * time.Millisecond})
	stormOf(t, root, 0, 2)
	pid := readPid(t, pidFile, 10*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d of the exec action still alive 5s after a 300ms timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = r
}

func TestSIGTERMStopsWithin5sAndLeavesNoChild(t *testing.T) {
	root := t.TempDir()
	pidFile := filepath.Join(t.TempDir(), "pid")
	cmd, err := reexec.Command(context.Background(), mainChild, root, "echo $$ > "+pidFile+"; exec sleep 300")
	if err != nil {
		t.Fatal(err)
	}
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Wait for the initial scan, then start a storm whose exec action is a long-running child.
	waitLine := func(what string) {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("watcher exited before %s", what)
				}
				if strings.Contains(l, what) {
					return
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("no %s from the watcher", what)
			}
		}
	}
	waitLine(`"event":"rescan"`)
	stormOf(t, root, 0, 3)
	waitLine(`"event":"storm-started"`)
	child := readPid(t, pidFile, 10*time.Second)
	if !alive(child) {
		t.Fatal("exec child not running")
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	err = cmd.Wait()
	took := time.Since(start)
	t.Logf("exit after SIGTERM in %s (%v)", took, err)
	if err != nil {
		t.Fatalf("exit status: %v, want 0", err)
	}
	if took > 5*time.Second {
		t.Fatalf("took %s to exit, want under 5s", took)
	}
	for _, l := range rest {
		if !json.Valid([]byte(l)) {
			t.Fatalf("torn event line after SIGTERM: %q", l)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for alive(child) {
		if time.Now().After(deadline) {
			t.Fatalf("exec child %d survived the watcher", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWALGrowthAlarmFromFileSizesOnly(t *testing.T) {
	root := t.TempDir()
	// Writers with autocheckpoint off: the WAL only grows.
	liveBoard(t, root, 2, kanban.WriterOptions{Seed: 5, AutoCheckpoint: 0, CheckpointMode: "PASSIVE"})
	r := startWatcher(t, Options{Paths: []string{root}, WALThreshold: 1 << 20, WALEvery: 200 * time.Millisecond})
	r.log.waitFor(t, 60*time.Second, "wal-growth", func() bool { return len(r.log.all(EventWALGrowth)) > 0 })
	e := r.log.all(EventWALGrowth)[0]
	if e.WALBytes < 1<<20 || e.WALThreshold != 1<<20 {
		t.Fatalf("wal-growth %+v", e)
	}
	if got := r.metric(t, labels("kanban_doctor_wal_bytes", "default")); got < 1<<20 {
		t.Fatalf("wal_bytes %v", got)
	}
}
