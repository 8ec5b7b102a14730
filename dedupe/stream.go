package dedupe

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
)

// ScanApply is Scan (with Verify), NewPlan and Apply in one pass that acts while it still reads:
// files are hashed in keep order, and once every unit up to a duplicate has been read (so its kept
// unit, the first whole unit of its content in that order, is settled) the duplicate is
// re-checked, proven and acted on exactly as Apply does, on ao.Workers workers beside the readers.
// The kernel's freeing of replaced files and the re-checks thus overlap the reading instead of
// following it. Orphan companions are handled after the last read. The plan, its report and the
// result are the same as Scan, NewPlan and Apply would give (a dry run's report does not depend on
// the path taken), and every op is as kill-safe as in Apply. Options errors (ErrUsage) are returned
// before anything is read; a cancelled ctx stops reading and acting and returns its error (what was
// done stays done and is complete per unit; a rerun finishes the job).
func ScanApply(ctx context.Context, boards []board.Board, so Options, po PlanOptions, ao ApplyOptions) (*Plan, *Result, error) {
	var watched []string
	for _, b := range boards {
		if db, err := filepath.Abs(b.DB); err == nil {
			watched = append(watched, filepath.Dir(db))
		}
	}
	watch := watchAppearances(watched) // before the listing: no companion created after it goes unseen
	defer watch.close()
	inv, cand, err := inventory(boards, so)
	if err != nil {
		return nil, nil, err
	}
	p, err := newPlan(inv, po)
	if err != nil {
		return nil, nil, err
	}
	if watch != nil && watch.bind(inv) {
		p.watch = watch
		defer func() { p.watch = nil }()
	}
	so.Verify = true
	closeDirs, err := p.openDirs()
	if err != nil {
		return nil, nil, err
	}
	defer closeDirs()
	res, touched := p.startApply()
	p.cleanTemps(res, touched) // before anything is read: a temp changes its kept file's ctime
	p.reads = newHeldReads(len(inv.files))
	defer func() {
		p.reads.dropAll() // what no op took: a skipped op, a cancelled run
		p.reads = nil
	}()

	// Read order: units in keep order (newest first for --keep newest), then orphan companions.
	uorder := make([]int32, len(inv.units))
	for k := range uorder {
		uorder[k] = int32(k)
		if p.opts.Keep == KeepNewest {
			uorder[k] = int32(len(uorder) - 1 - k)
		}
	}
	isCand := make([]bool, len(inv.files))
	for _, i := range cand {
		isCand[i] = true
	}
	order := make([]int32, 0, len(cand))
	for _, ui := range uorder {
		for _, fi := range inv.units[ui].parts {
			if fi >= 0 && isCand[fi] {
				order = append(order, fi)
				isCand[fi] = false
			}
		}
	}
	for _, i := range cand {
		if isCand[i] {
			order = append(order, i)
		}
	}
	hp := inv.hashPlan(order)
	pos := make([]int32, len(inv.files)) // position in hp.todo of the read that settles each file
	for i := range pos {
		pos[i] = -1
	}
	for n, fi := range hp.todo {
		pos[fi] = int32(n)
	}
	isLater := make([]bool, len(inv.files))
	for _, fi := range hp.later {
		isLater[fi] = true
		pos[fi] = pos[hp.first[inv.ikey(fi)]]
	}
	need := make([]int32, len(uorder)) // a unit is settled once every read up to need[k] is done
	for k, ui := range uorder {
		need[k] = -1
		for _, fi := range inv.units[ui].parts {
			if fi >= 0 {
				need[k] = max(need[k], pos[fi])
			}
		}
	}

	stop := p.startClosers(ao.Workers)
	early := make([]opResult, len(inv.units)) // what the op on each duplicate unit did
	earlyKept := make([]int32, len(inv.units))
	for i := range earlyKept {
		earlyKept[i] = -1
	}
	queue := make(chan op, len(inv.units)) // never blocks: at most one op per unit
	var (
		fmu    sync.Mutex
		doneAt = make([]bool, len(hp.todo))
		prefix int // every read before this position is done
		nextU  int // uorder[nextU:] are not settled yet
		keeper = map[contentKey]int32{}
	)
	// advance settles units in keep order as far as the reads allow (called with fmu held): the
	// first whole unit of a content is kept, every later one is a duplicate of it, as in group.
	advance := func() {
		for nextU < len(uorder) && need[nextU] < int32(prefix) {
			ui := uorder[nextU]
			nextU++
			u := &inv.units[ui]
			for _, fi := range u.parts {
				if fi < 0 {
					continue
				}
				if isLater[fi] {
					inv.copyLater(hp, fi)
				}
				p.noteCtime(fi)
			}
			k, whole := inv.contentOf(u)
			kept, ok := keeper[k]
			if whole && !ok {
				keeper[k] = ui
			}
			if !whole || !ok || (p.opts.Action == ActionHardlink && inv.allLinked(ui, kept)) {
				for _, fi := range u.parts { // kept, or no op (as report: nothing to do)
					if fi >= 0 {
						p.reads.drop(fi)
					}
				}
				continue
			}
			earlyKept[ui] = kept
			queue <- op{unit: ui, orphan: -1, kept: kept, group: -1}
		}
	}
	advance()
	workers := ao.Workers
	if workers <= 0 {
		workers = 2
	}
	dirs := make([]map[string]bool, workers)
	var awg sync.WaitGroup
	for w := range workers {
		dirs[w] = map[string]bool{}
		awg.Add(1)
		go func() {
			defer awg.Done()
			for o := range queue {
				if ctx.Err() != nil {
					continue
				}
				r := &early[o.unit]
				r.files, r.freed, r.why, r.failed = p.do(o, dirs[w])
				r.ran = true
			}
		}()
	}
	herr := inv.hash(ctx, hp, so, func(n int) {
		fmu.Lock()
		doneAt[n] = true
		for prefix < len(doneAt) && doneAt[prefix] {
			prefix++
		}
		advance()
		fmu.Unlock()
	}, p.reads)
	logger(so.Logger).Debug("read everything", "ops_waiting", len(queue))
	close(queue)
	awg.Wait()
	for _, d := range dirs {
		for k := range d {
			touched[k] = true
		}
	}
	if herr != nil {
		stop()
		for d := range touched {
			atomicfile.SyncDir(d)
		}
		return nil, nil, herr
	}
	for _, fi := range hp.later {
		inv.copyLater(hp, fi)
	}
	for i := range inv.files {
		p.noteCtime(int32(i))
	}
	logger(so.Logger).Debug("hashed backups", "bytes", inv.Hashed, "in_memory_proofs", len(inv.reps))
	p.group()
	p.report()

	out := make([]opResult, len(p.ops))
	var rest []int
	matched := 0
	planned := make([]int32, len(inv.units)) // the kept unit of each duplicate's op in the plan
	for i := range planned {
		planned[i] = -1
	}
	for i, o := range p.ops {
		if o.unit >= 0 {
			planned[o.unit] = o.kept
		}
		if o.unit >= 0 && earlyKept[o.unit] == o.kept {
			out[i] = early[o.unit]
			matched++
			continue
		}
		rest = append(rest, i)
	}
	for ui, k := range earlyKept {
		if k >= 0 && early[ui].ran && planned[ui] != k {
			stop()
			return nil, nil, fmt.Errorf("apply dedupe: internal error: acted on %s, which the plan does not list", inv.path(inv.units[ui].parts[PartMain]))
		}
	}
	logger(so.Logger).Debug("acted while reading", "ops", matched, "after", len(rest))
	p.runOps(ctx, rest, out, ao, touched)
	stop()
	r, err := p.finishApply(ctx, res, out, touched, ao.Logger)
	return p, r, err
}

// allLinked reports whether every part of unit u is already the same inode as the kept unit's.
func (inv *Inventory) allLinked(u, kept int32) bool {
	ku := &inv.units[kept]
	for pt, fi := range inv.units[u].parts {
		if fi >= 0 && !inv.linked(fi, ku.parts[pt]) {
			return false
		}
	}
	return true
}
