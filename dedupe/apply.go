package dedupe

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"

	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
)

// ApplyOptions for Apply.
type ApplyOptions struct {
	// Workers acting in parallel; 0 means 2. Every unit kept for a content is handled by one worker
	// (its duplicates in plan order), so the re-checks of a kept file never race with links to it.
	Workers  int
	Progress Progress     // nil: none
	Logger   *slog.Logger // nil: silent
}

// Result is what Apply did. Its JSON shape is a contract (README).
type Result struct {
	Done         int       `json:"done"`    // duplicate units and redundant orphans acted on
	Skipped      int       `json:"skipped"` // left alone because something changed since the scan
	Failed       int       `json:"failed"`  // an operation failed (the unit may be an orphan now; a rerun finishes it)
	Files        int       `json:"files"`   // files removed, linked or moved
	FreedBytes   int64     `json:"freed_bytes"`
	Freed        string    `json:"freed"`
	TempsCleaned []string  `json:"temps_cleaned"`
	Problems     []Outcome `json:"problems"`
}

// Outcome is one unit Apply did not finish, and why.
type Outcome struct {
	Path   string `json:"path"`
	Kept   string `json:"kept,omitempty"`
	Status string `json:"status"` // "skipped" or "failed"
	Reason string `json:"reason"`
}

// opResult is what one op did.
type opResult struct {
	ran    bool
	files  int
	freed  int64
	why    string
	failed bool
}

// Apply carries out the plan: it first removes temporary links a killed run left, then for each
// duplicate re-checks the duplicate and the kept unit (same size, mtime and inode as scanned,
// still regular files in a scanned directory, absent companions still absent), proves every part
// byte-identical to the kept unit's (same inode, the in-memory proof from Scan, or a comparison
// from disk), and only then acts. Anything that changed is skipped and reported. A cancelled ctx
// stops between units and returns what was done with ctx's error.
//
// The ops run on o.Workers lanes, each kept unit's ops on one lane in plan order. Freeing the
// replaced files is the kernel's work and most of an apply's time (on a disk mounted with discard
// each free waits for the device), so a hardlink's replaced file is freed by closing a descriptor
// after the rename, on a pool of closers, not inside rename under the directory lock. Each op is
// as kill-safe alone as in a serial run (see the package comment); no op depends on another's.
func Apply(ctx context.Context, p *Plan, o ApplyOptions) (*Result, error) {
	closeDirs, err := p.openDirs()
	if err != nil {
		return nil, err
	}
	defer closeDirs()
	res, touched := p.startApply()
	// The status-change time each inode had when it was read: a re-check compares it, and our own
	// link-count changes update it (refreshKept).
	for i := range p.inv.files {
		p.noteCtime(int32(i))
	}
	p.cleanTemps(res, touched)
	stop := p.startClosers(o.Workers)
	out := make([]opResult, len(p.ops))
	all := make([]int, len(p.ops))
	for i := range all {
		all[i] = i
	}
	p.runOps(ctx, all, out, o, touched)
	stop()
	return p.finishApply(ctx, res, out, touched, o.Logger)
}

// openDirs opens the scanned directories and the quarantine directory for an apply's *at calls.
func (p *Plan) openDirs() (closeAll func(), err error) {
	closeInv, err := p.inv.openDirs()
	if err != nil {
		return nil, fmt.Errorf("apply dedupe: %w", err)
	}
	p.toFd = -1
	if p.opts.Action == ActionMove {
		fd, err := openSameDir(p.opts.To, unix.O_NOFOLLOW, p.toDev, p.toIno)
		if err != nil {
			closeInv()
			return nil, fmt.Errorf("apply dedupe: --to %s: %w", p.opts.To, err)
		}
		p.toFd = fd
	}
	p.keptFds = make([]int32, len(p.inv.files))
	for i := range p.keptFds {
		p.keptFds[i] = -1
	}
	p.keptByName.Store(!linkDescriptors)
	p.keptOpen.Store(0)
	p.keptMax = heldBudget()
	var rnd [6]byte
	rand.Read(rnd[:])
	p.tmpRun = hex.EncodeToString(rnd[:]) + "-" // temp names: random per apply, then a counter
	return func() {
		closeInv()
		for i, fd := range p.keptFds {
			if fd >= 0 {
				unix.Close(int(fd))
				p.keptFds[i] = -1
			}
		}
		if p.toFd >= 0 {
			unix.Close(p.toFd)
			p.toFd = -1
		}
	}, nil
}

