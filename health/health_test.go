package health

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
)

func unitsAt(times ...time.Time) []board.Unit {
	us := make([]board.Unit, len(times))
	for i, t := range times {
		us[i] = board.Unit{Name: board.FormatTimestamped("kanban.db", t, i), Gen: board.GenTimestamped, Time: t,
			Main: board.File{Size: 1000}}
	}
	return us
}

func secs(base time.Time, offsets ...int) []time.Time {
	out := make([]time.Time, len(offsets))
	for i, o := range offsets {
		out[i] = base.Add(time.Duration(o) * time.Second)
	}
	return out
}

func TestTimelineBursts(t *testing.T) {
	base := time.Date(2026, 5, 3, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name       string
		offsets    []int
		wantBursts []int // units per burst
		wantBucket int64
	}{
		{"no backups", nil, nil, 0},
		{"one lone backup", []int{0}, nil, 1},
		{"two close backups are not a burst", []int{0, 1}, nil, 1},
		{"three in a second", []int{0, 0, 0}, []int{3}, 1},
		{"four bursts like the 73-backup report", []int{0, 1, 2, 3600, 3601, 3602, 3603, 7200, 7201, 7202, 10800, 10801, 10802},
			[]int{3, 4, 3, 3}, 300},
		{"gap of exactly two minutes joins", []int{0, 120, 240}, []int{3}, 5},
		{"gap just over two minutes splits", []int{0, 121, 242}, nil, 5},
		{"lone backups between bursts", []int{0, 1, 2, 1000, 5000, 5001, 5002, 5003}, []int{3, 4}, 120},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tl := BuildTimeline(unitsAt(secs(base, c.offsets...)...), TimelineOptions{})
			if len(tl.Bursts) != len(c.wantBursts) {
				t.Fatalf("bursts = %+v, want sizes %v", tl.Bursts, c.wantBursts)
			}
			for i, b := range tl.Bursts {
				if b.Units != c.wantBursts[i] {
					t.Errorf("burst %d has %d units, want %d", i+1, b.Units, c.wantBursts[i])
				}
			}
			if tl.BucketSeconds != c.wantBucket {
				t.Errorf("bucket = %ds, want %ds", tl.BucketSeconds, c.wantBucket)
			}
			total := 0
			for _, b := range tl.Buckets {
				total += b.Units
			}
			if total != len(c.offsets) {
				t.Errorf("buckets hold %d units, want %d", total, len(c.offsets))
			}
			if len(tl.Buckets) > DefaultMaxBuckets {
				t.Errorf("%d buckets, want at most %d", len(tl.Buckets), DefaultMaxBuckets)
			}
			// Every burst's buckets are marked with its number, and only those.
			for i, b := range tl.Bursts {
				marked := 0
				for _, bk := range tl.Buckets {
					if bk.Burst == i+1 {
						marked++
						if bk.Units == 0 && b.End.Sub(b.Start) < time.Duration(tl.BucketSeconds)*time.Second {
							t.Errorf("empty bucket %v marked for short burst %d", bk.Start, i+1)
						}
					}
				}
				if marked == 0 {
					t.Errorf("burst %d marks no bucket", i+1)
				}
			}
		})
	}
}

func TestTimelineStormScale(t *testing.T) {
	// 7,862 backups in 37 h (one of the reported storms): one long burst, at most 60 bars.
	base := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	var times []time.Time
	for i := 0; i < 7862; i++ {
		times = append(times, base.Add(time.Duration(i)*17*time.Second))
	}
	tl := BuildTimeline(unitsAt(times...), TimelineOptions{})
	if len(tl.Bursts) != 1 || tl.Bursts[0].Units != 7862 {
		t.Fatalf("bursts = %+v, want one of 7862", tl.Bursts)
	}
	if len(tl.Buckets) > DefaultMaxBuckets || tl.BucketSeconds != 3600 {
		t.Errorf("%d buckets of %ds, want <= 60 of 3600s", len(tl.Buckets), tl.BucketSeconds)
	}
}

// writeUnit writes a backup file with content data and the given mtime.
func writeUnit(t *testing.T, dir, name string, data []byte, mtime time.Time) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestGroupContents(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "kanban.db")
	base := time.Date(2026, 5, 3, 10, 0, 0, 0, time.Local)
	a := bytes.Repeat([]byte("A"), 4096)
	b := bytes.Repeat([]byte("B"), 4096) // same size as a, different content
	c := bytes.Repeat([]byte("C"), 8192) // unique size
	live := bytes.Repeat([]byte("L"), 4096)
	if err := os.WriteFile(db, live, 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		writeUnit(t, dir, board.FormatTimestamped("kanban.db", base, i), a, base)
	}
	writeUnit(t, dir, board.FormatTimestamped("kanban.db", base.Add(time.Hour), 0), b, base)
	writeUnit(t, dir, board.FormatTimestamped("kanban.db", base.Add(time.Hour), 1), b, base)
	writeUnit(t, dir, board.FormatTimestamped("kanban.db", base.Add(2*time.Hour), 0), c, base)
	// A hard link of an 'a' backup, named by content.
	sumA := sha256.Sum256(a)
	if err := os.Link(filepath.Join(dir, board.FormatTimestamped("kanban.db", base, 0)),
		filepath.Join(dir, board.FormatContent("kanban.db", hex.EncodeToString(sumA[:])[:16]))); err != nil {
		t.Fatal(err)
	}
	// A "backup" that is a hard link of the live DB: it must never be read or merged.
	if err := os.Link(db, filepath.Join(dir, board.FormatTimestamped("kanban.db", base.Add(3*time.Hour), 0))); err != nil {
		t.Fatal(err)
	}
	inv, err := board.ScanBackups(db)
	if err != nil {
		t.Fatal(err)
	}
	liveFI, _ := os.Stat(db)
	cs, err := GroupContents(context.Background(), inv.Units, liveFI, nil)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		units int
		hash  string
	}
	hexOf := func(d []byte) string { s := sha256.Sum256(d); return hex.EncodeToString(s[:]) }
	got := map[string]int{}
	for _, x := range cs {
		switch {
		case x.SHA256 == hexOf(a):
			got["a"] = x.Units
		case x.SHA256 == hexOf(b):
			got["b"] = x.Units
		case x.SHA256 == "" && x.Size == 8192:
			got["c"] = x.Units
		case x.SHA256 == "" && x.Size == 4096:
			got["live"] += x.Units
		default:
			t.Errorf("unexpected content %+v", x)
		}
	}
	wantGot := map[string]int{"a": 4, "b": 2, "c": 1, "live": 1}
	for k, v := range wantGot {
		if got[k] != v {
			t.Errorf("content %s: %d units, want %d (all: %+v)", k, got[k], v, cs)
		}
	}
	if len(cs) != 4 {
		t.Errorf("%d distinct contents, want 4", len(cs))
	}
}

func TestGroupContentsCancelled(t *testing.T) {
	dir := t.TempDir()
	base := time.Now()
	for i := 0; i < 2; i++ {
		writeUnit(t, dir, board.FormatTimestamped("kanban.db", base, i), []byte("same"), base)
	}
	inv, _ := board.ScanBackups(filepath.Join(dir, "kanban.db"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := GroupContents(ctx, inv.Units, nil, nil); err == nil {
		t.Fatal("want an error from a cancelled context")
	}
}
