package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
)

// TestMain lets this test binary act as kanban-doctor (for transcript tests) and as its own
// children (confirmation probe, writers).
func TestMain(m *testing.M) {
	reexec.Init()
	os.Exit(testscript.RunMain(m, map[string]func() int{
		// As cmd/kanban-doctor's main: SIGINT/SIGTERM cancel the context (watch exits 0 on them).
		"kanban-doctor": func() int {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return Run(ctx, os.Args, os.Stdout, os.Stderr)
		},
	}))
}

// TestScripts runs the CLI transcripts in testdata/script: each pins a command's output and exit status.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata/script", Setup: scriptSetup,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){"status": cmdStatus, "asnobody": cmdAsNobody, "mkboard": cmdMkboard,
			"freeport": cmdFreeport, "waithttp": cmdWaitHTTP},
		Condition: scriptCondition})
}

// cmdStatus runs "status N prog args...": prog must exit with exactly status N. Its stdout and
// stderr are then checked by the usual stdout/stderr commands.
func cmdStatus(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: status N prog [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("status: %v", err)
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("status: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("exit status %d, want %d", got, want)
	}
}

func scriptSetup(env *testscript.Env) error {
	env.Setenv("NO_COLOR", "1")
	env.Setenv("HOME", env.WorkDir+"/home")
	// $FIXTURES is the repo's corrupt-board fixtures (testdata/corrupt), for transcripts that need a
	// board SQLite really rejects.
	fixtures, err := filepath.Abs(filepath.Join("..", "..", "testdata", "corrupt"))
	if err != nil {
		return err
	}
	env.Setenv("FIXTURES", fixtures)
	// Let asnobody's uid reach $WORK, so a permission test fails on the directory it names.
	os.Chmod(filepath.Dir(env.WorkDir), 0o755)
	os.Chmod(env.WorkDir, 0o755)
	return nil
}

func scriptCondition(cond string) (bool, error) {
	switch cond {
	case "root":
		return os.Geteuid() == 0, nil
	}
	return false, fmt.Errorf("unknown condition %q", cond)
}

// cmdAsNobody runs "asnobody N prog args...": like status, but as uid/gid 65534 (root only), so
// permission errors can be tested on a machine where tests run as root.
func cmdAsNobody(ts *testscript.TestScript, neg bool, args []string) {
	if os.Geteuid() != 0 {
		ts.Logf("not root: skipping asnobody")
		return
	}
	if neg || len(args) < 2 {
		ts.Fatalf("usage: asnobody N prog [args...]")
	}
	want, _ := strconv.Atoi(args[0])
	if args[1] != "kanban-doctor" {
		ts.Fatalf("asnobody runs kanban-doctor only")
	}
	prog := nobodyBinary(ts)
	cmd := exec.Command(prog, args[2:]...)
	cmd.Args[0] = "kanban-doctor"
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "HOME="+ts.Getenv("HOME"), "NO_COLOR=1", "PATH="+ts.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	got := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("asnobody: %v", err)
		}
		got = ee.ExitCode()
	}
	// Hand the output to testscript, so the stdout and stderr commands after asnobody check it.
	fmt.Fprint(ts.Stdout(), out.String())
	fmt.Fprint(ts.Stderr(), errb.String())
	if got != want {
		ts.Fatalf("exit status %d, want %d", got, want)
	}
	if !strings.Contains(errb.String(), "permission denied") {
		ts.Fatalf("stderr does not say permission denied: %q", errb.String())
	}
}

var (
	nobodyOnce sync.Once
	nobodyPath string
	nobodyErr  error
)

// nobodyBinary copies this test binary where uid 65534 can execute it (testscript's own bin
// directory is private).
func nobodyBinary(ts *testscript.TestScript) string {
	nobodyOnce.Do(func() {
		exe, err := os.Executable()
		if err != nil {
			nobodyErr = err
			return
		}
		dir, err := os.MkdirTemp("", "kd-nobody-")
		if err != nil {
			nobodyErr = err
			return
		}
		os.Chmod(dir, 0o755)
		data, err := os.ReadFile(exe)
		if err != nil {
			nobodyErr = err
			return
		}
		nobodyPath = filepath.Join(dir, "kanban-doctor")
		nobodyErr = os.WriteFile(nobodyPath, data, 0o755)
	})
	if nobodyErr != nil {
		ts.Fatalf("asnobody: %v", nobodyErr)
	}
	return nobodyPath
}

// cmdMkboard runs "mkboard [-wal] [-tasks N] PATH": a real generated kanban board at PATH.
func cmdMkboard(ts *testscript.TestScript, neg bool, args []string) {
	wal, tasks := false, 200
	for len(args) > 1 {
		switch args[0] {
		case "-wal":
			wal, args = true, args[1:]
		case "-tasks":
			n, err := strconv.Atoi(args[1])
			if err != nil {
				ts.Fatalf("mkboard: %v", err)
			}
			tasks, args = n, args[2:]
		default:
			ts.Fatalf("usage: mkboard [-wal] [-tasks N] PATH")
		}
	}
	if neg || len(args) != 1 {
		ts.Fatalf("usage: mkboard [-wal] [-tasks N] PATH")
	}
	p := ts.MkAbs(args[0])
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		ts.Fatalf("mkboard: %v", err)
	}
	if err := kanban.Generate(context.Background(), p, kanban.GenOptions{Tasks: tasks, Seed: 1, WAL: wal}); err != nil {
		ts.Fatalf("mkboard: %v", err)
	}
}

// cmdFreeport runs "freeport VAR": VAR is set to a loopback address with a port free right now.
func cmdFreeport(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: freeport VAR")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ts.Fatalf("freeport: %v", err)
	}
	ts.Setenv(args[0], l.Addr().String())
	l.Close()
}

// cmdWaitHTTP runs "waithttp URL [TEXT]": it waits (up to 60 s) until a GET of URL answers 200
// with a body containing TEXT, over real HTTP.
func cmdWaitHTTP(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: waithttp URL [TEXT]")
	}
	deadline := time.Now().Add(60 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		resp, err := http.Get(args[0])
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && (len(args) == 1 || strings.Contains(string(body), args[1])) {
				return
			}
			last = fmt.Sprintf("status %d", resp.StatusCode)
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.Fatalf("waithttp %s: not there within 60 s (last: %s)", args[0], last)
}