// startApply resets what an apply tracks and returns an empty result and set of touched dirs.
func (p *Plan) startApply() (*Result, map[string]bool) {
	p.ctimes, p.keptSeen, p.anchors = map[inodeKey]int64{}, map[int32]bool{}, map[int32]int32{}
	return &Result{TempsCleaned: []string{}, Problems: []Outcome{}}, map[string]bool{}
}

// noteCtime records the ctime file i had when it was read, unless its inode has one already (the
// same reading, or a newer one our own action noted).
func (p *Plan) noteCtime(i int32) {
	f := &p.inv.files[i]
	if f.ctime == 0 {
		return
	}
	k := p.inv.ikey(i)
	p.mu.Lock()
	if _, ok := p.ctimes[k]; !ok {
		p.ctimes[k] = f.ctime
	}
	p.mu.Unlock()
}

// startClosers starts the goroutines that free the replaced files (see do) and returns the
// function that waits for them: on a disk mounted with discard each free waits for the device, so
// several run at once; on a RAM disk it is CPU work on the lanes' cores.
func (p *Plan) startClosers(workers int) (stop func()) {
	closers := max(workers, 8)
	frees := make(chan int, 256)
	var cwg sync.WaitGroup
	for range closers {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for fd := range frees {
				unix.Close(fd)
			}
		}()
	}
	p.release = func(fd int) { frees <- fd }
	return func() {
		close(frees)
		cwg.Wait()
		p.release = nil
	}
}

