package repro

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

const proberChild = "repro-prober"

func init() { reexec.Register(proberChild, proberMain) }

// Verdicts in prober records.
const (
	verdictOK           = "ok"
	verdictCorrupt      = "corrupt"
	verdictInconclusive = "inconclusive"
	verdictError        = "error" // the guard answered outside the contract
)

// record is one line of the prober's output: one check, start and end in Unix nanoseconds.
type record struct {
	T0          int64  `json:"t0"`
	T1          int64  `json:"t1"`
	FirstOK     bool   `json:"first_ok"`
	Answer      string `json:"answer,omitempty"`
	Verdict     string `json:"verdict"`
	Backup      string `json:"backup,omitempty"`
	BackupBytes int64  `json:"backup_bytes,omitempty"`
	// Hazards are the codes of the hazards the doctor reported beside its verdict.
	Hazards []string `json:"hazards,omitempty"`
	// Exit is an exec: guard's exit status (-1: not an exec: guard, or killed).
	Exit int `json:"exit"`
	// Guard is the guard's own time in ns when it differs from T1-T0; Spawn says the check
	// started an exec-serve guard process.
	Guard int64 `json:"guard,omitempty"`
	Spawn bool  `json:"spawn,omitempty"`
}

type proberArgs struct {
	db, scenario, strategy, scratch string
	// The prober checks until end, and past it until minChecks checks ran or hardEnd came.
	end, hardEnd time.Time
	minChecks    int
	seed         uint64
	restartEvery int // exec-serve: restart the guard after this many checks (0: never)
}

func (a proberArgs) flags() []string {
	return []string{"-db", a.db, "-scenario", a.scenario, "-strategy", a.strategy, "-scratch", a.scratch,
		"-end", fmt.Sprint(a.end.UnixNano()), "-hard-end", fmt.Sprint(a.hardEnd.UnixNano()),
		"-min-checks", fmt.Sprint(a.minChecks), "-seed", fmt.Sprint(a.seed), "-restart-every", fmt.Sprint(a.restartEvery)}
}

// proberMain is the prober child: it runs the scenario's mechanism inside its own process and the
// strategy's checks in a loop until the end time, printing one JSON record per check.
func proberMain(args []string) int {
	fs := flag.NewFlagSet(proberChild, flag.ContinueOnError)
	var a proberArgs
	var end, hardEnd int64
	fs.StringVar(&a.db, "db", "", "")
	fs.StringVar(&a.scenario, "scenario", Clean, "")
	fs.StringVar(&a.strategy, "strategy", Legacy, "")
	fs.StringVar(&a.scratch, "scratch", "", "")
	fs.Int64Var(&end, "end", 0, "")
	fs.Int64Var(&hardEnd, "hard-end", 0, "")
	fs.IntVar(&a.minChecks, "min-checks", 0, "")
	fs.Uint64Var(&a.seed, "seed", 1, "")
	fs.IntVar(&a.restartEvery, "restart-every", 0, "")
	if err := fs.Parse(args); err != nil {
		return 4
	}
	a.end, a.hardEnd = time.Unix(0, end), time.Unix(0, max(end, hardEnd))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := os.MkdirAll(a.scratch, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "prober: %v\n", err)
		return 8
	}
	p := &checker{proberArgs: a, out: json.NewEncoder(os.Stdout), rand: rand.New(rand.NewPCG(a.seed, 0x70726f6265))}
	if err := p.run(ctx); err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "prober: %v\n", err)
		return 8
	}
	return 0
}

type checker struct {
	proberArgs
	out   *json.Encoder
	rand  *rand.Rand
	copyN int
	serve *server // the exec-serve guard process, when running
	n     int     // checks so far
}

func (p *checker) run(ctx context.Context) error {
	if p.scenario == LockDrop {
		// As hashing a live DB for a backup name does: open and close its files in a loop, in
		// the same process as the checking connections. Closing any fd of a file drops every
		// POSIX lock this process holds on it.
		lctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); lockDrop(lctx, p.db) }()
		defer func() { cancel(); wg.Wait() }()
	}
	defer p.stopServer()
	for n := 0; ctx.Err() == nil; n++ {
		if now := time.Now(); !now.Before(p.hardEnd) || (!now.Before(p.end) && n >= p.minChecks) {
			break
		}
		r := p.check(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err := p.out.Encode(r); err != nil {
			return err
		}
		// Callers connect at their own pace: a short seeded pause between checks.
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(1+p.rand.IntN(5)) * time.Millisecond):
		}
	}
	return nil
}

