package kanban

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// WriterChild is the reexec name of a writer process.
const WriterChild = "kanban-writer"

func init() { reexec.Register(WriterChild, writerMain) }

// WriterOptions configures one writer process.
type WriterOptions struct {
	Name   string
	Seed   uint64
	Ledger string // file that gets every committed new task id, one per line, after its commit
	// AutoCheckpoint is wal_autocheckpoint; -1 keeps the hermes default (100), 0 disables.
	AutoCheckpoint int
	// CheckpointEvery runs PRAGMA wal_checkpoint every N commits (0: never); CheckpointMode is
	// PASSIVE, FULL, RESTART, TRUNCATE or "mixed" (cycles through all four).
	CheckpointEvery int
	CheckpointMode  string
	// Pause between transactions (0: none).
	Pause time.Duration
}

func (o WriterOptions) args(db string) []string {
	return []string{"-db", db, "-name", o.Name, "-seed", fmt.Sprint(o.Seed), "-ledger", o.Ledger,
		"-autocheckpoint", fmt.Sprint(o.AutoCheckpoint), "-checkpoint-every", fmt.Sprint(o.CheckpointEvery),
		"-checkpoint-mode", o.CheckpointMode, "-pause", o.Pause.String()}
}

// writerMain runs kanban transactions until SIGTERM/SIGINT, appending committed task ids to the
// ledger. It prints "ready" on stdout once its connection is open.
func writerMain(args []string) int {
	fs := flag.NewFlagSet(WriterChild, flag.ContinueOnError)
	db := fs.String("db", "", "")
	name := fs.String("name", "w", "")
	seed := fs.Uint64("seed", 1, "")
	ledgerPath := fs.String("ledger", "", "")
	autocp := fs.Int("autocheckpoint", -1, "")
	cpEvery := fs.Int("checkpoint-every", 0, "")
	cpMode := fs.String("checkpoint-mode", "PASSIVE", "")
	pause := fs.Duration("pause", 0, "")
	if err := fs.Parse(args); err != nil {
		return 4
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := runWriter(ctx, *db, WriterOptions{Name: *name, Seed: *seed, Ledger: *ledgerPath, AutoCheckpoint: *autocp,
		CheckpointEvery: *cpEvery, CheckpointMode: *cpMode, Pause: *pause}); err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "writer %s: %v\n", *name, err)
		return 8
	}
	return 0
}

func runWriter(ctx context.Context, path string, o WriterOptions) error {
	pragmas := append([]string{}, WriterPragmas...)
	if o.AutoCheckpoint >= 0 {
		for i, p := range pragmas {
			if strings.HasPrefix(p, "wal_autocheckpoint") {
				pragmas[i] = fmt.Sprintf("wal_autocheckpoint(%d)", o.AutoCheckpoint)
			}
		}
	}
	db, err := sqlitex.Open(path, sqlitex.Options{ReadWrite: true, Pragmas: pragmas, TxLock: "immediate", BusyTimeout: 120000})
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		return err
	}
	var ledger *os.File
	if o.Ledger != "" {
		ledger, err = os.OpenFile(o.Ledger, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer ledger.Close()
	}
	fmt.Println("ready")
	w := &Writer{DB: db, Name: o.Name, Rand: rand.New(rand.NewPCG(o.Seed, 0x77726974))}
	w.Clock = func() float64 { return float64(time.Now().UnixNano()) / 1e9 }
	modes := []string{"PASSIVE", "FULL", "RESTART", "TRUNCATE"}
	var open []string
	commits := 0
	for ctx.Err() == nil {
		id, err := w.Step(ctx, &open)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if k := sqlitex.Classify(err); k == sqlitex.KindBusy {
				continue
			}
			return err
		}
		commits++
		if id != "" && ledger != nil {
			if _, err := ledger.WriteString(id + "\n"); err != nil {
				return err
			}
		}
		if o.CheckpointEvery > 0 && commits%o.CheckpointEvery == 0 {
			mode := strings.ToUpper(o.CheckpointMode)
			if mode == "MIXED" {
				mode = modes[(commits/o.CheckpointEvery)%4]
			}
			// Busy checkpoints report busy=1 in their row; errors other than busy are real.
			if _, err := db.ExecContext(ctx, "PRAGMA wal_checkpoint("+mode+")"); err != nil && sqlitex.Classify(err) != sqlitex.KindBusy && ctx.Err() == nil {
				return fmt.Errorf("checkpoint %s: %w", mode, err)
			}
		}
		if o.Pause > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(o.Pause):
			}
		}
	}
	return nil
}

