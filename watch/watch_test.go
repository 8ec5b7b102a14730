package watch

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
)

// stormOf writes n small backups into dir as fast as possible.
func stormOf(t testing.TB, dir string, from, n int) {
	t.Helper()
	data := bytes.Repeat([]byte("x"), 512)
	for i := from; i < from+n; i++ {
		writeBackup(t, dir, i+1, data, nil)
	}
}

func TestStormOf5000BackupsIsCountedExactlyWithOneStorm(t *testing.T) {
	root := t.TempDir()
	r := startWatcher(t, Options{Paths: []string{root}, StormCount: 10, StormWindow: 5 * time.Second, Quiet: 700 * time.Millisecond})
	if got := r.metric(t, labels("kanban_doctor_storm_active", "default")); got != 0 {
		t.Fatalf("storm_active before any backup = %v, want 0", got)
	}
	stormOf(t, root, 0, 5000)
	r.log.waitFor(t, 30*time.Second, "storm-ended", func() bool { return len(r.log.all(EventStormEnded)) > 0 })

	onDisk := unitsOnDisk(t, root)
	if onDisk != 5000 {
		t.Fatalf("units on disk %d, want 5000", onDisk)
	}
	if got := r.metric(t, labels("kanban_doctor_backups_seen_total", "default")); got != float64(onDisk) {
		t.Fatalf("backups_seen_total = %v, files on disk %d", got, onDisk)
	}
	if n := len(r.log.all(EventBackupCreated)); n != onDisk {
		t.Fatalf("%d backup-created events, want %d", n, onDisk)
	}
	starts, ends := r.log.all(EventStormStarted), r.log.all(EventStormEnded)
	if len(starts) != 1 || len(ends) != 1 {
		t.Fatalf("%d storm-started and %d storm-ended events, want 1 each", len(starts), len(ends))
	}
	if starts[0].Units != 11 || starts[0].Unit == "" {
		t.Fatalf("storm-started %+v: want the 11th unit to cross the threshold", starts[0])
	}
	if ends[0].Units != 5000 || ends[0].Storm != starts[0].Storm {
		t.Fatalf("storm-ended %+v: want all 5000 units in storm %d", ends[0], starts[0].Storm)
	}
	created := r.log.all(EventBackupCreated)
	if quiet := ends[0].Time.Sub(created[len(created)-1].Time); quiet < 700*time.Millisecond || quiet > 5*time.Second {
		t.Fatalf("storm-ended %s after the last arrival, want the 700ms quiet window (plus scheduling)", quiet)
	}
	if got := r.metric(t, labels("kanban_doctor_storms_total", "default")); got != 1 {
		t.Fatalf("storms_total = %v, want 1", got)
	}
	if got := r.metric(t, labels("kanban_doctor_storm_active", "default")); got != 0 {
		t.Fatalf("storm_active after the quiet window = %v, want 0", got)
	}
	// The bytes gauge follows within about a second (stat only).
	r.log.waitFor(t, 5*time.Second, "backup_bytes", func() bool {
		return r.metric(t, labels("kanban_doctor_backup_bytes", "default")) == 5000*512
	})
}

func TestOverflowRecoversTheExactCountByRescan(t *testing.T) {
	root := t.TempDir()
	r := startWatcher(t, Options{Paths: []string{root}, StormCount: 1 << 30})
	// Pause the consumer and flood: the kernel queue (max_queued_events, 16384 here) overflows for real.
	r.w.gate.Lock()
	stormOf(t, root, 0, 2)
	time.Sleep(100 * time.Millisecond) // let the loop take the first event and block on the gate
	stormOf(t, root, 2, 14998)
	r.w.gate.Unlock()
	r.log.waitFor(t, 180*time.Second, "an overflow rescan", func() bool {
		for _, e := range r.log.all(EventRescan) {
			if e.Reason == ReasonOverflow {
				return true
			}
		}
		return false
	})
	r.log.waitFor(t, 120*time.Second, "all units seen", func() bool {
		return r.metric(t, labels("kanban_doctor_backups_seen_total", "default")) == 15000
	})
	if got := unitsOnDisk(t, root); got != 15000 {
		t.Fatalf("units on disk %d", got)
	}
	if got := r.metric(t, `kanban_doctor_watcher_rescans_total{board="default",reason="overflow"}`); got < 1 {
		t.Fatalf("rescans_total{reason=overflow} = %v", got)
	}
	// Each unit was announced once, whether by inotify or by the rescan.
	seen := map[string]int{}
	for _, e := range r.log.all(EventBackupCreated) {
		seen[e.Unit]++
	}
	if len(seen) != 15000 {
		t.Fatalf("%d distinct units announced, want 15000", len(seen))
	}
	for u, n := range seen {
		if n != 1 {
			t.Fatalf("unit %s announced %d times", u, n)
		}
	}
}

