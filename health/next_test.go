package health

import (
	"strings"
	"testing"

	"github.com/kanban-doctor/kanban-doctor/probe"
)

func TestNextSteps(t *testing.T) {
	corrupt := probe.Result{Verdict: probe.Corrupt, Class: probe.ClassIndex, Findings: []probe.Finding{
		{Code: "index-entries", Hint: "other"},
		{Code: "corrupt-index", Hint: "sqlite3 /h/kanban/boards/ops/kanban.db 'REINDEX;'"},
	}}
	busy := probe.Result{Verdict: probe.Inconclusive}
	healthy := probe.Result{Verdict: probe.Healthy}
	ok := &ContentCheck{Verdict: probe.Healthy}
	r := Report{Boards: []Board{
		{Name: "default", DB: "/h/kanban.db", Check: &healthy, Backups: Backups{Units: 5, DistinctContents: 2, Checked: true, HealthyContents: 2,
			Contents: []Content{{Units: 4, Bytes: 4 << 20, Check: ok}, {Units: 1, Bytes: 1 << 20, Check: ok}}}},
		{Name: "ops", DB: "/h/kanban/boards/ops/kanban.db", Check: &corrupt},
		{Name: "gone", DB: "/h/kanban/boards/gone/kanban.db", Error: "check /h/kanban/boards/gone/kanban.db: permission denied\nmore"},
		{Name: "busy one", DB: "/h/kanban/boards/busy one/kanban.db", Check: &busy},
		{Name: "new", DB: "/h/kanban/boards/new/kanban.db", NoDatabase: true},
	}}
	got := strings.Join(NextSteps(r), "\n")
	want := strings.Join([]string{
		"1 board needs a fix:",
		"  ops (index): `sqlite3 /h/kanban/boards/ops/kanban.db 'REINDEX;'`",
		"gone: could not be checked (check /h/kanban/boards/gone/kanban.db: permission denied)",
		"busy one: no verdict (busy or locked): run `kanban-doctor verify '/h/kanban/boards/busy one/kanban.db'` again when its writers are quiet",
		"default: 5 backups hold 2 distinct contents, every one a healthy database: the backups were false alarms; 3.0 MiB reclaimable with `kanban-doctor dedupe-backups --apply /h`",
	}, "\n")
	if got != want {
		t.Errorf("next steps:\n%s\nwant:\n%s", got, want)
	}
	if steps := NextSteps(Report{Boards: []Board{{Name: "default", Check: &healthy}}}); len(steps) != 0 || steps == nil {
		t.Errorf("a healthy board with no backups: %q, want an empty list", steps)
	}
}
