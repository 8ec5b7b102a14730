package repro

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// A cell runs for the configured duration, and on a loaded machine longer (up to maxStretch
// times) until its prober has run minChecks checks, so every cell has a sample to score.
const (
	minChecks  = 10
	maxStretch = 3
)

type cellSpec struct {
	scenario, strategy string
	dir, template      string
	seed               uint64
	opts               *Options
	sch                schedule
}

// runCell runs one strategy in one scenario on a fresh copy of the board. The harness process
// itself only ever talks to the board through SQLite connections (checkpoints, injection) or
// unlinks (wal-unlink): everything that bypasses locking happens in the prober child, so it can
// only compromise that child's own connections.
func runCell(ctx context.Context, s cellSpec) (c Cell) {
	c = Cell{Scenario: s.scenario, Strategy: s.strategy}
	t0 := time.Now()
	defer func() { c.Seconds = time.Since(t0).Seconds() }()
	log := s.opts.Logger.With("cell", c.Name())
	db := filepath.Join(s.dir, "kanban.db")
	if err := copyTemplate(s.template, db); err != nil {
		c.Error = fmt.Sprintf("copy board: %v", err)
		return c
	}
	wo := kanban.WriterOptions{Seed: s.seed, AutoCheckpoint: 0, Pause: s.opts.pause}
	if s.sch.commits > 0 {
		wo.CheckpointEvery, wo.CheckpointMode = s.sch.commits, s.opts.Checkpoint
	}
	fleet, err := kanban.StartWriters(ctx, db, s.opts.Writers, s.dir, wo)
	if err != nil {
		c.Error = fmt.Sprintf("start writers: %v", err)
		return c
	}
	defer fleet.Stop()
	wStart := time.Now()

	cpCtx, cpStop := context.WithCancel(ctx)
	cpDone := make(chan int, 1)
	rejoin := make(chan struct{})
	if s.sch.every > 0 {
		go func() { cpDone <- checkpointLoop(cpCtx, db, s.sch.every, s.opts.Checkpoint, s.seed, rejoin, log) }()
	} else {
		cpDone <- 0
	}
	defer cpStop()

	now := time.Now()
	end := now.Add(s.opts.Duration)
	pr, err := startProber(ctx, proberArgs{db: db, scenario: s.scenario, strategy: s.strategy, end: end,
		hardEnd: now.Add(maxStretch * s.opts.Duration), minChecks: minChecks,
		seed: s.seed, scratch: filepath.Join(s.dir, "scratch")})
	if err != nil {
		c.Error = err.Error()
		return c
	}

	// The mid-run event: corruption (injected) or the WAL reset (wal-unlink), at a third of the cell.
	var evStart, evEnd time.Time
	closeNew := func() error { return nil } // wal-unlink's new-generation connection
	defer func() { closeNew() }()
	if s.scenario == Injected || s.scenario == WALUnlink {
		select {
		case <-ctx.Done():
		case <-time.After(s.opts.Duration / 3):
		}
		evStart = time.Now()
		if s.scenario == Injected {
			c.Injection, err = inject(ctx, db)
		} else {
			var cl func() error
			c.Injection, cl, err = unlinkWAL(ctx, db)
			if cl != nil {
				closeNew = cl
			}
			close(rejoin) // like every process started from now on, the checkpointer joins the new generation
		}
		evEnd = time.Now()
		if err != nil {
			c.Notes = append(c.Notes, fmt.Sprintf("%s event failed: %v", s.scenario, err))
			log.Warn("event failed", "err", err)
		}
	}

	recs, perr := pr.wait(now.Add(maxStretch*s.opts.Duration + 60*time.Second))
	werr := fleet.Stop() // writers close first, as gateways restart while others keep running
	wSecs := time.Since(wStart).Seconds()
	closeNew()
	closeNew = func() error { return nil }
	cpStop()
	c.Checkpoints = <-cpDone
	if perr != nil {
		c.Error = perr.Error()
	}
	if werr != nil {
		// A writer that failed on its own is a finding in wal-unlink and injected, a defect elsewhere.
		msg := fmt.Sprintf("writers: %s", oneLine(werr.Error()))
		if s.scenario == Clean {
			c.Error = msg
		} else {
			c.Notes = append(c.Notes, msg)
		}
	}
	if ctx.Err() != nil {
		return c
	}

	var backups []string
	for _, r := range recs {
		if r.Backup != "" {
			backups = append(backups, r.Backup)
			c.BackupsWritten++
			c.BackupBytes += r.BackupBytes
		}
	}
	tr, err := runTruth(ctx, db, fleet.Ledgers, backups, filepath.Join(s.dir, "truth"))
	if err != nil {
		c.Error = fmt.Sprintf("ground truth: %v", err)
		return c
	}
	c.TruthOK, c.TruthDetail = tr.OK, tr.Detail
	c.LedgerTasks, c.LostCommits, c.LostSample = tr.LedgerTasks, tr.Lost, tr.LostSample
	if wSecs > 0 {
		c.CommitsPerSec = float64(tr.LedgerTasks) / wSecs
	}
	c.BackupsChecked, c.BackupsCorrupt = tr.BackupsChecked, tr.BackupsCorrupt
	if tr.BackupsChecked > 0 {
		c.CorruptShare = float64(tr.BackupsCorrupt) / float64(tr.BackupsChecked)
	}
	score(&c, recs, evStart, evEnd)
	if c.LostCommits > 0 && c.TruthOK {
		c.Notes = append(c.Notes, fmt.Sprintf("%d committed tasks (in the writers' ledgers) are missing from the board while integrity_check says ok", c.LostCommits))
	}
	return c
}

