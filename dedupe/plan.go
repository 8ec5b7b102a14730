package dedupe

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/zeebo/xxh3"
)

// PlanOptions choose what an apply would do.
type PlanOptions struct {
	Keep     Keep          // "" means oldest
	Action   Action        // "" means remove
	To       string        // quarantine directory for ActionMove
	BurstGap time.Duration // units further apart than this start a new burst; 0 means 5 minutes
}

// Plan is the dry-run result: groups of identical units, which one stays, what an apply would do.
type Plan struct {
	Report Report
	inv    *Inventory
	opts   PlanOptions
	groups []group
	ops    []op
	toDev  uint64
	toIno  uint64
	toFd   int                // Apply with ActionMove: O_PATH descriptor of To
	ctimes map[inodeKey]int64 // Apply: expected status-change time per inode
	// Apply: kept units whose absent companions were checked
	keptSeen map[int32]bool
	// Apply: the unit a kept unit's duplicates are linked to once its files have as many links
	// as the filesystem allows (a duplicate that stayed); absent: the kept unit
	anchors map[int32]int32
	mu      sync.Mutex   // Apply's lanes share ctimes, keptSeen and anchors
	release func(fd int) // Apply: closes a replaced file's descriptor, which frees the file
	reads   *heldReads   // ScanApply: descriptors kept open from the read to the action
	watch   *appearWatch // ScanApply: names that appeared since the listing; nil: look them up
	// Apply: kept files held open (O_PATH) after their first re-check, by file index, -1 none;
	// each entry is only used under its kept unit's keptMu.
	keptFds    []int32
	keptOpen   atomic.Int64   // Apply: how many of keptFds are open
	keptMax    int64          // Apply: at most this many (a quarter of the descriptor limit); past it, by name
	keptByName atomic.Bool    // Apply: linking a descriptor is refused here; kept files go by name
	tmpRun     string         // Apply: the random part of this apply's temporary link names
	tmpSeq     atomic.Uint64  // Apply: numbers its temporary links
	keptMu     [64]sync.Mutex // Apply: held from a kept unit's re-check to the end of an action on it
}

// group is one distinct content: its units in keep order and the kept one.
type group struct {
	units []int32
	kept  int32
	rep   int // index into Report.Groups, -1 for a single unit
}

// op is one planned action: a duplicate unit (or a redundant orphan, unit -1) against the kept
// unit's files.
type op struct {
	unit   int32
	orphan int32
	kept   int32
	group  int
}

// Report is what a dry run prints. Its JSON shape is a contract (README).
type Report struct {
	HashAlgorithm    string    `json:"hash_algorithm"`
	Dirs             []string  `json:"dirs"`
	Files            int       `json:"files"`
	Bytes            int64     `json:"bytes"`
	Units            int       `json:"units"`
	Distinct         int       `json:"distinct"`
	Groups           []Group   `json:"groups"`
	Duplicates       int       `json:"duplicates"`
	ReclaimableBytes int64     `json:"reclaimable_bytes"`
	Reclaimable      string    `json:"reclaimable"`
	AlreadyLinked    int       `json:"already_linked"`
	RedundantOrphans int       `json:"redundant_orphans"` // orphan companions identical to a kept file
	Keep             Keep      `json:"keep"`
	Action           Action    `json:"action"`
	To               string    `json:"to,omitempty"`
	Bursts           []Burst   `json:"bursts"`
	Orphans          []Orphan  `json:"orphans"`
	Temps            []string  `json:"leftover_temps"`
	Unreadable       []Skipped `json:"unreadable"`
	HashedBytes      int64     `json:"hashed_bytes"`
	// Contents is filled by CheckContents: one entry per distinct content.
	Contents        []ContentCheck `json:"contents,omitempty"`
	HealthyContents int            `json:"healthy_contents,omitempty"`
	CorruptContents int            `json:"corrupt_contents,omitempty"`
}

