package dedupe

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Every read and every action names a backup relative to a descriptor of the directory the scan
// listed (the *at system calls), never by walking its path again: a directory renamed or
// replaced after the scan cannot redirect an action, a base name cannot leave its directory, and
// each call looks up one name instead of every component of the path.

// openDirs opens every scanned directory (O_PATH) and returns the function that closes them. A
// directory that is no longer the one the scan listed (another inode now) is refused.
func (inv *Inventory) openDirs() (closeAll func(), err error) {
	closeAll = func() {
		for i := range inv.Dirs {
			if d := &inv.Dirs[i]; d.fd >= 0 {
				unix.Close(d.fd)
				d.fd = -1
			}
		}
	}
	for i := range inv.Dirs {
		d := &inv.Dirs[i]
		fd, err := openSameDir(d.Path, 0, d.dev, d.ino)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("%s: %w", d.Path, err)
		}
		d.fd = fd
	}
	return closeAll, nil
}

// openDir opens a directory for the *at calls (it may be reached through a symlink: a board's
// directory often is; the files in it never are). flags adds to O_PATH|O_DIRECTORY|O_CLOEXEC.
func openDir(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC|flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// openSameDir is openDir refusing a directory that is no longer the one seen earlier (dev, ino).
func openSameDir(path string, flags int, dev, ino uint64) (int, error) {
	fd, err := openDir(path, flags)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err = unix.Fstat(fd, &st); err == nil && (uint64(st.Dev) != dev || st.Ino != ino) {
		err = errors.New("directory replaced since the scan")
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// at returns the descriptor of file i's directory and its name there.
func (inv *Inventory) at(i int32) (int, string) {
	f := &inv.files[i]
	return inv.Dirs[f.dir].fd, filepath.Base(f.Path)
}

// statAt is lstat of name in directory dirfd.
func statAt(dirfd int, name string, st *unix.Stat_t) error {
	for {
		err := unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW)
		if err != unix.EINTR {
			return err
		}
	}
}

// openAt opens name in directory dirfd without following a symlink or blocking on a FIFO.
func openAt(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// fdReader reads a raw descriptor (for io.ReadFull and io.Copy).
type fdReader int

func (r fdReader) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(int(r), b)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// heldReads keeps open the descriptors duplicates were read through, from the read to the action
// (ScanApply): the action needs no second open, and the descriptor pins the inode the content was
// proven on until the closers free it. A nil *heldReads keeps nothing.
type heldReads struct {
	fds  []int32 // by file index; -1 none
	open atomic.Int64
	max  int64
}

// maxHeldReads caps the descriptors a ScanApply keeps open (tests lower it).
var maxHeldReads int64 = 4096

// heldBudget is how many descriptors one pool of held files may keep open: a quarter of the
// descriptor limit, at most maxHeldReads. An apply has two such pools (held reads, kept files).
func heldBudget() int64 {
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil {
		return min(maxHeldReads, int64(rl.Cur/4))
	}
	return maxHeldReads
}

// newHeldReads sizes the table for n files and holds at most heldBudget descriptors at once:
// past that, reads close as usual and the action opens the file again.
func newHeldReads(n int) *heldReads {
	h := &heldReads{fds: make([]int32, n), max: heldBudget()}
	for i := range h.fds {
		h.fds[i] = -1
	}
	return h
}

// room reports whether another read may be kept open.
func (h *heldReads) room() bool { return h != nil && h.open.Load() < h.max }

// put records file i's open descriptor (fd < 0: none).
func (h *heldReads) put(i int32, fd int) {
	if fd >= 0 {
		h.fds[i] = int32(fd)
		h.open.Add(1)
	}
}

// take hands file i's descriptor to the caller (-1 when none was kept).
func (h *heldReads) take(i int32) int {
	if h == nil || h.fds[i] < 0 {
		return -1
	}
	fd := int(h.fds[i])
	h.fds[i] = -1
	h.open.Add(-1)
	return fd
}

// drop closes file i's descriptor, if one was kept.
func (h *heldReads) drop(i int32) {
	if fd := h.take(i); fd >= 0 {
		unix.Close(fd)
	}
}

// dropAll closes every descriptor still kept.
func (h *heldReads) dropAll() {
	for i := range h.fds {
		h.drop(int32(i))
	}
}
