package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// ConfirmChild is the reexec name of the clean confirmation process.
const ConfirmChild = "probe-confirm"

// PartChild is the reexec name of a helper process that runs part of a parallel check.
const PartChild = "probe-part"

func init() {
	reexec.Register(ConfirmChild, confirmMain)
	reexec.Register(PartChild, partMain)
}

// errNested is returned when this process was started as a child but never ran reexec.Init (a
// test binary without it): spawning from here would re-run the whole program again and again.
var errNested = errors.New("running as a child without reexec.Init: no further children")

func childCommand(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	if os.Getenv(reexec.EnvKey) != "" {
		return nil, errNested
	}
	return reexec.Command(ctx, name, args...)
}

// runPartChild runs jobs in a helper process with its own read-only connection to path.
func runPartChild(ctx context.Context, path string, conn sqlitex.Options, jobs []job) ([]answer, error) {
	in, err := json.Marshal(jobs)
	if err != nil {
		return nil, err
	}
	args := []string{"-db", path, "-busy", strconv.Itoa(conn.BusyTimeout)}
	for _, p := range conn.Params {
		args = append(args, "-param", p)
	}
	cmd, err := childCommand(ctx, PartChild, args...)
	if err != nil {
		return nil, err
	}
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &out, &errb
	runErr := cmd.Run()
	var as []answer
	if err := json.Unmarshal(out.Bytes(), &as); err != nil || len(as) == 0 {
		return nil, fmt.Errorf("check part child: %v: %s", runErr, strings.TrimSpace(errb.String()))
	}
	return as, nil
}

type paramList []string

func (p *paramList) String() string     { return strings.Join(*p, ",") }
func (p *paramList) Set(v string) error { *p = append(*p, v); return nil }

// partMain is the helper: it reads jobs (JSON) on stdin, runs them on one read-only connection
// and prints their answers (JSON) on stdout.
func partMain(args []string) int {
	fs := flag.NewFlagSet(PartChild, flag.ContinueOnError)
	db := fs.String("db", "", "database path")
	busy := fs.Int("busy", 30000, "busy timeout, ms")
	var params paramList
	fs.Var(&params, "param", "SQLite URI parameter (repeatable)")
	if err := fs.Parse(args); err != nil || *db == "" {
		return 4
	}
	var jobs []job
	if err := json.NewDecoder(os.Stdin).Decode(&jobs); err != nil {
		return 4
	}
	ctx := context.Background()
	var as []answer
	c, closeC, err := sqlitex.Conn(ctx, *db, sqlitex.Options{BusyTimeout: *busy, Params: params})
	if err != nil {
		as = []answer{errAnswer(ctx, err)}
	} else {
		defer closeC()
		as = runJobs(ctx, c, jobs)
	}
	if err := json.NewEncoder(os.Stdout).Encode(as); err != nil {
		return 8
	}
	return 0
}

// childReply is what the confirming child prints (one JSON object on stdout).
type childReply struct {
	Answer    answer    `json:"answer"`
	Facts     fileFacts `json:"facts"`
	Class     Class     `json:"class,omitempty"`
	Why       string    `json:"why,omitempty"`
	Backup    string    `json:"backup,omitempty"`
	BackupErr string    `json:"backup_err,omitempty"`
}

// runChild re-executes this binary as the confirmation child for path.
func runChild(ctx context.Context, path string, opts Options) (childReply, error) {
	args := []string{"-db", path, "-timeout", opts.Timeout.String()}
	if opts.Full {
		args = append(args, "-full")
	}
	if opts.Backup {
		args = append(args, "-backup")
	}
	if opts.NoTrial {
		args = append(args, "-no-trial")
	}
	cmd, err := childCommand(ctx, ConfirmChild, args...)
	if err != nil {
		return childReply{}, err
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	runErr := cmd.Run()
	var r childReply
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		if ctx.Err() != nil {
			return childReply{}, ctx.Err()
		}
		return childReply{}, fmt.Errorf("confirm child: %v: %s", runErr, strings.TrimSpace(errb.String()))
	}
	return r, nil
}

// confirmMain is the child: a fresh process that opens the database the normal way (read-only,
// locked), runs one whole-database check and, when that shows damage, classifies it and writes the
// backup. Like the parent, it reads the header before its connection exists and never touches a
// board file behind SQLite's back.
func confirmMain(args []string) int {
	fs := flag.NewFlagSet(ConfirmChild, flag.ContinueOnError)
	db := fs.String("db", "", "database path")
	full := fs.Bool("full", false, "integrity_check")
	timeout := fs.Duration("timeout", 30*time.Second, "busy timeout")
	backup := fs.Bool("backup", false, "write the content-addressed backup when damage is confirmed")
	noTrial := fs.Bool("no-trial", false, "no trial fix on a private copy")
	if err := fs.Parse(args); err != nil || *db == "" {
		return 4
	}
	r := confirm(context.Background(), *db, *full, *timeout, *backup, !*noTrial)
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		return 8
	}
	return 0
}

func confirm(ctx context.Context, path string, full bool, timeout time.Duration, backup, trial bool) childReply {
	r := childReply{Facts: readFacts(path)}
	copts := sqlitex.Options{BusyTimeout: int(timeout / time.Millisecond)}
	c, closeC, err := sqlitex.Conn(ctx, path, copts)
	if err != nil {
		r.Answer = errAnswer(ctx, err)
		return r
	}
	defer closeC()
	pctx, cancel := context.WithTimeout(ctx, timeout+time.Second)
	r.Answer = checkPass(pctx, c, path, full, copts, defaultWorkers())
	cancel()
	if !confirmsDamage(r.Answer) {
		return r
	}
	r.Class, r.Why = classify(ctx, c, r.Facts, r.Answer, trial)
	if backup {
		name, _, err := Quarantine(ctx, c, path)
		if err != nil {
			r.BackupErr = err.Error()
		} else {
			r.Backup = name
		}
	}
	return r
}