// runOps runs the given ops of p.ops on o.Workers workers, each kept unit's ops on one lane in
// plan order, and records what each did in out (indexed like p.ops).
func (p *Plan) runOps(ctx context.Context, ops []int, out []opResult, o ApplyOptions, touched map[string]bool) {
	workers := o.Workers
	if workers <= 0 {
		workers = 2
	}
	if o.Progress != nil {
		o.Progress.Start("deduplicating", int64(len(ops)), false)
		defer o.Progress.Done()
	}
	laneOf := map[int32]int{}
	var lanes [][]int
	for _, i := range ops {
		op := p.ops[i]
		l, ok := laneOf[op.kept]
		if !ok {
			l = len(lanes)
			laneOf[op.kept] = l
			lanes = append(lanes, nil)
		}
		lanes[l] = append(lanes[l], i)
	}
	dirs := make([]map[string]bool, workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		dirs[w] = map[string]bool{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				l := next.Add(1) - 1
				if l >= int64(len(lanes)) {
					return
				}
				for _, i := range lanes[l] {
					if ctx.Err() != nil {
						return
					}
					r := &out[i]
					r.files, r.freed, r.why, r.failed = p.do(p.ops[i], dirs[w])
					r.ran = true
					if o.Progress != nil {
						o.Progress.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, d := range dirs {
		for k := range d {
			touched[k] = true
		}
	}
}

// finishApply sums up what the ops did (out, indexed like p.ops) in plan order and syncs the
// touched directories.
func (p *Plan) finishApply(ctx context.Context, res *Result, out []opResult, touched map[string]bool, log *slog.Logger) (*Result, error) {
	log = logger(log)
	for i, op := range p.ops {
		r := &out[i]
		if !r.ran {
			continue
		}
		var subject string
		if op.unit >= 0 {
			subject = p.inv.path(p.inv.units[op.unit].parts[PartMain])
		} else {
			subject = p.inv.path(op.orphan)
		}
		kept := p.inv.path(p.inv.units[op.kept].parts[PartMain])
		switch {
		case r.why == "" && r.files == 0:
			// Every file already links to the content's current target (a duplicate that took
			// over past the link limit, in an earlier run): nothing was done.
			log.Debug("dedupe: already linked", "path", subject)
		case r.why == "":
			res.Done++
			res.Files += r.files
			res.FreedBytes += r.freed
			log.Debug("dedupe", "action", p.opts.Action, "path", subject, "kept", kept)
		case r.failed:
			res.Failed++
			res.Files += r.files
			res.Problems = append(res.Problems, Outcome{subject, kept, "failed", r.why})
			log.Warn("dedupe failed", "path", subject, "reason", r.why)
		default:
			res.Skipped++
			res.Problems = append(res.Problems, Outcome{subject, kept, "skipped", r.why})
			log.Info("dedupe skipped", "path", subject, "reason", r.why)
		}
	}
	err := ctx.Err()
	for d := range touched {
		if serr := atomicfile.SyncDir(d); serr != nil && err == nil {
			err = serr
		}
	}
	res.Freed = humanize.IBytes(uint64(res.FreedBytes))
	if err != nil {
		return res, fmt.Errorf("apply dedupe: %w", err)
	}
	return res, nil
}

// cleanTemps removes temporary links left by a killed hardlink run. A temp is removed only when it
// is a second name of a file the scan saw under its real name, and that name still exists.
func (p *Plan) cleanTemps(res *Result, touched map[string]bool) {
	if len(p.inv.Temps) == 0 {
		return
	}
	byIno := map[inodeKey]int32{}
	dirOf := map[string]int32{}
	for i, d := range p.inv.Dirs {
		dirOf[d.Path] = int32(i)
	}
	for i := range p.inv.files {
		byIno[p.inv.ikey(int32(i))] = int32(i)
	}
	for _, t := range p.inv.Temps {
		di, ok := dirOf[filepath.Dir(t)]
		if !ok {
			continue
		}
		dfd, tname := p.inv.Dirs[di].fd, filepath.Base(t)
		var st unix.Stat_t
		if statAt(dfd, tname, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		if st.Nlink < 2 {
			res.Problems = append(res.Problems, Outcome{Path: t, Status: "skipped", Reason: "temporary link is the only name of its content: left in place"})
			continue
		}
		twin, ok := byIno[inodeKey{p.inv.Dirs[di].dev, st.Ino}]
		if !ok {
			res.Problems = append(res.Problems, Outcome{Path: t, Status: "skipped", Reason: "temporary link is not a second name of a scanned backup: left in place"})
			continue
		}
		// The twin must still be as it was read (same inode as the temp, and in Apply its ctime
		// then, which already counts this temp): refreshKept below takes its new ctime as our own
		// doing, which would hide a change made meanwhile; a changed kept file must make its
		// duplicates' ops skip.
		why := "is gone"
		var tst unix.Stat_t
		if dirfd, name := p.inv.at(twin); statAt(dirfd, name, &tst) == nil {
			p.mu.Lock()
			ct := p.ctimes[p.inv.ikey(twin)]
			p.mu.Unlock()
			why = sameStat(&tst, p.inv.files[twin].File, ct)
		}
		if why != "" {
			res.Problems = append(res.Problems, Outcome{Path: t, Status: "skipped", Reason: "the backup it links to " + why + ": left in place"})
			continue
		}
		if err := unix.Unlinkat(dfd, tname, 0); err == nil {
			res.TempsCleaned = append(res.TempsCleaned, t)
			touched[filepath.Dir(t)] = true
			p.refreshKept([]pair{{kept: twin}}) // its link count, hence its ctime, changed
		}
	}
}

// pair is one file of the subject with the kept file it must equal.
type pair struct{ dup, kept int32 }

// do runs one op. It returns the files acted on, the bytes freed, and a reason when it did not
// finish (failed says the reason is an error, not a skip).
func (p *Plan) do(op op, touched map[string]bool) (int, int64, string, bool) {
	inv := p.inv
	k := &inv.units[op.kept]
	var pairs []pair
	if op.unit >= 0 {
		u := &inv.units[op.unit]
		for pt, fi := range u.parts {
			if fi < 0 {
				if why := p.absent(u.parts[PartMain], Part(pt)); why != "" {
					return 0, 0, why, false
				}
				continue
			}
			pairs = append(pairs, pair{fi, k.parts[pt]})
		}
	} else {
		pairs = []pair{{op.orphan, k.parts[inv.files[op.orphan].part]}}
	}
	// A hardlink holds each duplicate open from its re-check until after the rename, and closes
	// it last: the replaced file is then freed by the close, outside the directory lock rename
	// holds, so lanes free files in parallel instead of queueing on that lock. When the descriptor
	// the duplicate was read through is still open (ScanApply), that one is held, for any action:
	// it pins the inode the content was proven on, and the re-check by name shows the name still
	// holds that inode, unchanged.
	var held []int
	defer func() {
		for _, fd := range held {
			p.release(fd)
		}
	}()
	for _, pr := range pairs {
		var why string
		if fd := p.reads.take(pr.dup); fd >= 0 {
			held = append(held, fd)
			why = p.recheck(pr.dup)
		} else if p.opts.Action == ActionHardlink {
			var fd int
			fd, why = p.hold(pr.dup)
			if fd >= 0 {
				held = append(held, fd)
			}
		} else {
			why = p.recheck(pr.dup)
		}
		if why != "" {
			return 0, 0, why, false
		}
		if inv.files[pr.dup].dir != inv.files[pr.kept].dir && inv.Dirs[inv.files[pr.dup].dir].dev != inv.Dirs[inv.files[pr.kept].dir].dev && p.opts.Action == ActionHardlink {
			return 0, 0, "kept copy is on another filesystem: cannot hardlink", false
		}
		if why := p.prove(pr); why != "" {
			return 0, 0, why, false
		}
	}
	// The kept unit must be exactly what was scanned: its files before every action, its absent
	// companions still absent once per Apply (nothing here creates files beside a kept unit). Our
	// own links to a kept file change its ctime, so the ops of one kept unit take its lock from
	// this re-check until refreshKept has noted the new ctime.
	mu := &p.keptMu[int(op.kept)%len(p.keptMu)]
	mu.Lock()
	defer mu.Unlock()
	// A hardlink links to the content's current link target: the kept unit, or the duplicate that
	// took over when the kept file reached the filesystem's limit of links (65,000 on ext4; a
	// storm of 88,500 identical backups passes it). That duplicate was proven equal to the kept
	// unit by its own op and is re-checked below like the kept unit.
	target := op.kept
	if p.opts.Action == ActionHardlink {
		target = p.anchorOf(op.kept)
	}
	if target != op.kept {
		k = &inv.units[target]
		for i := range pairs {
			pairs[i].kept = k.parts[inv.files[pairs[i].dup].part]
		}
	}
	for pt, fi := range k.parts {
		if fi >= 0 {
			if why := p.recheckKept(fi); why != "" {
				return 0, 0, "kept copy " + inv.path(fi) + ": " + why, false
			}
		} else if !p.seen(target) {
			if why := p.absent(k.parts[PartMain], Part(pt)); why != "" {
				return 0, 0, "kept copy: " + why, false
			}
		}
	}
	p.mu.Lock()
	p.keptSeen[target] = true
	p.mu.Unlock()
	touchesKept := p.opts.Action == ActionHardlink
	for _, pr := range pairs {
		touchesKept = touchesKept || inv.linked(pr.dup, pr.kept)
	}
	if touchesKept { // our own action changes the kept inode's link count, hence its ctime
		defer p.refreshKept(pairs) // runs before the unlock
	}
	switch p.opts.Action {
	case ActionHardlink:
		return p.hardlink(op, pairs, touched)
	case ActionMove:
		return p.move(pairs, touched)
	}
	return p.remove(pairs, touched)
}

// anchorOf returns the unit duplicates of kept are linked to now (see do).
func (p *Plan) anchorOf(kept int32) int32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.anchors[kept]; ok {
		return a
	}
	return kept
}

// refreshKept notes the kept files' new ctime after an action that changed their link count
// (linking to them, or unlinking a name that was a link to them), so later re-checks of that inode
// (under any of its names) stay exact. Size, mtime and inode must still be as scanned.
func (p *Plan) refreshKept(pairs []pair) {
	for _, pr := range pairs {
		k := &p.inv.files[pr.kept]
		key := p.inv.ikey(pr.kept)
		p.mu.Lock()
		_, ok := p.ctimes[key]
		p.mu.Unlock()
		if !ok {
			continue
		}
		var st unix.Stat_t
		var err error
		if kfd := p.keptFds[pr.kept]; kfd >= 0 {
			err = unix.Fstat(int(kfd), &st)
		} else {
			dirfd, name := p.inv.at(pr.kept)
			err = statAt(dirfd, name, &st)
		}
		if err == nil && sameStat(&st, k.File, 0) == "" {
			p.mu.Lock()
			p.ctimes[key] = st.Ctim.Nano()
			p.mu.Unlock()
		}
	}
}

// recheck lstats file i: same inode, size, mtime (and ctime, as read) as scanned, a regular file,
// not one of the live board's files.
func (p *Plan) recheck(i int32) string {
	f := &p.inv.files[i]
	if p.inv.Dirs[f.dir].live[f.Path] {
		return ErrOutside.Error()
	}
	dirfd, name := p.inv.at(i)
	var st unix.Stat_t
	if err := statAt(dirfd, name, &st); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "vanished since the scan"
		}
		return fmt.Sprintf("stat: %v", err)
	}
	p.mu.Lock()
	ct := p.ctimes[p.inv.ikey(i)]
	p.mu.Unlock()
	return sameStat(&st, f.File, ct)
}

// seen reports whether the kept unit's absent companions were checked already.
func (p *Plan) seen(kept int32) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keptSeen[kept]
}

// hold is recheck through an O_PATH descriptor it returns open (-1 when the check fails): the
// descriptor pins the inode the check saw.
func (p *Plan) hold(i int32) (int, string) {
	f := &p.inv.files[i]
	if p.inv.Dirs[f.dir].live[f.Path] {
		return -1, ErrOutside.Error()
	}
	dirfd, name := p.inv.at(i)
	fd, err := openAt(dirfd, name, unix.O_PATH)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return -1, "vanished since the scan"
		}
		return -1, fmt.Sprintf("open: %v", err)
	}
	if why := p.heldIs(i, fd); why != "" {
		unix.Close(fd)
		return -1, why
	}
	return fd, ""
}

