package repro

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
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
func runCell(ctx context.Context, s cellSpec) (c Cell, checks []CheckRecord) {
	c = Cell{Scenario: s.scenario, Strategy: s.strategy}
	t0 := time.Now()
	defer func() { c.Seconds = time.Since(t0).Seconds() }()
	log := s.opts.Logger.With("cell", c.Name())
	db := filepath.Join(s.dir, "kanban.db")
	if err := copyTemplate(s.template, db); err != nil {
		c.Error = fmt.Sprintf("copy board: %v", err)
		return c, nil
	}
	bw, err := watchBackups(db, filepath.Join(s.dir, "backups-seen"))
	if err != nil {
		c.Error = err.Error()
		return c, nil
	}
	defer bw.stop()
	wo := kanban.WriterOptions{Seed: s.seed, AutoCheckpoint: 0, Pause: s.opts.pause}
	if s.sch.commits > 0 {
		wo.CheckpointEvery, wo.CheckpointMode = s.sch.commits, s.opts.Checkpoint
	}
	fleet, err := kanban.StartWriters(ctx, db, s.opts.Writers, s.dir, wo)
	if err != nil {
		c.Error = fmt.Sprintf("start writers: %v", err)
		return c, nil
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
	hardEnd := now.Add(maxStretch * s.opts.Duration)
	pr, err := startProber(ctx, proberArgs{db: db, scenario: s.scenario, strategy: s.strategy, end: end,
		hardEnd: hardEnd, minChecks: minChecks, seed: s.seed, scratch: filepath.Join(s.dir, "scratch"),
		restartEvery: s.opts.ServeRestartEvery})
	if err != nil {
		c.Error = err.Error()
		return c, nil
	}

	// The mid-run event, at a third of the cell: corruption (injected, index-desync), the WAL
	// reset (wal-unlink) or a writer killed inside its transaction (writer-kill).
	var evStart, evEnd time.Time
	var damaged []string  // the damaged indexes
	var baseline []string // integrity_check's findings right after the injection
	var poll *truthPoll
	closeNew := func() error { return nil } // wal-unlink's new-generation connection
	defer func() { closeNew() }()
	if s.scenario == Injected || s.scenario == WALUnlink || s.scenario == IndexDesync || s.scenario == WriterKill {
		select {
		case <-ctx.Done():
		case <-time.After(s.opts.Duration / 3):
		}
		evStart = time.Now()
		switch s.scenario {
		case Injected:
			c.Injection, _, err = inject(ctx, db)
			damaged = []string{injectedIndex}
		case IndexDesync:
			c.Injection, damaged, err = injectDesync(ctx, db)
		case WriterKill:
			c.Injection, err = killWriter(ctx, db)
		default:
			var cl func() error
			c.Injection, cl, err = unlinkWAL(ctx, db)
			if cl != nil {
				closeNew = cl
			}
			close(rejoin) // like every process started from now on, the checkpointer joins the new generation
		}
		evEnd = time.Now()
		c.EventMs = ms(evStart.Sub(now))
		if err != nil {
			c.Notes = append(c.Notes, fmt.Sprintf("%s event failed: %v", s.scenario, err))
			log.Warn("event failed", "err", err)
		} else if injects(s.scenario) {
			baseline = injectedFindings(ctx, db)
			// Watch for a repair: a clean-process integrity_check until it says ok.
			if poll, err = startTruthPoll(ctx, db, hardEnd.Add(60*time.Second)); err != nil {
				c.Notes = append(c.Notes, fmt.Sprintf("truth poll: %v", err))
			}
		}
	}

	recs, perr := pr.wait(now.Add(maxStretch*s.opts.Duration + 60*time.Second))
	werr := fleet.Stop() // writers close first, as gateways restart while others keep running
	wSecs := time.Since(wStart).Seconds()
	closeNew()
	closeNew = func() error { return nil }
	cpStop()
	c.Checkpoints = <-cpDone
	var repairAt time.Time
	if poll != nil {
		repairAt = poll.wait()
	}
	bc := bw.stop()
	if perr != nil {
		c.Error = perr.Error()
	}
	if werr != nil {
		// Writers that failed are a finding in every scenario: counted by code, noted, and
		// scored by the CI rules (any failure in clean, corruption codes as guard damage).
		c.WriterErrors = writerErrors(werr)
		c.Notes = append(c.Notes, fmt.Sprintf("writers: %s", oneLine(werr.Error())))
	}
	if ctx.Err() != nil {
		return c, nil
	}

	c.BackupsWritten, c.BackupsPruned, c.BackupsLeft, c.BackupBytes = bc.written, bc.pruned, bc.left, bc.bytes
	c.Notes = append(c.Notes, bc.notes...)
	tr, err := runTruth(ctx, db, fleet.Ledgers, bc.links, filepath.Join(s.dir, "truth"))
	if err != nil {
		c.Error = fmt.Sprintf("ground truth: %v", err)
		return c, nil
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
	if injects(s.scenario) && !repairAt.IsZero() && c.TruthOK {
		c.Repaired, c.RepairLatencyMs = true, ms(repairAt.Sub(evEnd))
	} else {
		repairAt = time.Time{}
	}
	score(&c, recs, evStart, evEnd, repairAt)
	c.GuardDamageDetail = guardDamage(&c, tr.Lines, damaged, baseline)
	c.GuardDamage = len(c.GuardDamageDetail)
	if c.LostCommits > 0 && c.TruthOK {
		c.Notes = append(c.Notes, fmt.Sprintf("%d committed tasks (in the writers' ledgers) are missing from the board while integrity_check says ok", c.LostCommits))
	}
	return c, checkRecords(c.Name(), now, recs, bc.at)
}

// injectedFindings is what integrity_check says on the harness's own (locked, read-only)
// connection right after the injection: the damage growth is measured against.
func injectedFindings(ctx context.Context, db string) []string {
	conn, closeFn, err := sqlitex.Conn(ctx, db, sqlitex.Options{BusyTimeout: 5000})
	if err != nil {
		return nil
	}
	defer closeFn()
	return findings(ctx, conn)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// guardDamage lists the signs that the strategy damaged the board (see Cell.GuardDamage).
// wal-unlink is the harness's own damage and is not scored.
func guardDamage(c *Cell, lines, damaged, baseline []string) []string {
	if c.Scenario == WALUnlink {
		return nil
	}
	var out []string
	if !injects(c.Scenario) {
		if !c.TruthOK {
			out = append(out, "the board is damaged with nothing injected: "+c.TruthDetail)
		}
		for _, code := range slices.Sorted(maps.Keys(c.WriterErrors)) {
			if corruptionCode(code) {
				out = append(out, fmt.Sprintf("%d writers died with %s", c.WriterErrors[code], code))
			}
		}
	} else if !c.TruthOK {
		if grown := grownDamage(lines, damaged, baseline); len(grown) > 0 {
			out = append(out, fmt.Sprintf("damage past the injection (%d findings): %s", len(grown), grown[0]))
		}
	}
	if c.LostCommits > 0 {
		out = append(out, fmt.Sprintf("%d committed tasks lost", c.LostCommits))
	}
	return out
}

// checkRecords turns the prober's records into the per-check records of the JSON, attributing
// each backup that appeared to the last check started before it.
func checkRecords(cell string, t0 time.Time, recs []record, backups []time.Time) []CheckRecord {
	var out []CheckRecord
	rel := func(ns int64) float64 { return ms(time.Unix(0, ns).Sub(t0)) }
	bi := 0
	for i, r := range recs {
		if r.Verdict == "" {
			continue
		}
		cr := CheckRecord{Cell: cell, N: len(out) + 1, StartMs: rel(r.T0), EndMs: rel(r.T1), GuardMs: float64(r.T1-r.T0) / 1e6,
			Verdict: r.Verdict, Exit: r.Exit, Message: r.Answer, Spawn: r.Spawn}
		if r.Guard > 0 {
			cr.GuardMs = float64(r.Guard) / 1e6
		}
		if cr.Verdict == verdictOK {
			cr.Verdict = "healthy"
		}
		var next int64 = 1<<63 - 1
		if i+1 < len(recs) {
			next = recs[i+1].T0
		}
		for bi < len(backups) && backups[bi].UnixNano() < next {
			cr.Backups++
			bi++
		}
		out = append(out, cr)
	}
	return out
}

// writerErrors counts the failed writers by the SQLite code at the end of their error.
func writerErrors(err error) map[string]int {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	out := map[string]int{}
	for _, e := range errs {
		out[errorCode(e.Error())]++
	}
	return out
}

var codeRe = regexp.MustCompile(`\((\d+)\)`)

var codeNames = map[int]string{5: "SQLITE_BUSY", 10: "SQLITE_IOERR", 11: "SQLITE_CORRUPT", 14: "SQLITE_CANTOPEN",
	15: "SQLITE_PROTOCOL", 26: "SQLITE_NOTADB", 261: "SQLITE_BUSY_RECOVERY", 517: "SQLITE_BUSY_SNAPSHOT",
	522: "SQLITE_IOERR_SHORT_READ", 779: "SQLITE_CORRUPT_INDEX", 267: "SQLITE_CORRUPT_VTAB", 1035: "SQLITE_CORRUPT_SEQUENCE"}

func errorCode(msg string) string {
	m := codeRe.FindAllStringSubmatch(msg, -1)
	if len(m) == 0 {
		if strings.Contains(msg, "killed") {
			return "killed"
		}
		return "other"
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	name := codeNames[n]
	if name == "" {
		name = "SQLITE_" + strconv.Itoa(n&0xff)
	}
	return fmt.Sprintf("%s (%d)", name, n)
}

// corruptionCode reports whether a writer error code is a corruption code (primary 11 or 26).
func corruptionCode(code string) bool {
	m := codeRe.FindStringSubmatch(code)
	if m == nil {
		return false
	}
	n, _ := strconv.Atoi(m[1])
	return n&0xff == 11 || n&0xff == 26
}

// score fills the verdict counts from the prober's records against the ground truth. In an
// injection cell the truth is a timeline: healthy before the injection, damaged from its commit
// until repairAt (when a repair was seen; else until the end if the final truth is damaged).
func score(c *Cell, recs []record, evStart, evEnd, repairAt time.Time) {
	var durs, guard []time.Duration
	answers := map[string]bool{}
	for _, r := range recs {
		if r.Verdict == "" {
			continue
		}
		c.Checks++
		durs = append(durs, time.Duration(r.T1-r.T0))
		switch {
		case r.Spawn:
			c.GuardStarts++
		case r.Guard > 0:
			guard = append(guard, time.Duration(r.Guard))
		default:
			guard = append(guard, time.Duration(r.T1-r.T0))
		}
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
		switch r.Verdict {
		case verdictInconclusive:
			c.Inconclusive++ // not corruption: never a false positive (after an injection, a miss)
		case verdictError:
			c.GuardErrors++ // outside the contract: not scored either way
			continue
		}
		truthCorrupt := !c.TruthOK
		if injects(c.Scenario) {
			switch {
			case !evStart.IsZero() && r.T1 < evStart.UnixNano():
				truthCorrupt = false // the board was healthy before the injection
			case !evEnd.IsZero() && r.T0 > evEnd.UnixNano():
				if !repairAt.IsZero() {
					switch {
					case r.T0 >= repairAt.UnixNano():
						truthCorrupt = false // repaired before this check started
					case corrupt || r.T1 < repairAt.UnixNano():
						truthCorrupt = true
					default:
						c.Unscored++ // said healthy while the repair landed
						continue
					}
				}
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
			c.Unscored++ // really damaged outside the injection cells: a finding, not a score
			continue
		}
		if corrupt && !truthCorrupt {
			c.FalsePositives++
		}
	}
	for a := range answers {
		c.Answers = append(c.Answers, a)
	}
	slices.Sort(c.Answers)
	c.P50ms, c.P99ms = percentile(durs, 0.50), percentile(durs, 0.99)
	c.GuardP50ms, c.GuardP99ms = percentile(guard, 0.50), percentile(guard, 0.99)
	if c.SplitBrainCorrupt > 0 {
		c.Notes = append(c.Notes, fmt.Sprintf("%d corrupt verdicts after the WAL reset, not scored: new connections then see a really inconsistent board", c.SplitBrainCorrupt))
	}
	if !c.TruthOK && !injects(c.Scenario) {
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
func inject(ctx context.Context, db string) (string, int, error) {
	conn, closeFn, err := sqlitex.Conn(ctx, db, sqlitex.Options{ReadWrite: true, BusyTimeout: 2})
	if err != nil {
		return "", 0, err
	}
	defer closeFn()
	const index = injectedIndex
	var pgno int
	if err := conn.QueryRowContext(ctx, `SELECT pageno FROM dbstat WHERE name=? ORDER BY pageno DESC LIMIT 1`, index).Scan(&pgno); err != nil {
		return "", 0, fmt.Errorf("find a page of %s: %w", index, err)
	}
	start := time.Now()
	if err := beginImmediate(ctx, conn); err != nil {
		return "", 0, fmt.Errorf("inject: %w", err)
	}
	var data []byte
	if err := conn.QueryRowContext(ctx, `SELECT data FROM sqlite_dbpage WHERE pgno=?`, pgno).Scan(&data); err != nil {
		conn.ExecContext(ctx, "ROLLBACK")
		return "", 0, fmt.Errorf("read page %d: %w", pgno, err)
	}
	data[0] = 0 // page type: no valid b-tree page has 0
	if _, err := conn.ExecContext(ctx, `UPDATE sqlite_dbpage SET data=? WHERE pgno=?`, data, pgno); err != nil {
		conn.ExecContext(ctx, "ROLLBACK")
		return "", 0, fmt.Errorf("write page %d: %w", pgno, err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return "", 0, fmt.Errorf("inject: %w", err)
	}
	return fmt.Sprintf("zeroed the page-type byte of page %d (%s) through sqlite_dbpage (%d ms)", pgno, index, time.Since(start).Milliseconds()), pgno, nil
}

// injectedIndex is the index whose page injected damages: one the writers never touch.
const injectedIndex = "idx_links_child"

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
