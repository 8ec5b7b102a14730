package dedupe_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/dedupe"
)

// TestScanApplyMatchesScanPlanApply: acting while reading gives the same report, the same result
// and the same files (names, bytes, which names share an inode) as Scan, NewPlan and Apply one
// after the other, for every action and keep rule, on a storm that also holds what a killed run
// leaves (orphan companions, temporary links, a unique orphan that must stay).
func TestScanApplyMatchesScanPlanApply(t *testing.T) {
	for _, action := range []dedupe.Action{dedupe.ActionRemove, dedupe.ActionHardlink, dedupe.ActionMove} {
		for _, keep := range []dedupe.Keep{dedupe.KeepOldest, dedupe.KeepNewest} {
			for _, workers := range []int{1, 3} {
				t.Run(string(action)+"/"+string(keep)+"/"+string(rune('0'+workers)), func(t *testing.T) {
					type outcome struct {
						report, result string
						files          []string
					}
					run := func(stream bool) outcome {
						dir, _ := copyStorm(t)
						leftovers(t, dir)
						to := ""
						if action == dedupe.ActionMove {
							to = filepath.Join(filepath.Dir(dir), "quarantine")
							os.Mkdir(to, 0o755)
						}
						po := dedupe.PlanOptions{Keep: keep, Action: action, To: to}
						ao := dedupe.ApplyOptions{Workers: workers}
						var (
							p   *dedupe.Plan
							res *dedupe.Result
							err error
						)
						var logs strings.Builder
						if stream {
							log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
							p, res, err = dedupe.ScanApply(context.Background(), []board.Board{board.New("storm", filepath.Join(dir, board.DBName))},
								dedupe.Options{Workers: workers, Logger: log}, po, ao)
						} else {
							p = scanPlan(t, dir, true, po)
							res, err = dedupe.Apply(context.Background(), p, ao)
						}
						if err != nil {
							t.Fatal(err)
						}
						if res.Done == 0 || res.Skipped != 0 || res.Failed != 0 {
							t.Fatalf("stream %v: done %d skipped %d failed %d: %+v", stream, res.Done, res.Skipped, res.Failed, res.Problems)
						}
						// Every duplicate unit was acted on while reading; only the orphans after.
						if w := fmt.Sprintf("ops=%d after=%d", p.Report.Duplicates, p.Report.RedundantOrphans); stream && !strings.Contains(logs.String(), w) {
							t.Fatalf("want %q in the log:\n%s", w, logs.String())
						}
						base := filepath.Dir(dir)
						rep, _ := json.Marshal(p.Report)
						out, _ := json.Marshal(res)
						o := outcome{report: strings.ReplaceAll(string(rep), base, "BASE"), result: strings.ReplaceAll(string(out), base, "BASE")}
						o.files = append(layout(t, dir), layout(t, to)...)
						return o
					}
					want, got := run(false), run(true)
					if got.report != want.report {
						t.Errorf("report differs:\n got %s\nwant %s", got.report, want.report)
					}
					if got.result != want.result {
						t.Errorf("result differs:\n got %s\nwant %s", got.result, want.result)
					}
					if g, w := strings.Join(got.files, "\n"), strings.Join(want.files, "\n"); g != w {
						t.Errorf("files differ:\n got %s\nwant %s", g, w)
					}
				})
			}
		}
	}
}

// leftovers adds what killed runs leave: a duplicate's companions without their main, a temporary
// link to a kept file, a temporary name that is the only name of its bytes, a unique orphan.
func leftovers(t *testing.T, dir string) {
	t.Helper()
	p := scanPlan(t, dir, false, dedupe.PlanOptions{})
	var g *dedupe.Group
	for i := range p.Report.Groups {
		if p.Report.Groups[i].WALHash != "" {
			g = &p.Report.Groups[i]
		}
	}
	if g == nil || len(g.Files) < 4 {
		t.Fatal("storm has no group with companions")
	}
	os.Remove(g.Files[1])
	os.WriteFile(filepath.Join(dir, "kanban.db.corrupt.20200101_000000.bak-wal"), []byte("only copy"), 0o644)
	if err := os.Link(g.Keep, filepath.Join(dir, "."+filepath.Base(g.Files[2])+".kdtmp-dedupe-0a0b0c0d0e0f")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "."+filepath.Base(g.Files[3])+".kdtmp-dedupe-ffffffffffff"), []byte("unknown"), 0o644)
}

