package repro

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The exec contract: what an external guard's exit status (exec:) or answer (exec-serve:) means.
// The words are the doctor's own verdicts.
const (
	ExitHealthy      = 0 // the board is healthy
	ExitCorruptOnly  = 1 // corrupt, for guards that only know 0 and 1
	ExitCorrupt      = 2 // corrupt
	ExitInconclusive = 3 // no answer (busy, locked, I/O): not corruption, never a false positive
)

// The environment every external guard gets, so its author can apply the cell's in-process
// mechanism (lock-drop, immutable, file-copy) in the guard's own language.
const (
	EnvScenario = "KANBAN_DOCTOR_SCENARIO" // the cell's scenario
	EnvSeed     = "KANBAN_DOCTOR_SEED"     // the cell's seed
	EnvDB       = "KANBAN_DOCTOR_DB"       // the live database
	EnvBoardDir = "KANBAN_DOCTOR_BOARD_DIR"
	EnvStrategy = "KANBAN_DOCTOR_STRATEGY"
)

// serveTimeout bounds one exec-serve answer; serveStopWait is how long a guard whose stdin closed
// gets to exit before its process group is killed.
const (
	serveTimeout  = 60 * time.Second
	serveStopWait = 2 * time.Second
)

func (p *checker) guardEnv() []string {
	return append(os.Environ(), EnvScenario+"="+p.scenario, EnvSeed+"="+fmt.Sprint(p.seed), EnvDB+"="+p.db,
		EnvBoardDir+"="+filepath.Dir(p.db), EnvStrategy+"="+p.strategy)
}

// guardCommand is CMD run by sh in its own process group (killed with the prober), with {db}
// replaced by the shell-quoted path of the live database.
func (p *checker) guardCommand(ctx context.Context, command string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", strings.ReplaceAll(command, "{db}", shellQuote(p.db)))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Env = p.guardEnv()
	return cmd
}

// external runs an exec: guard, one process per check, and scores its exit status by the
// contract: 0 healthy, 1 or 2 corrupt, 3 inconclusive, anything else an error of the guard. The
// guard is its own process, so the in-process mechanisms (lock-drop, immutable, file-copy) only
// apply if the guard does them itself (the environment names the scenario).
func (p *checker) external(ctx context.Context, r *record, command string) {
	ctx, cancel := context.WithTimeout(ctx, serveTimeout)
	defer cancel()
	cmd := p.guardCommand(ctx, command)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		r.Verdict, r.Answer = verdictInconclusive, "cancelled"
		return
	}
	r.Exit = -1
	if cmd.ProcessState != nil {
		r.Exit = cmd.ProcessState.ExitCode()
	}
	msg := firstLine(out.String())
	switch {
	case err == nil:
		r.FirstOK, r.Verdict = true, verdictOK
		return
	case r.Exit == ExitCorruptOnly || r.Exit == ExitCorrupt:
		r.Verdict = verdictCorrupt
	case r.Exit == ExitInconclusive:
		r.Verdict = verdictInconclusive
	default:
		r.Verdict = verdictError
	}
	r.Answer = short(strings.TrimSpace(err.Error() + ": " + msg))
}

// server is a running exec-serve guard.
type server struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // closed when the guard's stdout ends
	stderr *headBuffer
	served int
}

// request and answer are the exec-serve protocol, one JSON object per line.
type request struct {
	DB    string `json:"db"`
	Check int    `json:"check"`
}

type answerLine struct {
	Verdict string `json:"verdict"`
	Message string `json:"message"`
}

func (p *checker) startServer(command string) (*server, error) {
	// The guard outlives single checks, so it is not bound to a check's context: stopServer and
	// Pdeathsig end it.
	cmd := p.guardCommand(context.Background(), command)
	s := &server{cmd: cmd, lines: make(chan string, 1), stderr: &headBuffer{max: 4096}}
	cmd.Stderr = s.stderr
	var err error
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start guard: %w", err)
	}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	return s, nil
}

// stop closes the guard's stdin (its cue to exit), then kills its process group if it lingers.
func (s *server) stop() {
	s.stdin.Close()
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(serveStopWait):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL) // anything the guard left behind in its group
}

func (p *checker) stopServer() {
	if p.serve != nil {
		p.serve.stop()
		p.serve = nil
	}
}

// served asks the cell's exec-serve guard, starting it first if needed (and again after it died
// or after restartEvery checks).
func (p *checker) served(ctx context.Context, r *record, command string) {
	if p.serve != nil && p.restartEvery > 0 && p.serve.served >= p.restartEvery {
		p.stopServer()
	}
	if p.serve == nil {
		s, err := p.startServer(command)
		if err != nil {
			r.Verdict, r.Answer = verdictError, short(err.Error())
			return
		}
		p.serve, r.Spawn = s, true
	}
	s := p.serve
	s.served++
	t0 := time.Now()
	line, err := json.Marshal(request{DB: p.db, Check: p.n})
	if err == nil {
		_, err = s.stdin.Write(append(line, '\n'))
	}
	if err != nil {
		r.Verdict, r.Answer = verdictError, short("write request: "+err.Error()+": "+s.stderr.firstLine())
		p.stopServer()
		return
	}
	var ans string
	var ok bool
	select {
	case ans, ok = <-s.lines:
	case <-ctx.Done():
		r.Verdict, r.Answer = verdictInconclusive, "cancelled"
		return
	case <-time.After(serveTimeout):
		r.Verdict, r.Answer = verdictError, fmt.Sprintf("no answer in %s", serveTimeout)
		p.stopServer()
		return
	}
	r.Guard = time.Since(t0).Nanoseconds()
	if !ok {
		p.stopServer()
		r.Verdict = verdictError
		r.Answer = short(fmt.Sprintf("guard exited (%s) without answering: %s", s.cmd.ProcessState, s.stderr.firstLine()))
		return
	}
	verdict, msg, err := parseAnswer(ans)
	if err != nil {
		r.Verdict, r.Answer = verdictError, short(err.Error())
		return
	}
	r.Verdict = verdict
	r.FirstOK = verdict == verdictOK
	if !r.FirstOK {
		r.Answer = short(msg)
	}
}

// parseAnswer reads one exec-serve answer: {"verdict": "healthy|corrupt|inconclusive",
// "message": ...} or the bare word.
func parseAnswer(line string) (verdict, message string, err error) {
	line = strings.TrimSpace(line)
	word := line
	if strings.HasPrefix(line, "{") {
		var a answerLine
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			return "", "", fmt.Errorf("answer %q: %v", short(line), err)
		}
		word, message = a.Verdict, a.Message
	}
	switch word {
	case "healthy":
		return verdictOK, message, nil
	case verdictCorrupt, verdictInconclusive:
		if message == "" {
			message = word
		}
		return word, message, nil
	}
	return "", "", fmt.Errorf("answer %q: want healthy, corrupt or inconclusive", short(line))
}

// headBuffer keeps the first max bytes written to it (a guard's stderr).
type headBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *headBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if room := t.max - len(t.b); room > 0 {
		t.b = append(t.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (t *headBuffer) firstLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return firstLine(string(t.b))
}