// Group is one content held by two or more units.
type Group struct {
	Hash             string    `json:"hash"` // xxh3-128 of the main file
	WALHash          string    `json:"wal_hash,omitempty"`
	SHMHash          string    `json:"shm_hash,omitempty"`
	Size             int64     `json:"size"`       // main file size
	UnitBytes        int64     `json:"unit_bytes"` // main plus companions
	Count            int       `json:"count"`
	Files            []string  `json:"files"` // main files, oldest first
	Keep             string    `json:"keep"`
	First            time.Time `json:"first"`
	Last             time.Time `json:"last"`
	Duplicates       int       `json:"duplicates"`
	AlreadyLinked    int       `json:"already_linked"`
	ReclaimableBytes int64     `json:"reclaimable_bytes"`
}

// Burst is a run of backups in one directory with no gap longer than PlanOptions.BurstGap.
type Burst struct {
	Dir        string    `json:"dir"`
	First      time.Time `json:"first"`
	Last       time.Time `json:"last"`
	Units      int       `json:"units"`
	Bytes      int64     `json:"bytes"`
	Distinct   int       `json:"distinct"`
	Duplicates int       `json:"duplicates"`
}

// Orphan is a -wal/-shm companion whose main file is gone. SameAs names the kept file it is
// byte-identical to (an apply handles it like a duplicate); empty means it is the only copy of its
// content and stays.
type Orphan struct {
	Path   string `json:"path"`
	Part   string `json:"part"`
	Size   int64  `json:"size"`
	SameAs string `json:"same_as,omitempty"`
}

// Skipped is a file left alone, and why.
type Skipped struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// NewPlan groups the inventory's units by content and decides what an apply would do.
func NewPlan(inv *Inventory, o PlanOptions) (*Plan, error) {
	p, err := newPlan(inv, o)
	if err != nil {
		return nil, err
	}
	p.group()
	p.report()
	return p, nil
}