// layout lists dir's files as "name sha256 group", where group numbers the inodes in name order
// (names sharing an inode share a group).
func layout(t *testing.T, dir string) []string {
	t.Helper()
	if dir == "" {
		return nil
	}
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	ino := map[uint64]int{}
	var out []string
	for _, n := range names {
		p := filepath.Join(dir, n)
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		g, ok := ino[st.Ino]
		if !ok {
			g = len(ino)
			ino[st.Ino] = g
		}
		out = append(out, filepath.Base(dir)+"/"+n+" "+sha(t, p)[:16]+" "+string(rune('A'+g%26))+string(rune('a'+g/26%26)))
	}
	return out
}

// TestScanApplyRefusesBadOptionsBeforeReading: a usage error is returned before anything is read
// or done.
func TestScanApplyRefusesBadOptionsBeforeReading(t *testing.T) {
	dir, _ := copyStorm(t)
	before := snapshot(t, dir)
	for _, po := range []dedupe.PlanOptions{{Keep: "middle"}, {Action: "shred"}, {Action: dedupe.ActionMove}, {Action: dedupe.ActionMove, To: dir}} {
		p, res, err := dedupe.ScanApply(context.Background(), []board.Board{board.New("storm", filepath.Join(dir, board.DBName))}, dedupe.Options{}, po, dedupe.ApplyOptions{})
		if p != nil || res != nil || err == nil || !strings.Contains(err.Error(), "invalid options") {
			t.Errorf("%+v: plan %v, result %v, err %v; want a usage error", po, p != nil, res, err)
		}
	}
	assertSnapshot(t, dir, before)
}

// TestScanApplyCancelledActsOnNothing: a context cancelled before the start acts on nothing.
func TestScanApplyCancelledActsOnNothing(t *testing.T) {
	dir, _ := copyStorm(t)
	before := snapshot(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p, _, err := dedupe.ScanApply(ctx, []board.Board{board.New("storm", filepath.Join(dir, board.DBName))}, dedupe.Options{}, dedupe.PlanOptions{Action: dedupe.ActionHardlink}, dedupe.ApplyOptions{})
	if p != nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("plan %v, err %v; want context canceled", p != nil, err)
	}
	assertSnapshot(t, dir, before)
}

// onStart runs f when the first progress bar starts: in ScanApply, after the directory listing
// and before anything is read or done.
type onStart struct {
	f    func()
	once sync.Once
}

func (o *onStart) Start(string, int64, bool) { o.once.Do(o.f) }
func (o *onStart) Add(int64)                 {}
func (o *onStart) Done()                     {}

