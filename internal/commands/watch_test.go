package commands

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
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

// TestWatchWaitsForTheFirstBoard: watch on a hermes root that has no board yet (an empty volume
// beside a gateway that has not started, and one with an empty kanban/boards/) does not exit: it
// is ready (/readyz 200 over real HTTP on loopback) once the initial scan ran, and sees a board
// created later under kanban/boards/ through real fsnotify, then that board's backups.
func TestWatchWaitsForTheFirstBoard(t *testing.T) {
	exe, err := exec.LookPath("kanban-doctor")
	if err != nil {
		t.Fatalf("kanban-doctor not on PATH (TestMain sets it up): %v", err)
	}
	for _, layout := range []string{"empty root", "empty kanban/boards"} {
		t.Run(layout, func(t *testing.T) {
			root := t.TempDir()
			if layout == "empty kanban/boards" {
				if err := os.MkdirAll(filepath.Join(root, "kanban", "boards"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			cmd := exec.Command(exe, "watch", "--listen", addr, root)
			out, _ := cmd.StdoutPipe()
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{}) // closed when the process has exited
			var waitErr error
			lines := make(chan string, 100)
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
				waitErr = cmd.Wait()
				close(exited)
			}()
			defer func() { cmd.Process.Kill(); <-exited }()
			deadline := time.Now().Add(60 * time.Second)
			for {
				resp, err := http.Get("http://" + addr + "/readyz")
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						break
					}
				}
				select {
				case <-exited:
					t.Fatalf("watch exited (%v) on a root with no board: %s", waitErr, stderr.String())
				case <-time.After(50 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("watch never ready: %s", stderr.String())
				}
			}
			if !strings.Contains(stderr.String(), "no board yet; waiting for") {
				t.Errorf("stderr does not say it waits: %q", stderr.String())
			}
			wait := func(what string) {
				t.Helper()
				for {
					select {
					case l, ok := <-lines:
						if !ok {
							t.Fatalf("watch exited before %s: %s", what, stderr.String())
						}
						if strings.Contains(l, what) {
							return
						}
					case <-time.After(60 * time.Second):
						t.Fatalf("no %s from watch", what)
					}
				}
			}
			dir := filepath.Join(root, "kanban", "boards", "alpha")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := kanban.Generate(context.Background(), filepath.Join(dir, board.DBName), kanban.GenOptions{Tasks: 50, Seed: 1, WAL: true}); err != nil {
				t.Fatal(err)
			}
			wait(`"event":"rescan","board":"alpha"`)
			name := board.FormatTimestamped(board.DBName, time.Date(2026, 5, 1, 12, 0, 0, 0, time.Local), 0)
			if err := os.WriteFile(filepath.Join(dir, name), []byte("copy"), 0o644); err != nil {
				t.Fatal(err)
			}
			wait(`"event":"backup-created","board":"alpha"`)
		})
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
