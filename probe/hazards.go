package probe

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/procfs"
)

// Hazard codes (a contract: README, JSON).
const (
	HazardDeletedWAL    = "deleted-wal"            // a process holds a deleted or replaced -wal inode: two WAL generations
	HazardDeletedSHM    = "deleted-shm"            // same for -shm
	HazardDeletedDB     = "deleted-db"             // a process holds a deleted or replaced database inode
	HazardOpen          = "open-processes"         // how many other processes have the database open
	HazardNetworkFS     = "network-fs"             // the board lives on a network or FUSE filesystem (WAL is unsafe there)
	HazardWALMissing    = "wal-missing"            // WAL-mode header, no -wal, while processes have the DB open
	HazardWALLarge      = "wal-large"              // -wal far larger than the autocheckpoint size: checkpoints starved
	HazardInitLock      = "init-lock-held"         // processes hold a lock on .init.lock
	HazardUnlockedProbe = "probe-bypasses-locking" // the probe connection itself ran with immutable/nolock
	HazardOwnFD         = "own-process-fds"        // this process holds extra descriptors of the board's files
)

// holder is one open descriptor of a board file in some process.
type holder struct {
	pid   int
	role  string // db, wal, shm, initlock
	stale bool   // the descriptor's inode is deleted or no longer the file at that path
}

// scanHolders lists the processes holding the board's files open (internal/procfs: it only stats
// and reads links, no board file is opened), one holder per pid, role and staleness.
func scanHolders(b board.Board) []holder {
	roles := map[string]string{b.DB: "db", b.WAL: "wal", b.SHM: "shm", b.InitLock: "initlock"}
	s, err := procfs.Holders(b.DB, b.WAL, b.SHM, b.InitLock)
	if err != nil {
		return nil
	}
	out := make([]holder, 0, len(s.Holders))
	for _, h := range s.Holders {
		out = append(out, holder{pid: h.Pid, role: roles[h.Path], stale: h.Stale})
	}
	return out
}

// countOwnFDs counts this process's descriptors of path (SQLite's own included).
func countOwnFDs(path string) int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	n := 0
	for _, fe := range fds {
		if link, err := os.Readlink(filepath.Join("/proc/self/fd", fe.Name())); err == nil && link == path {
			n++
		}
	}
	return n
}

// lock is one line of /proc/locks on a file of interest.
type lock struct {
	pid        int
	kind       string // POSIX, FLOCK, OFDLCK
	write      bool
	start, end string
}

// locksOn lists the locks held on path's inode (waiters excluded).
func locksOn(path string) []lock {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	st := fi.Sys().(*syscall.Stat_t)
	dev := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	f, err := os.Open("/proc/locks")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []lock
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 8 || fs[1] == "->" {
			continue
		}
		if fs[5] != dev {
			continue
		}
		pid, _ := strconv.Atoi(fs[4])
		out = append(out, lock{pid: pid, kind: fs[1], write: fs[3] == "WRITE", start: fs[6], end: fs[7]})
	}
	return out
}

// busyHolders names the processes (other than this one) that hold locks on the database or its
// -shm that can make a reader wait.
func busyHolders(b board.Board) []int {
	self := os.Getpid()
	set := map[int]bool{}
	for _, l := range locksOn(b.DB) {
		if l.pid != self && l.pid > 0 {
			set[l.pid] = true
		}
	}
	for _, l := range locksOn(b.SHM) {
		// WAL write (120), checkpoint (121) and recovery (122) locks.
		if l.pid != self && l.pid > 0 && l.write && (l.start == "120" || l.start == "121" || l.start == "122") {
			set[l.pid] = true
		}
	}
	return sortedPids(set)
}

func sortedPids(set map[int]bool) []int {
	var out []int
	for p := range set {
		out = append(out, p)
	}
	sort.Ints(out)
	return out
}

// describePids is "pid 12 (sqlite3), pid 40 (kanban-doctor)".
func describePids(pids []int) string {
	var parts []string
	for _, p := range pids {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p))
		name := strings.TrimSpace(string(comm))
		if err != nil || name == "" {
			parts = append(parts, fmt.Sprintf("pid %d", p))
			continue
		}
		parts = append(parts, fmt.Sprintf("pid %d (%s)", p, name))
	}
	return strings.Join(parts, ", ")
}

