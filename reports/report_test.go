package reports

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/kanban-doctor/kanban-doctor/health"
	"github.com/kanban-doctor/kanban-doctor/probe"
)

// TestReportCapsLongContentLists: a storm of hundreds of distinct backups stays readable as text
// and Markdown (capped, with a count of the rest); HTML and JSON keep every content.
func TestReportCapsLongContentLists(t *testing.T) {
	pinGolden(t)
	rep := goldenReport()
	b := &rep.Boards[0]
	var cs []health.Content
	for i := 0; i < 467; i++ {
		cs = append(cs, health.Content{SHA256: fmt.Sprintf("%064x", i+1), Size: 4 << 20, Units: 1, Bytes: 4 << 20,
			First: b.Timeline.Start, Last: b.Timeline.Start, Example: fmt.Sprintf("/hermes/x%d.bak", i),
			Check: &health.ContentCheck{Verdict: probe.Healthy, Findings: []probe.Finding{}}})
	}
	b.Backups.Contents, b.Backups.DistinctContents = cs, len(cs)
	var txt, md, html bytes.Buffer
	if err := ReportText(&txt, rep, false); err != nil {
		t.Fatal(err)
	}
	if err := ReportMarkdown(&md, rep); err != nil {
		t.Fatal(err)
	}
	if err := ReportHTML(&html, rep); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(txt.String(), "1 unit x 4.0 MiB"); n != textContentsMax {
		t.Errorf("text lists %d contents, want %d", n, textContentsMax)
	}
	if !strings.Contains(txt.String(), "... 447 more") {
		t.Errorf("text does not count the rest:\n%s", txt.String())
	}
	if !strings.Contains(md.String(), "417 more contents") {
		t.Errorf("Markdown does not count the rest")
	}
	if n := strings.Count(html.String(), "<tr><td><code>00000000"); n != 467 {
		t.Errorf("HTML lists %d contents, want all 467", n)
	}
}
