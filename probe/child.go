package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// ConfirmChild is the reexec name of the clean confirmation process.
const ConfirmChild = "probe-confirm"

func init() { reexec.Register(ConfirmChild, confirmMain) }

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
	cmd, err := reexec.Command(ctx, ConfirmChild, args...)
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
