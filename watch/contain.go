package watch

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
)

// Containment collapses identical arrivals as they land, by the rules of dedupe-backups: two units
// are duplicates only when they have the same parts (main, -wal, -shm) and every part is byte-identical;
// the first unit of a content is kept and never touched; a duplicate's parts are replaced one by
// one by hard links to the kept unit's parts (link to a temporary name, then rename over), so every
// name holds the complete content at every instant and a kill at any point loses nothing. Nothing is
// acted on by hash alone: each pair is compared byte for byte, and each part is re-checked (inode,
// size, mtime) right before its name is replaced. A leftover temporary link from a kill is a second
// name of a kept file and is removed at the next start.

// linkTag marks the temporary links containment makes (inside atomicfile's temp marker).
const linkTag = atomicfile.TempMarker + "watch-"

var partSuffixes = [3]string{"", "-wal", "-shm"}

// partStat is what a unit part looked like when it was examined.
type partStat struct {
	path    string
	present bool
	size    int64
	ino     uint64
	nlink   uint64
	mtime   time.Time
}

func statPart(path string) (partStat, error) {
	ps := partStat{path: path}
	fi, err := os.Lstat(path)
	if os.IsNotExist(err) {
		return ps, nil
	}
	if err != nil {
		return ps, err
	}
	if !fi.Mode().IsRegular() {
		return ps, fmt.Errorf("%s: not a regular file", path)
	}
	ps.present, ps.size, ps.mtime = true, fi.Size(), fi.ModTime()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ps.ino, ps.nlink = st.Ino, uint64(st.Nlink)
	}
	return ps, nil
}

func (p partStat) same(q partStat) bool {
	return p.present == q.present && p.size == q.size && p.ino == q.ino && p.mtime.Equal(q.mtime)
}

// cunit is a unit as containment examined it.
type cunit struct {
	board, dir, name string
	parts            [3]partStat
}

func (u *cunit) stat() error {
	for i, s := range partSuffixes {
		ps, err := statPart(filepath.Join(u.dir, u.name+s))
		if err != nil {
			return err
		}
		u.parts[i] = ps
	}
	if !u.parts[0].present {
		return fmt.Errorf("%s: main file gone", filepath.Join(u.dir, u.name))
	}
	return nil
}

// sig is the parts' presence and sizes: only units with equal sigs can be duplicates.
func (u *cunit) sig() string {
	var b strings.Builder
	for _, p := range u.parts {
		if p.present {
			fmt.Fprintf(&b, "%d,", p.size)
		} else {
			b.WriteString("-,")
		}
	}
	return b.String()
}

func (u *cunit) unchanged() bool {
	for _, p := range u.parts {
		q, err := statPart(p.path)
		if err != nil || !p.same(q) {
			return false
		}
	}
	return true
}

type cjob struct {
	st     *boardState
	board  string
	dir    string
	unit   string
	active bool // an arrival to contain (else an existing unit to index lazily)
}

// container owns the index of kept contents; it runs in its own goroutine so hashing never delays
// the event loop.
type container struct {
	w      *Watcher
	mu     sync.Mutex
	queue  []cjob
	touch_ map[string]time.Time // unit path -> last write seen
	wake   chan struct{}

	lazy  map[string]map[string][]*cunit // dir -> sig -> units present at start, not hashed yet
	kept  map[string]map[string][]*cunit // dir -> sig+hashes -> kept units
	clean map[string]bool                // dirs whose leftover temporary links were removed
	buf1  []byte
	buf2  []byte
}

func newContainer(w *Watcher) *container {
	return &container{w: w, touch_: map[string]time.Time{}, wake: make(chan struct{}, 1),
		lazy: map[string]map[string][]*cunit{}, kept: map[string]map[string][]*cunit{}, clean: map[string]bool{},
		buf1: make([]byte, 256<<10), buf2: make([]byte, 256<<10)}
}

