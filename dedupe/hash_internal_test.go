package dedupe

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kanban-doctor/kanban-doctor/board"
)

// TestHashFileRefusesWhatIsNoLongerTheScannedFile: a backup replaced between the directory scan
// and the read (by a FIFO, a symlink, other bytes) is marked changed, never hashed, never hangs.
func TestHashFileRefusesWhatIsNoLongerTheScannedFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "kanban.db.corrupt.20260510_030000.bak")
	os.WriteFile(p, []byte("backup"), 0o644)
	fi, _ := os.Lstat(p)
	var st syscall.Stat_t
	syscall.Lstat(p, &st)
	scanned := board.File{Path: p, Size: fi.Size(), ModTime: fi.ModTime(), Inode: st.Ino}

	dirfd, err := openDir(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dirfd)
	f := &file{File: scanned}
	hashFile(f, dirfd, nil, nil, false)
	if f.state != stHashed || f.ctime == 0 {
		t.Fatalf("unchanged file: state %v, ctime %d", f.state, f.ctime)
	}
	for _, tc := range []struct {
		name    string
		replace func()
		want    string
	}{
		{"fifo", func() { os.Remove(p); syscall.Mkfifo(p, 0o644) }, "regular file"},
		{"symlink", func() { os.Remove(p); os.Symlink("/etc/passwd", p) }, "open"},
		{"rewritten", func() { os.Remove(p); os.WriteFile(p, []byte("BACKUP"), 0o644) }, "since the scan"}, // inode or mtime: the inode may be reused
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.replace()
			f := &file{File: scanned}
			done := make(chan struct{})
			go func() { hashFile(f, dirfd, nil, nil, false); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("hashFile hangs")
			}
			if f.state != stChanged || !strings.Contains(f.why, tc.want) {
				t.Fatalf("state %v, why %q; want changed mentioning %q", f.state, f.why, tc.want)
			}
		})
	}
}
