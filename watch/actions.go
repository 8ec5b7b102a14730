package watch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
)

// startActions runs the --on-storm actions for a storm in order, in the background: verify first
// (so a later exec sees the verdict in its environment), each bounded by its timeout and by ctx.
func (w *Watcher) startActions(b board.Board, ev Event) {
	w.actions.Add(1)
	go func() {
		defer w.actions.Done()
		ctx := w.runCtx
		verdict := ""
		for _, a := range w.opts.OnStorm {
			if ctx.Err() != nil {
				return
			}
			if a == "verify" {
				v := w.verify(ctx, b, ev.Storm)
				verdict = v.Verdict
				if ctx.Err() == nil {
					w.recordVerdict(b, v)
				}
				w.em.emit(v) // a storm's verdict is always reported, changed or not
				continue
			}
			w.execAction(ctx, strings.TrimPrefix(a, "exec:"), b, ev, verdict)
		}
	}()
}

// childCommand prepares a child in its own process group that dies with us and whose whole group
// is killed when ctx ends.
func childCommand(ctx context.Context, argv []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	return cmd
}

// verify runs the probe on the live board in a child process (never in this process, which must
// not hold a SQLite connection to a DB whose files it stats) and turns its answer into a verdict event.
func (w *Watcher) verify(ctx context.Context, b board.Board, storm int64) Event {
	ev := Event{Event: EventVerdict, Board: b.Name, DB: b.DB, Storm: storm, Action: "verify"}
	argv := w.opts.VerifyCommand
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			ev.Verdict, ev.Error = "inconclusive", fmt.Sprintf("find own binary: %v", err)
			return ev
		}
		argv = []string{exe, "verify", "--json"}
	}
	argv = append(append([]string(nil), argv...), b.DB)
	select { // one verify child at a time, periodic or on a storm
	case w.verifySem <- struct{}{}:
		defer func() { <-w.verifySem }()
	case <-ctx.Done():
		ev.Verdict, ev.Error = "inconclusive", fmt.Sprintf("run verify: %v", ctx.Err())
		return ev
	}
	ctx, cancel := context.WithTimeout(ctx, w.opts.VerifyTimeout)
	defer cancel()
	cmd := childCommand(ctx, argv)
	var out bytes.Buffer
	cmd.Stdout = &limitWriter{w: &out, n: 4 << 20}
	cmd.Stderr = w.actionOutput()
	start := time.Now()
	err := cmd.Run()
	ev.DurationMS = time.Since(start).Milliseconds()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() < 0 {
			ev.Verdict, ev.Error = "inconclusive", fmt.Sprintf("run verify: %v", err)
			if ctx.Err() != nil {
				ev.Error = fmt.Sprintf("run verify: %v", ctx.Err())
			}
			w.log.Warn("verify", "board", b.Name, "err", ev.Error)
			return ev
		}
		code = ee.ExitCode()
	}
	ev.ExitCode = &code
	ev.Verdict, ev.Class = parseVerdict(out.Bytes(), b.DB)
	if ev.Verdict == "" {
		ev.Verdict = verdictOfCode(code)
	}
	if code == 8 {
		ev.Error = fmt.Sprintf("verify exited 8 (could not check %s)", b.DB)
		if dir := filepath.Dir(b.DB); syscall.Access(dir, 2 /* W_OK */) != nil {
			// The usual cause in a container: the volume is mounted read-only, or for another UID.
			ev.Error = fmt.Sprintf("verify exited 8: %s is not writable by uid %d; a reader of a WAL board must create its -shm, so mount the volume read-write for the board's owner",
				dir, os.Getuid())
		}
	}
	w.log.Info("verify", "board", b.Name, "verdict", ev.Verdict, "exit", code, "took_ms", ev.DurationMS)
	return ev
}

// verdictOfCode reads a verdict from the exit-code contract when the output says none.
func verdictOfCode(code int) string {
	switch code {
	case 0:
		return "healthy"
	case 1:
		return "false-positive"
	case 2:
		return "corrupt"
	case 3:
		return "inconclusive"
	}
	return "error"
}

// parseVerdict finds the verdict and class for db in verify's JSON document: a top-level
// "verdict", or the entry of a "results"/"boards"/"checks" list whose "db" is db (else the first).
func parseVerdict(out []byte, db string) (verdict, class string) {
	var doc map[string]any
	if json.Unmarshal(out, &doc) != nil {
		return "", ""
	}
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	if v := str(doc, "verdict"); v != "" {
		return v, str(doc, "class")
	}
	for _, key := range []string{"results", "boards", "checks"} {
		list, _ := doc[key].([]any)
		var first map[string]any
		for _, it := range list {
			m, _ := it.(map[string]any)
			if m == nil || str(m, "verdict") == "" {
				continue
			}
			if first == nil {
				first = m
			}
			if str(m, "db") == db {
				return str(m, "verdict"), str(m, "class")
			}
		}
		if first != nil {
			return str(first, "verdict"), str(first, "class")
		}
	}
	return "", ""
}

// execAction runs sh -c cmdline with the storm event in its environment, bounded by --exec-timeout.
func (w *Watcher) execAction(ctx context.Context, cmdline string, b board.Board, ev Event, verdict string) {
	ctx, cancel := context.WithTimeout(ctx, w.opts.ExecTimeout)
	defer cancel()
	js, _ := json.Marshal(ev)
	cmd := childCommand(ctx, []string{"/bin/sh", "-c", cmdline})
	cmd.Env = append(os.Environ(),
		"KANBAN_DOCTOR_EVENT="+string(js),
		"KANBAN_DOCTOR_EVENT_NAME="+ev.Event,
		"KANBAN_DOCTOR_BOARD="+b.Name,
		"KANBAN_DOCTOR_DB="+b.DB,
		"KANBAN_DOCTOR_STORM="+strconv.FormatInt(ev.Storm, 10),
		"KANBAN_DOCTOR_UNITS="+strconv.Itoa(ev.Units),
		"KANBAN_DOCTOR_VERDICT="+verdict)
	out := w.actionOutput()
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("timed out after %s: %w", w.opts.ExecTimeout, err)
	}
	if err != nil {
		w.log.Warn("on-storm exec", "board", b.Name, "cmd", cmdline, "err", err, "took", time.Since(start))
		return
	}
	w.log.Info("on-storm exec", "board", b.Name, "cmd", cmdline, "took", time.Since(start))
}

func (w *Watcher) actionOutput() io.Writer {
	if w.opts.ActionOutput == nil {
		return io.Discard
	}
	return w.opts.ActionOutput
}

// limitWriter keeps the first n bytes and discards the rest.
type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