// Filesystem magic numbers (statfs f_type) where SQLite's WAL mode is unsafe: the -shm
// shared-memory index needs one host's memory.
var unsafeFS = map[int64]string{
	0x6969:     "nfs",
	0x517b:     "smb",
	0xff534d42: "cifs",
	0xfe534d42: "smb2",
	0x65735546: "fuse",
	0x01021997: "9p",
	0x00c36400: "ceph",
	0x5346414f: "afs",
	0x47504653: "gpfs",
	0x0bd00bd0: "lustre",
}

// filesystemOf names dir's filesystem when it is one of unsafeFS.
func filesystemOf(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return ""
	}
	return unsafeFS[int64(st.Type)]
}

// walLargeBytes is the -wal size reported as starved checkpoints when Options.WALLimit is 0: ten
// times SQLite's default autocheckpoint of 1000 pages of 4 KiB (hermes uses 100 pages and an
// 8 MiB journal_size_limit, so a healthy board stays far below it).
const walLargeBytes = 10 * 1000 * 4096

// scanHazards reports the conditions around a live board that produce false verdicts or lost
// commits. It stats, readlinks and reads /proc; it opens no board file.
func scanHazards(b board.Board, facts *fileFacts, walLimit int64) []Hazard {
	var hz []Hazard
	self := os.Getpid()
	byRole := map[string]map[int]bool{}
	staleBy := map[string]map[int]bool{}
	for _, h := range scanHolders(b) {
		if h.pid == self && !h.stale {
			continue
		}
		m := byRole
		if h.stale {
			m = staleBy
		}
		if m[h.role] == nil {
			m[h.role] = map[int]bool{}
		}
		m[h.role][h.pid] = true
	}
	for _, r := range []struct{ role, code, file string }{
		{"wal", HazardDeletedWAL, b.WAL}, {"shm", HazardDeletedSHM, b.SHM}, {"db", HazardDeletedDB, b.DB},
	} {
		if pids := sortedPids(staleBy[r.role]); len(pids) > 0 {
			hz = append(hz, Hazard{Code: r.code, Pids: pids, Paths: []string{r.file},
				Message: fmt.Sprintf("%s hold a deleted or replaced %s open: two generations of the file "+
					"that cannot see each other (commits can be lost, checks fail with I/O errors)",
					describePids(pids), filepath.Base(r.file))})
		}
	}
	open := sortedPids(byRole["db"])
	if len(open) > 0 {
		hz = append(hz, Hazard{Code: HazardOpen, Pids: open, Paths: []string{b.DB},
			Message: fmt.Sprintf("%d other process(es) have the database open: %s", len(open), describePids(open))})
	}
	if fs := filesystemOf(filepath.Dir(b.DB)); fs != "" {
		hz = append(hz, Hazard{Code: HazardNetworkFS, Paths: []string{filepath.Dir(b.DB)},
			Message: fmt.Sprintf("the board is on a %s filesystem: WAL mode needs shared memory on one host and is unsafe there", fs)})
	}
	walFI, walErr := os.Stat(b.WAL)
	if facts != nil && facts.Header != nil && facts.Header.JournalMode() == board.JournalWAL && walErr != nil && len(open) > 0 {
		hz = append(hz, Hazard{Code: HazardWALMissing, Pids: open, Paths: []string{b.WAL},
			Message: "the header says WAL mode but there is no -wal while processes have the database open: " +
				"the -wal was deleted behind their back"})
	}
	if walLimit <= 0 {
		walLimit = walLargeBytes
	}
	if walErr == nil && walFI.Size() > walLimit {
		hz = append(hz, Hazard{Code: HazardWALLarge, Paths: []string{b.WAL},
			Message: fmt.Sprintf("the -wal is %d bytes, far beyond the autocheckpoint size: checkpoints are starved "+
				"(a long reader or a stuck process)", walFI.Size())})
	}
	initPids := map[int]bool{}
	for _, l := range locksOn(b.InitLock) {
		if l.pid > 0 && l.pid != self {
			initPids[l.pid] = true
		}
	}
	if pids := sortedPids(initPids); len(pids) > 0 {
		hz = append(hz, Hazard{Code: HazardInitLock, Pids: pids, Paths: []string{b.InitLock},
			Message: fmt.Sprintf("%s hold the init lock: a first-connect initialisation is running or stuck", describePids(pids))})
	}
	return hz
}
