package watch

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
)

// diskUsage is the bytes the directory's backup files occupy on disk (allocated blocks, each
// inode once), as du counts them.
func diskUsage(t testing.TB, dir string) int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	var n int64
	for _, e := range entries {
		if _, ok := board.ParseBackupName(board.DBName, e.Name()); !ok {
			continue
		}
		fi, err := os.Lstat(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !seen[st.Ino] {
			seen[st.Ino] = true
			n += st.Blocks * 512
		}
	}
	return n
}

func TestContainCollapsesIdenticalArrivalsAndKeepsDistinctOnes(t *testing.T) {
	const mb = 1 << 20
	n := 1000
	if testing.Short() {
		n = 200
	}
	root := t.TempDir()
	r := startWatcher(t, Options{Paths: []string{root}, Contain: true, Settle: 150 * time.Millisecond,
		StormCount: 10, StormWindow: time.Minute, Quiet: 500 * time.Millisecond})
	rng := rand.New(rand.NewPCG(1, 2))
	same := make([]byte, mb)
	for i := range same {
		same[i] = byte(rng.IntN(256))
	}
	wal := bytes.Repeat([]byte("w"), 4096)
	distinct := map[string][]byte{}
	for i := 0; i < n; i++ {
		writeBackup(t, root, i+1, same, wal)
		if i%100 == 50 { // a distinct content of the same size, differing in one byte only
			d := bytes.Clone(same)
			d[len(d)-1-i] ^= 0xff
			distinct[writeBackup(t, root, 100000+i, d, wal)] = d
		}
	}
	// One with the same main file but no -wal: not a duplicate (different parts).
	distinct[writeBackup(t, root, 200000, same, nil)] = same

	wantContained := n - 1
	r.log.waitFor(t, 120*time.Second, "containment", func() bool { return len(r.log.all(EventContained)) >= wantContained })
	time.Sleep(500 * time.Millisecond) // nothing more may be contained
	got := r.log.all(EventContained)
	if len(got) != wantContained {
		t.Fatalf("%d contained events, want %d", len(got), wantContained)
	}
	kept := got[0].Kept
	for _, e := range got {
		if e.Kept != kept || e.Action != "hardlink" || e.Bytes != mb+4096 {
			t.Fatalf("contained event %+v: want every identical unit linked to %s, freeing %d bytes", e, kept, mb+4096)
		}
		if _, ok := distinct[e.Unit]; ok {
			t.Fatalf("distinct unit %s was contained", e.Unit)
		}
	}
	// Nothing lost: every name still holds its own content.
	inv, err := board.ScanBackups(filepath.Join(root, board.DBName))
	if err != nil {
		t.Fatal(err)
	}
	if inv.Count() != n+len(distinct) {
		t.Fatalf("%d units on disk, want %d", inv.Count(), n+len(distinct))
	}
	for _, u := range inv.Units {
		data, err := os.ReadFile(u.Main.Path)
		if err != nil {
			t.Fatal(err)
		}
		want := same
		if d, ok := distinct[u.Name]; ok {
			want = d
		}
		if !bytes.Equal(data, want) {
			t.Fatalf("%s content changed", u.Name)
		}
		if _, ok := distinct[u.Name]; ok && u.Main.Nlink != 1 {
			t.Fatalf("distinct unit %s has %d links", u.Name, u.Main.Nlink)
		}
	}
	// About 1 MB (plus the distinct units) on disk instead of n MB.
	used := diskUsage(t, root)
	limit := int64(len(distinct)+1)*(mb+4096) + 1<<20
	t.Logf("%d identical + %d distinct 1 MiB units: %d bytes on disk (%.1f MiB), written %d MiB",
		n, len(distinct), used, float64(used)/mb, n+len(distinct))
	if used > limit {
		t.Fatalf("%d bytes on disk, want at most %d", used, limit)
	}
	if got := r.metric(t, labels("kanban_doctor_contained_total", "default")); got != float64(wantContained) {
		t.Fatalf("contained_total %v", got)
	}
	r.log.waitFor(t, 5*time.Second, "backup_bytes to drop", func() bool {
		return r.metric(t, labels("kanban_doctor_backup_bytes", "default")) <= float64(limit)
	})
	// No temporary link is left behind.
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if bytes.Contains([]byte(e.Name()), []byte(linkTag)) {
			t.Fatalf("leftover %s", e.Name())
		}
	}
}

func TestContainNeverTouchesAUnitThatChangedOrAPreexistingOne(t *testing.T) {
	root := t.TempDir()
	data := bytes.Repeat([]byte("k"), 64<<10)
	pre := writeBackup(t, root, 1, data, nil) // present before the watcher starts: the kept copy
	r := startWatcher(t, Options{Paths: []string{root}, Contain: true, Settle: 100 * time.Millisecond, StormCount: 100})
	dup := writeBackup(t, root, 2, data, nil)
	r.log.waitFor(t, 10*time.Second, "contained", func() bool { return len(r.log.all(EventContained)) == 1 })
	e := r.log.all(EventContained)[0]
	if e.Unit != dup || e.Kept != pre {
		t.Fatalf("contained %+v, want %s linked to the pre-existing %s", e, dup, pre)
	}
	a, _ := os.Stat(filepath.Join(root, pre))
	b, _ := os.Stat(filepath.Join(root, dup))
	if !os.SameFile(a, b) {
		t.Fatal("not linked")
	}
	// A leftover temporary link (a killed run) is removed at start, and so is one that became its
	// inode's only name while the name it was made for still holds the same bytes (a later run
	// linked that name elsewhere); a temp-looking file whose content exists nowhere else stays.
	leftover := filepath.Join(root, "."+dup+linkTag+"abc")
	os.Link(filepath.Join(root, pre), leftover)
	orphan := filepath.Join(root, "."+dup+linkTag+"0a1b2c")
	os.WriteFile(orphan, data, 0o644)
	lonely := filepath.Join(root, "."+dup+linkTag+"def")
	os.WriteFile(lonely, bytes.Repeat([]byte("z"), 64<<10), 0o644)
	r.stop()
	r2 := startWatcher(t, Options{Paths: []string{root}, Contain: true, Settle: 100 * time.Millisecond, StormCount: 100})
	writeBackup(t, root, 3, []byte("different"), nil)
	r2.log.waitFor(t, 5*time.Second, "arrival", func() bool { return len(r2.log.all(EventBackupCreated)) == 1 })
	time.Sleep(300 * time.Millisecond)
	if _, err := os.Lstat(leftover); !os.IsNotExist(err) {
		t.Fatalf("leftover link still there: %v", err)
	}
	if _, err := os.Lstat(orphan); !os.IsNotExist(err) {
		t.Fatalf("an orphaned temp whose bytes its unit still holds is still there: %v", err)
	}
	if _, err := os.Lstat(lonely); err != nil {
		t.Fatalf("the only copy of a content was removed: %v", err)
	}
}
