package dedupe

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zeebo/xxh3"
	"golang.org/x/sys/unix"

	"github.com/kanban-doctor/kanban-doctor/board"
)

// tempMarker is in the name of every temporary link Apply makes (it contains atomicfile's marker,
// so atomicfile.IsTemp recognises it too).
const tempMarker = ".kdtmp-dedupe-"

// wholeMax is the largest file read into memory in one piece (larger files are streamed).
const wholeMax = 16 << 20

// Scan inventories the corrupt backups beside each board and hashes every file that has a
// possible twin (same part sizes; orphan companions of a size some unit's companion has). It
// never opens a board's live database, -wal, -shm or lock files, and never follows a symlink.
func Scan(ctx context.Context, boards []board.Board, opts Options) (*Inventory, error) {
	inv, cand, err := inventory(boards, opts)
	if err != nil {
		return nil, err
	}
	closeDirs, err := inv.openDirs()
	if err != nil {
		return nil, fmt.Errorf("scan %w", err)
	}
	defer closeDirs()
	hp := inv.hashPlan(cand)
	if err := inv.hash(ctx, hp, opts, nil, nil); err != nil {
		return nil, err
	}
	for _, i := range hp.later {
		inv.copyLater(hp, i)
	}
	log := logger(opts.Logger)
	log.Debug("hashed backups", "bytes", inv.Hashed, "in_memory_proofs", len(inv.reps))
	return inv, nil
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// inventory lists the backups of every board (stat only) in keep order and the files worth hashing.
func inventory(boards []board.Board, opts Options) (*Inventory, []int32, error) {
	inv := &Inventory{}
	seen := map[string]bool{}
	for _, b := range boards {
		db, err := filepath.Abs(b.DB)
		if err != nil {
			return nil, nil, fmt.Errorf("scan %s: %w", b.DB, err)
		}
		if seen[db] {
			continue
		}
		seen[db] = true
		if err := inv.addBoard(board.New(b.Name, db)); err != nil {
			return nil, nil, err
		}
	}
	inv.sortUnits()
	cand := inv.candidates()
	logger(opts.Logger).Debug("scanned backups", "dirs", len(inv.Dirs), "units", len(inv.units), "files", inv.Files,
		"bytes", inv.Bytes, "orphans", len(inv.orphans), "temps", len(inv.Temps), "to_hash", len(cand))
	return inv, cand, nil
}

func (inv *Inventory) addBoard(b board.Board) error {
	var st syscall.Stat_t
	if err := syscall.Stat(b.Dir, &st); err != nil {
		return fmt.Errorf("scan %s: %w", b.Dir, err)
	}
	d := Dir{Path: b.Dir, DB: b.DB, dev: uint64(st.Dev), ino: st.Ino, fd: -1, live: map[string]bool{}}
	for _, p := range []string{b.DB, b.WAL, b.SHM, b.DB + "-journal", b.InitLock, b.DispatchLock} {
		d.live[p] = true
	}
	di := int32(len(inv.Dirs))
	inv.Dirs = append(inv.Dirs, d)
	bi, err := board.ScanBackups(b.DB)
	if err != nil {
		return fmt.Errorf("scan backups: %w", err)
	}
	add := func(f board.File, p Part) int32 {
		if d.live[f.Path] || filepath.Dir(f.Path) != b.Dir {
			return -1 // never: ScanBackups only yields backup names in this directory
		}
		inv.files = append(inv.files, file{File: f, dir: di, part: p, rep: -1})
		inv.Files++
		inv.Bytes += f.Size
		return int32(len(inv.files) - 1)
	}
	for _, u := range bi.Units {
		m := add(u.Main, PartMain)
		if m < 0 {
			continue
		}
		nu := unit{name: u.Name, dir: di, gen: u.Gen, time: u.Time, seq: u.Seq, parts: [nParts]int32{m, -1, -1}}
		if u.WAL != nil {
			nu.parts[PartWAL] = add(*u.WAL, PartWAL)
		}
		if u.SHM != nil {
			nu.parts[PartSHM] = add(*u.SHM, PartSHM)
		}
		inv.units = append(inv.units, nu)
	}
	for _, o := range bi.Orphans {
		p := PartWAL
		if strings.HasSuffix(o.Path, "-shm") {
			p = PartSHM
		}
		if i := add(o, p); i >= 0 {
			inv.orphans = append(inv.orphans, i)
		}
	}
	temps, err := findTemps(b.Dir, filepath.Base(b.DB))
	if err != nil {
		return err
	}
	inv.Temps = append(inv.Temps, temps...)
	return nil
}

// findTemps lists the temporary links a killed hardlink run left in dir.
func findTemps(dir, dbName string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", dir, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", dir, err)
	}
	var out []string
	for _, n := range names {
		if isTempName(dbName, n) {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out, nil
}

// isTempName reports whether n is ".<backup file name>.kdtmp-dedupe-<hex>".
func isTempName(dbName, n string) bool {
	i := strings.Index(n, tempMarker)
	if i < 1 || n[0] != '.' {
		return false
	}
	_, ok := board.ParseBackupName(dbName, n[1:i])
	return ok
}

// sortUnits orders units by the keep rule's notion of age: time, collision sequence, name, dir.
func (inv *Inventory) sortUnits() {
	slices.SortStableFunc(inv.units, func(a, b unit) int {
		if c := a.time.Compare(b.time); c != 0 {
			return c
		}
		if a.seq != b.seq {
			return a.seq - b.seq
		}
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		return int(a.dir - b.dir)
	})
}

// sig is a unit's shape: the size of each part, -1 for an absent companion.
type sig [nParts]int64

func (inv *Inventory) sigOf(u *unit) sig {
	var s sig
	for p, fi := range u.parts {
		s[p] = -1
		if fi >= 0 {
			s[p] = inv.files[fi].Size
		}
	}
	return s
}

// candidates lists the files worth hashing: every part of units that share a shape with another
// unit, and orphan companions with the parts of the same kind and size they might equal.
func (inv *Inventory) candidates() []int32 {
	bySig := make(map[sig]int32, len(inv.units)) // first unit of a shape, or -2 once there are two
	for i := range inv.units {
		s := inv.sigOf(&inv.units[i])
		if _, ok := bySig[s]; ok {
			bySig[s] = -2
		} else {
			bySig[s] = int32(i)
		}
	}
	want := make([]bool, len(inv.files))
	for i := range inv.units {
		u := &inv.units[i]
		if bySig[inv.sigOf(u)] == -2 {
			for _, fi := range u.parts {
				if fi >= 0 {
					want[fi] = true
				}
			}
		}
	}
	if len(inv.orphans) > 0 {
		type pk struct {
			p    Part
			size int64
		}
		orph := map[pk]bool{}
		for _, oi := range inv.orphans {
			o := &inv.files[oi]
			orph[pk{o.part, o.Size}] = true
		}
		matched := map[pk]bool{}
		for i := range inv.units {
			for p, fi := range inv.units[i].parts {
				if fi >= 0 && p != int(PartMain) {
					k := pk{Part(p), inv.files[fi].Size}
					if orph[k] {
						want[fi] = true
						matched[k] = true
					}
				}
			}
		}
		for _, oi := range inv.orphans {
			o := &inv.files[oi]
			if matched[pk{o.part, o.Size}] {
				want[oi] = true
			}
		}
	}
	var out []int32
	for i, w := range want {
		if w {
			out = append(out, int32(i))
		}
	}
	return out
}

// inodeKey names an inode: the device of the directory a name is in, and the inode number. Two
// scanned directories on one filesystem can hold names of one inode (a hardlink run across boards).
type inodeKey struct {
	dev uint64
	ino uint64
}

// ikey is file i's inodeKey.
func (inv *Inventory) ikey(i int32) inodeKey {
	f := &inv.files[i]
	return inodeKey{inv.Dirs[f.dir].dev, f.Inode}
}

type repKey struct {
	part Part
	size int64
	sum  xxh3.Uint128
}

// hashPlan splits the files to hash into those read (in the given order) and those sharing an
// inode with an earlier one, which take its result (copyLater) instead of being read again.
type hashPlan struct {
	todo  []int32
	later []int32
	first map[inodeKey]int32 // inode -> the file read for it
	total int64              // bytes to read
}

func (inv *Inventory) hashPlan(cand []int32) hashPlan {
	hp := hashPlan{first: make(map[inodeKey]int32, len(cand))}
	for _, i := range cand {
		f := &inv.files[i]
		k := inv.ikey(i)
		if _, ok := hp.first[k]; ok && f.Inode != 0 {
			hp.later = append(hp.later, i)
			continue
		}
		hp.first[k] = i
		hp.todo = append(hp.todo, i)
		hp.total += f.Size
	}
	return hp
}

// copyLater gives file i (in hp.later) the result of the file read for its inode.
func (inv *Inventory) copyLater(hp hashPlan, i int32) {
	f := &inv.files[i]
	src := &inv.files[hp.first[inv.ikey(i)]]
	f.sum, f.state, f.rep, f.why = src.sum, src.state, src.rep, src.why
}

// hash reads hp.todo on opts.Workers readers, in that order; done (if not nil) is called with the
// position in hp.todo of each file once its result is final. With opts.Verify, a file equal byte
// for byte to the in-memory copy of a content (the copy its part and size last matched) takes that
// copy's hash without hashing: equal bytes have the same hash, and the comparison is the proof.
func (inv *Inventory) hash(ctx context.Context, hp hashPlan, opts Options, done func(n int), reads *heldReads) error {
	workers := opts.Workers
	if workers <= 0 {
		workers = 2
	}
	budget := opts.CacheBytes
	if budget == 0 {
		budget = 64 << 20
	}
	todo := hp.todo
	type sizeKey struct {
		part Part
		size int64
	}
	var (
		read   atomic.Int64
		next   atomic.Int64
		mu     sync.Mutex
		reps   = map[repKey]int32{}
		sums   []xxh3.Uint128        // of inv.reps
		hint   = map[sizeKey]int32{} // the copy a file of this part and size last matched
		used   int64
		wg     sync.WaitGroup
		cancel atomic.Bool
	)
	// repFor proves buf equal to the cached copy of its content, or caches it.
	repFor := func(f *file, buf []byte) int32 {
		k := repKey{f.part, f.Size, f.sum}
		mu.Lock()
		r, ok := reps[k]
		if !ok {
			r = -1
			if used+int64(len(buf)) <= budget {
				used += int64(len(buf))
				inv.reps = append(inv.reps, bytes.Clone(buf))
				sums = append(sums, f.sum)
				r = int32(len(inv.reps) - 1)
				reps[k] = r
				hint[sizeKey{f.part, f.Size}] = r
			}
			mu.Unlock()
			return r
		}
		rb := inv.reps[r]
		mu.Unlock()
		if bytes.Equal(rb, buf) {
			mu.Lock()
			hint[sizeKey{f.part, f.Size}] = r
			mu.Unlock()
			return r
		}
		return -1 // an xxh3 collision: Apply compares from disk and finds the difference
	}
	// known returns the copy buf equals, if it is the one its part and size last matched.
	var known func(f *file, buf []byte) (xxh3.Uint128, int32, bool)
	if opts.Verify {
		known = func(f *file, buf []byte) (xxh3.Uint128, int32, bool) {
			mu.Lock()
			r, ok := hint[sizeKey{f.part, f.Size}]
			var rb []byte
			var sum xxh3.Uint128
			if ok {
				rb, sum = inv.reps[r], sums[r]
			}
			mu.Unlock()
			if ok && bytes.Equal(rb, buf) {
				return sum, r, true
			}
			return sum, -1, false
		}
	}
	if opts.Progress != nil {
		opts.Progress.Start("hashing backups", hp.total, true)
		defer opts.Progress.Done()
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for {
				n := next.Add(1) - 1
				if n >= int64(len(todo)) || cancel.Load() {
					return
				}
				if ctx.Err() != nil {
					cancel.Store(true)
					return
				}
				f := &inv.files[todo[n]]
				var proven bool
				var fd int
				buf, proven, fd = hashFile(f, inv.Dirs[f.dir].fd, buf, known, reads.room())
				reads.put(todo[n], fd)
				if opts.Verify && !proven && f.state == stHashed && f.Size <= wholeMax {
					f.rep = repFor(f, buf[:f.Size])
				}
				read.Add(f.Size)
				if done != nil {
					done(int(n))
				}
				if opts.Progress != nil {
					opts.Progress.Add(f.Size)
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("hash backups: %w", err)
	}
	inv.Hashed = read.Load()
	return nil
}

// hashFile hashes f, named name in directory dirfd (refusing symlinks and files that changed
// since the scan), and returns the buffer for reuse; for files up to wholeMax the buffer holds the
// content afterwards. When known (not nil) finds the content equal to an in-memory copy, f takes
// that copy's hash and rep without hashing, and proven is true. With keep, the descriptor the
// content was read through is returned open (fd >= 0) when f was hashed; the caller closes it.
func hashFile(f *file, dirfd int, buf []byte, known func(*file, []byte) (xxh3.Uint128, int32, bool), keep bool) (_ []byte, proven bool, fd int) {
	fd, err := openAt(dirfd, filepath.Base(f.Path), unix.O_RDONLY)
	if err != nil {
		f.state, f.why = stChanged, fmt.Sprintf("open: %v", err)
		return buf, false, -1
	}
	defer func() {
		if !keep || f.state != stHashed {
			unix.Close(fd)
			fd = -1
		}
	}()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.state, f.why = stChanged, fmt.Sprintf("stat: %v", err)
		return buf, false, fd
	}
	if why := sameStat(&st, f.File, 0); why != "" {
		f.state, f.why = stChanged, why
		return buf, false, fd
	}
	f.ctime = st.Ctim.Nano()
	if f.Size <= wholeMax {
		if int64(cap(buf)) < f.Size+1 {
			buf = make([]byte, f.Size+1, max(f.Size+1, 1<<20))
		}
		n, err := io.ReadFull(fdReader(fd), buf[:f.Size+1])
		if int64(n) != f.Size || (err != io.ErrUnexpectedEOF && err != io.EOF) {
			f.state, f.why = stChanged, "size changed while reading"
			if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
				f.why = fmt.Sprintf("read: %v", err)
			}
			return buf, false, fd
		}
		if known != nil {
			if sum, r, ok := known(f, buf[:n]); ok {
				f.sum, f.rep, f.state = sum, r, stHashed
				return buf, true, fd
			}
		}
		f.sum, f.state = xxh3.Hash128(buf[:n]), stHashed
		return buf, false, fd
	}
	if cap(buf) < 1<<20 {
		buf = make([]byte, 1<<20)
	}
	h := xxh3.New128()
	n, err := io.CopyBuffer(h, io.LimitReader(fdReader(fd), f.Size+1), buf[:cap(buf)])
	if err != nil || n != f.Size {
		f.state, f.why = stChanged, "size changed while reading"
		if err != nil {
			f.why = fmt.Sprintf("read: %v", err)
		}
		return buf, false, fd
	}
	f.sum, f.state = h.Sum128(), stHashed
	return buf, false, fd
}

// sameFile checks an open file against what the scan saw: same inode, size and mtime, regular.
func sameFile(fd *os.File, want board.File) string {
	var st unix.Stat_t
	rc, err := fd.SyscallConn()
	if err == nil {
		if cerr := rc.Control(func(f uintptr) { err = unix.Fstat(int(f), &st) }); cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Sprintf("stat: %v", err)
	}
	return sameStat(&st, want, 0)
}

// sameStat compares a stat result with the scanned file; a non-zero ctime must match too (it
// catches a rewrite that restored size and mtime).
func sameStat(st *unix.Stat_t, want board.File, ctime int64) string {
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return "no longer a regular file"
	case st.Ino != want.Inode:
		return "replaced since the scan (inode changed)"
	case st.Size != want.Size:
		return fmt.Sprintf("size changed since the scan (%d -> %d bytes)", want.Size, st.Size)
	case !time.Unix(st.Mtim.Unix()).Equal(want.ModTime):
		return "modified since the scan (mtime changed)"
	case ctime != 0 && st.Ctim.Nano() != ctime:
		return "changed since it was read (ctime changed)"
	}
	return ""
}
