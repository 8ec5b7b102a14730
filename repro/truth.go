package repro

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

const truthChild = "repro-truth"

func init() { reexec.Register(truthChild, truthMain) }

// truth is the ground truth of a cell, computed in a clean child process once the writers stopped.
type truth struct {
	OK             bool     `json:"ok"`
	Detail         string   `json:"detail,omitempty"`
	Lines          []string `json:"lines,omitempty"` // integrity_check's findings (up to maxTruthLines)
	LedgerTasks    int      `json:"ledger_tasks"`
	Lost           int      `json:"lost"`
	LostSample     []string `json:"lost_sample,omitempty"`
	BackupsChecked int      `json:"backups_checked"`
	BackupsCorrupt int      `json:"backups_corrupt"`
}

// maxBackupChecks caps how many backups of a storm are checked (evenly sampled); maxTruthLines
// how many findings of the ground truth are kept.
const (
	maxBackupChecks = 40
	maxTruthLines   = 100
)

func runTruth(ctx context.Context, db string, ledgers, backups []string, scratch string) (truth, error) {
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return truth{}, err
	}
	list := filepath.Join(scratch, "backups.txt")
	if err := atomicfile.WriteFile(list, []byte(strings.Join(backups, "\n")), 0o644); err != nil {
		return truth{}, err
	}
	cmd, err := reexec.Command(ctx, truthChild, "-db", db, "-ledgers", strings.Join(ledgers, ","), "-backups", list, "-scratch", scratch)
	if err != nil {
		return truth{}, err
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return truth{}, fmt.Errorf("%v: %s", err, oneLine(errb.String()))
	}
	var t truth
	if err := json.Unmarshal(out, &t); err != nil {
		return truth{}, fmt.Errorf("decode: %w", err)
	}
	return t, nil
}

func truthMain(args []string) int {
	fs := flag.NewFlagSet(truthChild, flag.ContinueOnError)
	db := fs.String("db", "", "")
	poll := fs.Int64("poll-until", 0, "")
	ledgers := fs.String("ledgers", "", "")
	backups := fs.String("backups", "", "")
	scratch := fs.String("scratch", "", "")
	if err := fs.Parse(args); err != nil {
		return 4
	}
	if *poll != 0 {
		return pollTruth(*db, time.Unix(0, *poll))
	}
	t, err := groundTruth(context.Background(), *db, strings.Split(*ledgers, ","), *backups, *scratch)
	if err != nil {
		fmt.Fprintf(os.Stderr, "truth: %v\n", err)
		return 8
	}
	json.NewEncoder(os.Stdout).Encode(t)
	return 0
}

func groundTruth(ctx context.Context, db string, ledgers []string, backupList, scratch string) (truth, error) {
	var t truth
	conn, closeFn, err := sqlitex.Conn(ctx, db, sqlitex.Options{BusyTimeout: 10000})
	if err != nil {
		return t, err
	}
	a := integrity(ctx, conn)
	t.OK = a.ok
	if !a.ok {
		t.Detail = a.text
		t.Lines = findings(ctx, conn)
	}
	ids, err := kanban.ReadLedgers(ledgers)
	if err != nil {
		closeFn()
		return t, err
	}
	t.LedgerTasks = len(ids)
	have := map[string]bool{}
	// NOT INDEXED: the table itself, not an index that may be the damaged part.
	rows, err := conn.QueryContext(ctx, "SELECT id FROM tasks NOT INDEXED")
	if err == nil {
		for rows.Next() {
			var id string
			if rows.Scan(&id) == nil {
				have[id] = true
			}
		}
		err = rows.Err()
		rows.Close()
	}
	closeFn()
	if err != nil {
		t.OK = false
		t.Detail = strings.TrimSpace(t.Detail + "; read tasks: " + err.Error())
	}
	var lost []string
	for id := range ids {
		if !have[id] {
			lost = append(lost, id)
		}
	}
	sort.Strings(lost)
	t.Lost = len(lost)
	if len(lost) > 5 {
		lost = lost[:5]
	}
	t.LostSample = lost

	list, err := readLines(backupList)
	if err != nil {
		return t, err
	}
	step := 1
	if len(list) > maxBackupChecks {
		step = (len(list) + maxBackupChecks - 1) / maxBackupChecks
	}
	for i := 0; i < len(list); i += step {
		ok, err := backupHealthy(ctx, list[i], filepath.Join(scratch, fmt.Sprintf("b%d", i)))
		if err != nil {
			return t, err
		}
		t.BackupsChecked++
		if !ok {
			t.BackupsCorrupt++
		}
	}
	return t, nil
}