// score fills the verdict counts from the prober's records against the ground truth.
func score(c *Cell, recs []record, evStart, evEnd time.Time) {
	var durs []time.Duration
	answers := map[string]bool{}
	for _, r := range recs {
		if r.Backup != "" && r.Verdict == "" {
			continue
		}
		c.Checks++
		durs = append(durs, time.Duration(r.T1-r.T0))
		for _, h := range r.Hazards {
			if c.Hazards == nil {
				c.Hazards = map[string]int{}
			}
			c.Hazards[h]++
		}
		if !r.FirstOK {
			c.Suspicious++
			if len(answers) < 3 && r.Answer != "" {
				answers[r.Answer] = true
			}
		}
		corrupt := r.Verdict == verdictCorrupt
		if corrupt {
			c.CorruptVerdicts++
		}
		if r.Verdict == verdictInconclusive {
			c.Inconclusive++
		}
		truthCorrupt := !c.TruthOK
		if c.Scenario == Injected {
			switch {
			case !evStart.IsZero() && r.T1 < evStart.UnixNano():
				truthCorrupt = false // the board was healthy before the injection
			case !evEnd.IsZero() && r.T0 > evEnd.UnixNano():
			default:
				c.Unscored++
				continue
			}
			if truthCorrupt && !corrupt {
				c.FalseNegatives++
			}
		} else if c.Scenario == WALUnlink && !evStart.IsZero() && r.T1 >= evStart.UnixNano() {
			// Two WAL generations: what a new connection sees is really inconsistent until the
			// old connections close, so a verdict after the reset has no ground truth to score.
			c.Unscored++
			if corrupt {
				c.SplitBrainCorrupt++
			}
			continue
		} else if truthCorrupt {
			c.Unscored++ // really damaged outside the injected control: a finding, not a score
			continue
		}
		if corrupt && !truthCorrupt {
			c.FalsePositives++
		}
	}
	for a := range answers {
		c.Answers = append(c.Answers, a)
	}
	c.P50ms, c.P99ms = percentile(durs, 0.50), percentile(durs, 0.99)
	if c.SplitBrainCorrupt > 0 {
		c.Notes = append(c.Notes, fmt.Sprintf("%d corrupt verdicts after the WAL reset, not scored: new connections then see a really inconsistent board", c.SplitBrainCorrupt))
	}
	if !c.TruthOK && c.Scenario != Injected {
		c.Notes = append(c.Notes, "ground truth: the board is really damaged: "+c.TruthDetail)
	}
}

// checkpointLoop runs the harness's checkpoint schedule on its own connection until ctx ends and
// returns how many checkpoints ran. "mixed" draws each mode from the seeded generator.
func checkpointLoop(ctx context.Context, db string, every time.Duration, mode string, seed uint64, rejoin <-chan struct{}, log interface {
	Warn(string, ...any)
}) int {
	open := func() (*sql.Conn, func() error) {
		conn, closeFn, err := sqlitex.Conn(ctx, db, sqlitex.Options{ReadWrite: true, BusyTimeout: 50})
		if err != nil {
			log.Warn("checkpointer", "err", err)
			return nil, func() error { return nil }
		}
		return conn, closeFn
	}
	conn, closeFn := open()
	defer func() { closeFn() }()
	r := rand.New(rand.NewPCG(seed, 0x636b7074))
	t := time.NewTicker(every)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return n
		case <-rejoin:
			rejoin = nil
			closeFn()
			conn, closeFn = open()
			continue
		case <-t.C:
		}
		if conn == nil {
			conn, closeFn = open()
			if conn == nil {
				continue
			}
		}
		m := mode
		if m == "mixed" {
			m = checkpointModes[r.IntN(len(checkpointModes))]
		}
		// Busy shows as busy=1 in the result row; an error other than busy is worth a log line.
		if _, err := conn.ExecContext(ctx, "PRAGMA wal_checkpoint("+m+")"); err != nil {
			if ctx.Err() != nil {
				return n
			}
			if sqlitex.Classify(err) != sqlitex.KindBusy {
				log.Warn("checkpoint", "mode", m, "err", err)
			}
			continue
		}
		n++
	}
}