// Fleet is a set of writer processes on one board.
type Fleet struct {
	DB      string
	Ledgers []string
	cmds    []*exec.Cmd
	stderr  []*strings.Builder
	mu      sync.Mutex
	stopped bool
}

// StartWriters starts n writer processes (re-executions of this binary; the caller's main or
// TestMain must call reexec.Init) on the board at db, which must already have the schema. Each
// gets its own ledger in ledgerDir. It returns once every writer has its connection open.
func StartWriters(ctx context.Context, db string, n int, ledgerDir string, o WriterOptions) (*Fleet, error) {
	f := &Fleet{DB: db}
	for i := 0; i < n; i++ {
		wo := o
		wo.Name = fmt.Sprintf("w%d", i)
		wo.Seed = o.Seed + uint64(i)*7919
		wo.Ledger = filepath.Join(ledgerDir, fmt.Sprintf("ledger-%d.txt", i))
		cmd, err := reexec.Command(context.Background(), WriterChild, wo.args(db)...)
		if err != nil {
			f.Stop()
			return nil, err
		}
		var errBuf strings.Builder
		cmd.Stderr = &errBuf
		out, err := cmd.StdoutPipe()
		if err != nil {
			f.Stop()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			f.Stop()
			return nil, fmt.Errorf("start writer: %w", err)
		}
		f.cmds = append(f.cmds, cmd)
		f.stderr = append(f.stderr, &errBuf)
		f.Ledgers = append(f.Ledgers, wo.Ledger)
		ready := make(chan error, 1)
		go func() {
			sc := bufio.NewScanner(out)
			if sc.Scan() && sc.Text() == "ready" {
				ready <- nil
			} else {
				ready <- fmt.Errorf("writer %s did not start: %s", wo.Name, errBuf.String())
			}
			for sc.Scan() {
			}
		}()
		select {
		case err := <-ready:
			if err != nil {
				f.Stop()
				return nil, err
			}
		case <-time.After(30 * time.Second):
			f.Stop()
			return nil, fmt.Errorf("writer %s: no ready within 30s", wo.Name)
		case <-ctx.Done():
			f.Stop()
			return nil, ctx.Err()
		}
	}
	return f, nil
}

// Pids lists the writers' process ids.
func (f *Fleet) Pids() []int {
	var p []int
	for _, c := range f.cmds {
		p = append(p, c.Process.Pid)
	}
	return p
}

// Stop asks every writer to finish (SIGTERM), waits up to 10 s, then kills what is left. It
// returns the writers' errors (a writer that failed on its own, with its stderr).
func (f *Fleet) Stop() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return nil
	}
	f.stopped = true
	for _, c := range f.cmds {
		if c.Process != nil {
			c.Process.Signal(syscall.SIGTERM)
		}
	}
	var errs []error
	for i, c := range f.cmds {
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				errs = append(errs, fmt.Errorf("writer %d: %v: %s", i, err, strings.TrimSpace(f.stderr[i].String())))
			}
		case <-time.After(10 * time.Second):
			syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-done
			errs = append(errs, fmt.Errorf("writer %d: killed after 10s", i))
		}
	}
	return errors.Join(errs...)
}

// Committed reads every ledger and returns the set of task ids the writers committed.
func (f *Fleet) Committed() (map[string]bool, error) { return ReadLedgers(f.Ledgers) }

// ReadLedgers reads ledger files (a missing file is empty).
func ReadLedgers(paths []string) (map[string]bool, error) {
	ids := map[string]bool{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l != "" {
				ids[l] = true
			}
		}
	}
	return ids, nil
}
