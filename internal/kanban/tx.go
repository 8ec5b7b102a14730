package kanban

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
)

// Writer runs the transactions hermes processes run against a board. It is not safe for
// concurrent use; give each goroutine or process its own.
type Writer struct {
	DB    *sql.DB
	Name  string     // worker/process name recorded in rows
	Rand  *rand.Rand // seeded source for ids and payloads
	Clock func() float64
	seq   int
}

// Exec is what Writer needs from a *sql.DB or *sql.Tx.
type Exec interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (w *Writer) now() float64 {
	if w.Clock != nil {
		return w.Clock()
	}
	return 1.78e9 + float64(w.seq)
}

// NewID returns a task id unique to this writer.
func (w *Writer) NewID(prefix string) string {
	w.seq++
	return fmt.Sprintf("%s-%s-%06d-%04x", prefix, w.Name, w.seq, w.Rand.IntN(1<<16))
}

// Text returns n bytes of pseudo-words from the writer's seeded source.
func Text(r *rand.Rand, n int) string {
	words := []string{"task", "worker", "gateway", "retry", "claim", "deploy", "review", "board", "merge",
		"lint", "ship", "queue", "fix", "agent", "sqlite", "wal", "checkpoint", "note", "plan", "done"}
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.String()[:n]
}

func (w *Writer) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := w.DB.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// CreateTask inserts a task with its creation event and a first run, in one transaction, and
// returns the task id once committed.
func (w *Writer) CreateTask(ctx context.Context) (string, error) {
	id := w.NewID("t")
	now := w.now()
	bodyLen := 80 + w.Rand.IntN(400)
	if w.Rand.IntN(50) == 0 {
		bodyLen = 6000 + w.Rand.IntN(6000) // overflow pages
	}
	err := w.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO tasks(id,title,body,assignee,status,priority,created_at,updated_at,created_by,tenant,workspace,skills,idempotency_key,tags)
			VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			id, Text(w.Rand, 20+w.Rand.IntN(40)), Text(w.Rand, bodyLen), fmt.Sprintf("agent-%d", w.Rand.IntN(12)),
			"todo", w.Rand.IntN(5), now, now, w.Name, fmt.Sprintf("tenant-%d", w.Rand.IntN(4)), "/srv/work",
			`["go","sql"]`, fmt.Sprintf("idem-%s", id), "ops,kanban"); err != nil {
			return err
		}
		runID := "r-" + id
		if _, err := tx.ExecContext(ctx, `INSERT INTO task_runs(id,task_id,worker,status,started_at) VALUES(?,?,?,?,?)`,
			runID, id, w.Name, "queued", now); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO task_events(task_id,run_id,kind,payload,created_at) VALUES(?,?,?,?,?)`,
			id, runID, "created", fmt.Sprintf(`{"by":%q,"note":%q}`, w.Name, Text(w.Rand, 60)), now)
		return err
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

// Claim marks a todo task as claimed by this writer, with an event.
func (w *Writer) Claim(ctx context.Context, id string) error {
	now := w.now()
	return w.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE tasks SET status='running', claimed_by=?, claimed_at=?, claim_expires_at=?, updated_at=? WHERE id=?`,
			w.Name, now, now+900, now, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE task_runs SET status='running' WHERE id=?`, "r-"+id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO task_events(task_id,run_id,kind,payload,created_at) VALUES(?,?,?,?,?)`,
			id, "r-"+id, "claimed", fmt.Sprintf(`{"by":%q}`, w.Name), now)
		return err
	})
}

// Heartbeat extends a claim.
func (w *Writer) Heartbeat(ctx context.Context, id string) error {
	now := w.now()
	_, err := w.DB.ExecContext(ctx, `UPDATE tasks SET heartbeat_at=?, claim_expires_at=? WHERE id=?`, now, now+900, id)
	return err
}

// Complete finishes a task and its run, with a result and an event.
func (w *Writer) Complete(ctx context.Context, id string) error {
	now := w.now()
	return w.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE tasks SET status='done', completed_at=?, result=?, updated_at=? WHERE id=?`,
			now, Text(w.Rand, 40+w.Rand.IntN(200)), now, id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE task_runs SET status='done', finished_at=?, exit_code=0, log=? WHERE id=?`,
			now, Text(w.Rand, 100+w.Rand.IntN(300)), "r-"+id); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO task_events(task_id,run_id,kind,payload,created_at) VALUES(?,?,?,?,?)`,
			id, "r-"+id, "completed", `{"ok":true}`, now)
		return err
	})
}

// Comment adds a comment and an event.
func (w *Writer) Comment(ctx context.Context, id string) error {
	now := w.now()
	return w.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO task_comments(task_id,author,body,created_at) VALUES(?,?,?,?)`,
			id, w.Name, Text(w.Rand, 30+w.Rand.IntN(300)), now); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO task_events(task_id,kind,payload,created_at) VALUES(?,?,?,?)`,
			id, "commented", `{}`, now)
		return err
	})
}

// Step runs one randomly chosen kanban transaction (a harness writer's loop body). It returns the
// id of a task created in this step ("" if the step created none).
func (w *Writer) Step(ctx context.Context, open *[]string) (string, error) {
	if len(*open) == 0 || w.Rand.IntN(3) == 0 {
		id, err := w.CreateTask(ctx)
		if err == nil {
			*open = append(*open, id)
		}
		return id, err
	}
	i := w.Rand.IntN(len(*open))
	id := (*open)[i]
	switch w.Rand.IntN(4) {
	case 0:
		return "", w.Claim(ctx, id)
	case 1:
		return "", w.Heartbeat(ctx, id)
	case 2:
		*open = append((*open)[:i], (*open)[i+1:]...)
		return "", w.Complete(ctx, id)
	default:
		return "", w.Comment(ctx, id)
	}
}
