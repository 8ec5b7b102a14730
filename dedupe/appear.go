package dedupe

import (
	"bytes"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// appearWatch sees names appear in the scanned directories (inotify) from before their listing to
// the end of a ScanApply, so the re-check that a unit's absent -wal/-shm is still absent costs no
// directory lookup: each lookup of a name that does not exist is a miss that walks the directory's
// index (ext4) or allocates and frees a dentry (tmpfs), and an apply made two per duplicate.
//
// It is exactly as strong as the lookup: the kernel queues a name's event inside the system call
// that creates it (open with O_CREAT, link, rename, mknod, symlink), so a drain sees every name
// created before it, as a lookup at that moment would. Where that does not hold it is not used, and
// the lookup is: filesystems other processes may change from another machine (only local types are
// watched), a queue that overflowed, a watch the kernel dropped, no inotify at all.
type appearWatch struct {
	mu     sync.Mutex
	fd     int
	wd     map[string]int32 // directory path -> watch descriptor
	dirWd  []int32          // by Inventory.Dirs index (bind)
	names  map[wdName]bool  // companions created since the watch began
	buf    []byte
	broken bool
}

var walSuffix, shmSuffix = []byte(partSuffix[PartWAL]), []byte(partSuffix[PartSHM])

type wdName struct {
	wd   int32
	name string
}

// localFS are the filesystem types whose every change goes through this kernel.
var localFS = map[int64]bool{
	unix.EXT4_SUPER_MAGIC: true, unix.XFS_SUPER_MAGIC: true, unix.BTRFS_SUPER_MAGIC: true,
	unix.TMPFS_MAGIC: true, unix.F2FS_SUPER_MAGIC: true, 0x2fc12fc1: true, /* zfs */
	0xca451a4e: true, /* bcachefs */
}

// watchAppearances watches dirs for names that appear; nil when it cannot watch them all.
func watchAppearances(dirs []string) *appearWatch {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	w := &appearWatch{fd: fd, wd: map[string]int32{}, names: map[wdName]bool{}, buf: make([]byte, 64<<10)}
	for _, d := range dirs {
		var sfs unix.Statfs_t
		if unix.Statfs(d, &sfs) != nil || !localFS[int64(sfs.Type)] {
			w.close()
			return nil
		}
		wd, err := unix.InotifyAddWatch(fd, d, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_ONLYDIR)
		if err != nil {
			w.close()
			return nil
		}
		w.wd[d] = int32(wd)
	}
	return w
}

// bind maps the inventory's directories to their watches; false when one has none.
func (w *appearWatch) bind(inv *Inventory) bool {
	w.dirWd = make([]int32, len(inv.Dirs))
	for i, d := range inv.Dirs {
		wd, ok := w.wd[d.Path]
		if !ok {
			return false
		}
		w.dirWd[i] = wd
	}
	return true
}

func (w *appearWatch) close() {
	if w != nil && w.fd >= 0 {
		unix.Close(w.fd)
		w.fd = -1
	}
}

// appeared reports whether name appeared in directory dir since the watch began; ok is false when
// the watch cannot tell (the caller looks the name up instead).
func (w *appearWatch) appeared(dir int32, name string) (seen, ok bool) {
	if w == nil {
		return false, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.drain() {
		return false, false
	}
	return w.names[wdName{w.dirWd[dir], name}], true
}

// drain reads every queued event (called with mu held); false once the watch is broken.
func (w *appearWatch) drain() bool {
	const hdr = unix.SizeofInotifyEvent
	for !w.broken {
		n, err := unix.Read(w.fd, w.buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return true
		case err != nil || n <= 0:
			w.broken = true
			return false
		}
		for off := 0; off+hdr <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&w.buf[off]))
			name := w.buf[off+hdr : off+hdr+int(ev.Len)]
			off += hdr + int(ev.Len)
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if ev.Mask&(unix.IN_Q_OVERFLOW|unix.IN_IGNORED|unix.IN_UNMOUNT) != 0 {
				w.broken = true
				return false
			}
			if bytes.HasSuffix(name, walSuffix) || bytes.HasSuffix(name, shmSuffix) {
				w.names[wdName{ev.Wd, string(name)}] = true
			}
		}
		if n < len(w.buf)-(hdr+unix.NAME_MAX+1) {
			return true // the next event would have fit: the queue was empty
		}
	}
	return false
}
