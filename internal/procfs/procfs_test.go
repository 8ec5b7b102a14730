package procfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestHoldersFindsOpenAndDeletedDescriptors uses a real separate process (sleep with the files
// on its descriptors): a live file is found by inode, a deleted-and-recreated one as stale.
func TestHoldersFindsOpenAndDeletedDescriptors(t *testing.T) {
	dir := t.TempDir()
	db, wal := filepath.Join(dir, "kanban.db"), filepath.Join(dir, "kanban.db-wal")
	os.WriteFile(db, []byte("db"), 0o644)
	os.WriteFile(wal, []byte("old"), 0o644)
	cmd := exec.Command("sh", "-c", "exec sleep 30 3<"+db+" 4<"+wal)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var s Scan
	for i := 0; i < 100; i++ { // the shell needs a moment to set up its descriptors
		s, _ = Holders(db, wal)
		if len(s.Holders) == 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(s.Holders) != 2 || s.Holders[0].Stale || s.Holders[1].Stale {
		t.Fatalf("holders = %+v, want db and wal, live", s.Holders)
	}
	if !slices.Contains(s.Pids(), cmd.Process.Pid) {
		t.Fatalf("pids %v lack %d", s.Pids(), cmd.Process.Pid)
	}
	// Unlink and recreate the -wal: the process now holds a second generation.
	os.Remove(wal)
	os.WriteFile(wal, []byte("new"), 0o644)
	s, err := Holders(db, wal)
	if err != nil {
		t.Fatal(err)
	}
	var stale []Holder
	for _, h := range s.Holders {
		if h.Stale {
			stale = append(stale, h)
		}
	}
	if len(stale) != 1 || stale[0].Path != wal || stale[0].Pid != cmd.Process.Pid {
		t.Fatalf("stale holders = %+v, want the old -wal held by %d", stale, cmd.Process.Pid)
	}
	// A path nobody holds, and one that does not exist, find nothing.
	other := filepath.Join(dir, "other")
	os.WriteFile(other, nil, 0o644)
	if s, _ := Holders(other, filepath.Join(dir, "missing")); len(s.Holders) != 0 {
		t.Fatalf("unexpected holders %+v", s.Holders)
	}
}
