package repro

import (
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// JUnit XML, in the shape of the JUnit schema Jenkins, GitLab and GitHub read (junit-10.xsd):
// <testsuites> of <testsuite> (properties, testcase, system-out), each testcase with optional
// <failure>/<error>. Each cell is one suite holding one test case, since the schema only allows
// <properties> on a suite; the cell's counts are those properties.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Hostname   string          `xml:"hostname,attr"`
	ID         int             `xml:"id,attr"`
	Package    string          `xml:"package,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
	SystemOut  string          `xml:"system-out"`
	SystemErr  string          `xml:"system-err"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string         `xml:"name,attr"`
	Classname string         `xml:"classname,attr"`
	Time      string         `xml:"time,attr"`
	Errors    []junitProblem `xml:"error"`
	Failures  []junitProblem `xml:"failure"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes res as JUnit XML: one test case per cell, the --ci failures that name the
// cell as <failure>, a harness error as <error>, the cell's counts as properties and its notes as
// system-out. --ci failures that name no cell that ran ("injected/doctor: not run") go to one
// more case, repro/ci.
func WriteJUnit(w io.Writer, res Result) error {
	host, _ := os.Hostname()
	stamp := time.Now().UTC().Format("2006-01-02T15:04:05")
	var fails []string
	if res.CI != nil {
		fails = res.CI.Failures
	}
	used := make([]bool, len(fails))
	out := junitSuites{Name: "kanban-doctor repro", Time: secs(res.Seconds)}
	for i, c := range res.Cells {
		tc := junitCase{Name: c.Name(), Classname: "repro." + c.Scenario, Time: secs(c.Seconds)}
		for j, f := range fails {
			if strings.HasPrefix(f, c.Name()+":") {
				used[j] = true
				if c.Error != "" && f == c.Name()+": "+c.Error {
					continue // reported as the error below
				}
				tc.Failures = append(tc.Failures, junitProblem{Message: firstLine(f), Type: "ci", Text: f})
			}
		}
		if c.Error != "" {
			tc.Errors = append(tc.Errors, junitProblem{Message: firstLine(c.Error), Type: "harness", Text: c.Error})
		}
		s := junitSuite{Name: "repro/" + c.Name(), Tests: 1, Time: tc.Time, Timestamp: stamp, Hostname: host, ID: i,
			Package: "repro", Properties: cellProperties(c), Cases: []junitCase{tc}, SystemOut: strings.Join(c.Notes, "\n")}
		if len(tc.Failures) > 0 {
			s.Failures = 1
		}
		if len(tc.Errors) > 0 {
			s.Errors = 1
		}
		out.Suites = append(out.Suites, s)
	}
	var rest []string
	for j, f := range fails {
		if !used[j] {
			rest = append(rest, f)
		}
	}
	if len(rest) > 0 {
		tc := junitCase{Name: "repro/ci", Classname: "repro.ci", Time: "0"}
		for _, f := range rest {
			tc.Failures = append(tc.Failures, junitProblem{Message: firstLine(f), Type: "ci", Text: f})
		}
		out.Suites = append(out.Suites, junitSuite{Name: "repro/ci", Tests: 1, Failures: 1, Time: "0", Timestamp: stamp,
			Hostname: host, ID: len(out.Suites), Package: "repro", Cases: []junitCase{tc}})
	}
	for _, s := range out.Suites {
		out.Tests += s.Tests
		out.Failures += s.Failures
		out.Errors += s.Errors
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func cellProperties(c Cell) []junitProperty {
	p := func(name string, v any) junitProperty { return junitProperty{Name: name, Value: fmt.Sprint(v)} }
	props := []junitProperty{
		p("checks", c.Checks), p("corrupt_verdicts", c.CorruptVerdicts), p("inconclusive", c.Inconclusive),
		p("false_positives", c.FalsePositives), p("false_negatives", c.FalseNegatives), p("unscored", c.Unscored),
		p("guard_errors", c.GuardErrors), p("guard_damage", c.GuardDamage), p("repaired", c.Repaired),
		p("repair_latency_ms", c.RepairLatencyMs), p("backups_written", c.BackupsWritten), p("backups_pruned", c.BackupsPruned),
		p("backups_left", c.BackupsLeft), p("backups_corrupt", c.BackupsCorrupt), p("backup_bytes", c.BackupBytes),
		p("lost_commits", c.LostCommits), p("truth_integrity_ok", c.TruthOK), p("p50_ms", c.P50ms), p("p99_ms", c.P99ms),
		p("guard_p50_ms", c.GuardP50ms), p("guard_p99_ms", c.GuardP99ms),
	}
	for _, code := range slices.Sorted(maps.Keys(c.WriterErrors)) {
		props = append(props, p("writer_errors "+code, c.WriterErrors[code]))
	}
	return props
}

func secs(s float64) string { return fmt.Sprintf("%.3f", s) }
