package reports

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/health"
	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/probe"
)

// stormBoard generates a real WAL board in dir and, beside it, corrupt backups in bursts: burst i
// holds sizes[i] timestamped copies of the (closed, static) DB, one second apart; lone backups
// sit between the bursts. It returns the DB path and the number of backup units.
func stormBoard(t *testing.T, dir string, sizes []int, lone int) (string, int) {
	t.Helper()
	db := filepath.Join(dir, "kanban.db")
	if err := kanban.Generate(context.Background(), db, kanban.GenOptions{Tasks: 60, Seed: 7, WAL: true}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(db) // Generate has closed every connection: the file is static
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 5, 3, 9, 0, 0, 0, time.Local)
	units := 0
	write := func(name string, at time.Time, body []byte) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
		units++
	}
	for i, n := range sizes {
		start := base.Add(time.Duration(i) * 90 * time.Minute)
		for j := 0; j < n; j++ {
			// Seven gateways backing up in the same second: .1 ... .6 collision suffixes.
			at := start.Add(time.Duration(j/7) * time.Second)
			write(board.FormatTimestamped("kanban.db", at, j%7), at, data)
		}
	}
	for k := 0; k < lone; k++ {
		at := base.Add(time.Duration(k)*90*time.Minute + 45*time.Minute)
		// A distinct content: the same DB with one byte of unused tail changed is still a copy
		// of the same size, so the lone backups are different bytes of the same size.
		body := append([]byte(nil), data...)
		body[len(body)-1] ^= byte(k + 1)
		write(board.FormatTimestamped("kanban.db", at, 0), at, body)
	}
	return db, units
}

// TestStormHTMLMarksEveryBurst is acceptance 2: a real board after a storm of four bursts (plus
// lone backups that are no burst) gives an HTML report whose SVG timeline has exactly one mark per
// burst, highlights only burst bars, and shows the probe's verdict.
func TestStormHTMLMarksEveryBurst(t *testing.T) {
	dir := t.TempDir()
	sizes := []int{12, 5, 30, 3}
	db, units := stormBoard(t, dir, sizes, 3)
	boards, err := board.Discover(db, board.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := health.Build(context.Background(), boards, health.Options{Check: probe.Check})
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.Boards[0].Backups.Units; got != units {
		t.Fatalf("inventory has %d units, want %d", got, units)
	}
	if got := rep.Boards[0].Backups.DistinctContents; got != 4 {
		t.Errorf("distinct contents = %d, want 4 (one burst content, three lone ones)", got)
	}
	var html bytes.Buffer
	if err := ReportHTML(&html, rep); err != nil {
		t.Fatal(err)
	}
	svgs := svgOf(t, html.String())
	if len(svgs) != 1 {
		t.Fatalf("%d timeline SVGs, want 1", len(svgs))
	}
	var marks []*svgNode
	stormBars, allBars, stormUnits := 0, 0, 0
	svgs[0].walk(func(n *svgNode) {
		class := n.attr("class")
		switch {
		case n.XMLName.Local == "g" && class == "burst-mark":
			marks = append(marks, n)
		case n.XMLName.Local == "rect" && strings.HasPrefix(class, "bar"):
			allBars++
			if strings.Contains(class, "storm") {
				stormBars++
			}
		}
	})
	if len(marks) != len(sizes) {
		t.Fatalf("%d burst marks, want %d (one per burst)", len(marks), len(sizes))
	}
	for i, m := range marks {
		var title string
		m.walk(func(n *svgNode) {
			if n.XMLName.Local == "title" {
				title = n.Text
			}
		})
		want := regexp.MustCompile(`^burst \d+: .*, (\d+) backups`)
		sm := want.FindStringSubmatch(title)
		if sm == nil || sm[1] != itoa(sizes[i]) {
			t.Errorf("mark %d title %q, want %d backups", i+1, title, sizes[i])
		}
		stormUnits += sizes[i]
	}
	if stormBars == 0 || stormBars == allBars {
		t.Errorf("%d of %d bars highlighted as storm; want the burst bars only", stormBars, allBars)
	}
	if !strings.Contains(html.String(), `data-verdict="healthy"`) || !strings.Contains(html.String(), ">healthy</span>") {
		t.Errorf("HTML does not show the verdict healthy")
	}
	assertSelfContained(t, html.String())

	// The same report as JSON matches the schema.
	var js bytes.Buffer
	if err := JSON(&js, "report", rep); err != nil {
		t.Fatal(err)
	}
	for _, e := range loadSchema(t, "report").validate(decodeJSON(t, js.Bytes())) {
		t.Error(e)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
