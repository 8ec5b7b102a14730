// Package kanban knows the hermes kanban board: its schema, the pragmas its writers use, the
// transactions they run, and how to generate a realistic board for fixtures, tests and benchmarks.
package kanban

// Tables are the seven hermes tables, in creation order.
var Tables = []string{"tasks", "task_links", "task_comments", "task_events", "task_runs", "task_attachments", "kanban_notify_subs"}

// Schema is the hermes kanban schema (seven tables, fourteen indexes).
const Schema = `
CREATE TABLE IF NOT EXISTS tasks (
  id TEXT PRIMARY KEY,
  title TEXT NOT NULL,
  body TEXT,
  assignee TEXT,
  status TEXT NOT NULL DEFAULT 'todo',
  priority INTEGER NOT NULL DEFAULT 0,
  created_at REAL NOT NULL,
  updated_at REAL,
  created_by TEXT,
  claimed_by TEXT,
  claimed_at REAL,
  claim_expires_at REAL,
  heartbeat_at REAL,
  completed_at REAL,
  result TEXT,
  tenant TEXT,
  workspace TEXT,
  skills TEXT,
  max_runtime_seconds INTEGER,
  idempotency_key TEXT,
  parent_id TEXT,
  tags TEXT
);
CREATE TABLE IF NOT EXISTS task_links (
  parent_id TEXT NOT NULL,
  child_id TEXT NOT NULL,
  kind TEXT NOT NULL DEFAULT 'blocks',
  created_at REAL NOT NULL,
  PRIMARY KEY (parent_id, child_id)
);
CREATE TABLE IF NOT EXISTS task_comments (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  task_id TEXT NOT NULL,
  author TEXT,
  body TEXT NOT NULL,
  created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS task_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  task_id TEXT NOT NULL,
  run_id TEXT,
  kind TEXT NOT NULL,
  payload TEXT,
  created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS task_runs (
  id TEXT PRIMARY KEY,
  task_id TEXT NOT NULL,
  worker TEXT,
  status TEXT NOT NULL,
  started_at REAL NOT NULL,
  finished_at REAL,
  exit_code INTEGER,
  log TEXT
);
CREATE TABLE IF NOT EXISTS task_attachments (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  task_id TEXT NOT NULL,
  name TEXT NOT NULL,
  mime TEXT,
  size INTEGER,
  content BLOB,
  created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS kanban_notify_subs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  task_id TEXT,
  channel TEXT NOT NULL,
  target TEXT NOT NULL,
  events TEXT,
  created_at REAL NOT NULL,
  UNIQUE (channel, target, task_id)
);
CREATE INDEX IF NOT EXISTS idx_tasks_status ON tasks(status);
CREATE INDEX IF NOT EXISTS idx_tasks_assignee ON tasks(assignee, status);
CREATE INDEX IF NOT EXISTS idx_tasks_priority ON tasks(status, priority DESC, created_at);
CREATE INDEX IF NOT EXISTS idx_tasks_claim ON tasks(claimed_by, claim_expires_at);
CREATE INDEX IF NOT EXISTS idx_tasks_tenant ON tasks(tenant);
CREATE INDEX IF NOT EXISTS idx_tasks_idempotency ON tasks(idempotency_key);
CREATE INDEX IF NOT EXISTS idx_links_child ON task_links(child_id);
CREATE INDEX IF NOT EXISTS idx_comments_task ON task_comments(task_id, created_at);
CREATE INDEX IF NOT EXISTS idx_events_task ON task_events(task_id, created_at);
CREATE INDEX IF NOT EXISTS idx_events_run ON task_events(run_id, id);
CREATE INDEX IF NOT EXISTS idx_runs_task ON task_runs(task_id);
CREATE INDEX IF NOT EXISTS idx_runs_status ON task_runs(status, started_at);
CREATE INDEX IF NOT EXISTS idx_attachments_task ON task_attachments(task_id);
CREATE INDEX IF NOT EXISTS idx_notify_task ON kanban_notify_subs(task_id);
`

// WriterPragmas are the pragmas hermes writers set on every connection.
var WriterPragmas = []string{
	"busy_timeout(120000)",
	"synchronous(FULL)",
	"wal_autocheckpoint(100)",
	"journal_size_limit(8388608)",
	"foreign_keys(1)",
	"secure_delete(1)",
	"cell_size_check(1)",
}

// HarnessWriterPragmas are WriterPragmas with automatic checkpoints off, so a harness decides when
// checkpoints happen.
func HarnessWriterPragmas() []string {
	out := make([]string, 0, len(WriterPragmas))
	for _, p := range WriterPragmas {
		if p == "wal_autocheckpoint(100)" {
			p = "wal_autocheckpoint(0)"
		}
		out = append(out, p)
	}
	return out
}
