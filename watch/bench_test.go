package watch

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
)

// BenchmarkStorm5000 is acceptance 1: 5,000 backups written as fast as possible into a watched
// board. Each iteration is a fresh board and watcher; events are read from the JSON-lines stream
// through a pipe, as a consumer of stdout would. It reports the latency from the creation of the
// file that crossed the storm threshold to the storm-started line (p50/p99/max over iterations),
// the same latency for every backup-created line, and checks the exact count and one storm.
//
//	go test ./watch -run '^$' -bench Storm5000 -benchtime 20x
func BenchmarkStorm5000(b *testing.B) {
	const n = 5000
	var stormLat, createdLat []time.Duration
	data := make([]byte, 4096)
	for i := 0; i < b.N; i++ {
		root := b.TempDir()
		pr, pw, err := os.Pipe()
		if err != nil {
			b.Fatal(err)
		}
		type line struct {
			at time.Time
			ev Event
		}
		lines := make(chan line, 2*n)
		go func() {
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				at := time.Now()
				var ev Event
				if json.Unmarshal(sc.Bytes(), &ev) == nil {
					lines <- line{at, ev}
				}
			}
			close(lines)
		}()
		r := startWatcher(b, Options{Paths: []string{root}, StormCount: 10, StormWindow: time.Minute,
			Quiet: 500 * time.Millisecond, Events: pw})
		created := make(map[string]time.Time, n)
		b.StartTimer()
		start := time.Now()
		for k := 0; k < n; k++ {
			name := board.FormatTimestamped(board.DBName, time.Date(2026, 5, 1, 12, 0, 0, 0, time.Local), k+1)
			created[name] = time.Now()
			if err := os.WriteFile(filepath.Join(root, name), data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		writeTook := time.Since(start)
		var starts, ends, seen int
		for starts == 0 || ends == 0 {
			l, ok := <-lines
			if !ok {
				b.Fatal("event stream closed")
			}
			switch l.ev.Event {
			case EventBackupCreated:
				seen++
				createdLat = append(createdLat, l.at.Sub(created[l.ev.Unit]))
			case EventStormStarted:
				starts++
				stormLat = append(stormLat, l.at.Sub(created[l.ev.Unit]))
			case EventStormEnded:
				ends++
			}
		}
		b.StopTimer()
		r.stop()
		pw.Close()
		for l := range lines {
			if l.ev.Event == EventStormStarted {
				starts++
			}
		}
		if seen != n || starts != 1 || ends != 1 || unitsOnDisk(b, root) != n {
			b.Fatalf("seen %d of %d on disk, %d storm-started, %d storm-ended", seen, unitsOnDisk(b, root), starts, ends)
		}
		b.ReportMetric(float64(n)/writeTook.Seconds(), "files/s")
	}
	pct := func(d []time.Duration, p float64) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[int(p*float64(len(s)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(stormLat, 0.5), "storm-p50-ms")
	b.ReportMetric(pct(stormLat, 0.99), "storm-p99-ms")
	b.ReportMetric(pct(stormLat, 1), "storm-max-ms")
	b.ReportMetric(pct(createdLat, 0.99), "created-p99-ms")
	if p99 := pct(stormLat, 0.99); p99 >= 250 {
		b.Errorf("storm-started p99 latency %.1f ms, want under 250 ms", p99)
	}
}