// heldIs checks an open descriptor of file i against the scan (and the ctime it was read with).
func (p *Plan) heldIs(i int32, fd int) string {
	f := &p.inv.files[i]
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Sprintf("stat: %v", err)
	}
	if st.Nlink == 0 {
		return "vanished since the scan"
	}
	p.mu.Lock()
	ct := p.ctimes[p.inv.ikey(i)]
	p.mu.Unlock()
	return sameStat(&st, f.File, ct)
}

// recheckKept re-checks kept file i before an action. Its first action checks it by name and
// keeps it open (O_PATH); later ones check the inode through that descriptor (fstat: the same
// inode by construction, still linked, same size, mtime and ctime), and a hardlink links that very
// inode (linkat AT_EMPTY_PATH), so the bytes the duplicates were proven equal to are what they get,
// whatever happens to the name meanwhile. Where the kernel refuses to link a descriptor (before
// Linux 6.10 without CAP_DAC_READ_SEARCH) every check and link goes by name (keptByName).
func (p *Plan) recheckKept(i int32) string {
	if p.keptByName.Load() {
		return p.recheck(i)
	}
	if kfd := p.keptFds[i]; kfd >= 0 {
		return p.heldIs(i, int(kfd))
	}
	if p.keptOpen.Load() >= p.keptMax {
		return p.recheck(i) // as many kept files held as the descriptor budget allows: by name
	}
	fd, why := p.hold(i)
	if why == "" {
		p.keptFds[i] = int32(fd)
		p.keptOpen.Add(1)
	}
	return why
}