// inject damages the board through SQLite itself (a write transaction through sqlite_dbpage, so
// every connection sees it as an ordinary commit): the page-type byte of a page of an index the
// writers never touch is zeroed, so writers keep running and every correct check must see it.
func inject(ctx context.Context, db string) (string, error) {
	conn, closeFn, err := sqlitex.Conn(ctx, db, sqlitex.Options{ReadWrite: true, BusyTimeout: 2})
	if err != nil {
		return "", err
	}
	defer closeFn()
	const index = "idx_links_child"
	var pgno int
	if err := conn.QueryRowContext(ctx, `SELECT pageno FROM dbstat WHERE name=? ORDER BY pageno DESC LIMIT 1`, index).Scan(&pgno); err != nil {
		return "", fmt.Errorf("find a page of %s: %w", index, err)
	}
	// The writers leave the write lock free only between transactions: poll for it tightly
	// (SQLite's own busy handler backs off to 100 ms sleeps and keeps missing those gaps).
	start := time.Now()
	for {
		_, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE")
		if err == nil {
			break
		}
		if sqlitex.Classify(err) != sqlitex.KindBusy || time.Since(start) > 10*time.Second {
			return "", fmt.Errorf("inject: %w", err)
		}
		time.Sleep(200 * time.Microsecond)
	}
	var data []byte
	if err := conn.QueryRowContext(ctx, `SELECT data FROM sqlite_dbpage WHERE pgno=?`, pgno).Scan(&data); err != nil {
		conn.ExecContext(ctx, "ROLLBACK")
		return "", fmt.Errorf("read page %d: %w", pgno, err)
	}
	data[0] = 0 // page type: no valid b-tree page has 0
	if _, err := conn.ExecContext(ctx, `UPDATE sqlite_dbpage SET data=? WHERE pgno=?`, data, pgno); err != nil {
		conn.ExecContext(ctx, "ROLLBACK")
		return "", fmt.Errorf("write page %d: %w", pgno, err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return "", fmt.Errorf("inject: %w", err)
	}
	return fmt.Sprintf("zeroed the page-type byte of page %d (%s) through sqlite_dbpage (%d ms)", pgno, index, time.Since(start).Milliseconds()), nil
}

// unlinkWAL does what the redundant journal-mode reset did: -wal and -shm are unlinked while the
// writers hold them, then a new connection sets journal_mode=WAL and writes, creating a second
// WAL generation the old connections cannot see.
func unlinkWAL(ctx context.Context, db string) (string, func() error, error) {
	var removed []string
	for _, suf := range []string{"-wal", "-shm"} {
		if err := os.Remove(db + suf); err == nil {
			removed = append(removed, filepath.Base(db+suf))
		} else if !os.IsNotExist(err) {
			return "", nil, fmt.Errorf("unlink %s: %w", db+suf, err)
		}
	}
	what := fmt.Sprintf("unlinked %s with the writers connected", strings.Join(removed, " and "))
	// The new process's connect, as hermes did it: PRAGMA journal_mode=WAL, then a write. Its
	// failures ("disk I/O error") are part of what users saw, so they are reported, not fatal.
	// The new process stays connected (a long-lived gateway started after the reset) until the
	// writers have stopped.
	var err error
	for try := 0; try < 25; try++ {
		var closeFn func() error
		if closeFn, err = resetAndWrite(ctx, db); err == nil {
			return what + "; a new connection set journal_mode=WAL, read and stayed connected", closeFn, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return what + "; a new connection's journal_mode=WAL failed 25 times: " + oneLine(err.Error()), nil, nil
}

func resetAndWrite(ctx context.Context, db string) (func() error, error) {
	conn, closeFn, err := sqlitex.Conn(ctx, db, sqlitex.Options{ReadWrite: true, BusyTimeout: 5000,
		Pragmas: []string{"journal_mode(WAL)"}})
	if err != nil {
		return nil, err
	}
	var n int
	if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM tasks`).Scan(&n); err != nil {
		closeFn()
		return nil, fmt.Errorf("read after reset: %w", err)
	}
	return closeFn, nil
}

// prober is a running prober child.
type prober struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	recs   []record
	done   chan struct{}
	stderr *strings.Builder
}

func startProber(ctx context.Context, a proberArgs) (*prober, error) {
	cmd, err := reexec.Command(ctx, proberChild, a.flags()...)
	if err != nil {
		return nil, err
	}
	// On cancel, ask the prober to stop (it then kills its own external guards, whose process
	// groups it owns); Go kills it 5 s later if it has not exited.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	p := &prober{cmd: cmd, done: make(chan struct{}), stderr: &strings.Builder{}}
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start prober: %w", err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var r record
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				p.mu.Lock()
				p.recs = append(p.recs, r)
				p.mu.Unlock()
			}
		}
	}()
	return p, nil
}

// wait collects the prober's records; past deadline it is stopped (SIGTERM, then SIGKILL).
func (p *prober) wait(deadline time.Time) ([]record, error) {
	var err error
	select {
	case <-p.done:
	case <-time.After(time.Until(deadline)):
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
		err = fmt.Errorf("prober did not finish in time")
	}
	if werr := p.cmd.Wait(); werr != nil && err == nil {
		err = fmt.Errorf("prober: %v: %s", werr, oneLine(p.stderr.String()))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.recs, err
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
