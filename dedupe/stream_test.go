package dedupe_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

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