// linkDescriptors is false in tests that exercise the by-name path on kernels that allow both.
var linkDescriptors = true

// linkKept links kept file i as name in directory dirfd: through its descriptor (see recheckKept),
// or by name.
func (p *Plan) linkKept(i int32, dirfd int, name string) error {
	if kfd := p.keptFds[i]; kfd >= 0 && !p.keptByName.Load() {
		err := unix.Linkat(int(kfd), "", dirfd, name, unix.AT_EMPTY_PATH)
		if err != unix.ENOENT {
			return err
		}
		var st unix.Stat_t
		if unix.Fstat(int(kfd), &st) == nil && st.Nlink == 0 {
			return err // the kept file was unlinked since its re-check
		}
		p.keptByName.Store(true) // not allowed here: from now on by name, re-checked by name
		if why := p.recheck(i); why != "" {
			return errors.New("kept copy " + p.inv.path(i) + ": " + why)
		}
	}
	kdirfd, kname := p.inv.at(i)
	return unix.Linkat(kdirfd, kname, dirfd, name, 0)
}

// absent checks that companion pt of the unit whose main file is main, which the scan did not
// see, has not appeared since.
func (p *Plan) absent(main int32, pt Part) string {
	dirfd, name := p.inv.at(main)
	name += partSuffix[pt]
	if seen, ok := p.watch.appeared(p.inv.files[main].dir, name); ok {
		if seen {
			return "companion " + name + " appeared since the scan"
		}
		return ""
	}
	var st unix.Stat_t
	if err := statAt(dirfd, name, &st); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return "companion " + name + " appeared since the scan"
	}
	return ""
}

