package dedupe

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestAppearWatchSeesEveryWayANameAppears: a companion created, renamed into place, hard-linked,
// made a FIFO or a symlink is reported; a name that never appeared, or one that does not look like
// a companion, is not; once the kernel's queue overflows the watch says it cannot tell, so the
// caller falls back to looking names up.
func TestAppearWatchSeesEveryWayANameAppears(t *testing.T) {
	dir := t.TempDir()
	w := watchAppearances([]string{dir})
	if w == nil {
		t.Fatalf("no watch on %s (a local filesystem)", dir)
	}
	defer w.close()
	w.dirWd = []int32{w.wd[dir]}
	p := func(n string) string { return filepath.Join(dir, n) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(p("a.bak-wal"), nil, 0o644))
	must(os.WriteFile(p("tmp"), nil, 0o644))
	must(os.Rename(p("tmp"), p("b.bak-wal")))
	must(os.Link(p("a.bak-wal"), p("c.bak-shm")))
	must(syscall.Mkfifo(p("d.bak-shm"), 0o644))
	must(os.Symlink("/etc/passwd", p("e.bak-wal")))
	must(os.WriteFile(p("f.bak"), nil, 0o644))
	for name, want := range map[string]bool{"a.bak-wal": true, "b.bak-wal": true, "c.bak-shm": true, "d.bak-shm": true,
		"e.bak-wal": true, "f.bak": false, "g.bak-wal": false, "a.bak-shm": false} {
		seen, ok := w.appeared(0, name)
		if !ok || seen != want {
			t.Errorf("%s: seen %v ok %v; want seen %v", name, seen, ok, want)
		}
	}
	// The queue holds max_queued_events (16,384 by default); more, undrained, overflow it.
	limit := 16384
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events"); err == nil {
		fmt.Sscan(string(b), &limit)
	}
	must(os.WriteFile(p("x"), nil, 0o644))
	for range limit/2 + 100 { // each rename queues an event (its own cookie: never merged)
		must(os.Rename(p("x"), p("y")))
		must(os.Rename(p("y"), p("x")))
	}
	if _, ok := w.appeared(0, "g.bak-wal"); ok {
		t.Fatal("after an overflow the watch still answers; want it to give up")
	}
}
