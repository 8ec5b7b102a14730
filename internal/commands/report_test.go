package commands

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/exitcode"
	"github.com/kanban-doctor/kanban-doctor/internal/fixture"
	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// runCLI runs kanban-doctor in-process and returns its exit status, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), append([]string{"kanban-doctor"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// reportStorm makes a real WAL board with two bursts of identical backups and one lone backup of
// a different content.
func reportStorm(t *testing.T) (dir, db string) {
	t.Helper()
	dir = t.TempDir()
	db = filepath.Join(dir, "kanban.db")
	if err := kanban.Generate(context.Background(), db, kanban.GenOptions{Tasks: 40, Seed: 3, WAL: true}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(db) // no connection is open: Generate closed it
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.db")
	if err := kanban.Generate(context.Background(), other, kanban.GenOptions{Tasks: 41, Seed: 4}); err != nil {
		t.Fatal(err)
	}
	otherData, err := os.ReadFile(other)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 5, 3, 9, 0, 0, 0, time.Local)
	put := func(at time.Time, seq int, body []byte) {
		p := filepath.Join(dir, board.FormatTimestamped("kanban.db", at, seq))
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 6; i++ {
		put(base, i, data)
		put(base.Add(3*time.Hour), i, data)
	}
	put(base.Add(time.Hour), 0, otherData)
	return dir, db
}

// snapshot lists every file in dir with its SHA-256, to prove a command wrote nothing there.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(data)
		m[e.Name()] = hex.EncodeToString(s[:])
	}
	return m
}

func diffSnapshots(before, after map[string]string) []string {
	var d []string
	for k, v := range before {
		if after[k] != v {
			d = append(d, "changed or removed: "+k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			d = append(d, "new: "+k)
		}
	}
	sort.Strings(d)
	return d
}

func TestReportHealthyStormJSON(t *testing.T) {
	dir, db := reportStorm(t)
	before := snapshot(t, dir)
	code, out, stderr := runCLI(t, "report", "--json", "--check-contents", db)
	if code != exitcode.OK {
		t.Fatalf("exit %d, want 0; stderr %q", code, stderr)
	}
	if stderr != "" {
		t.Errorf("stderr not empty off a terminal: %q", stderr)
	}
	var doc struct {
		Tool, Command string
		Environment   struct {
			SQLiteVersion string `json:"sqlite_version"`
		}
		ExitCode int `json:"exit_code"`
		Boards   []struct {
			Verdict     string
			JournalMode string `json:"journal_mode"`
			Backups     struct {
				Units            int
				DistinctContents int  `json:"distinct_contents"`
				Checked          bool `json:"contents_checked"`
				HealthyContents  int  `json:"healthy_contents"`
			}
			Timeline struct {
				Bursts []struct{ Units int }
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, out)
	}
	if doc.Tool != "kanban-doctor" || doc.Command != "report" || !strings.HasPrefix(doc.Environment.SQLiteVersion, "3.") {
		t.Errorf("envelope = %+v", doc)
	}
	if len(doc.Boards) != 1 {
		t.Fatalf("%d boards, want 1", len(doc.Boards))
	}
	b := doc.Boards[0]
	if b.Verdict != "healthy" || b.JournalMode != "wal" {
		t.Errorf("verdict %q journal %q, want healthy wal", b.Verdict, b.JournalMode)
	}
	if b.Backups.Units != 13 || b.Backups.DistinctContents != 2 || !b.Backups.Checked || b.Backups.HealthyContents != 2 {
		t.Errorf("backups = %+v, want 13 units, 2 distinct contents, both checked healthy", b.Backups)
	}
	if len(b.Timeline.Bursts) != 2 || b.Timeline.Bursts[0].Units != 6 || b.Timeline.Bursts[1].Units != 6 {
		t.Errorf("bursts = %+v, want two of 6", b.Timeline.Bursts)
	}
	// Diagnosis never writes: the DB and every backup are byte-identical and no backup gained a
	// companion. The only new files allowed are the live board's own -wal/-shm, which SQLite
	// creates for any reader of a WAL database (a hermes process does the same).
	after := snapshot(t, dir)
	delete(after, "kanban.db-wal")
	delete(after, "kanban.db-shm")
	if d := diffSnapshots(before, after); len(d) > 0 {
		t.Errorf("report changed the board directory: %v", d)
	}
}

func TestReportHTMLAndText(t *testing.T) {
	dir, _ := reportStorm(t)
	outDir := t.TempDir()
	html := filepath.Join(outDir, "report.html")
	code, out, stderr := runCLI(t, "report", "--html", html, dir)
	if code != exitcode.OK {
		t.Fatalf("exit %d; stderr %q", code, stderr)
	}
	for _, want := range []string{"verdict    healthy", "burst 1:", "burst 2:", "13 units"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("colour codes off a terminal:\n%q", out)
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatalf("HTML not written: %v", err)
	}
	for _, want := range []string{"<!DOCTYPE html>", `data-verdict="healthy"`, `class="burst-mark" data-burst="2"`, "@media print"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if strings.Contains(string(page), "<script") {
		t.Errorf("HTML has a script")
	}
	// Written atomically: no temp file is left beside it.
	entries, _ := os.ReadDir(outDir)
	if len(entries) != 1 {
		t.Errorf("output dir holds %d entries, want only report.html", len(entries))
	}
}

func TestReportMarkdownCorruptBoard(t *testing.T) {
	db := fixture.CopyTo(t, "index-desync")
	code, out, stderr := runCLI(t, "report", "--markdown", "--full", db)
	if code != exitcode.Corrupt {
		t.Fatalf("exit %d, want %d; stderr %q\n%s", code, exitcode.Corrupt, stderr, out)
	}
	for _, want := range []string{"# kanban-doctor report", "| SQLite | 3.", "**corrupt (index)**", "### integrity_check output",
		"missing from index idx_tasks_status", "### Findings", "fix: `"} {
		if !strings.Contains(out, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, out)
		}
	}
}

func TestReportUsageAndBadInput(t *testing.T) {
	dir := t.TempDir()
	notdb := filepath.Join(dir, "notes.db")
	os.WriteFile(notdb, bytes.Repeat([]byte("not a database "), 10), 0o644)
	cases := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"json and markdown", []string{"report", "--json", "--markdown", dir}, exitcode.Usage, "exclusive"},
		{"html to stdout with json", []string{"report", "--html", "-", "--json", dir}, exitcode.Usage, "cannot be combined"},
		{"bad min-burst", []string{"report", "--min-burst", "1", dir}, exitcode.Usage, "--min-burst"},
		{"missing path", []string{"report", filepath.Join(dir, "missing")}, exitcode.Operational, "missing: no such file or directory"},
		{"not a database", []string{"report", notdb}, exitcode.Operational, "notes.db: not a SQLite database"},
		{"html into a missing directory", []string{"report", "--html", filepath.Join(dir, "no", "r.html"), notdb}, exitcode.Operational, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, c.code, stderr)
			}
			if !strings.Contains(stderr, c.stderr) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr %q, want one line containing %q", stderr, c.stderr)
			}
		})
	}
}