// prove establishes that the two files are byte-identical: the same inode, both proven equal to
// the same in-memory copy while hashing, or a comparison from disk now.
func (p *Plan) prove(pr pair) string {
	inv := p.inv
	a, b := &inv.files[pr.dup], &inv.files[pr.kept]
	if inv.linked(pr.dup, pr.kept) {
		return ""
	}
	if a.state != stHashed || b.state != stHashed || a.sum != b.sum || a.Size != b.Size {
		return "content differs from the kept copy"
	}
	if a.rep >= 0 && a.rep == b.rep {
		return ""
	}
	return p.compareFiles(pr)
}

// compareFiles compares two files from disk, refusing symlinks and files changed since the scan.
func (p *Plan) compareFiles(pr pair) string {
	inv := p.inv
	a, b := &inv.files[pr.dup], &inv.files[pr.kept]
	adir, aname := inv.at(pr.dup)
	bdir, bname := inv.at(pr.kept)
	fa, err := openAt(adir, aname, unix.O_RDONLY)
	if err != nil {
		return fmt.Sprintf("open: %v", err)
	}
	defer unix.Close(fa)
	fb, err := openAt(bdir, bname, unix.O_RDONLY)
	if err != nil {
		return fmt.Sprintf("open kept copy: %v", err)
	}
	defer unix.Close(fb)
	var sta, stb unix.Stat_t
	if err := unix.Fstat(fa, &sta); err != nil {
		return fmt.Sprintf("stat: %v", err)
	}
	if why := sameStat(&sta, a.File, 0); why != "" {
		return why
	}
	if err := unix.Fstat(fb, &stb); err != nil {
		return fmt.Sprintf("stat kept copy: %v", err)
	}
	if why := sameStat(&stb, b.File, 0); why != "" {
		return "kept copy: " + why
	}
	const chunk = 256 << 10
	ba, bb := make([]byte, chunk), make([]byte, chunk)
	for {
		na, ea := io.ReadFull(fdReader(fa), ba)
		nb, eb := io.ReadFull(fdReader(fb), bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return "content differs from the kept copy (byte comparison)"
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			if eb != ea {
				return "content differs from the kept copy (length)"
			}
			return ""
		}
		if ea != nil {
			return fmt.Sprintf("read: %v", ea)
		}
		if eb != nil {
			return fmt.Sprintf("read kept copy: %v", eb)
		}
	}
}

