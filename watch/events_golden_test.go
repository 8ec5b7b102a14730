package watch

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var updateEvents = flag.Bool("update-events", false, "rewrite testdata/events.golden.jsonl")

// TestEventLinesGolden pins the event stream's contract (one JSON object per line, the field
// names other programs parse) with one event of every kind, rendered by the emitter itself.
func TestEventLinesGolden(t *testing.T) {
	at := time.Date(2026, 5, 10, 3, 0, 0, 0, time.UTC)
	exit2, exit0 := 2, 0
	events := []Event{
		{Time: at, Event: EventRescan, Board: "default", DB: "/h/kanban.db", Reason: "initial", Found: 3, Total: 3},
		{Time: at, Event: EventBackupCreated, Board: "default", DB: "/h/kanban.db", Unit: "kanban.db.corrupt.20260510_030000.bak", Generation: "timestamped", Via: "fsnotify", Seen: 4},
		{Time: at, Event: EventStormStarted, Board: "default", DB: "/h/kanban.db", Unit: "kanban.db.corrupt.20260510_030000.7.bak", Storm: 1, Units: 11, Threshold: 10, WindowMS: 60000, Seen: 11},
		{Time: at, Event: EventVerdict, Board: "default", DB: "/h/kanban.db", Storm: 1, Verdict: "corrupt", Class: "index", ExitCode: &exit2, Action: "verify"},
		{Time: at, Event: EventVerdict, Board: "beta", DB: "/h/kanban/boards/beta/kanban.db", Reason: ReasonStartup, Verdict: "healthy", ExitCode: &exit0, Action: "verify", DurationMS: 87},
		{Time: at, Event: EventContained, Board: "default", DB: "/h/kanban.db", Unit: "kanban.db.corrupt.20260510_030001.bak", Kept: "kanban.db.corrupt.20260510_030000.bak", Action: "hardlink", Bytes: 1048576},
		{Time: at, Event: EventWALGrowth, Board: "default", DB: "/h/kanban.db", Bytes: 52428800, WALBytes: 52428800, WALThreshold: 41943040},
		{Time: at, Event: EventStormEnded, Board: "default", DB: "/h/kanban.db", Storm: 1, Units: 40, Started: "2026-05-10T02:59:00Z", DurationMS: 60000},
	}
	var buf bytes.Buffer
	em := &emitter{w: &buf}
	for _, e := range events {
		em.emit(e)
	}
	kinds := map[string]bool{}
	for i, line := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %d is not one JSON object: %v", i+1, err)
		}
		for _, k := range []string{"time", "event", "board", "db"} {
			if _, ok := m[k]; !ok {
				t.Errorf("line %d lacks %q", i+1, k)
			}
		}
		if _, ok := m["total"]; ok != (m["event"] == EventRescan) {
			t.Errorf("line %d: total present=%v for %v (only rescan carries it)", i+1, ok, m["event"])
		}
		kinds[m["event"].(string)] = true
	}
	if len(kinds) != 7 {
		t.Errorf("event kinds rendered: %v, want all 7", kinds)
	}
	path := filepath.Join("testdata", "events.golden.jsonl")
	if *updateEvents {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update-events to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("event lines changed:\n got: %s\nwant: %s", buf.Bytes(), want)
	}
}
