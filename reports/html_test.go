package reports

import (
	"bytes"
	"encoding/xml"
	"regexp"
	"strings"
	"testing"
)

// svgOf extracts the timeline SVG from an HTML report and parses it as XML.
func svgOf(t *testing.T, html string) []*svgNode {
	t.Helper()
	re := regexp.MustCompile(`(?s)<svg class="timeline".*?</svg>`)
	var out []*svgNode
	for _, m := range re.FindAllString(html, -1) {
		var n svgNode
		if err := xml.Unmarshal([]byte(m), &n); err != nil {
			t.Fatalf("timeline SVG is not well-formed XML: %v\n%s", err, m)
		}
		out = append(out, &n)
	}
	return out
}

type svgNode struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Nodes   []*svgNode `xml:",any"`
	Text    string     `xml:",chardata"`
}

func (n *svgNode) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// walk visits n and all its descendants.
func (n *svgNode) walk(f func(*svgNode)) {
	f(n)
	for _, c := range n.Nodes {
		c.walk(f)
	}
}

// assertSelfContained fails when the page would fetch anything: scripts, external styles, fonts,
// images or any http(s) URL.
func assertSelfContained(t *testing.T, html string) {
	t.Helper()
	for _, bad := range []string{"<script", "<link", "<img", "<iframe", "@import", "url(", "src=", "http://", "https://"} {
		s := html
		if bad == "http://" {
			s = strings.ReplaceAll(s, `xmlns="http://www.w3.org/2000/svg"`, "") // a namespace, not a fetch
		}
		if strings.Contains(s, bad) {
			t.Errorf("HTML is not self-contained: contains %q", bad)
		}
	}
}

// TestGoldenHTMLTimeline parses the golden report's SVG: three bursts, three marks, and the page
// fetches nothing.
func TestGoldenHTMLTimeline(t *testing.T) {
	pinGolden(t)
	var buf bytes.Buffer
	if err := ReportHTML(&buf, goldenReport()); err != nil {
		t.Fatal(err)
	}
	svgs := svgOf(t, buf.String())
	if len(svgs) != 1 { // only the board with backups has a timeline
		t.Fatalf("%d timeline SVGs, want 1", len(svgs))
	}
	marks := 0
	svgs[0].walk(func(n *svgNode) {
		if n.XMLName.Local == "g" && n.attr("class") == "burst-mark" {
			marks++
		}
	})
	if want := len(goldenReport().Boards[0].Timeline.Bursts); marks != want || want != 3 {
		t.Errorf("%d burst marks, want %d (3)", marks, want)
	}
	for _, v := range []string{"false-positive", "corrupt"} {
		if !strings.Contains(buf.String(), `data-verdict="`+v+`"`) {
			t.Errorf("verdict %s missing", v)
		}
	}
	assertSelfContained(t, buf.String())
}