// remove unlinks the duplicate's files, main first: a kill in between leaves companions that the
// next run recognises as byte-identical orphans, never a main file that lost its -wal (which would
// look like a different content).
func (p *Plan) remove(pairs []pair, touched map[string]bool) (int, int64, string, bool) {
	n, freed := 0, int64(0)
	for _, pr := range pairs {
		f := &p.inv.files[pr.dup]
		dirfd, name := p.inv.at(pr.dup)
		if err := unix.Unlinkat(dirfd, name, 0); err != nil {
			return n, freed, fmt.Sprintf("remove: %v", err), true
		}
		touched[p.inv.Dirs[f.dir].Path] = true
		n++
		if !p.inv.linked(pr.dup, pr.kept) {
			freed += f.Size
		}
	}
	return n, freed, "", false
}

// hardlink replaces each duplicate file by a link to the kept file: link to a temporary name in
// the duplicate's directory, then rename over the duplicate (atomic; the name always holds one of
// two identical contents).
//
// When the target's main file already has as many links as the filesystem allows (EMLINK on the
// first file), the duplicate unit stays whole and becomes op.kept's link target (anchors).
func (p *Plan) hardlink(op op, pairs []pair, touched map[string]bool) (int, int64, string, bool) {
	n, freed := 0, int64(0)
	for i, pr := range pairs {
		if p.inv.linked(pr.dup, pr.kept) {
			continue
		}
		f := &p.inv.files[pr.dup]
		dirfd, name := p.inv.at(pr.dup)
		tmp := "." + name + tempMarker + p.tmpRun + strconv.FormatUint(p.tmpSeq.Add(1), 16)
		if err := p.linkKept(pr.kept, dirfd, tmp); err != nil {
			if i == 0 && op.unit >= 0 && errors.Is(err, unix.EMLINK) {
				p.mu.Lock()
				p.anchors[op.kept] = op.unit
				p.mu.Unlock()
				return 0, 0, "kept as a second copy: " + filepath.Base(p.inv.path(pr.kept)) +
					" has as many hard links as the filesystem allows; later duplicates link to this one", false
			}
			return n, freed, fmt.Sprintf("link: %v", err), true
		}
		if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
			unix.Unlinkat(dirfd, tmp, 0)
			return n, freed, fmt.Sprintf("rename: %v", err), true
		}
		touched[p.inv.Dirs[f.dir].Path] = true
		n++
		freed += f.Size
	}
	return n, freed, "", false
}

// move links every file into the quarantine directory, syncs it, then unlinks the sources main
// first. A file already linked there (a killed run) counts as moved.
func (p *Plan) move(pairs []pair, touched map[string]bool) (int, int64, string, bool) {
	for _, pr := range pairs {
		f := &p.inv.files[pr.dup]
		dirfd, name := p.inv.at(pr.dup)
		if err := unix.Linkat(dirfd, name, p.toFd, name, 0); err != nil {
			if !errors.Is(err, fs.ErrExist) {
				return 0, 0, fmt.Sprintf("link into %s: %v", p.opts.To, err), true
			}
			var st unix.Stat_t
			if serr := statAt(p.toFd, name, &st); serr != nil || st.Ino != f.Inode {
				return 0, 0, "destination " + filepath.Join(p.opts.To, name) + " exists with other content", false
			}
		}
	}
	if err := atomicfile.SyncDir(p.opts.To); err != nil {
		return 0, 0, err.Error(), true
	}
	n, freed := 0, int64(0)
	for _, pr := range pairs {
		f := &p.inv.files[pr.dup]
		dirfd, name := p.inv.at(pr.dup)
		if err := unix.Unlinkat(dirfd, name, 0); err != nil {
			return n, freed, fmt.Sprintf("remove after move: %v", err), true
		}
		touched[p.inv.Dirs[f.dir].Path] = true
		n++
		freed += f.Size
	}
	return n, freed, "", false
}
