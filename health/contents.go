package health

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/probe"
)

// Content is one distinct content among a board's corrupt backups: the units whose main file (and
// -wal companion, when there is one) are byte-identical. The -shm is an index SQLite rebuilds and
// does not count.
type Content struct {
	// SHA256 is the hex SHA-256 of the main file; its first 16 digits are what hermes's
	// content-addressed names carry. Empty when the content's size is unique, so no hash was needed
	// to tell it apart.
	SHA256    string    `json:"sha256,omitempty"`
	WALSHA256 string    `json:"wal_sha256,omitempty"`
	Size      int64     `json:"size"`               // main file
	WALSize   int64     `json:"wal_size,omitempty"` // -wal companion, 0 when none
	HasWAL    bool      `json:"has_wal"`
	Units     int       `json:"units"`
	Bytes     int64     `json:"bytes"` // all units of this content, companions included
	First     time.Time `json:"first"`
	Last      time.Time `json:"last"`
	Example   string    `json:"example"` // path of the first unit's main file
	// Check is the probe's answer on Example (with --check-contents), nil when not checked.
	Check *ContentCheck `json:"check,omitempty"`
}

// ContentCheck is what the probe said about one backup content.
type ContentCheck struct {
	Verdict  probe.Verdict   `json:"verdict"`
	Class    probe.Class     `json:"class,omitempty"`
	Findings []probe.Finding `json:"findings"`
	Error    string          `json:"error,omitempty"` // the check could not run
}

// Healthy reports whether the content was checked and found healthy: a backup made by a guard
// that cried wolf.
func (c Content) Healthy() bool {
	return c.Check != nil && c.Check.Error == "" && c.Check.Verdict == probe.Healthy
}

// GroupContents finds the distinct contents among units. Units are compared by size first; only
// units whose sizes collide are hashed, with XXH3-128 on up to 4 cores (hard links to an already
// hashed inode are not read again), and each distinct hashed content then gets its SHA-256. Units sharing an inode with skip (the live DB) are never read and each counts as its own
// content. progress may be nil. Backups are static files, so reading them is safe; the live DB
// is never opened here.
func GroupContents(ctx context.Context, units []board.Unit, skip os.FileInfo, progress Progress) ([]Content, error) {
	type key struct {
		size, wal int64
		hasWAL    bool
	}
	bySize := map[key][]int{}
	for i, u := range units {
		k := key{size: u.Main.Size, hasWAL: u.WAL != nil}
		if u.WAL != nil {
			k.wal = u.WAL.Size
		}
		bySize[k] = append(bySize[k], i)
	}
	var toHash int64
	for _, idx := range bySize {
		if len(idx) > 1 {
			for _, i := range idx {
				toHash += units[i].Main.Size
				if units[i].WAL != nil {
					toHash += units[i].WAL.Size
				}
			}
		}
	}
	if progress != nil && toHash > 0 {
		progress.Start("hashing backups", toHash, true)
		defer progress.Done()
	}
	h := hasher{byInode: map[uint64]string{}, done: map[string]string{}, skip: skip, progress: progress}
	var candidates []board.File
	for _, idx := range bySize {
		if len(idx) > 1 {
			for _, i := range idx {
				candidates = append(candidates, units[i].Main)
				if units[i].WAL != nil {
					candidates = append(candidates, *units[i].WAL)
				}
			}
		}
	}
	if err := h.prefetch(ctx, candidates); err != nil {
		return nil, err
	}
	groups := map[string]*Content{}
	var order []string
	add := func(id string, u board.Unit, c Content) {
		g, ok := groups[id]
		if !ok {
			c.First, c.Last, c.Example = u.Time, u.Time, u.Main.Path
			g = &c
			groups[id] = g
			order = append(order, id)
		}
		g.Units++
		g.Bytes += u.Bytes()
		if u.Time.Before(g.First) {
			g.First = u.Time
		}
		if u.Time.After(g.Last) {
			g.Last = u.Time
		}
	}
	for i, u := range units {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("group backup contents: %w", err)
		}
		k := key{size: u.Main.Size, hasWAL: u.WAL != nil}
		c := Content{Size: u.Main.Size, HasWAL: u.WAL != nil}
		if u.WAL != nil {
			k.wal, c.WALSize = u.WAL.Size, u.WAL.Size
		}
		if len(bySize[k]) == 1 {
			add(fmt.Sprintf("unique:%d", i), u, c)
			continue
		}
		sum, err := h.sum(ctx, u.Main)
		if err != nil {
			return nil, err
		}
		if sum == "" { // the live DB's inode: never read, never merged
			add(fmt.Sprintf("live:%d", i), u, c)
			continue
		}
		id := "xxh3:" + sum
		if u.WAL != nil {
			ws, err := h.sum(ctx, *u.WAL)
			if err != nil {
				return nil, err
			}
			id += "+" + ws
		}
		add(id, u, c)
	}
	var repBytes int64
	for _, id := range order {
		if strings.HasPrefix(id, "xxh3:") {
			repBytes += groups[id].Size + groups[id].WALSize
		}
	}
	if progress != nil && repBytes > 0 {
		progress.Start("SHA-256 of distinct contents", repBytes, true)
	}
	out := make([]Content, 0, len(order))
	for _, id := range order {
		c := *groups[id]
		if strings.HasPrefix(id, "xxh3:") {
			// Units were grouped by XXH3-128 (fast); the SHA-256 users can match against
			// content-addressed names is computed once per distinct content.
			var err error
			if c.SHA256, err = sha256File(ctx, c.Example, h.add); err != nil {
				return nil, err
			}
			if c.HasWAL {
				if c.WALSHA256, err = sha256File(ctx, c.Example+"-wal", h.add); err != nil {
					return nil, err
				}
			}
		}
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].First.Before(out[j].First) })
	return out, nil
}

