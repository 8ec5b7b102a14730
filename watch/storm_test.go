package watch

import (
	"testing"
	"time"
)

func TestDetectorStartsAboveCountWithinWindowAndEndsAfterQuiet(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sec := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	tests := []struct {
		name      string
		arrivals  []float64 // seconds; each arrives "now"
		wantStart int       // index of the arrival that starts the storm, -1 none
	}{
		{"ten in a window is no storm", []float64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, -1},
		{"eleventh within the window starts it", []float64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 10},
		{"spread beyond the window never starts", []float64{0, 7, 14, 21, 28, 35, 42, 49, 56, 63, 70, 77, 84}, -1},
		{"old arrivals fall out of the window", []float64{0, 0, 0, 0, 0, 61, 61, 61, 61, 61, 61, 62, 62, 62, 62, 62}, 15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := detector{count: 10, window: time.Minute, quiet: 30 * time.Second}
			got := -1
			for i, s := range tt.arrivals {
				if d.arrive(sec(s), sec(s)) {
					if got != -1 {
						t.Fatalf("second start at arrival %d", i)
					}
					got = i
				}
			}
			if got != tt.wantStart {
				t.Fatalf("storm started at arrival %d, want %d", got, tt.wantStart)
			}
		})
	}
}

func TestDetectorEndsOnlyAfterAQuietWindowAndCountsTheStorm(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := detector{count: 2, window: time.Minute, quiet: 10 * time.Second}
	for i := 0; i < 3; i++ {
		d.arrive(t0, t0)
	}
	if !d.active || d.units != 3 {
		t.Fatalf("active=%v units=%d, want a storm of 3", d.active, d.units)
	}
	d.arrive(t0.Add(5*time.Second), t0.Add(5*time.Second))
	if d.end(t0.Add(14 * time.Second)) {
		t.Fatal("ended 9s after the last arrival, quiet is 10s")
	}
	if got, want := d.deadline(), t0.Add(15*time.Second); !got.Equal(want) {
		t.Fatalf("deadline %v, want %v", got, want)
	}
	if !d.end(t0.Add(15 * time.Second)) {
		t.Fatal("did not end after a quiet window")
	}
	if d.units != 4 {
		t.Fatalf("storm units %d, want 4", d.units)
	}
	// A file found by a rescan with an mtime older than the window is history, not an arrival.
	if d.arrive(t0, t0.Add(2*time.Minute)); len(d.recent) != 0 {
		t.Fatalf("an old file entered the window")
	}
}

func TestParseVerdictFindsTheBoardInVerifyOutput(t *testing.T) {
	tests := []struct {
		name, out, wantVerdict, wantClass string
	}{
		{"top level", `{"tool":"kanban-doctor","verdict":"corrupt","class":"index"}`, "corrupt", "index"},
		{"results list picks the db", `{"results":[{"db":"/a","verdict":"healthy"},{"db":"/b/kanban.db","verdict":"false-positive"}]}`, "false-positive", ""},
		{"boards list first", `{"boards":[{"db":"/x","verdict":"healthy"}]}`, "healthy", ""},
		{"not json", `verify: no such command`, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, c := parseVerdict([]byte(tt.out), "/b/kanban.db")
			if v != tt.wantVerdict || c != tt.wantClass {
				t.Fatalf("got %q %q, want %q %q", v, c, tt.wantVerdict, tt.wantClass)
			}
		})
	}
}
