package kanban

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"

	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// GenOptions shapes a generated board.
type GenOptions struct {
	Tasks    int    // number of tasks (each with events, a run, comments); default 2000
	Seed     uint64 // everything random comes from this
	WAL      bool   // leave the board in WAL mode (default: rollback/DELETE mode)
	PageSize int    // default 4096
	// AttachmentBytes is the size of the large attachment every 50th task gets (overflow pages);
	// default 9000.
	AttachmentBytes int
	// Events is the average number of events per task (the event log is the table that grows on
	// real boards); 0 means about 4.5.
	Events int
}

// Generate writes a realistic board at path (which must not exist): the hermes schema, tasks with
// links, comments, events, runs, attachments and notification subscriptions, some values large
// enough for overflow pages. The same options give the same bytes (rollback mode; in WAL mode the
// main file is checkpointed and the -wal removed on close).
func Generate(ctx context.Context, path string, o GenOptions) error {
	if o.Tasks == 0 {
		o.Tasks = 2000
	}
	if o.PageSize == 0 {
		o.PageSize = 4096
	}
	if o.AttachmentBytes == 0 {
		o.AttachmentBytes = 9000
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("generate %s: already exists", path)
	}
	db, err := sqlitex.Open(path, sqlitex.Options{ReadWrite: true, Create: true,
		Pragmas: []string{fmt.Sprintf("page_size(%d)", o.PageSize), "journal_mode(DELETE)", "synchronous(OFF)"}})
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, Schema); err != nil {
		return fmt.Errorf("generate %s: schema: %w", path, err)
	}
	r := rand.New(rand.NewPCG(o.Seed, 0x6b616e62616e))
	w := &Writer{DB: db, Name: "gen", Rand: r}
	clock := 1.78e9
	w.Clock = func() float64 { clock += 0.25 + float64(r.IntN(1000))/1000; return clock }
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fill(ctx, tx, w, o); err != nil {
		tx.Rollback()
		return fmt.Errorf("generate %s: %w", path, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("generate %s: %w", path, err)
	}
	if o.WAL {
		if _, err := db.ExecContext(ctx, "PRAGMA journal_mode=WAL"); err != nil {
			return fmt.Errorf("generate %s: wal: %w", path, err)
		}
	}
	return db.Close()
}

func fill(ctx context.Context, tx *sql.Tx, w *Writer, o GenOptions) error {
	r := w.Rand
	statuses := []string{"todo", "running", "done", "done", "done", "blocked", "failed"}
	var ids []string
	for i := 0; i < o.Tasks; i++ {
		id := fmt.Sprintf("t-%06d-%04x", i, r.IntN(1<<16))
		ids = append(ids, id)
		now := w.now()
		st := statuses[r.IntN(len(statuses))]
		body := Text(r, 80+r.IntN(600))
		if i%40 == 7 {
			body = Text(r, 5000+r.IntN(8000)) // overflow pages in tasks
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO tasks(id,title,body,assignee,status,priority,created_at,updated_at,created_by,claimed_by,claimed_at,completed_at,result,tenant,workspace,skills,idempotency_key,parent_id,tags)
			VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			id, Text(r, 20+r.IntN(50)), body, fmt.Sprintf("agent-%d", r.IntN(12)), st, r.IntN(5), now, now+5,
			fmt.Sprintf("gateway-%d", r.IntN(7)), nullIf(st == "todo", fmt.Sprintf("worker-%d", r.IntN(20))), now+1,
			nullIf(st != "done", now+60), nullIf(st != "done", Text(r, 50+r.IntN(300))),
			fmt.Sprintf("tenant-%d", r.IntN(4)), "/srv/work/"+id, `["go","sql"]`, "idem-"+id,
			nullIf(i == 0 || r.IntN(4) != 0, ids[r.IntN(len(ids))]), "ops,kanban"); err != nil {
			return err
		}
		runID := "r-" + id
		if _, err := tx.ExecContext(ctx, `INSERT INTO task_runs(id,task_id,worker,status,started_at,finished_at,exit_code,log) VALUES(?,?,?,?,?,?,?,?)`,
			runID, id, fmt.Sprintf("worker-%d", r.IntN(20)), st, now+1, nullIf(st != "done", now+60), nullIf(st != "done", 0), Text(r, 100+r.IntN(900))); err != nil {
			return err
		}
		nEvents := 2 + r.IntN(6)
		if o.Events > 0 {
			nEvents = o.Events/2 + r.IntN(o.Events+1)
		}
		for e := 0; e < nEvents; e++ {
			kind := []string{"created", "claimed", "heartbeat", "progress", "completed", "commented"}[r.IntN(6)]
			if _, err := tx.ExecContext(ctx, `INSERT INTO task_events(task_id,run_id,kind,payload,created_at) VALUES(?,?,?,?,?)`,
				id, runID, kind, fmt.Sprintf(`{"step":%d,"note":%q}`, e, Text(r, 20+r.IntN(200))), now+float64(e)); err != nil {
				return err
			}
		}
		for c, n := 0, r.IntN(3); c < n; c++ {
			if _, err := tx.ExecContext(ctx, `INSERT INTO task_comments(task_id,author,body,created_at) VALUES(?,?,?,?)`,
				id, fmt.Sprintf("user-%d", r.IntN(9)), Text(r, 30+r.IntN(400)), now+float64(c)); err != nil {
				return err
			}
		}
		if i > 0 && r.IntN(5) == 0 {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO task_links(parent_id,child_id,kind,created_at) VALUES(?,?,?,?)`,
				ids[r.IntN(i)], id, "blocks", now); err != nil {
				return err
			}
		}
		if i%50 == 3 {
			blob := make([]byte, o.AttachmentBytes)
			for j := range blob {
				blob[j] = byte(r.IntN(256))
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO task_attachments(task_id,name,mime,size,content,created_at) VALUES(?,?,?,?,?,?)`,
				id, "trace.bin", "application/octet-stream", len(blob), blob, now); err != nil {
				return err
			}
		}
		if i%25 == 0 {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO kanban_notify_subs(task_id,channel,target,events,created_at) VALUES(?,?,?,?,?)`,
				id, "slack", fmt.Sprintf("#ops-%d", r.IntN(5)), "completed,failed", now); err != nil {
				return err
			}
		}
	}
	return nil
}

func nullIf(cond bool, v any) any {
	if cond {
		return nil
	}
	return v
}

// Init creates the schema in an existing or new database at path with the writers' pragmas and
// WAL mode, as a hermes process's first connect does.
func Init(ctx context.Context, path string) error {
	db, err := sqlitex.Open(path, sqlitex.Options{ReadWrite: true, Create: true, Pragmas: append([]string{"journal_mode(WAL)"}, WriterPragmas...)})
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, Schema); err != nil {
		return fmt.Errorf("init %s: %w", path, err)
	}
	return db.Close()
}

// BytesPerTask is the approximate size a generated task adds to a board (measured with the
// default options), for sizing benchmark boards.
const BytesPerTask = 3665

// BytesPerEvent is the approximate size one more event adds (row and its two indexes).
const BytesPerEvent = 290
