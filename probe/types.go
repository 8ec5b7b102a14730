// Package probe checks a kanban board without crying wolf: it classifies busy and locked apart
// from corruption, re-verifies a suspicious answer on the same connection, confirms it from a clean
// child process before declaring corruption, and finds the hazards that cause false verdicts.
package probe

import (
	"log/slog"
	"time"

	"github.com/kanban-doctor/kanban-doctor/internal/exitcode"
)

// Verdict is the outcome of a check. These names are a contract (JSON, README).
type Verdict string

const (
	Healthy       Verdict = "healthy"        // first answer ok
	Transient     Verdict = "transient"      // first answer bad, cleared by a same-connection re-check
	FalsePositive Verdict = "false-positive" // bad on this connection, a clean child process says ok
	Corrupt       Verdict = "corrupt"        // confirmed by a clean child process
	Inconclusive  Verdict = "inconclusive"   // busy, locked, timed out, cancelled: no verdict
)

// ExitCode maps a verdict to the exit-code contract.
func (v Verdict) ExitCode() int {
	switch v {
	case Healthy:
		return exitcode.OK
	case Transient, FalsePositive:
		return exitcode.Warning
	case Corrupt:
		return exitcode.Corrupt
	}
	return exitcode.Inconclusive
}

// Class is the kind of corruption, which decides the fix.
type Class string

const (
	ClassNone         Class = ""
	ClassIndex        Class = "index"          // REINDEX fixes it
	ClassFreelist     Class = "freelist"       // VACUUM fixes it
	ClassBtree        Class = "btree"          // table b-tree damage: salvage needed
	ClassNotADatabase Class = "not-a-database" // header destroyed or not SQLite at all
	ClassTruncated    Class = "truncated"      // file shorter than its page count
)

// Finding is one thing a check found. Hint is a runnable command that fixes it, when one exists.
type Finding struct {
	Code     string `json:"code"`
	Severity string `json:"severity"` // "error", "warning", "info"
	Message  string `json:"message"`
	Hint     string `json:"hint,omitempty"`
}

// Hazard is a condition around a live board that produces false verdicts or lost commits. Hazards
// are reported beside the verdict and never change it.
type Hazard struct {
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Pids    []int    `json:"pids,omitempty"`
	Paths   []string `json:"paths,omitempty"`
}

// Options for Check. The zero value is a quick_check with two same-connection re-checks and a
// child confirmation.
type Options struct {
	Full     bool          // integrity_check instead of quick_check
	Reverify int           // same-connection re-checks on a suspicious answer; 0 means 2, negative none
	Backoff  time.Duration // before the first re-check (doubling); 0 means 50ms
	Timeout  time.Duration // busy timeout and bound of each check pass (first, re-checks, child); 0 means 30s
	// Static says the file is not a live board (a backup or a copy): no hazard scan.
	Static bool
	// NoChild skips the child confirmation (for the child itself). A suspicious answer that is not
	// confirmed stays inconclusive, never corrupt.
	NoChild bool
	// Params are extra SQLite URI parameters for the probe connection. Only the repro harness sets
	// them, to reproduce a compromised probe (e.g. "immutable=1"); Check never trusts such a
	// connection's bad answer without the clean child.
	Params []string
	Logger *slog.Logger // nil: silent
	// Backup writes a backup-API copy as <db>.corrupt.<16 hex>.bak after a confirmed corrupt
	// verdict (never for transient or false-positive).
	Backup bool
	// Workers is how many connections the first --full pass may use (0: up to 4, by GOMAXPROCS;
	// 1: one whole-database integrity_check).
	Workers int
	// WALLimit is the -wal size above which the wal-large hazard is reported (0: 40 MB).
	WALLimit int64
	// NoTrial skips the trial fix on a private copy that confirms an index or freelist class.
	NoTrial bool
}

// Result is what Check found for one board.
type Result struct {
	Name     string    `json:"name"`
	DB       string    `json:"db"`
	Verdict  Verdict   `json:"verdict"`
	Class    Class     `json:"class"`
	Findings []Finding `json:"findings"`
	Hazards  []Hazard  `json:"hazards"`
	// Mode is "quick_check" or "integrity_check".
	Mode string `json:"mode"`
	// FirstAnswer is what the first check said (capped), Rechecks how many same-connection
	// re-checks ran, Child what the clean child said ("" when it did not run).
	FirstAnswer []string      `json:"first_answer,omitempty"`
	Rechecks    int           `json:"rechecks"`
	Child       string        `json:"child,omitempty"`
	Duration    time.Duration `json:"duration_ns"`
	Backup      string        `json:"backup"`
}