type hasher struct {
	mu       sync.Mutex
	byInode  map[uint64]string
	done     map[string]string // path -> sum, from prefetch
	skip     os.FileInfo
	progress Progress
}

// prefetch hashes files on every core (at most 4 readers), one file per inode, skipping the
// live DB's inode; sum then finds the answers.
func (h *hasher) prefetch(ctx context.Context, files []board.File) error {
	workers := runtime.GOMAXPROCS(0)
	if workers > 4 {
		workers = 4
	}
	jobs := make(chan board.File)
	var wg sync.WaitGroup
	var firstErr error
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range jobs {
				s, err := h.hashFile(ctx, f)
				h.mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil {
					h.done[f.Path] = s
					if f.Inode != 0 {
						h.byInode[f.Inode] = s
					}
				}
				h.mu.Unlock()
			}
		}()
	}
	seen := map[uint64]bool{}
feed:
	for _, f := range files {
		if f.Inode != 0 {
			if seen[f.Inode] {
				continue
			}
			seen[f.Inode] = true
		}
		if h.isLive(f) {
			continue
		}
		select {
		case jobs <- f:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("hash backups: %w", err)
	}
	return firstErr
}

// isLive reports whether f is the live DB's own inode (a hard link to it).
func (h *hasher) isLive(f board.File) bool {
	if h.skip == nil {
		return false
	}
	if st, ok := h.skip.Sys().(*syscall.Stat_t); ok && f.Inode != 0 {
		return uint64(st.Ino) == f.Inode
	}
	fi, err := os.Stat(f.Path)
	return err == nil && os.SameFile(fi, h.skip)
}

// sum is the hash of one static backup file; "" means it is the live DB (same inode) and was
// not read.
func (h *hasher) sum(ctx context.Context, f board.File) (string, error) {
	if h.isLive(f) {
		return "", nil
	}
	h.mu.Lock()
	s, ok := h.done[f.Path]
	if !ok && f.Inode != 0 {
		if s, ok = h.byInode[f.Inode]; ok {
			h.mu.Unlock()
			h.add(f.Size) // a hard link of a file already read
			return s, nil
		}
	}
	h.mu.Unlock()
	if ok {
		return s, nil
	}
	s, err := h.hashFile(ctx, f)
	if err != nil {
		return "", err
	}
	h.mu.Lock()
	h.done[f.Path] = s
	if f.Inode != 0 {
		h.byInode[f.Inode] = s
	}
	h.mu.Unlock()
	return s, nil
}

// hashFile reads one static backup file through XXH3-128, the grouping key.
func (h *hasher) hashFile(ctx context.Context, f board.File) (string, error) {
	d := xxh3.New128()
	if err := readInto(ctx, f.Path, d, h.add); err != nil {
		return "", err
	}
	s := d.Sum128()
	return fmt.Sprintf("%016x%016x", s.Hi, s.Lo), nil
}

// sha256File is the hex SHA-256 of a static backup file.
func sha256File(ctx context.Context, path string, add func(int64)) (string, error) {
	d := sha256.New()
	if err := readInto(ctx, path, d, add); err != nil {
		return "", err
	}
	return hex.EncodeToString(d.Sum(nil)), nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// readInto streams a file into w, reporting progress and stopping when ctx is done.
func readInto(ctx context.Context, path string, w io.Writer, add func(int64)) error {
	file, err := os.Open(path)
	if err != nil {
		var pe *os.PathError // "open PATH: permission denied" would name the backup twice
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("hash backup %s: %w", path, err)
	}
	defer file.Close()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("hash backup %s: %w", path, err)
		}
		n, err := file.Read(buf)
		w.Write(buf[:n])
		add(int64(n))
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("hash backup %s: %w", path, err)
		}
	}
}

func (h *hasher) add(n int64) {
	if h.progress != nil {
		h.progress.Add(n)
	}
}