// add queues a unit (called from the event loop).
func (c *container) add(st *boardState, unit string, active bool, now time.Time) {
	c.mu.Lock()
	c.queue = append(c.queue, cjob{st: st, board: st.b.Name, dir: st.b.Dir, unit: unit, active: active})
	if active {
		c.touch_[filepath.Join(st.b.Dir, unit)] = now
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// touch records a write to a unit's part (called from the event loop).
func (c *container) touch(unitPath string, now time.Time) {
	c.mu.Lock()
	if _, ok := c.touch_[unitPath]; ok {
		c.touch_[unitPath] = now
	}
	c.mu.Unlock()
}

func (c *container) run(ctx context.Context) {
	for {
		c.mu.Lock()
		var j cjob
		ok := len(c.queue) > 0
		if ok {
			j = c.queue[0]
			c.queue[0] = cjob{}
			c.queue = c.queue[1:]
		}
		c.mu.Unlock()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-c.wake:
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		c.do(ctx, j)
	}
}

func (c *container) do(ctx context.Context, j cjob) {
	log := c.w.log
	if !c.clean[j.dir] {
		c.clean[j.dir] = true
		c.removeLeftoverLinks(j.dir)
	}
	u := &cunit{board: j.board, dir: j.dir, name: j.unit}
	if !j.active {
		if err := u.stat(); err != nil {
			return
		}
		m := c.lazy[j.dir]
		if m == nil {
			m = map[string][]*cunit{}
			c.lazy[j.dir] = m
		}
		m[u.sig()] = append(m[u.sig()], u)
		return
	}
	if !c.settle(ctx, u) {
		return
	}
	sig := u.sig()
	// Index the pre-existing units of the same shape, oldest arrival first.
	if lz := c.lazy[j.dir][sig]; len(lz) > 0 {
		delete(c.lazy[j.dir], sig)
		for _, old := range lz {
			if old.unchanged() {
				if key, err := c.key(old); err == nil {
					c.index(old, key)
				}
			}
		}
	}
	key, err := c.key(u)
	if err != nil {
		log.Debug("contain: hash", "unit", u.name, "err", err)
		return
	}
	cands := c.kept[j.dir][key]
	live := cands[:0]
	var match *cunit
	for _, k := range cands {
		if !k.unchanged() {
			continue // the kept unit changed or vanished: it no longer stands for this content
		}
		live = append(live, k)
		if match != nil {
			continue
		}
		if k.name == u.name || k.parts[0].ino == u.parts[0].ino {
			match = k // already one content
			continue
		}
		eq, err := c.equal(u, k)
		if err != nil {
			log.Debug("contain: compare", "unit", u.name, "err", err)
			return
		}
		if eq {
			match = k
		}
	}
	if len(live) == 0 {
		delete(c.kept[j.dir], key)
	} else {
		c.kept[j.dir][key] = live
	}
	if match == nil {
		c.index(u, key)
		return
	}
	if match.name == u.name || match.parts[0].ino == u.parts[0].ino {
		return
	}
	freed, err := c.link(ctx, u, match)
	if err != nil {
		log.Warn("contain", "unit", u.name, "kept", match.name, "err", err)
		return
	}
	c.w.m.contained.WithLabelValues(j.board).Inc()
	c.w.m.containBytes.WithLabelValues(j.board).Add(float64(freed))
	c.w.em.emit(Event{Event: EventContained, Board: j.board, DB: j.st.b.DB, Unit: u.name, Kept: match.name,
		Action: "hardlink", Bytes: freed})
}

// settle waits until no part of u was written for the settle time (by inotify and by mtime) and
// fills u's stat; false when ctx ended or the unit vanished.
func (c *container) settle(ctx context.Context, u *cunit) bool {
	path := filepath.Join(u.dir, u.name)
	defer func() { c.mu.Lock(); delete(c.touch_, path); c.mu.Unlock() }()
	for i := 0; i < 100; i++ {
		if err := u.stat(); err != nil {
			return false
		}
		c.mu.Lock()
		last := c.touch_[path]
		c.mu.Unlock()
		for _, p := range u.parts {
			if p.present && p.mtime.After(last) {
				last = p.mtime
			}
		}
		wait := c.w.opts.Settle - time.Since(last)
		if wait <= 0 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
	return false
}

func (c *container) index(u *cunit, key string) {
	m := c.kept[u.dir]
	if m == nil {
		m = map[string][]*cunit{}
		c.kept[u.dir] = m
	}
	m[key] = append(m[key], u)
}

// key is the unit's sig plus the XXH3-128 of each part; the parts must not change while hashed.
func (c *container) key(u *cunit) (string, error) {
	var b strings.Builder
	b.WriteString(u.sig())
	h := xxh3.New()
	for _, p := range u.parts {
		if !p.present {
			b.WriteString("|-")
			continue
		}
		f, err := os.Open(p.path)
		if err != nil {
			return "", err
		}
		h.Reset()
		_, err = io.CopyBuffer(h, f, c.buf1)
		f.Close()
		if err != nil {
			return "", err
		}
		s := h.Sum128()
		fmt.Fprintf(&b, "|%016x%016x", s.Hi, s.Lo)
	}
	if !u.unchanged() {
		return "", fmt.Errorf("%s changed while hashed", u.name)
	}
	return b.String(), nil
}

// equal compares every part of a and b byte for byte, and checks that the files read are the ones
// examined.
func (c *container) equal(a, b *cunit) (bool, error) {
	for i := range a.parts {
		pa, pb := a.parts[i], b.parts[i]
		if pa.present != pb.present || pa.size != pb.size {
			return false, nil
		}
		if !pa.present {
			continue
		}
		eq, err := c.equalFiles(pa, pb)
		if err != nil || !eq {
			return false, err
		}
	}
	return true, nil
}

func (c *container) equalFiles(a, b partStat) (bool, error) {
	fa, err := openSame(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := openSame(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	for {
		na, ea := io.ReadFull(fa, c.buf1)
		nb, eb := io.ReadFull(fb, c.buf2)
		if na != nb || !bytes.Equal(c.buf1[:na], c.buf2[:nb]) {
			return false, nil
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == ea, nil
		}
		if ea != nil {
			return false, ea
		}
		if eb != nil {
			return false, eb
		}
	}
}

// openSame opens p's path and checks it is still the file examined.
func openSame(p partStat) (*os.File, error) {
	f, err := os.Open(p.path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st == nil || st.Ino != p.ino || fi.Size() != p.size || !fi.ModTime().Equal(p.mtime) {
		f.Close()
		return nil, fmt.Errorf("%s changed since it was examined", p.path)
	}
	return f, nil
}

// link replaces each part of dup by a hard link to keep's part (companions first, main last) and
// returns the bytes freed.
func (c *container) link(ctx context.Context, dup, keep *cunit) (int64, error) {
	var freed int64
	for _, i := range []int{1, 2, 0} {
		if ctx.Err() != nil {
			return freed, ctx.Err()
		}
		pd, pk := dup.parts[i], keep.parts[i]
		if !pd.present {
			continue
		}
		var rnd [6]byte
		rand.Read(rnd[:])
		tmp := filepath.Join(dup.dir, "."+filepath.Base(pd.path)+linkTag+hex.EncodeToString(rnd[:]))
		if err := os.Link(pk.path, tmp); err != nil {
			return freed, fmt.Errorf("link %s: %w", pk.path, err)
		}
		// Re-check both names right before the duplicate's name is replaced.
		now, err := statPart(pd.path)
		kt, err2 := statPart(tmp)
		if err != nil || err2 != nil || !now.same(pd) || kt.ino != pk.ino || kt.size != pk.size {
			os.Remove(tmp)
			return freed, fmt.Errorf("%s changed before linking: left as is", pd.path)
		}
		if err := os.Rename(tmp, pd.path); err != nil {
			os.Remove(tmp)
			return freed, fmt.Errorf("replace %s: %w", pd.path, err)
		}
		if pd.nlink <= 1 {
			freed += pd.size
		}
	}
	if err := atomicfile.SyncDir(dup.dir); err != nil {
		return freed, err
	}
	return freed, nil
}

// removeLeftoverLinks removes temporary links a killed run left in dir: only files carrying our
// link tag that are a second name of another file (link count above 1), or whose bytes the name
// they were made to replace still holds (a later run re-linked that name to another inode, so the
// temp became its inode's only name), so no content can go.
func (c *container) removeLeftoverLinks(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.Contains(n, linkTag) || !atomicfile.IsTemp(n) {
			continue
		}
		p := filepath.Join(dir, n)
		ps, err := statPart(p)
		if err != nil || !ps.present {
			continue
		}
		if ps.nlink <= 1 {
			// ".<name><tag><hex>": the temp of <name>. Only when <name> holds the same bytes.
			name := strings.TrimPrefix(n[:strings.Index(n, linkTag)], ".")
			ts, err := statPart(filepath.Join(dir, name))
			if err != nil || !ts.present || ts.ino == ps.ino || ts.size != ps.size {
				continue
			}
			if same, err := c.equalFiles(ps, ts); err != nil || !same {
				continue
			}
		}
		if os.Remove(p) == nil {
			c.w.log.Info("contain: removed leftover temporary link", "path", p)
		}
	}
}
