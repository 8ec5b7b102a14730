package dedupe_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/dedupe"
	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
	"github.com/kanban-doctor/kanban-doctor/internal/stormgen"
	"github.com/kanban-doctor/kanban-doctor/internal/testenv"
)

const (
	applyChild  = "dedupe-test-apply"
	holderChild = "dedupe-test-holder"
)

func init() {
	reexec.Register(applyChild, runApplyChild)
	reexec.Register(holderChild, runHolderChild)
}

func TestMain(m *testing.M) {
	reexec.Init()
	code := m.Run()
	if templDir != "" {
		os.RemoveAll(templDir)
	}
	os.Exit(code)
}

// runApplyChild is a separate process running a full apply: args are action, to, dir and
// "stream" (act while reading, as the command does: dedupe.ScanApply) or "phases" (Scan, NewPlan,
// Apply).
func runApplyChild(args []string) int {
	ctx := context.Background()
	action, to, dir := args[0], args[1], args[2]
	if args[3] == "stream" {
		fmt.Println("applying") // it acts from the first units read on
		_, _, err := dedupe.ScanApply(ctx, []board.Board{board.New("storm", filepath.Join(dir, board.DBName))}, dedupe.Options{},
			dedupe.PlanOptions{Action: dedupe.Action(action), To: to}, dedupe.ApplyOptions{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 8
		}
		return 0
	}
	inv, err := dedupe.Scan(ctx, []board.Board{board.New("storm", filepath.Join(dir, board.DBName))}, dedupe.Options{Verify: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 8
	}
	p, err := dedupe.NewPlan(inv, dedupe.PlanOptions{Action: dedupe.Action(action), To: to})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 8
	}
	fmt.Println("applying")
	if _, err := dedupe.Apply(ctx, p, dedupe.ApplyOptions{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 8
	}
	return 0
}

// runHolderChild keeps a read-write connection to a live board open (with an uncheckpointed
// commit in its -wal) until its stdin closes: a live board in the same directory as the storm.
func runHolderChild(args []string) int {
	ctx := context.Background()
	db, err := sqlitex.Open(args[0], sqlitex.Options{ReadWrite: true, Pragmas: append([]string{"wal_autocheckpoint(0)"}, kanban.WriterPragmas...)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 8
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	w := &kanban.Writer{DB: db, Name: "holder", Rand: rand.New(rand.NewPCG(1, 2))}
	if _, err := w.CreateTask(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 8
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

var (
	templOnce sync.Once
	templDir  string
	templErr  error
	templSt   stormgen.Storm
)

// stormTemplate generates one small storm per test binary: 3 bursts (one with -wal/-shm
// companions, each with a content-addressed copy), 2 distinct backups of the same size.
func stormTemplate(t *testing.T) (string, stormgen.Storm) {
	t.Helper()
	templOnce.Do(func() {
		templDir, templErr = os.MkdirTemp("", "kd-dedupe-template-")
		if templErr == nil {
			templSt, templErr = stormgen.Generate(context.Background(), templDir, stormgen.Options{
				Bursts: 3, PerBurst: 12, Distinct: 2, Tasks: 8, Seed: 3, CompanionEvery: 2, ContentNamed: true})
		}
	})
	if templErr != nil {
		t.Fatal(templErr)
	}
	return templDir, templSt
}

// copyStorm copies the template into a fresh directory (contents and mtimes).
func copyStorm(t *testing.T) (string, stormgen.Storm) {
	t.Helper()
	src, st := stormTemplate(t)
	dst := filepath.Join(t.TempDir(), "board")
	copyDir(t, src, dst)
	return dst, st
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	es, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		b, err := readCached(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := e.Info()
		p := filepath.Join(dst, e.Name())
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, fi.ModTime(), fi.ModTime())
	}
}

// shaCache remembers file hashes by inode, size, mtime and ctime (any write changes the ctime),
// so the kill test does not rehash unchanged files after every run.
var shaCache sync.Map

// srcCache holds the template files copyDir copies again and again (they never change).
var srcCache sync.Map

func readCached(p string) ([]byte, error) {
	if v, ok := srcCache.Load(p); ok {
		return v.([]byte), nil
	}
	b, err := os.ReadFile(p)
	if err == nil {
		srcCache.Store(p, b)
	}
	return b, err
}

func sha(t *testing.T, p string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprint(st.Dev, st.Ino, st.Size, st.Mtim.Nano(), st.Ctim.Nano())
	if v, ok := shaCache.Load(key); ok {
		return v.(string)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	h := hex.EncodeToString(s[:])
	shaCache.Store(key, h)
	return h
}

// contents maps each unit content (sha256 of main, -wal, -shm; "-" when absent) to its units'
// main paths, over the backups in dirs, computed independently of the dedupe package.
func contents(t *testing.T, dirs ...string) map[string][]string {
	t.Helper()
	m := map[string][]string{}
	for _, d := range dirs {
		inv, err := board.ScanBackups(filepath.Join(d, board.DBName))
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range inv.Units {
			k := sha(t, u.Main.Path)
			for _, c := range []*board.File{u.WAL, u.SHM} {
				if c == nil {
					k += "|-"
				} else {
					k += "|" + sha(t, c.Path)
				}
			}
			m[k] = append(m[k], u.Main.Path)
		}
	}
	return m
}

// inodes counts the distinct main-file inodes per content.
func inodes(t *testing.T, c map[string][]string) map[string]int {
	out := map[string]int{}
	for k, paths := range c {
		seen := map[uint64]bool{}
		for _, p := range paths {
			var st syscall.Stat_t
			if err := syscall.Lstat(p, &st); err != nil {
				t.Fatal(err)
			}
			seen[st.Ino] = true
		}
		out[k] = len(seen)
	}
	return out
}

func scanPlan(t *testing.T, dir string, verify bool, o dedupe.PlanOptions) *dedupe.Plan {
	t.Helper()
	inv, err := dedupe.Scan(context.Background(), []board.Board{board.New("storm", filepath.Join(dir, board.DBName))}, dedupe.Options{Verify: verify})
	if err != nil {
		t.Fatal(err)
	}
	p, err := dedupe.NewPlan(inv, o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDryRunGroupsAStormAndChangesNothing(t *testing.T) {
	dir, st := copyStorm(t)
	before := snapshot(t, dir)
	p := scanPlan(t, dir, false, dedupe.PlanOptions{})
	r := p.Report
	want := contents(t, dir)
	if r.Distinct != len(want) || r.Distinct != st.Contents {
		t.Fatalf("distinct = %d, want %d (independent count %d)", r.Distinct, st.Contents, len(want))
	}
	if r.Duplicates != st.Duplicates || r.Units != st.Units || r.Files != st.Files {
		t.Fatalf("duplicates/units/files = %d/%d/%d, want %d/%d/%d", r.Duplicates, r.Units, r.Files, st.Duplicates, st.Units, st.Files)
	}
	if len(r.Groups) != 3 {
		t.Fatalf("groups = %d, want 3 (one per burst; the 2 distinct backups of the same size are not duplicates)", len(r.Groups))
	}
	var gens = map[board.Generation]bool{}
	var reclaim int64
	for _, g := range r.Groups {
		if g.Count != 13 || len(g.Files) != 13 || g.Duplicates != 12 {
			t.Errorf("group %s: count %d, files %d, duplicates %d; want 13, 13, 12", g.Hash, g.Count, len(g.Files), g.Duplicates)
		}
		if g.Keep != g.Files[0] {
			t.Errorf("group %s keeps %s, want the oldest %s", g.Hash, g.Keep, g.Files[0])
		}
		if len(g.Hash) != 32 {
			t.Errorf("hash %q is not 32 hex digits", g.Hash)
		}
		for _, f := range g.Files {
			bn, _ := board.ParseBackupName(board.DBName, filepath.Base(f))
			gens[bn.Gen] = true
		}
		reclaim += g.ReclaimableBytes
		if g.ReclaimableBytes != int64(g.Duplicates)*g.UnitBytes {
			t.Errorf("group %s reclaimable %d, want %d", g.Hash, g.ReclaimableBytes, int64(g.Duplicates)*g.UnitBytes)
		}
	}
	if !gens[board.GenTimestamped] || !gens[board.GenContent] {
		t.Errorf("groups span generations %v, want both", gens)
	}
	if r.ReclaimableBytes != reclaim || r.Reclaimable == "" {
		t.Errorf("reclaimable %d (%q), want %d", r.ReclaimableBytes, r.Reclaimable, reclaim)
	}
	if len(r.Bursts) != 5 { // 3 bursts and 2 distinct backups between them
		t.Errorf("bursts = %d, want 5", len(r.Bursts))
	}
	assertSnapshot(t, dir, before)
}

func TestCompanionsArePartOfTheContent(t *testing.T) {
	dir := t.TempDir()
	w := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	main := strings.Repeat("M", 4096)
	w("kanban.db.corrupt.20260510_030000.bak", main) // main only
	w("kanban.db.corrupt.20260510_030001.bak", main) // main only: duplicate of the first
	w("kanban.db.corrupt.20260510_030002.bak", main) // same main with a -wal: different content
	w("kanban.db.corrupt.20260510_030002.bak-wal", "WAL1")
	w("kanban.db.corrupt.20260510_030003.bak", main) // same main, other -wal of the same size
	w("kanban.db.corrupt.20260510_030003.bak-wal", "WAL2")
	w("kanban.db.corrupt.20260510_030004.bak", main) // identical to 030002 with its -wal
	w("kanban.db.corrupt.20260510_030004.bak-wal", "WAL1")
	p := scanPlan(t, dir, true, dedupe.PlanOptions{})
	r := p.Report
	if r.Distinct != 3 || r.Duplicates != 2 || len(r.Groups) != 2 {
		t.Fatalf("distinct %d, duplicates %d, groups %d; want 3, 2, 2", r.Distinct, r.Duplicates, len(r.Groups))
	}
	if _, err := dedupe.Apply(context.Background(), p, dedupe.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	sort.Strings(left)
	var names []string
	for _, l := range left {
		names = append(names, filepath.Base(l))
	}
	want := "kanban.db.corrupt.20260510_030000.bak kanban.db.corrupt.20260510_030002.bak kanban.db.corrupt.20260510_030002.bak-wal kanban.db.corrupt.20260510_030003.bak kanban.db.corrupt.20260510_030003.bak-wal"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("left %s\nwant %s", got, want)
	}
}

func TestApplyKeepsOneUnitPerContent(t *testing.T) {
	for _, action := range []dedupe.Action{dedupe.ActionRemove, dedupe.ActionHardlink, dedupe.ActionMove} {
		for _, keep := range []dedupe.Keep{dedupe.KeepOldest, dedupe.KeepNewest} {
			t.Run(string(action)+"/"+string(keep), func(t *testing.T) {
				dir, st := copyStorm(t)
				to := ""
				if action == dedupe.ActionMove {
					to = filepath.Join(filepath.Dir(dir), "quarantine")
					os.Mkdir(to, 0o755)
				}
				before := contents(t, dir)
				p := scanPlan(t, dir, true, dedupe.PlanOptions{Keep: keep, Action: action, To: to})
				kept := map[string]bool{}
				for _, g := range p.Report.Groups {
					kept[g.Keep] = true
					if want := g.Files[len(g.Files)-1]; keep == dedupe.KeepNewest && g.Keep != want {
						t.Fatalf("keep newest chose %s, want %s", g.Keep, want)
					}
				}
				res, err := dedupe.Apply(context.Background(), p, dedupe.ApplyOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if res.Done != st.Duplicates || res.Skipped != 0 || res.Failed != 0 {
					t.Fatalf("done %d skipped %d failed %d, want %d 0 0: %+v", res.Done, res.Skipped, res.Failed, st.Duplicates, res.Problems)
				}
				after := contents(t, dir)
				for k, paths := range before {
					got := after[k]
					if len(got) == 0 {
						t.Fatalf("content %s lost (had %d units)", k[:12], len(paths))
					}
					switch action {
					case dedupe.ActionHardlink:
						if len(got) != len(paths) || inodes(t, map[string][]string{k: got})[k] != 1 {
							t.Errorf("content %s: %d units, %d inodes after hardlink; want %d units on 1 inode", k[:12], len(got), inodes(t, map[string][]string{k: got})[k], len(paths))
						}
					default:
						if len(got) != 1 || (len(paths) > 1 && !kept[got[0]]) {
							t.Errorf("content %s: left %v, want only the kept unit", k[:12], got)
						}
					}
				}
				if action == dedupe.ActionMove {
					moved := contents(t, to)
					n := 0
					for k, ps := range moved {
						if before[k] == nil {
							t.Errorf("quarantine holds a content that was not in the storm")
						}
						n += len(ps)
					}
					if n != st.Duplicates {
						t.Errorf("quarantine holds %d units, want %d", n, st.Duplicates)
					}
				}
				again := scanPlan(t, dir, false, dedupe.PlanOptions{Action: action, To: to})
				if again.Report.Duplicates != 0 || len(again.Report.Orphans) != 0 {
					t.Errorf("rerun finds %d duplicates, %d orphans; want none", again.Report.Duplicates, len(again.Report.Orphans))
				}
			})
		}
	}
}

func TestChangesBetweenScanAndApplyAreSkipped(t *testing.T) {
	dir, st := copyStorm(t)
	p := scanPlan(t, dir, true, dedupe.PlanOptions{})
	g := p.Report.Groups
	if len(g) < 3 {
		t.Fatalf("want 3 groups, got %d", len(g))
	}
	// 1: a duplicate rewritten with other bytes of the same size, mtime restored (only the ctime
	// and the byte comparison can tell).
	rewritten := g[0].Files[1]
	fi, _ := os.Stat(rewritten)
	b, _ := os.ReadFile(rewritten)
	b[len(b)/2] ^= 0xff
	os.WriteFile(rewritten, b, 0o644)
	os.Chtimes(rewritten, fi.ModTime(), fi.ModTime())
	// 2: a duplicate that grew.
	grown := g[0].Files[2]
	f, _ := os.OpenFile(grown, os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte("more"))
	f.Close()
	// 3: a duplicate replaced by a symlink to its kept copy.
	linked := g[0].Files[3]
	os.Remove(linked)
	os.Symlink(g[0].Keep, linked)
	// 4: a -wal appeared beside a duplicate that had none.
	walNew := g[0].Files[4] + "-wal"
	os.WriteFile(walNew, []byte("new wal"), 0o644)
	// 6: a duplicate of the last group replaced by a FIFO (opening it must not hang).
	fifo := g[2].Files[1]
	os.Remove(fifo)
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// 5: the kept copy of another group was replaced (new inode, same bytes).
	keep1 := g[1].Keep
	kb, _ := os.ReadFile(keep1)
	os.Remove(keep1)
	os.WriteFile(keep1, kb, 0o644)
	before := contents(t, dir)

	res, err := dedupe.Apply(context.Background(), p, dedupe.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, pr := range res.Problems {
		reasons[pr.Path] = pr.Reason
	}
	for path, want := range map[string]string{rewritten: "ctime", grown: "size changed", linked: "regular file", g[0].Files[4]: "appeared", fifo: "regular file"} {
		if !strings.Contains(reasons[path], want) {
			t.Errorf("%s: reason %q, want it to mention %q", filepath.Base(path), reasons[path], want)
		}
	}
	for _, f := range g[1].Files[1:] {
		if !strings.Contains(reasons[f], "kept copy") {
			t.Errorf("%s: reason %q, want the kept copy's change", filepath.Base(f), reasons[f])
		}
	}
	wantSkipped := 5 + (g[1].Count - 1)
	if res.Skipped != wantSkipped || res.Failed != 0 {
		t.Errorf("skipped %d failed %d, want %d 0", res.Skipped, res.Failed, wantSkipped)
	}
	if res.Done != st.Duplicates-wantSkipped {
		t.Errorf("done %d, want %d", res.Done, st.Duplicates-wantSkipped)
	}
	after := contents(t, dir)
	for k := range before {
		if len(after[k]) == 0 {
			t.Errorf("content %s lost", k[:12])
		}
	}
	if fi, err := os.Lstat(linked); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink %s was touched", linked)
	}
}

func TestSymlinksAreNeverFollowed(t *testing.T) {
	dir, _ := copyStorm(t)
	outside := filepath.Join(t.TempDir(), "outside")
	copyDir(t, dir, outside) // the same contents elsewhere
	names, _ := filepath.Glob(filepath.Join(outside, "kanban.db.corrupt.*"))
	// Backup-named symlinks to identical files outside, to a file inside, and a dangling one.
	os.Symlink(names[0], filepath.Join(dir, "kanban.db.corrupt.20990101_000000.bak"))
	os.Symlink(filepath.Join(dir, filepath.Base(names[1])), filepath.Join(dir, "kanban.db.corrupt.20990101_000001.bak"))
	os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "kanban.db.corrupt.20990101_000002.bak"))
	outBefore := snapshot(t, outside)
	p := scanPlan(t, dir, true, dedupe.PlanOptions{})
	for _, g := range p.Report.Groups {
		for _, f := range g.Files {
			if strings.Contains(f, "2099") {
				t.Fatalf("symlink %s counted as a backup", f)
			}
		}
	}
	if _, err := dedupe.Apply(context.Background(), p, dedupe.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if fi, err := os.Lstat(filepath.Join(dir, fmt.Sprintf("kanban.db.corrupt.20990101_00000%d.bak", i))); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("symlink %d touched: %v", i, err)
		}
	}
	assertSnapshot(t, outside, outBefore)
}

func TestLiveBoardInTheSameDirectoryIsUntouched(t *testing.T) {
	dir, _ := copyStorm(t)
	db := filepath.Join(dir, board.DBName)
	if err := kanban.Generate(context.Background(), db, kanban.GenOptions{Tasks: 50, Seed: 9, WAL: true}); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{".init.lock", ".dispatch.lock"} {
		os.WriteFile(db+l, nil, 0o644)
	}
	cmd, err := reexec.Command(context.Background(), holderChild, db)
	if err != nil {
		t.Fatal(err)
	}
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	if sc := bufio.NewScanner(out); !sc.Scan() || sc.Text() != "ready" {
		t.Fatal("holder did not start")
	}
	live := []string{db, db + "-wal", db + "-shm", db + ".init.lock", db + ".dispatch.lock"}
	before := map[string]string{}
	for _, l := range live {
		before[l] = sha(t, l) // this test process holds no connection to the board
	}
	for _, action := range []dedupe.Action{dedupe.ActionHardlink, dedupe.ActionRemove} {
		p := scanPlan(t, dir, true, dedupe.PlanOptions{Action: action})
		if p.Report.Duplicates == 0 {
			t.Fatal("no duplicates beside the live board")
		}
		if _, err := dedupe.Apply(context.Background(), p, dedupe.ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, l := range live {
			if got := sha(t, l); got != before[l] {
				t.Fatalf("after %s: live file %s changed", action, filepath.Base(l))
			}
		}
	}
	// The holder's connection still works: its locks were never disturbed.
	if _, err := stdin.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
}

func TestOrphansAndTempLinksFromAKilledRunAreFinished(t *testing.T) {
	dir, _ := copyStorm(t)
	p := scanPlan(t, dir, false, dedupe.PlanOptions{})
	var walGroup *dedupe.Group
	for i := range p.Report.Groups {
		if p.Report.Groups[i].WALHash != "" {
			walGroup = &p.Report.Groups[i]
		}
	}
	if walGroup == nil {
		t.Fatal("storm has no group with companions")
	}
	// A killed remove: main gone, companions left (identical to the kept unit's).
	dup := walGroup.Files[1]
	os.Remove(dup)
	// An orphan -wal that is the only copy of its content must stay.
	unique := filepath.Join(dir, "kanban.db.corrupt.20200101_000000.bak-wal")
	os.WriteFile(unique, []byte("only copy"), 0o644)
	// A killed hardlink: a temp link to the kept file, and a temp that is the only name of its bytes.
	tmpLink := filepath.Join(dir, "."+filepath.Base(walGroup.Files[2])+".kdtmp-dedupe-0a0b0c0d0e0f")
	if err := os.Link(walGroup.Keep, tmpLink); err != nil {
		t.Fatal(err)
	}
	tmpOnly := filepath.Join(dir, "."+filepath.Base(walGroup.Files[3])+".kdtmp-dedupe-ffffffffffff")
	os.WriteFile(tmpOnly, []byte("unknown"), 0o644)

	p = scanPlan(t, dir, true, dedupe.PlanOptions{})
	if p.Report.RedundantOrphans != 2 || len(p.Report.Orphans) != 3 || len(p.Report.Temps) != 2 {
		t.Fatalf("redundant orphans %d, orphans %d, temps %d; want 2, 3, 2", p.Report.RedundantOrphans, len(p.Report.Orphans), len(p.Report.Temps))
	}
	res, err := dedupe.Apply(context.Background(), p, dedupe.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.TempsCleaned) != 1 || res.TempsCleaned[0] != tmpLink {
		t.Errorf("temps cleaned %v, want only %s", res.TempsCleaned, tmpLink)
	}
	for _, keep := range []string{unique, tmpOnly, walGroup.Keep, walGroup.Keep + "-wal", walGroup.Keep + "-shm"} {
		if _, err := os.Lstat(keep); err != nil {
			t.Errorf("%s removed: %v", filepath.Base(keep), err)
		}
	}
	for _, gone := range []string{dup + "-wal", dup + "-shm", tmpLink} {
		if _, err := os.Lstat(gone); err == nil {
			t.Errorf("%s left behind", filepath.Base(gone))
		}
	}
}

func TestMoveRefusesBadTargets(t *testing.T) {
	dir, _ := copyStorm(t)
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	link := filepath.Join(t.TempDir(), "l")
	os.Symlink(t.TempDir(), link)
	inv, err := dedupe.Scan(context.Background(), []board.Board{board.New("s", filepath.Join(dir, board.DBName))}, dedupe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, to, want string }{
		{"missing", "", "needs --to"},
		{"scanned dir", dir, "scanned directory"},
		{"file", file, "not a directory"},
		{"symlink", link, "not a directory"},
		{"nonexistent", filepath.Join(dir, "nope"), "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dedupe.NewPlan(inv, dedupe.PlanOptions{Action: dedupe.ActionMove, To: tc.to})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestSIGKILLDuringApplyLosesNothing kills a real apply process at random moments, 25 times per
// action mix (KD_SOAK=1: 200), checks after each kill that every content is still whole and the
// live board byte-identical, then runs a full apply and checks one unit per content is left.
func TestSIGKILLDuringApplyLosesNothing(t *testing.T) {
	iters := 26 // the first run is a calibration run that finishes; 25 are killed
	if os.Getenv("KD_SOAK") != "" {
		iters = 201
	}
	src, _ := stormTemplate(t)
	big := filepath.Join(t.TempDir(), "big")
	// A bigger storm than the template, so a kill lands mid-apply: the template four times over
	// under other names (the same contents, later bursts).
	copyDir(t, src, big)
	es, _ := os.ReadDir(src)
	for k := 1; k <= 4; k++ {
		for _, e := range es {
			bn, ok := board.ParseBackupName(board.DBName, e.Name())
			if !ok || bn.Gen != board.GenTimestamped {
				continue
			}
			name := board.FormatTimestamped(board.DBName, bn.Time.AddDate(0, 0, k), bn.Seq) + map[board.Companion]string{"": "", "wal": "-wal", "shm": "-shm"}[bn.Part]
			b, _ := os.ReadFile(filepath.Join(src, e.Name()))
			os.WriteFile(filepath.Join(big, name), b, 0o644)
		}
	}
	want := contents(t, big)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	killedMid, withOrphans, withTemps := 0, 0, 0
	var calib, calibApply time.Duration
	for i := 0; i < iters; i++ {
		action := []dedupe.Action{dedupe.ActionRemove, dedupe.ActionHardlink, dedupe.ActionMove}[i%3]
		base := filepath.Join(t.TempDir(), "run")
		dir, to := filepath.Join(base, "board"), filepath.Join(base, "quarantine")
		copyDir(t, big, dir)
		os.Mkdir(to, 0o755)
		db := filepath.Join(dir, board.DBName)
		os.WriteFile(db, []byte("SQLite format 3\x00live board stand-in bytes"), 0o644)
		os.WriteFile(db+"-wal", []byte("live wal"), 0o644)
		os.WriteFile(db+"-shm", []byte("live shm"), 0o644)
		liveBefore := []string{sha(t, db), sha(t, db+"-wal"), sha(t, db+"-shm")}

		mode := []string{"phases", "stream"}[i/3%2] // every action both ways
		cmd, err := reexec.Command(context.Background(), applyChild, string(action), map[bool]string{true: to}[action == dedupe.ActionMove], dir, mode)
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		stdout, _ := cmd.StdoutPipe()
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		applying := make(chan time.Time, 1)
		go func() {
			sc := bufio.NewScanner(stdout)
			if sc.Scan() {
				applying <- time.Now()
			}
			io.Copy(io.Discard, stdout)
		}()
		if calib == 0 { // first run: let it finish to learn how long the process and its apply take
			at := <-applying
			if err := cmd.Wait(); err != nil {
				t.Fatalf("apply child: %v: %s", err, stderr.String())
			}
			calib, calibApply = time.Since(start), time.Since(at)
			t.Logf("a full apply in a child takes %v, of which %v acting", calib, calibApply)
			continue
		}
		// Even iterations: a random moment of the child's whole life (start, scan, hash, apply);
		// odd ones: a random moment after it started acting.
		delay := time.Duration(rng.Int64N(int64(calib)))
		if i%2 == 1 {
			<-applying
			delay = time.Duration(rng.Int64N(int64(calibApply)))
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			killedMid++
		} else if err != nil {
			t.Fatalf("apply child: %v: %s", err, stderr.String())
		}
		checkWhole(t, want, dir, to)
		if inv, _ := board.ScanBackups(db); len(inv.Orphans) > 0 {
			withOrphans++
		}
		if tmps, _ := filepath.Glob(filepath.Join(dir, ".*kdtmp-dedupe-*")); len(tmps) > 0 {
			withTemps++
		}
		// The full run that finishes the job.
		po := dedupe.PlanOptions{Action: action, To: map[bool]string{true: to}[action == dedupe.ActionMove]}
		var res *dedupe.Result
		if mode == "stream" {
			_, res, err = dedupe.ScanApply(context.Background(), []board.Board{board.New("storm", db)}, dedupe.Options{}, po, dedupe.ApplyOptions{})
		} else {
			res, err = dedupe.Apply(context.Background(), scanPlan(t, dir, true, po), dedupe.ApplyOptions{})
		}
		if err != nil || res.Failed != 0 || res.Skipped != 0 {
			t.Fatalf("iteration %d (%s, killed after %v): finishing run: %v %+v", i, action, delay, err, res)
		}
		checkWhole(t, want, dir, to)
		got := contents(t, dir)
		for k := range want {
			if action == dedupe.ActionHardlink {
				if inodes(t, map[string][]string{k: got[k]})[k] != 1 {
					t.Fatalf("iteration %d: content %s on several inodes after the finishing hardlink run", i, k[:12])
				}
			} else if len(got[k]) != 1 {
				t.Fatalf("iteration %d (%s): content %s has %d units after the finishing run", i, action, k[:12], len(got[k]))
			}
		}
		inv, _ := board.ScanBackups(db)
		if len(inv.Orphans) != 0 {
			t.Fatalf("iteration %d: orphans left: %v", i, inv.Orphans)
		}
		if tmps, _ := filepath.Glob(filepath.Join(dir, ".*kdtmp*")); len(tmps) != 0 {
			t.Fatalf("iteration %d: temp links left: %v", i, tmps)
		}
		for j, p := range []string{db, db + "-wal", db + "-shm"} {
			if sha(t, p) != liveBefore[j] {
				t.Fatalf("iteration %d: live file %s changed", i, filepath.Base(p))
			}
		}
		os.RemoveAll(base)
	}
	t.Logf("%d of %d runs were killed mid-way (the rest had finished); %d left orphan companions, %d a temporary link",
		killedMid, iters-1, withOrphans, withTemps)
	if killedMid < (iters-1)/3 {
		t.Errorf("only %d kills landed before the apply finished", killedMid)
	}
}

// checkWhole asserts every content of want still exists as a complete unit in dir or to.
func checkWhole(t *testing.T, want map[string][]string, dir, to string) {
	t.Helper()
	got := contents(t, dir, to)
	for k := range want {
		if len(got[k]) == 0 {
			t.Fatalf("content %s lost", k[:12])
		}
	}
}

type snap map[string]string

func snapshot(t *testing.T, dir string) snap {
	s := snap{}
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		fi, _ := e.Info()
		s[e.Name()] = fmt.Sprintf("%v %v", fi.Mode(), fi.ModTime().UnixNano())
		if e.Type().IsRegular() {
			s[e.Name()] += " " + sha(t, filepath.Join(dir, e.Name()))
		}
	}
	return s
}

func assertSnapshot(t *testing.T, dir string, want snap) {
	t.Helper()
	got := snapshot(t, dir)
	if len(got) != len(want) {
		t.Fatalf("%s: %d entries, want %d", dir, len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s changed", k)
		}
	}
}

// TestRemoveAfterHardlink: names already hard-linked to the kept copy are duplicates a remove
// still takes away (and a hardlink rerun leaves alone), with no false "changed" skips from the
// link-count changes our own actions cause.
func TestRemoveAfterHardlink(t *testing.T) {
	dir, st := copyStorm(t)
	for _, action := range []dedupe.Action{dedupe.ActionHardlink, dedupe.ActionHardlink, dedupe.ActionRemove} {
		p := scanPlan(t, dir, true, dedupe.PlanOptions{Action: action})
		res, err := dedupe.Apply(context.Background(), p, dedupe.ApplyOptions{})
		if err != nil || res.Skipped != 0 || res.Failed != 0 {
			t.Fatalf("%s: %v %+v", action, err, res)
		}
		t.Logf("%s: %d done, %d already linked, %s freed", action, res.Done, p.Report.AlreadyLinked, res.Freed)
	}
	c := contents(t, dir)
	if len(c) != st.Contents {
		t.Fatalf("%d contents left, want %d", len(c), st.Contents)
	}
	for k, ps := range c {
		if len(ps) != 1 {
			t.Errorf("content %s: %d units left", k[:12], len(ps))
		}
	}
}

// TestCheckContentsTellsHealthyFromCorrupt: every content of a storm is a healthy kanban board
// (the verdicts that made those backups were false) except a burst of truncated copies.
func TestCheckContentsTellsHealthyFromCorrupt(t *testing.T) {
	dir, st := copyStorm(t)
	p := scanPlan(t, dir, false, dedupe.PlanOptions{})
	b, err := os.ReadFile(p.Report.Groups[0].Keep)
	if err != nil {
		t.Fatal(err)
	}
	half := b[:len(b)/2]
	for i := 0; i < 3; i++ {
		name := filepath.Join(dir, board.FormatTimestamped(board.DBName, time.Date(2026, 6, 1, 0, 0, 0, 0, time.Local), i))
		os.WriteFile(name, half, 0o644)
	}
	before := snapshot(t, dir)
	p = scanPlan(t, dir, false, dedupe.PlanOptions{})
	if err := dedupe.CheckContents(context.Background(), p, dedupe.CheckOptions{}); err != nil {
		t.Fatal(err)
	}
	r := p.Report
	if len(r.Contents) != st.Contents+1 || r.HealthyContents != st.Contents || r.CorruptContents != 1 {
		for _, c := range r.Contents {
			t.Logf("%s %s %v %s", c.Path, c.Verdict, c.Findings, c.Error)
		}
		t.Fatalf("contents %d, healthy %d, corrupt %d; want %d, %d, 1", len(r.Contents), r.HealthyContents, r.CorruptContents, st.Contents+1, st.Contents)
	}
	for _, c := range r.Contents {
		if strings.Contains(c.Path, "20260601_000000") != !c.Healthy {
			t.Errorf("%s: verdict %s healthy=%v", filepath.Base(c.Path), c.Verdict, c.Healthy)
		}
		if c.Healthy == false && c.Units != 3 {
			t.Errorf("corrupt content held by %d units, want 3", c.Units)
		}
	}
	assertSnapshot(t, dir, before) // checked on private copies: the backups are untouched
}

// TestCancelledApplyStopsBetweenUnits: a cancelled context (SIGINT) stops before the next unit
// and says so; nothing is half done.
func TestCancelledApplyStopsBetweenUnits(t *testing.T) {
	dir, _ := copyStorm(t)
	before := snapshot(t, dir)
	p := scanPlan(t, dir, true, dedupe.PlanOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := dedupe.Apply(ctx, p, dedupe.ApplyOptions{})
	if !errors.Is(err, context.Canceled) || res == nil || res.Done != 0 {
		t.Fatalf("err %v, result %+v; want context.Canceled and nothing done", err, res)
	}
	assertSnapshot(t, dir, before)
}

// TestDryRunFindsWhatJdupesFinds uses jdupes (what users reach for) as the oracle: the files in
// our groups, companions included, are exactly the files jdupes -r lists in duplicate sets.
func TestDryRunFindsWhatJdupesFinds(t *testing.T) {
	jdupes := testenv.Tool(t, "jdupes")
	dir, _ := copyStorm(t)
	out, err := exec.Command(jdupes, "-r", "-q", dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, l := range strings.Split(string(out), "\n") {
		if l != "" {
			want = append(want, l)
		}
	}
	var got []string
	for _, g := range scanPlan(t, dir, false, dedupe.PlanOptions{}).Report.Groups {
		for _, f := range g.Files {
			got = append(got, f)
			if g.WALHash != "" {
				got = append(got, f+"-wal")
			}
			if g.SHMHash != "" {
				got = append(got, f+"-shm")
			}
		}
	}
	sort.Strings(want)
	sort.Strings(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") || len(got) == 0 {
		t.Fatalf("dedupe lists %d files, jdupes %d:\n%s\n---\n%s", len(got), len(want), strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	t.Logf("both list the same %d files", len(got))
}

// TestTempLinkDoesNotHideAChangedKeptFile: a kept file rewritten in place after it was read, with
// its mtime put back, while a killed run's temporary link to it waits to be cleaned. Removing the
// temp must not make the apply take the kept file's new ctime as its own doing: the temp is left,
// the duplicate is skipped, and the content both had when read still exists. (It was once cleaned
// and the duplicate removed: that content was then nowhere on disk.)
func TestTempLinkDoesNotHideAChangedKeptFile(t *testing.T) {
	dir := t.TempDir()
	content := bytes.Repeat([]byte("SQLite format 3\x00kept page "), 8000)
	var names []string
	for k := 0; k < 2; k++ {
		n := filepath.Join(dir, board.FormatTimestamped(board.DBName, time.Date(2026, 5, 1, 12, k, 0, 0, time.Local), 1))
		must(t, os.WriteFile(n, content, 0o644))
		names = append(names, n)
	}
	kept, dup := names[0], names[1]
	tmp := filepath.Join(dir, "."+filepath.Base(dup)+".kdtmp-dedupe-0a0b0c0d0e0f")
	must(t, os.Link(kept, tmp))
	p := scanPlan(t, dir, true, dedupe.PlanOptions{})
	if p.Report.Duplicates != 1 || len(p.Report.Temps) != 1 {
		t.Fatalf("duplicates %d, temps %d; want 1 and 1", p.Report.Duplicates, len(p.Report.Temps))
	}
	fi, err := os.Stat(kept)
	must(t, err)
	f, err := os.OpenFile(kept, os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("REWRITE!"), 100)
	must(t, err)
	must(t, f.Close())
	must(t, os.Chtimes(kept, fi.ModTime(), fi.ModTime()))
	res, err := dedupe.Apply(context.Background(), p, dedupe.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Done != 0 || res.Skipped != 1 || len(res.TempsCleaned) != 0 {
		t.Fatalf("done %d, skipped %d, temps cleaned %v; want the duplicate skipped and the temp left: %+v", res.Done, res.Skipped, res.TempsCleaned, res.Problems)
	}
	got, err := os.ReadFile(dup)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("the duplicate, the last copy of the content as read, is gone or changed: %v", err)
	}
	if _, err := os.Lstat(tmp); err != nil {
		t.Errorf("the temporary link was removed: %v", err)
	}
}
