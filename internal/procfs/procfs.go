// Package procfs finds which processes hold a set of files open, from /proc/*/fd, without opening
// any of the files (opening and closing a SQLite file behind SQLite's back drops its locks).
package procfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Holder is one process holding one of the watched paths open.
type Holder struct {
	Pid  int
	Path string // the watched path the descriptor refers to
	// Stale: the descriptor's inode was deleted or is no longer the file at Path (for a -wal or
	// -shm: a second generation the process still writes to).
	Stale bool
}

// Scan is the result of one walk of /proc.
type Scan struct {
	Holders []Holder // one per (pid, path, stale), by pid then path
	// Unchecked counts processes whose fd table could not be read (another user's, when not root):
	// they might hold the files open.
	Unchecked int
}

// Pids lists the distinct pids among the holders, sorted.
func (s Scan) Pids() []int {
	seen := map[int]bool{}
	var out []int
	for _, h := range s.Holders {
		if !seen[h.Pid] {
			seen[h.Pid] = true
			out = append(out, h.Pid)
		}
	}
	sort.Ints(out)
	return out
}

type fileID struct{ dev, ino uint64 }

// Holders walks /proc/*/fd for descriptors of paths. A descriptor matches a path when it refers
// to the file now at that path (same device and inode, whatever name the process used) or when
// its link names that path but the inode differs or is deleted (Stale). Paths that do not exist
// still match stale descriptors. It only stats and reads links.
func Holders(paths ...string) (Scan, error) {
	cur := map[fileID]string{}
	want := map[string]bool{}
	for _, p := range paths {
		want[p] = true
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err == nil {
			cur[fileID{uint64(st.Dev), uint64(st.Ino)}] = p
		} else if !errors.Is(err, syscall.ENOENT) {
			return Scan{}, fmt.Errorf("stat %s: %w", p, err)
		}
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return Scan{}, fmt.Errorf("scan /proc: %w", err)
	}
	var s Scan
	type key struct {
		pid   int
		path  string
		stale bool
	}
	seen := map[key]bool{}
	for _, pe := range procs {
		pid, err := strconv.Atoi(pe.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join("/proc", pe.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				s.Unchecked++
			}
			continue // exited, or a kernel thread
		}
		for _, fd := range fds {
			fdPath := filepath.Join(fdDir, fd.Name())
			var h Holder
			var st syscall.Stat_t
			if syscall.Stat(fdPath, &st) == nil {
				if p, ok := cur[fileID{uint64(st.Dev), uint64(st.Ino)}]; ok {
					h = Holder{Pid: pid, Path: p}
				}
			}
			if h.Path == "" {
				link, err := os.Readlink(fdPath)
				if err != nil {
					continue
				}
				p := strings.TrimSuffix(link, " (deleted)")
				if !want[p] {
					continue
				}
				h = Holder{Pid: pid, Path: p, Stale: true}
			}
			k := key{h.Pid, h.Path, h.Stale}
			if !seen[k] {
				seen[k] = true
				s.Holders = append(s.Holders, h)
			}
		}
	}
	sort.Slice(s.Holders, func(i, j int) bool {
		a, b := s.Holders[i], s.Holders[j]
		if a.Pid != b.Pid {
			return a.Pid < b.Pid
		}
		return a.Path < b.Path
	})
	return s, nil
}