// backupHealthy checks a backup unit (main file and its -wal companion, without the -shm copy,
// which is a torn snapshot of shared memory) in a scratch directory with a clean connection.
func backupHealthy(ctx context.Context, unit, dir string) (bool, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	dst := filepath.Join(dir, "kanban.db")
	if _, err := plainCopy(unit, dst); err != nil {
		return false, err
	}
	if _, err := plainCopy(unit+"-wal", dst+"-wal"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	conn, closeFn, err := sqlitex.Conn(ctx, dst, sqlitex.Options{ReadWrite: true})
	if err != nil {
		return false, nil
	}
	defer closeFn()
	return integrity(ctx, conn).ok, nil
}

func readLines(p string) ([]string, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out, sc.Err()
}

// findings lists integrity_check's lines (page-level findings arrive as one row of several
// lines; the "*** in database" header is dropped), up to maxTruthLines.
func findings(ctx context.Context, conn *sql.Conn) []string {
	rows, err := conn.QueryContext(ctx, fmt.Sprintf("PRAGMA integrity_check(%d)", maxTruthLines))
	if err != nil {
		return []string{short(err.Error())}
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if rows.Scan(&s) != nil {
			break
		}
		for _, l := range strings.Split(s, "\n") {
			if l != "" && !strings.HasPrefix(l, "*** in database") && len(out) < maxTruthLines {
				out = append(out, l)
			}
		}
	}
	if err := rows.Err(); err != nil {
		out = append(out, short(err.Error()))
	}
	return out
}

// truthPoll watches a damaged board for its repair: a child process that runs integrity_check on
// a fresh clean connection every pollEvery until one says ok (it prints when that check started)
// or until its end.
type truthPoll struct {
	cmd  *exec.Cmd
	okAt chan time.Time // gets the start of the first ok check, or is closed without one
}

const pollEvery = 20 * time.Millisecond

func startTruthPoll(ctx context.Context, db string, until time.Time) (*truthPoll, error) {
	cmd, err := reexec.Command(ctx, truthChild, "-db", db, "-poll-until", fmt.Sprint(until.UnixNano()))
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start truth poll: %w", err)
	}
	p := &truthPoll{cmd: cmd, okAt: make(chan time.Time, 1)}
	go func() {
		defer close(p.okAt)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ns int64
			if _, err := fmt.Sscan(sc.Text(), &ns); err == nil {
				p.okAt <- time.Unix(0, ns)
			}
		}
	}()
	return p, nil
}

// wait stops the poll and returns when the board was first seen healthy (zero: never).
func (p *truthPoll) wait() time.Time {
	p.cmd.Process.Signal(syscall.SIGTERM)
	t := <-p.okAt
	p.cmd.Wait()
	return t
}

func pollTruth(db string, until time.Time) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	for ctx.Err() == nil {
		t0 := time.Now()
		conn, closeFn, err := sqlitex.Conn(ctx, db, sqlitex.Options{BusyTimeout: 10000})
		if err == nil {
			a := integrity(ctx, conn)
			closeFn()
			if a.ok && ctx.Err() == nil {
				fmt.Println(t0.UnixNano())
				return 0
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(pollEvery):
		}
	}
	return 0
}