func lockDrop(ctx context.Context, db string) {
	for ctx.Err() == nil {
		for _, p := range []string{db + "-shm", db, db + "-wal"} {
			if f, err := os.Open(p); err == nil {
				var b [512]byte
				f.Read(b[:])
				f.Close()
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// params are the URI parameters of the probe connection in this scenario.
func (p *checker) params() []string {
	if p.scenario == Immutable {
		return []string{"immutable=1"}
	}
	return nil
}

// target returns the file the check looks at: the live DB, or in file-copy a fresh plain copy.
func (p *checker) target() (string, func(), error) {
	if p.scenario != FileCopy {
		return p.db, func() {}, nil
	}
	p.copyN++
	dir := filepath.Join(p.scratch, fmt.Sprintf("copy-%d", p.copyN))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	dst := filepath.Join(dir, "kanban.db")
	cleanup := func() { os.RemoveAll(dir) }
	// As cp kanban.db* does: main file, -shm, -wal, one after the other, 4 KiB at a time.
	for _, suf := range []string{"", "-shm", "-wal"} {
		if _, err := plainCopy(p.db+suf, dst+suf); err != nil && !errors.Is(err, os.ErrNotExist) {
			cleanup()
			return "", nil, err
		}
	}
	return dst, cleanup, nil
}

func (p *checker) check(ctx context.Context) record {
	p.n++
	r := record{T0: time.Now().UnixNano(), Exit: -1}
	defer func() { r.T1 = time.Now().UnixNano() }()
	switch {
	case p.strategy == Legacy:
		p.legacy(ctx, &r)
	case p.strategy == Retry:
		p.retry(ctx, &r)
	case p.strategy == SameConn:
		p.sameConn(ctx, &r)
	case p.strategy == Doctor:
		p.doctor(ctx, &r)
	case strings.HasPrefix(p.strategy, ServePrefix):
		p.served(ctx, &r, strings.TrimPrefix(p.strategy, ServePrefix))
	case strings.HasPrefix(p.strategy, ExecPrefix):
		p.external(ctx, &r, strings.TrimPrefix(p.strategy, ExecPrefix))
	default:
		r.Verdict, r.Answer = verdictInconclusive, "unknown strategy "+p.strategy
	}
	r.T1 = time.Now().UnixNano()
	return r
}

// answer is what one integrity_check said.
type answer struct {
	ok   bool
	text string
	kind sqlitex.Kind // of the error, if the query failed
}

// bad reports a suspicious answer: not ok, and not merely busy, interrupted or cancelled.
func (a answer) bad() bool {
	return !a.ok && (a.kind == sqlitex.KindNone || a.kind == sqlitex.KindCorrupt ||
		a.kind == sqlitex.KindNotADatabase || a.kind == sqlitex.KindIO)
}

// legacyCorrupt is the original guard's rule: a non-ok row or SQLITE_CORRUPT / SQLITE_NOTADB;
// busy, locked and I/O errors were re-raised, not counted as corruption.
func (a answer) legacyCorrupt() bool {
	return !a.ok && (a.kind == sqlitex.KindNone || a.kind == sqlitex.KindCorrupt || a.kind == sqlitex.KindNotADatabase)
}

func integrity(ctx context.Context, conn *sql.Conn) answer {
	rows, err := conn.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return answer{text: short(err.Error()), kind: errKind(err)}
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return answer{text: short(err.Error()), kind: errKind(err)}
		}
		lines = append(lines, strings.Split(s, "\n")...)
	}
	if err := rows.Err(); err != nil {
		return answer{text: short(err.Error()), kind: errKind(err)}
	}
	if len(lines) == 1 && lines[0] == "ok" {
		return answer{ok: true, text: "ok"}
	}
	if len(lines) == 0 {
		return answer{text: "no rows"}
	}
	first := lines[0]
	if strings.HasPrefix(first, "*** in database") && len(lines) > 1 {
		first = lines[1]
	}
	return answer{text: short(first)}
}

func errKind(err error) sqlitex.Kind {
	k := sqlitex.Classify(err)
	if k == sqlitex.KindNone {
		return sqlitex.KindOther // not a SQLite error (context, driver): never corruption
	}
	return k
}

func short(s string) string {
	if len(s) > 160 {
		return s[:160]
	}
	return s
}

// checkOnce opens a fresh connection to path, runs integrity_check and closes it.
func (p *checker) checkOnce(ctx context.Context, path string) answer {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, closeFn, err := p.open(ctx, path)
	if err != nil {
		return answer{text: short(err.Error()), kind: errKind(err)}
	}
	defer closeFn()
	return integrity(ctx, conn)
}

func (p *checker) open(ctx context.Context, path string) (*sql.Conn, func() error, error) {
	o := sqlitex.Options{Params: p.params(), BusyTimeout: 5000}
	if path != p.db {
		o = sqlitex.Options{ReadWrite: true, BusyTimeout: 5000} // our own scratch copy
	}
	conn, closeFn, err := sqlitex.Conn(ctx, path, o)
	if err != nil {
		return nil, nil, err
	}
	if err := conn.PingContext(ctx); err != nil {
		closeFn()
		return nil, nil, err
	}
	return conn, closeFn, nil
}

func (r *record) first(a answer) {
	r.FirstOK = a.ok
	if !a.ok {
		r.Answer = a.text
	}
}

// legacy: one check on a fresh connection; the first non-ok answer quarantines by plain copy.
func (p *checker) legacy(ctx context.Context, r *record) {
	path, cleanup, err := p.target()
	if err != nil {
		r.Verdict, r.Answer = verdictInconclusive, short(err.Error())
		return
	}
	defer cleanup()
	a := p.checkOnce(ctx, path)
	r.first(a)
	switch {
	case a.ok:
		r.Verdict = verdictOK
	case a.legacyCorrupt():
		r.Verdict = verdictCorrupt
		p.quarantine(r)
	default:
		r.Verdict = verdictInconclusive
	}
}

// retry: up to three fresh connections in this process, 250 and 500 ms apart; corrupt only when
// all three are bad, then quarantined like legacy.
func (p *checker) retry(ctx context.Context, r *record) {
	waits := []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond}
	if recheck(ctx, r, waits, func() (answer, error) {
		path, cleanup, err := p.target()
		if err != nil {
			return answer{}, err
		}
		defer cleanup()
		return p.checkOnce(ctx, path), nil
	}) {
		p.quarantine(r)
	}
}

// recheck asks check once per entry of waits, after waiting that long. The first ok answer makes
// the verdict ok, an answer that is neither ok nor bad (or an error, or a cancelled wait)
// inconclusive; only when every answer is bad is the verdict corrupt, and recheck returns true.
func recheck(ctx context.Context, r *record, waits []time.Duration, check func() (answer, error)) bool {
	for i, wait := range waits {
		if wait > 0 && !sleep(ctx, wait) {
			r.Verdict = verdictInconclusive
			return false
		}
		a, err := check()
		if err != nil {
			r.Verdict, r.Answer = verdictInconclusive, short(err.Error())
			return false
		}
		if i == 0 {
			r.first(a)
		}
		if a.ok {
			r.Verdict = verdictOK
			return false
		}
		if !a.bad() {
			r.Verdict = verdictInconclusive
			return false
		}
	}
	r.Verdict = verdictCorrupt
	return true
}

// sameConn: re-check twice on the same connection (50 and 100 ms apart); corrupt when all agree.
func (p *checker) sameConn(ctx context.Context, r *record) {
	path, cleanup, err := p.target()
	if err != nil {
		r.Verdict, r.Answer = verdictInconclusive, short(err.Error())
		return
	}
	defer cleanup()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, closeFn, err := p.open(cctx, path)
	if err != nil {
		a := answer{text: short(err.Error()), kind: errKind(err)}
		r.first(a)
		r.Verdict = verdictInconclusive
		if a.bad() {
			r.Verdict = verdictCorrupt // nothing to re-check on: the open itself said so
		}
		return
	}
	defer closeFn()
	recheck(ctx, r, []time.Duration{0, 50 * time.Millisecond, 100 * time.Millisecond}, func() (answer, error) {
		return integrity(cctx, conn), nil
	})
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// quarantine is the original guard's backup: a plain copy of the live db, -wal and -shm into the
// board directory under the timestamped name, with no lock held. Being a plain copy of live files
// from this process, it also drops this process's locks: the storm is real.
func (p *checker) quarantine(r *record) {
	dir := filepath.Dir(p.db)
	stamp := time.Now().Format("20060102_150405")
	for n := 0; n < 1000; n++ {
		name := "kanban.db.corrupt." + stamp + ".bak"
		if n > 0 {
			name = fmt.Sprintf("kanban.db.corrupt.%s.%d.bak", stamp, n)
		}
		dst := filepath.Join(dir, name)
		size, err := plainCopyNoReplace(p.db, dst)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return
		}
		for _, suf := range []string{"-wal", "-shm"} {
			if s, err := plainCopyNoReplace(p.db+suf, dst+suf); err == nil {
				size += s
			}
		}
		r.Backup, r.BackupBytes = dst, size
		return
	}
}

// plainCopy copies src to dst byte by byte with no lock held, as cp does.
func plainCopy(src, dst string) (int64, error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	err = atomicfile.WriteFrom(dst, 0o644, func(w io.Writer) error {
		var err error
		n, err = io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{f}, make([]byte, 4096))
		return err
	})
	return n, err
}

func plainCopyNoReplace(src, dst string) (int64, error) {
	if _, err := os.Lstat(dst); err == nil {
		return 0, os.ErrExist
	}
	f, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	tmp, err := atomicfile.Create(dst, 0o644)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(tmp, f)
	if err != nil {
		tmp.Abort()
		return 0, err
	}
	if err := tmp.CommitNoReplace(); err != nil {
		if errors.Is(err, os.ErrExist) || os.IsExist(errors.Unwrap(err)) {
			return 0, os.ErrExist
		}
		return 0, err
	}
	return n, nil
}
