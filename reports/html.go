package reports

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/kanban-doctor/kanban-doctor/health"
	"github.com/kanban-doctor/kanban-doctor/probe"
)

//go:embed report.html.tmpl
var reportHTMLSource string

var reportHTML = template.Must(template.New("report").Funcs(template.FuncMap{
	"comma": func(n int) string { return humanize.Comma(int64(n)) },
	"bytes": fmtBytes,
	"time":  fmtTime,
	"f1":    func(x float64) string { return fmt.Sprintf("%.1f", x) },
}).Parse(reportHTMLSource))

// SVG geometry of the timeline.
const (
	svgWidth    = 1000.0
	svgHeight   = 230.0
	svgLeft     = 56.0
	svgRight    = 16.0
	svgTop      = 46.0 // burst marks live above this line
	svgBottom   = 40.0 // axis labels below the bars
	svgMarkY    = 14.0
	svgMarkH    = 18.0
	svgMaxTicks = 6
)

type htmlView struct {
	Title         string
	Generated     string
	Version       string
	Env           health.Environment
	ExitCode      int
	NextSteps     []string
	Boards        []htmlBoard
	VerdictCounts []htmlCount
}

type htmlCount struct {
	Label, Class string
	N            int
}

type htmlBoard struct {
	health.Board
	Anchor       string
	VerdictText  string
	VerdictClass string
	CheckLine    string
	FilesLine    string
	BackupsLine  string
	Output       string
	Contents     []htmlContent
	SVG          *svgTimeline
	BurstLines   []string
}

type htmlContent struct {
	Hash, Size, Units, First, Last, Health, HealthClass string
}

type svgTimeline struct {
	W, H, PlotBottom, PlotTop, Left, Right float64
	Bars                                   []svgBar
	Marks                                  []svgMark
	Ticks                                  []svgTick
	MaxLabel                               string
	Caption                                string
}

type svgBar struct {
	X, Y, W, H float64
	Burst      int
	Title      string
}

type svgMark struct {
	N            int
	X, W, LabelX float64
	Y, H, TextY  float64
	Title        string
}

type svgTick struct {
	X, Y1, Y2, LY float64
	Label, Anchor string
}

func verdictClass(v probe.Verdict) string {
	switch v {
	case probe.Healthy:
		return "ok"
	case probe.Corrupt:
		return "bad"
	case probe.Transient, probe.FalsePositive:
		return "warn"
	}
	return "unknown"
}

// ReportHTML renders the health report as one self-contained HTML page: no scripts, no external
// styles, fonts or images; the backup timeline is inline SVG. It prints on paper as well.
func ReportHTML(w io.Writer, r health.Report) error {
	v := htmlView{Title: "kanban-doctor report", Generated: fmtTime(Now()), Version: Version(), Env: r.Environment, ExitCode: r.ExitCode, NextSteps: r.NextSteps}
	counts := map[string]*htmlCount{}
	var order []string
	// Worst first: the board that needs the operator heads the page (stable: discovery order within
	// a severity).
	boards := append([]health.Board(nil), r.Boards...)
	sort.SliceStable(boards, func(i, j int) bool { return boardSeverity(boards[i]) > boardSeverity(boards[j]) })
	for i, b := range boards {
		hb := htmlBoard{Board: b, Anchor: fmt.Sprintf("board-%d", i+1), FilesLine: filesLine(b), BackupsLine: backupsLine(b.Backups)}
		if b.Check != nil {
			hb.VerdictText = string(b.Check.Verdict)
			if b.Check.Class != probe.ClassNone {
				hb.VerdictText += " (" + string(b.Check.Class) + ")"
			}
			hb.VerdictClass = verdictClass(b.Check.Verdict)
			hb.CheckLine = verdictLine(b)
			hb.Output = strings.Join(b.Check.FirstAnswer, "\n")
			c := *b.Check
			c.Findings = onceHints(c.Findings)
			hb.Board.Check = &c
		} else if b.NoDatabase {
			hb.VerdictText, hb.VerdictClass, hb.CheckLine = "no database yet", "unknown", verdictLine(b)
		} else {
			hb.VerdictText, hb.VerdictClass = "not checked", "bad"
		}
		label := hb.VerdictText
		if b.Check != nil {
			label = string(b.Check.Verdict)
		}
		if counts[label] == nil {
			counts[label] = &htmlCount{Label: label, Class: hb.VerdictClass}
			order = append(order, label)
		}
		counts[label].N++
		for _, c := range b.Backups.Contents {
			hc := htmlContent{Hash: shortHash(c), Size: fmtBytes(c.Size), Units: humanize.Comma(int64(c.Units)),
				First: fmtTime(c.First), Last: fmtTime(c.Last), Health: contentHealth(c)}
			if c.HasWAL {
				hc.Size += " + WAL " + fmtBytes(c.WALSize)
			}
			switch {
			case c.Check == nil:
				hc.HealthClass = "muted"
			case c.Check.Error != "":
				hc.HealthClass = "bad"
			default:
				hc.HealthClass = verdictClass(c.Check.Verdict)
			}
			hb.Contents = append(hb.Contents, hc)
		}
		if len(b.Timeline.Buckets) > 0 {
			hb.SVG = buildSVG(b.Timeline)
		}
		for j, bu := range b.Timeline.Bursts {
			hb.BurstLines = append(hb.BurstLines, burstLine(j, bu))
		}
		v.Boards = append(v.Boards, hb)
	}
	for _, l := range order {
		v.VerdictCounts = append(v.VerdictCounts, *counts[l])
	}
	if err := reportHTML.Execute(w, v); err != nil {
		return fmt.Errorf("render html report: %w", err)
	}
	return nil
}