func TestDeletedAndRecreatedBoardDirAndNewBoardsAreWatched(t *testing.T) {
	root := t.TempDir()
	alpha := mkdir(t, root, "kanban", "boards", "alpha")
	os.WriteFile(filepath.Join(alpha, "board.json"), []byte(`{"name":"alpha"}`), 0o644)
	single := mkdir(t, t.TempDir(), "solo")
	r := startWatcher(t, Options{Paths: []string{root, single}, StormCount: 1 << 30})

	created := func(boardName string, n int) func() bool {
		return func() bool {
			c := 0
			for _, e := range r.log.all(EventBackupCreated) {
				if e.Board == boardName {
					c++
				}
			}
			return c >= n
		}
	}
	// A board of the root, deleted and recreated.
	stormOf(t, alpha, 0, 1)
	r.log.waitFor(t, 5*time.Second, "alpha's first backup", created("alpha", 1))
	if err := os.RemoveAll(alpha); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	mkdir(t, alpha)
	time.Sleep(50 * time.Millisecond)
	stormOf(t, alpha, 100, 3)
	r.log.waitFor(t, 5*time.Second, "alpha's backups after recreation", created("alpha", 4))

	// A new board under kanban/boards/, and another made with mkdir -p and files at once.
	beta := mkdir(t, root, "kanban", "boards", "beta")
	stormOf(t, beta, 0, 2)
	r.log.waitFor(t, 5*time.Second, "beta's backups", created("beta", 2))

	// A board directory given explicitly, deleted and recreated (its parent is watched).
	solo := "default@" + single
	stormOf(t, single, 0, 1)
	r.log.waitFor(t, 5*time.Second, "solo's first backup", created(solo, 1))
	if err := os.RemoveAll(single); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	mkdir(t, single)
	stormOf(t, single, 10, 2)
	r.log.waitFor(t, 5*time.Second, "solo's backups after recreation", created(solo, 3))

	if got := r.metric(t, labels("kanban_doctor_backups_seen_total", "beta")); got != 2 {
		t.Fatalf("beta seen_total = %v, want 2", got)
	}
	if got := r.metric(t, labels("kanban_doctor_backups_seen_total", "alpha")); got != 4 {
		t.Fatalf("alpha seen_total = %v, want 4", got)
	}
}

func TestHTTPEndpointsAndInitialScanOnLoopback(t *testing.T) {
	root := t.TempDir()
	stormOf(t, root, 0, 25) // history: counted, announced by the initial rescan, no storm
	r := startWatcher(t, Options{Paths: []string{root}})
	for _, p := range []string{"/livez", "/readyz"} {
		resp, err := http.Get(r.url + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok\n" {
			t.Fatalf("GET %s: %d %q", p, resp.StatusCode, body)
		}
	}
	if got := r.metric(t, labels("kanban_doctor_backups_seen_total", "default")); got != 25 {
		t.Fatalf("seen_total %v, want 25", got)
	}
	if n := len(r.log.all(EventBackupCreated)) + len(r.log.all(EventStormStarted)); n != 0 {
		t.Fatalf("%d arrival/storm events for history, want 0", n)
	}
	rs := r.log.all(EventRescan)
	if len(rs) != 1 || rs[0].Reason != ReasonInitial || rs[0].Total != 25 {
		t.Fatalf("rescan events %+v, want one initial with total 25", rs)
	}
	// One build_info series per process, whatever the number of boards.
	if got := r.metric(t, fmt.Sprintf(`kanban_doctor_build_info{goversion=%q,revision="unknown",version="dev"}`, goVersion())); got != 1 {
		t.Fatalf("build_info = %v", got)
	}
	w, err := New(Options{Paths: []string{root}})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{header: http.Header{}}
	w.Handler().ServeHTTP(rec, mustRequest(t, "/readyz"))
	if rec.code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before the initial scan: %d, want 503", rec.code)
	}
}

func TestPollModeSeesArrivalsWithoutInotify(t *testing.T) {
	root := t.TempDir()
	r := startWatcher(t, Options{Paths: []string{root}, Poll: 100 * time.Millisecond, StormCount: 5, StormWindow: 10 * time.Second, Quiet: 300 * time.Millisecond})
	if len(r.w.watched) != 0 {
		t.Fatalf("poll mode added inotify watches: %v", r.w.watched)
	}
	stormOf(t, root, 0, 20)
	r.log.waitFor(t, 10*time.Second, "storm-ended", func() bool { return len(r.log.all(EventStormEnded)) == 1 })
	if got := r.metric(t, labels("kanban_doctor_backups_seen_total", "default")); got != 20 {
		t.Fatalf("seen_total %v, want 20", got)
	}
	for _, e := range r.log.all(EventBackupCreated) {
		if e.Via != ViaPoll {
			t.Fatalf("arrival via %q in poll mode", e.Via)
		}
	}
	if n := len(r.log.all(EventStormStarted)); n != 1 {
		t.Fatalf("%d storms, want 1", n)
	}
}

func TestSymlinksAndOtherNamesAreNotBackups(t *testing.T) {
	root := t.TempDir()
	r := startWatcher(t, Options{Paths: []string{root}})
	target := filepath.Join(t.TempDir(), "elsewhere")
	os.WriteFile(target, []byte("x"), 0o644)
	os.Symlink(target, filepath.Join(root, board.DBName+".corrupt.20260501_120000.bak"))
	os.WriteFile(filepath.Join(root, "kanban.db.corrupt.bak.txt"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(root, board.DBName+".corrupt.20260501_120001.bak"), 0o755)
	stormOf(t, root, 5, 1) // one real backup, a marker that events flowed
	r.log.waitFor(t, 5*time.Second, "the real backup", func() bool { return len(r.log.all(EventBackupCreated)) == 1 })
	time.Sleep(100 * time.Millisecond)
	if n := len(r.log.all(EventBackupCreated)); n != 1 {
		t.Fatalf("%d arrivals, want only the regular file", n)
	}
}
