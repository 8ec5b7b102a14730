package commands

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
)

// TestWatchOnStormVerifyRunsTheVerifyCommandAsAChild runs the real CLI (this test binary as
// kanban-doctor): a storm on a real board makes watch run `kanban-doctor verify --json DB` as a
// child process and print its verdict as an event.
func TestWatchOnStormVerifyRunsTheVerifyCommandAsAChild(t *testing.T) {
	exe, err := exec.LookPath("kanban-doctor")
	if err != nil {
		t.Fatalf("kanban-doctor not on PATH (TestMain sets it up): %v", err)
	}
	if out, err := exec.Command(exe, "verify", "--help").CombinedOutput(); err != nil {
		t.Fatalf("kanban-doctor verify --help: %v: %s", err, out) // verify exists: a failure here is a regression, not a skip
	}
	dir := t.TempDir()
	db := filepath.Join(dir, board.DBName)
	if err := kanban.Generate(context.Background(), db, kanban.GenOptions{Tasks: 200, Seed: 1, WAL: true}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "watch", "--storm-count", "2", "--on-storm", "verify", "--verify-every", "0", dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	wait := func(what string) string {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("watch exited before %s", what)
				}
				if strings.Contains(l, what) {
					return l
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("no %s from watch", what)
			}
		}
	}
	wait(`"event":"rescan"`)
	for i := 1; i <= 3; i++ {
		name := board.FormatTimestamped(board.DBName, time.Date(2026, 5, 1, 12, 0, 0, 0, time.Local), i)
		if err := os.WriteFile(filepath.Join(dir, name), []byte("copy"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wait(`"event":"storm-started"`)
	var ev struct {
		Verdict  string `json:"verdict"`
		ExitCode *int   `json:"exit_code"`
		DB       string `json:"db"`
		Error    string `json:"error"`
	}
	if err := json.Unmarshal([]byte(wait(`"event":"verdict"`)), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Verdict != "healthy" || ev.ExitCode == nil || *ev.ExitCode != 0 || ev.DB != db || ev.Error != "" {
		t.Fatalf("verdict event %+v, want healthy from verify's exit 0 for %s", ev, db)
	}
}

// TestWatchWaitsOnARootWithNoBoardYet runs the real CLI on a hermes root that has no board yet
// (no kanban.db, no kanban/): it must keep running rather than exit 8, say on stderr that it is
// waiting, and pick up kanban/boards/, a board created in it later and that board's backups
// through inotify.
func TestWatchWaitsOnARootWithNoBoardYet(t *testing.T) {
	exe, err := exec.LookPath("kanban-doctor")
	if err != nil {
		t.Fatalf("kanban-doctor not on PATH (TestMain sets it up): %v", err)
	}
	root := t.TempDir()
	cmd := exec.Command(exe, "watch", "--storm-count", "2", "--rescan", "0", "--verify-every", "0", root)
	out, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	wait := func(what string) string {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					err := <-exited
					exited <- err
					t.Fatalf("watch exited (%v) before %s; stderr: %s", err, what, stderr.String())
				}
				if strings.Contains(l, what) {
					return l
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("no %s from watch; stderr: %s", what, stderr.String())
			}
		}
	}
	// The root itself is a candidate board (its kanban.db): the initial scan reports it, so the
	// watches are in place once this line is out.
	wait(`"reason":"initial"`)
	bd := filepath.Join(root, "kanban", "boards", "alpha")
	if err := os.MkdirAll(bd, 0o755); err != nil {
		t.Fatal(err)
	}
	wait(`"board":"alpha"`)
	db := filepath.Join(bd, board.DBName)
	if err := kanban.Generate(context.Background(), db, kanban.GenOptions{Tasks: 20, Seed: 1, WAL: true}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		name := board.FormatTimestamped(board.DBName, time.Date(2026, 5, 1, 12, 0, 0, 0, time.Local), i)
		if err := os.WriteFile(filepath.Join(bd, name), []byte("copy"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l := wait(`"event":"storm-started"`)
	if !strings.Contains(l, `"board":"alpha"`) {
		t.Fatalf("storm on the wrong board: %s", l)
	}
	want := "kanban-doctor: " + root + ": no board yet; waiting for boards under " + filepath.Join(root, "kanban", "boards") + "/\n"
	if stderr.String() != want {
		t.Fatalf("stderr %q, want %q", stderr.String(), want)
	}
}

// TestWatchVerifyOnAReadOnlyWALBoardSaysWhy runs the real CLI as uid 65534 (root only) on a WAL
// board it may read but not write: SQLite cannot create the -shm, verify exits 8, and watch's
// verdict event says why and what to do instead of a bare "unable to open".
func TestWatchVerifyOnAReadOnlyWALBoardSaysWhy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the watcher as another uid")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	shared, err := os.MkdirTemp("", "kd-readonly-wal-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	os.Chmod(shared, 0o755)
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(shared, "kanban-doctor")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(shared, "root")
	os.Mkdir(root, 0o755)
	db := filepath.Join(root, board.DBName)
	if err := kanban.Generate(context.Background(), db, kanban.GenOptions{Tasks: 50, Seed: 1, WAL: true}); err != nil {
		t.Fatal(err)
	}
	os.Chmod(db, 0o644)
	cmd := exec.Command(bin, "watch", "--verify-every", "1m", root)
	cmd.Args[0] = "kanban-doctor"
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("watch exited before a verdict")
			}
			if !strings.Contains(l, `"event":"verdict"`) {
				continue
			}
			var ev struct {
				ExitCode *int   `json:"exit_code"`
				Error    string `json:"error"`
			}
			json.Unmarshal([]byte(l), &ev)
			if ev.ExitCode == nil || *ev.ExitCode != 8 || !strings.Contains(ev.Error, root+" is not writable by uid 65534") ||
				!strings.Contains(ev.Error, "-shm") {
				t.Fatalf("verdict %s: want exit 8 and an error naming the read-only directory and the -shm", l)
			}
			return
		case <-time.After(60 * time.Second):
			t.Fatal("no verdict from watch")
		}
	}
}