// newPlan checks the options against the inventory's directories (no hashes needed yet).
func newPlan(inv *Inventory, o PlanOptions) (*Plan, error) {
	if o.Keep == "" {
		o.Keep = KeepOldest
	}
	if o.Action == "" {
		o.Action = ActionRemove
	}
	if o.BurstGap == 0 {
		o.BurstGap = 5 * time.Minute
	}
	if o.Keep != KeepOldest && o.Keep != KeepNewest {
		return nil, fmt.Errorf("plan: --keep %q: %w (want oldest or newest)", o.Keep, ErrUsage)
	}
	p := &Plan{inv: inv, opts: o}
	switch o.Action {
	case ActionRemove, ActionHardlink:
		if o.To != "" {
			return nil, fmt.Errorf("plan: --to is only for --action move: %w", ErrUsage)
		}
	case ActionMove:
		if err := p.checkTo(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("plan: --action %q: %w (want remove, hardlink or move)", o.Action, ErrUsage)
	}
	return p, nil
}

// checkTo validates the quarantine directory: an existing directory (not a symlink), not one of
// the scanned directories, on the same filesystem as every scanned one (a move is a link plus an
// unlink, never a copy).
func (p *Plan) checkTo() error {
	to := p.opts.To
	if to == "" {
		return fmt.Errorf("plan: --action move needs --to DIR: %w", ErrUsage)
	}
	abs, err := filepath.Abs(to)
	if err != nil {
		return fmt.Errorf("plan: --to %s: %w", to, err)
	}
	fi, err := os.Lstat(abs)
	if err != nil {
		return fmt.Errorf("plan: --to %s: %w", to, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("plan: --to %s: not a directory (symlinks are not followed): %w", to, ErrUsage)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	for _, d := range p.inv.Dirs {
		if d.Path == abs {
			return fmt.Errorf("plan: --to %s is a scanned directory: %w", to, ErrUsage)
		}
		if st != nil && uint64(st.Dev) != d.dev {
			return fmt.Errorf("plan: --to %s is on another filesystem than %s (a move links, never copies): %w", to, d.Path, ErrUsage)
		}
	}
	p.opts.To = abs
	if st != nil {
		p.toDev, p.toIno = uint64(st.Dev), st.Ino
	}
	return nil
}

type contentKey struct {
	s    sig
	sums [nParts]xxh3.Uint128
}

// contentOf is a unit's content key; whole is false when a part of it is not (or no longer)
// hashed: such a unit is its own content and is never acted on.
func (inv *Inventory) contentOf(u *unit) (k contentKey, whole bool) {
	k.s = inv.sigOf(u)
	for pt, fi := range u.parts {
		if fi < 0 {
			continue
		}
		f := &inv.files[fi]
		if f.state != stHashed {
			return k, false
		}
		k.sums[pt] = f.sum
	}
	return k, true
}

// group sorts units into contents. A unit with a part that changed while hashing is its own
// content and is never acted on.
func (p *Plan) group() {
	inv := p.inv
	idx := make(map[contentKey]int, len(inv.units))
	for i := range inv.units {
		u := &inv.units[i]
		k, whole := inv.contentOf(u)
		if whole && inv.files[u.parts[PartMain]].state == stHashed {
			if g, ok := idx[k]; ok {
				p.groups[g].units = append(p.groups[g].units, int32(i))
				continue
			}
			idx[k] = len(p.groups)
		}
		p.groups = append(p.groups, group{units: []int32{int32(i)}, rep: -1})
	}
	for gi := range p.groups {
		g := &p.groups[gi]
		g.kept = g.units[0]
		if p.opts.Keep == KeepNewest {
			g.kept = g.units[len(g.units)-1]
		}
	}
}

// linked reports whether file a is the same inode as file b (a hard link made earlier, in one
// directory or across two on one filesystem).
func (inv *Inventory) linked(a, b int32) bool {
	return inv.files[a].Inode != 0 && inv.ikey(a) == inv.ikey(b)
}

func (p *Plan) report() {
	inv := p.inv
	r := &p.Report
	r.HashAlgorithm, r.Keep, r.Action, r.To = HashName, p.opts.Keep, p.opts.Action, p.opts.To
	r.Files, r.Bytes, r.Units, r.HashedBytes = inv.Files, inv.Bytes, len(inv.units), inv.Hashed
	r.Distinct = len(p.groups)
	r.Groups, r.Orphans, r.Unreadable, r.Bursts = []Group{}, []Orphan{}, []Skipped{}, []Burst{}
	r.Temps = append([]string{}, inv.Temps...)
	for _, d := range inv.Dirs {
		r.Dirs = append(r.Dirs, d.Path)
	}
	for i := range inv.files {
		if f := &inv.files[i]; f.state == stChanged {
			r.Unreadable = append(r.Unreadable, Skipped{f.Path, f.why})
		}
	}
	for gi := range p.groups {
		g := &p.groups[gi]
		if len(g.units) < 2 {
			continue
		}
		k := &inv.units[g.kept]
		m := &inv.files[k.parts[PartMain]]
		rg := Group{Hash: hexSum(m.sum), Size: m.Size, Count: len(g.units), Keep: m.Path,
			First: inv.units[g.units[0]].time, Last: inv.units[g.units[len(g.units)-1]].time}
		for pt, fi := range k.parts {
			if fi < 0 {
				continue
			}
			rg.UnitBytes += inv.files[fi].Size
			switch Part(pt) {
			case PartWAL:
				rg.WALHash = hexSum(inv.files[fi].sum)
			case PartSHM:
				rg.SHMHash = hexSum(inv.files[fi].sum)
			}
		}
		rg.Files = make([]string, 0, len(g.units))
		for _, ui := range g.units {
			u := &inv.units[ui]
			rg.Files = append(rg.Files, inv.path(u.parts[PartMain]))
			if ui == g.kept {
				continue
			}
			var free int64
			all := true
			for pt, fi := range u.parts {
				if fi < 0 {
					continue
				}
				if inv.linked(fi, k.parts[pt]) {
					continue
				}
				all = false
				free += inv.files[fi].Size
			}
			if all {
				rg.AlreadyLinked++
				if p.opts.Action == ActionHardlink {
					continue
				}
			}
			rg.Duplicates++
			rg.ReclaimableBytes += free
			p.ops = append(p.ops, op{unit: ui, orphan: -1, kept: g.kept, group: gi})
		}
		g.rep = len(r.Groups)
		r.Groups = append(r.Groups, rg)
		r.Duplicates += rg.Duplicates
		r.AlreadyLinked += rg.AlreadyLinked
		r.ReclaimableBytes += rg.ReclaimableBytes
	}
	p.planOrphans()
	r.Reclaimable = humanize.IBytes(uint64(r.ReclaimableBytes))
	p.bursts()
}

// planOrphans matches each hashed orphan companion with a kept unit's companion of the same kind,
// size and hash; Apply proves the match byte for byte before acting.
func (p *Plan) planOrphans() {
	inv := p.inv
	if len(inv.orphans) == 0 {
		return
	}
	kept := map[repKey]int32{} // companion content -> kept unit
	for gi := range p.groups {
		g := &p.groups[gi]
		u := &inv.units[g.kept]
		for pt := PartWAL; pt < nParts; pt++ {
			if fi := u.parts[pt]; fi >= 0 && inv.files[fi].state == stHashed {
				f := &inv.files[fi]
				k := repKey{pt, f.Size, f.sum}
				if _, ok := kept[k]; !ok {
					kept[k] = g.kept
				}
			}
		}
	}
	for _, oi := range inv.orphans {
		o := &inv.files[oi]
		ro := Orphan{Path: o.Path, Part: o.part.String(), Size: o.Size}
		if o.state == stHashed {
			if ku, ok := kept[repKey{o.part, o.Size, o.sum}]; ok {
				kf := inv.units[ku].parts[o.part]
				ro.SameAs = inv.path(kf)
				if !(p.opts.Action == ActionHardlink && inv.linked(oi, kf)) {
					p.ops = append(p.ops, op{unit: -1, orphan: oi, kept: ku, group: -1})
					p.Report.RedundantOrphans++
					if !inv.linked(oi, kf) {
						p.Report.ReclaimableBytes += o.Size
					}
				}
			}
		}
		p.Report.Orphans = append(p.Report.Orphans, ro)
	}
}

// bursts splits each directory's units into time clusters.
func (p *Plan) bursts() {
	inv := p.inv
	gOf := make([]int32, len(inv.units))
	for gi, g := range p.groups {
		for _, ui := range g.units {
			gOf[ui] = int32(gi)
		}
	}
	for di := range inv.Dirs {
		var cur *Burst
		contents := map[int32]bool{}
		flush := func() {
			if cur != nil {
				cur.Distinct = len(contents)
				p.Report.Bursts = append(p.Report.Bursts, *cur)
			}
		}
		for ui := range inv.units {
			u := &inv.units[ui]
			if u.dir != int32(di) {
				continue
			}
			if cur == nil || u.time.Sub(cur.Last) > p.opts.BurstGap {
				flush()
				cur = &Burst{Dir: inv.Dirs[di].Path, First: u.time}
				clear(contents)
			}
			cur.Last = u.time
			cur.Units++
			for _, fi := range u.parts {
				if fi >= 0 {
					cur.Bytes += inv.files[fi].Size
				}
			}
			g := gOf[ui]
			if len(p.groups[g].units) > 1 && p.groups[g].kept != int32(ui) {
				cur.Duplicates++
			}
			contents[g] = true
		}
		flush()
	}
	slices.SortStableFunc(p.Report.Bursts, func(a, b Burst) int { return a.First.Compare(b.First) })
}
