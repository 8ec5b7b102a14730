package backup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
)

// Openers is who has a board's files open, from /proc/*/fd.
type Openers struct {
	Pids []int `json:"pids,omitempty"`
	// Unchecked counts processes whose fd table could not be read (another user's, as non-root):
	// they might hold the board open.
	Unchecked int `json:"unchecked,omitempty"`
}

// InUse reports whether the files may be open somewhere.
func (o Openers) InUse() bool { return len(o.Pids) > 0 || o.Unchecked > 0 }

type fileID struct{ dev, ino uint64 }

// FindOpeners lists the processes that hold any of paths open, by scanning /proc/*/fd for their
// inodes (a file that does not exist is skipped). It only stats: it opens none of the files.
func FindOpeners(paths ...string) (Openers, error) {
	ids, err := fileIDs(paths)
	if err != nil || len(ids) == 0 {
		return Openers{}, err
	}
	var o Openers
	seen := map[int]bool{}
	o.Unchecked, err = scanProc(ids, func(pid int, _ string) {
		if !seen[pid] {
			seen[pid] = true
			o.Pids = append(o.Pids, pid)
		}
	})
	sort.Ints(o.Pids)
	return o, err
}

// openInodes reports which of paths some process holds open.
func openInodes(paths []string) (map[string]bool, error) {
	ids, err := fileIDs(paths)
	if err != nil {
		return nil, err
	}
	open := map[string]bool{}
	if len(ids) == 0 {
		return open, nil
	}
	_, err = scanProc(ids, func(_ int, p string) { open[p] = true })
	return open, err
}

// fileIDs stats paths (missing ones are skipped) and maps each inode to its path.
func fileIDs(paths []string) (map[fileID]string, error) {
	ids := map[fileID]string{}
	for _, p := range paths {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			if errors.Is(err, syscall.ENOENT) {
				continue
			}
			return nil, fmt.Errorf("stat %s: %w", p, err)
		}
		ids[fileID{uint64(st.Dev), uint64(st.Ino)}] = p
	}
	return ids, nil
}

// scanProc calls hit for every process fd that refers to one of ids and returns how many
// processes' fd tables could not be read for lack of permission.
func scanProc(ids map[fileID]string, hit func(pid int, path string)) (unchecked int, err error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("scan /proc: %w", err)
	}
	for _, pe := range procs {
		pid, err := strconv.Atoi(pe.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join("/proc", pe.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				unchecked++
			}
			continue // exited, or a kernel thread
		}
		for _, fd := range fds {
			var st syscall.Stat_t
			if syscall.Stat(filepath.Join(fdDir, fd.Name()), &st) != nil {
				continue
			}
			if p, ok := ids[fileID{uint64(st.Dev), uint64(st.Ino)}]; ok {
				hit(pid, p)
			}
		}
	}
	return unchecked, nil
}