// TestScanApplySkipsCompanionsThatAppear: a -wal or -shm that appears beside a duplicate after the
// listing (created, renamed into place, linked) makes that unit a different content: it is skipped
// and reported, and the new companion and its main file are left as they are. ScanApply learns of
// them from the directory watch, where Apply looks each name up; both must see every way a name
// can appear.
func TestScanApplySkipsCompanionsThatAppear(t *testing.T) {
	for _, action := range []dedupe.Action{dedupe.ActionHardlink, dedupe.ActionRemove} {
		t.Run(string(action), func(t *testing.T) {
			dir, _ := copyStorm(t)
			var dups []string
			for _, g := range scanPlan(t, dir, false, dedupe.PlanOptions{}).Report.Groups {
				for _, f := range g.Files[1:] { // not the oldest: never the kept one
					if g.WALHash == "" && g.SHMHash == "" && len(dups) < 3 {
						dups = append(dups, f)
					}
				}
			}
			if len(dups) < 3 {
				t.Fatalf("storm has %d groups without companions; want 3", len(dups))
			}
			before := map[string]string{}
			appear := &onStart{f: func() {
				must(t, os.WriteFile(dups[0]+"-wal", []byte("new wal"), 0o644))
				tmp := filepath.Join(dir, "wal.tmp")
				must(t, os.WriteFile(tmp, []byte("renamed wal"), 0o644))
				must(t, os.Rename(tmp, dups[1]+"-wal"))
				must(t, os.Link(dups[0]+"-wal", dups[2]+"-shm"))
				for _, d := range dups {
					before[d] = sha(t, d)
				}
			}}
			p, res, err := dedupe.ScanApply(context.Background(), []board.Board{board.New("storm", filepath.Join(dir, board.DBName))},
				dedupe.Options{Progress: appear}, dedupe.PlanOptions{Action: action}, dedupe.ApplyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			skipped := map[string]string{}
			for _, o := range res.Problems {
				skipped[o.Path] = o.Reason
			}
			for _, d := range dups {
				if !strings.Contains(skipped[d], "appeared") {
					t.Errorf("%s: reason %q; want skipped, a companion appeared", filepath.Base(d), skipped[d])
				}
				if got := sha(t, d); got != before[d] {
					t.Errorf("%s changed (was %s, now %s)", filepath.Base(d), before[d], got)
				}
			}
			if res.Skipped != len(dups) || res.Failed != 0 || res.Done != p.Report.Duplicates-len(dups) {
				t.Fatalf("done %d skipped %d failed %d of %d duplicates: %+v", res.Done, res.Skipped, res.Failed, p.Report.Duplicates, res.Problems)
			}
			for _, c := range []string{dups[0] + "-wal", dups[1] + "-wal", dups[2] + "-shm"} {
				if _, err := os.Lstat(c); err != nil {
					t.Errorf("new companion %s: %v", filepath.Base(c), err)
				}
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestHardlinkByNameOrByDescriptor: kept files are linked through a descriptor where the kernel
// allows it, by name where it does not; duplicates are held through the descriptor they were
// read through while the budget of open descriptors allows, and reopened by name past it. Every
// way leaves every duplicate a link to its kept file.
func TestHardlinkByNameOrByDescriptor(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func() func()
	}{
		{"descriptors", func() func() { return func() {} }},
		{"kept-by-name", dedupe.LinkByName},
		{"no-held-reads", func() func() { return dedupe.HoldAtMost(0) }},
		{"two-held-reads", func() func() { return dedupe.HoldAtMost(2) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer tc.set()()
			dir, st := copyStorm(t)
			p, res, err := dedupe.ScanApply(context.Background(), []board.Board{board.New("storm", filepath.Join(dir, board.DBName))},
				dedupe.Options{}, dedupe.PlanOptions{Action: dedupe.ActionHardlink}, dedupe.ApplyOptions{Workers: 3})
			if err != nil {
				t.Fatal(err)
			}
			if res.Done != st.Duplicates || res.Skipped+res.Failed != 0 {
				t.Fatalf("done %d of %d, skipped %d, failed %d: %+v", res.Done, st.Duplicates, res.Skipped, res.Failed, res.Problems)
			}
			ino := func(p string) uint64 {
				var s syscall.Stat_t
				if err := syscall.Lstat(p, &s); err != nil {
					t.Fatal(err)
				}
				return s.Ino
			}
			for _, g := range p.Report.Groups {
				for _, f := range g.Files {
					if ino(f) != ino(g.Keep) {
						t.Errorf("%s is not a link to %s", filepath.Base(f), filepath.Base(g.Keep))
					}
				}
			}
		})
	}
}

// TestHardlinkPastTheLinkLimit: a storm larger than the filesystem's limit of links to one file
// (65,000 on ext4; 88,500 identical backups have been seen) does not fail: when the kept file
// is full, the next duplicate stays, whole, and later duplicates link to it. Needs a filesystem
// with such a limit under the test's temporary directory; elsewhere it is skipped.
func TestHardlinkPastTheLinkLimit(t *testing.T) {
	dir := t.TempDir()
	name := func(i int) string {
		return filepath.Join(dir, fmt.Sprintf("kanban.db.corrupt.20260101_0000%02d.bak", i))
	}
	content := []byte(strings.Repeat("the same backup, byte for byte\n", 1000))
	const dups = 12
	for i := 0; i <= dups; i++ {
		must(t, os.WriteFile(name(i), content, 0o644))
	}
	// Fill the kept file (the oldest) with links under names that are not backups, up to the
	// limit, then free 5: five duplicates fit, the sixth does not.
	pads := 0
	for ; ; pads++ {
		err := os.Link(name(0), filepath.Join(dir, fmt.Sprintf("pad%d", pads)))
		if errors.Is(err, syscall.EMLINK) {
			break
		}
		must(t, err)
		if pads > 70000 {
			t.Skip("no limit of links per file on this filesystem")
		}
	}
	for i := range 5 {
		must(t, os.Remove(filepath.Join(dir, fmt.Sprintf("pad%d", pads-1-i))))
	}
	p, res, err := dedupe.ScanApply(context.Background(), []board.Board{board.New("storm", filepath.Join(dir, board.DBName))},
		dedupe.Options{}, dedupe.PlanOptions{Action: dedupe.ActionHardlink}, dedupe.ApplyOptions{Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	if p.Report.Duplicates != dups || res.Done != dups-1 || res.Skipped != 1 || res.Failed != 0 ||
		!strings.Contains(res.Problems[0].Reason, "as many hard links as the filesystem allows") {
		t.Fatalf("done %d skipped %d failed %d of %d: %+v", res.Done, res.Skipped, res.Failed, p.Report.Duplicates, res.Problems)
	}
	byIno := map[uint64]int{}
	for i := 0; i <= dups; i++ {
		b, err := os.ReadFile(name(i))
		must(t, err)
		if string(b) != string(content) {
			t.Fatalf("%s changed", filepath.Base(name(i)))
		}
		var st syscall.Stat_t
		must(t, syscall.Lstat(name(i), &st))
		byIno[st.Ino]++
	}
	// The kept file and the 5 that fitted; the one that stayed and the 6 linked to it.
	if len(byIno) != 2 {
		t.Fatalf("backups spread over %d inodes: %v; want 2", len(byIno), byIno)
	}
	for ino, n := range byIno {
		if n != 6 && n != 7 {
			t.Errorf("inode %d has %d of the backups; want 6 and 7", ino, n)
		}
	}
	// A rerun finds the same one left over and says so; it does not claim the linked ones again.
	_, res, err = dedupe.ScanApply(context.Background(), []board.Board{board.New("storm", filepath.Join(dir, board.DBName))},
		dedupe.Options{}, dedupe.PlanOptions{Action: dedupe.ActionHardlink}, dedupe.ApplyOptions{})
	if err != nil || res.Done != 0 || res.Files != 0 || res.Skipped != 1 || res.Failed != 0 {
		t.Fatalf("rerun: err %v, done %d (%d files), skipped %d, failed %d; want only the second copy skipped", err, res.Done, res.Files, res.Skipped, res.Failed)
	}
}

// TestHardlinkAcrossTwoBoardsConverges: a hardlink run over two boards' directories on one
// filesystem links the second board's copy to the first's; a rerun, both ways (ScanApply, and
// Scan, NewPlan, Apply), sees the two names as one inode: nothing done, nothing reclaimable, no
// temporary link left. (Inodes were once compared only within a directory, so every rerun linked
// the pair again, left its temporary link and reported the bytes freed.)
func TestHardlinkAcrossTwoBoardsConverges(t *testing.T) {
	root := t.TempDir()
	content := bytes.Repeat([]byte("SQLite format 3\x00same backup page "), 4000)
	var bs []board.Board
	var names []string
	for k, d := range []string{"a", "b"} {
		dir := filepath.Join(root, d)
		must(t, os.Mkdir(dir, 0o755))
		name := filepath.Join(dir, board.FormatTimestamped(board.DBName, time.Date(2026, 5, 1, 12, k, 0, 0, time.Local), 1))
		must(t, os.WriteFile(name, content, 0o644))
		names = append(names, name)
		bs = append(bs, board.New(d, filepath.Join(dir, board.DBName)))
	}
	po := dedupe.PlanOptions{Action: dedupe.ActionHardlink}
	_, res, err := dedupe.ScanApply(context.Background(), bs, dedupe.Options{}, po, dedupe.ApplyOptions{})
	if err != nil || res.Done != 1 || res.Skipped+res.Failed != 0 {
		t.Fatalf("first run: done %d skipped %d failed %d, err %v: %+v", res.Done, res.Skipped, res.Failed, err, res.Problems)
	}
	var sa, sb syscall.Stat_t
	must(t, syscall.Lstat(names[0], &sa))
	must(t, syscall.Lstat(names[1], &sb))
	if sa.Ino != sb.Ino || sa.Nlink != 2 {
		t.Fatalf("after the first run: inodes %d and %d, %d links; want one inode with 2", sa.Ino, sb.Ino, sa.Nlink)
	}
	for run := 0; run < 4; run++ {
		var p *dedupe.Plan
		if run%2 == 0 {
			p, res, err = dedupe.ScanApply(context.Background(), bs, dedupe.Options{}, po, dedupe.ApplyOptions{})
		} else {
			inv, serr := dedupe.Scan(context.Background(), bs, dedupe.Options{Verify: true})
			if serr != nil {
				t.Fatal(serr)
			}
			if p, err = dedupe.NewPlan(inv, po); err == nil {
				res, err = dedupe.Apply(context.Background(), p, dedupe.ApplyOptions{})
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		if res.Done != 0 || res.FreedBytes != 0 || res.Skipped+res.Failed != 0 || p.Report.ReclaimableBytes != 0 {
			t.Errorf("rerun %d: done %d, freed %d, skipped %d, failed %d, reclaimable %d; want nothing to do",
				run, res.Done, res.FreedBytes, res.Skipped, res.Failed, p.Report.ReclaimableBytes)
		}
		for _, d := range []string{"a", "b"} {
			ents, _ := os.ReadDir(filepath.Join(root, d))
			if len(ents) != 1 {
				t.Errorf("rerun %d: %s holds %d names, want 1 (a temporary link left?)", run, d, len(ents))
			}
		}
		must(t, syscall.Lstat(names[0], &sa))
		if sa.Nlink != 2 {
			t.Errorf("rerun %d: %d links, want 2", run, sa.Nlink)
		}
	}
}

// TestManyKeptFilesStayWithinTheDescriptorLimit: with 400 distinct contents of two copies each
// and a soft limit of 256 open files, every duplicate is still linked: kept files are held open
// only up to a quarter of the limit and checked and linked by name past it. (Each kept file was
// once held open until the end of the run: 162 of the 400 were skipped with "too many open files".)
func TestManyKeptFilesStayWithinTheDescriptorLimit(t *testing.T) {
	dir := t.TempDir()
	for c := 0; c < 400; c++ {
		body := bytes.Repeat([]byte(fmt.Sprintf("SQLite format 3\x00content %04d ", c)), 200)
		for k := 0; k < 2; k++ {
			n := board.FormatTimestamped(board.DBName, time.Date(2026, 5, 1, 12, 0, 0, 0, time.Local).Add(time.Duration(2*c+k)*time.Second), 1)
			must(t, os.WriteFile(filepath.Join(dir, n), body, 0o644))
		}
	}
	var rl syscall.Rlimit
	must(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl))
	low := rl
	low.Cur = 256
	must(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low))
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	_, res, err := dedupe.ScanApply(context.Background(), []board.Board{board.New("many", filepath.Join(dir, board.DBName))},
		dedupe.Options{}, dedupe.PlanOptions{Action: dedupe.ActionHardlink}, dedupe.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Done != 400 || res.Skipped+res.Failed != 0 {
		t.Fatalf("done %d, skipped %d, failed %d; want all 400 linked: %+v", res.Done, res.Skipped, res.Failed, res.Problems[:min(3, len(res.Problems))])
	}
}