// TestReportCancelledIsInconclusive: an interrupted report (SIGINT/SIGTERM cancel the context)
// exits 3, never 2 or 8.
func TestReportCancelledIsInconclusive(t *testing.T) {
	dir, _ := reportStorm(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	code := Run(ctx, []string{"kanban-doctor", "report", dir}, &out, &errb)
	if code != exitcode.Inconclusive {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitcode.Inconclusive, errb.String())
	}
	if !strings.Contains(errb.String(), "context canceled") || strings.Count(errb.String(), "\n") != 1 {
		t.Errorf("stderr %q, want one line saying the context was cancelled", errb.String())
	}
}

// TestReportOddNamesAndSymlinks: a board in a directory with URI-special characters, reached
// through a symlink, is reported like any other (SQLite keeps -wal/-shm beside the target).
func TestReportOddNamesAndSymlinks(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "we ird?#%&= ü")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "kanban.db")
	if err := kanban.Generate(context.Background(), db, kanban.GenOptions{Tasks: 20, Seed: 9, WAL: true}); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "link.db")
	if err := os.Symlink(db, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{db, dir, link} {
		code, out, stderr := runCLI(t, "report", "--json", p)
		if code != exitcode.OK {
			t.Fatalf("%s: exit %d; stderr %q", p, code, stderr)
		}
		var doc struct {
			Boards []struct{ DB, Verdict string }
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Boards) != 1 {
			t.Fatalf("%s: bad JSON %v: %s", p, err, out)
		}
		if doc.Boards[0].Verdict != "healthy" || doc.Boards[0].DB != db {
			t.Errorf("%s: board %+v, want healthy at %s", p, doc.Boards[0], db)
		}
	}
}

// TestReportUnderLiveWriters: three real writer processes commit (with PASSIVE/FULL/RESTART/
// TRUNCATE checkpoints) while report runs again and again, hashing the backups and checking the
// board: every verdict is healthy, and afterwards every commit the writers' ledgers recorded is in
// the board (the report disturbed nobody).
func TestReportUnderLiveWriters(t *testing.T) {
	dir, db := reportStorm(t)
	ctx := context.Background()
	fleet, err := kanban.StartWriters(ctx, db, 3, t.TempDir(), kanban.WriterOptions{Seed: 5, AutoCheckpoint: 0,
		CheckpointEvery: 20, CheckpointMode: "mixed"})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Stop()
	for i := 0; i < 5; i++ {
		time.Sleep(150 * time.Millisecond) // let the writers commit and checkpoint in between
		code, out, stderr := runCLI(t, "report", "--json", "--check-contents", dir)
		var doc struct {
			Boards []struct {
				Verdict string
				Backups struct {
					Units int
				}
			}
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Boards) != 1 {
			t.Fatalf("run %d: exit %d, bad JSON (%v); stderr %q", i, code, err, stderr)
		}
		if code != exitcode.OK || doc.Boards[0].Verdict != "healthy" || doc.Boards[0].Backups.Units != 13 {
			t.Errorf("run %d: exit %d, %+v; want 0, healthy, 13 units", i, code, doc.Boards[0])
		}
	}
	if err := fleet.Stop(); err != nil {
		t.Fatal(err)
	}
	ids, err := fleet.Committed()
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) < 10 {
		t.Fatalf("writers committed only %d tasks", len(ids))
	}
	conn, closeDB, err := sqlitex.Conn(ctx, db, sqlitex.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeDB()
	missing := 0
	for id := range ids {
		var n int
		if err := conn.QueryRowContext(ctx, "select count(*) from tasks where id = ?", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d committed tasks missing after the reports", missing, len(ids))
	}
	t.Logf("%d commits by 3 writer processes, all present", len(ids))
}