// buildSVG lays out the timeline: one bar per bucket (burst buckets highlighted), one mark per
// burst above the bars, and a time axis.
func buildSVG(tl health.Timeline) *svgTimeline {
	s := &svgTimeline{W: svgWidth, H: svgHeight, Left: svgLeft, Right: svgWidth - svgRight,
		PlotTop: svgTop, PlotBottom: svgHeight - svgBottom}
	n := len(tl.Buckets)
	plotW := s.Right - s.Left
	bw := plotW / float64(n)
	gap := bw * 0.15
	if gap > 3 {
		gap = 3
	}
	max := 0
	for _, b := range tl.Buckets {
		if b.Units > max {
			max = b.Units
		}
	}
	s.MaxLabel = humanize.Comma(int64(max))
	width := time.Duration(tl.BucketSeconds) * time.Second
	plotH := s.PlotBottom - s.PlotTop - 8
	for i, b := range tl.Buckets {
		if b.Units == 0 {
			continue
		}
		h := plotH * float64(b.Units) / float64(max)
		if h < 2 {
			h = 2
		}
		s.Bars = append(s.Bars, svgBar{X: s.Left + float64(i)*bw + gap/2, Y: s.PlotBottom - h, W: bw - gap, H: h, Burst: b.Burst,
			Title: fmt.Sprintf("%s: %s, %s", fmtTime(b.Start), plural(b.Units, "backup", "backups"), fmtBytes(b.Bytes))})
	}
	xOf := func(t time.Time) float64 {
		return s.Left + plotW*float64(t.Sub(tl.Start))/float64(tl.End.Sub(tl.Start))
	}
	for i, bu := range tl.Bursts {
		x0 := xOf(bu.Start.Truncate(width))
		x1 := xOf(bu.End.Truncate(width).Add(width))
		if x1-x0 < 6 {
			x1 = x0 + 6
		}
		s.Marks = append(s.Marks, svgMark{N: i + 1, X: x0, W: x1 - x0, LabelX: (x0 + x1) / 2, Y: svgMarkY, H: svgMarkH,
			TextY: svgMarkY + svgMarkH - 5, Title: burstLine(i, bu)})
	}
	step := (n + svgMaxTicks - 1) / svgMaxTicks
	if step < 1 {
		step = 1
	}
	layout := "15:04:05"
	if tl.End.Sub(tl.Start) > 24*time.Hour || tl.Start.YearDay() != tl.End.YearDay() {
		layout = "01-02 15:04"
	}
	for i := 0; i <= n; i += step {
		t := tl.Start.Add(time.Duration(i) * width)
		anchor := "middle"
		switch {
		case i == 0:
			anchor = "start"
		case i+step > n && i == n:
			anchor = "end"
		}
		s.Ticks = append(s.Ticks, svgTick{X: s.Left + float64(i)*bw, Y1: s.PlotBottom, Y2: s.PlotBottom + 5,
			LY: s.PlotBottom + 19, Label: t.Format(layout), Anchor: anchor})
	}
	s.Caption = fmt.Sprintf("%s .. %s, one bar per %s", fmtTime(tl.Start), fmtTime(tl.End), fmtSeconds(tl.BucketSeconds))
	return s
}

// boardSeverity orders boards for the HTML page: corrupt, not checked, inconclusive, cleared
// suspicions, healthy, no database yet.
func boardSeverity(b health.Board) int {
	switch {
	case b.Check != nil && b.Check.Verdict == probe.Corrupt:
		return 5
	case b.Error != "":
		return 4
	case b.Check != nil && b.Check.Verdict == probe.Inconclusive:
		return 3
	case b.Check != nil && (b.Check.Verdict == probe.Transient || b.Check.Verdict == probe.FalsePositive):
		return 2
	case b.Check != nil:
		return 1
	}
	return 0
}
