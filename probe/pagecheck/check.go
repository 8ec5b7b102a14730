// Package pagecheck is a fast, parallel check of a SQLite database that reads every page
// through SQLite itself (the sqlite_dbpage table, in one read transaction on the caller's
// connection, so under SQLite's locks and on one snapshot) and checks in Go what
// PRAGMA quick_check checks (and, in full mode, what integrity_check adds for the index
// contents): b-tree page structure, key order, overflow chains, the freelist, that every page is
// used exactly once, the records, NOT NULL and column types, index entry counts and, in full
// mode, that every index holds exactly its table's rows in order, and UNIQUE.
//
// It is a fast way to say "ok", never a verdict of damage: its rules are as strict as SQLite's
// or stricter, so anything it reports (or any schema feature it does not cover, ErrUnsupported)
// must be judged by SQLite's own pass. A test corrupts databases at random and checks that it
// never says ok where SQLite's pass does not.
package pagecheck

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/zeebo/xxh3"
)

// ErrUnsupported is returned (wrapped) when the database uses something this check does not
// judge (WITHOUT ROWID or STRICT tables, CHECK constraints, partial or expression indexes,
// other collations, auto-vacuum, UTF-16, values it would have to read from overflow pages for
// an index key): the caller must run SQLite's pass instead.
var ErrUnsupported = errors.New("not covered by the page check")

// ErrFileChanged is returned (wrapped) when reading a memory-mapped page faulted: another
// process shrank or replaced the file while it was being checked (SQLite's own writers cannot
// while the check holds its read transaction). The connection is discarded; nothing can be said
// about the database from this run.
var ErrFileChanged = errors.New("the database file shrank or changed under the check (a memory-mapped read faulted)")

// Options says what to check.
type Options struct {
	Full bool // also index contents and UNIQUE, as integrity_check
	// ContentsButLargest checks index contents and UNIQUE (as Full does) for every table but the
	// one with the most pages, and for all of them in a database under 32 MiB: verify's quick
	// mode, where the event log's indexes are only counted.
	ContentsButLargest bool
	Workers            int   // goroutines that parse pages; 0 means GOMAXPROCS
	MmapMax            int64 // map up to this many bytes of the file while reading (0: read with pread)
}

// Report is what the check found. No problems means the database passed.
type Report struct {
	Problems []string // in this package's words; a caller re-checks with SQLite before saying anything
	Pages    uint32
	Rows     int64 // table rows seen
	Entries  int64 // index entries seen
}

// TestHookBeforeScan, when set (by tests only), runs after the interior pages are walked and
// before the scan that reads every page: where a test truncates the file to prove that a fault
// on a mapped page ends in ErrFileChanged, not a crash.
var TestHookBeforeScan func()

// maxProblems caps the problems kept (SQLite stops at 100 too).
const maxProblems = 100

// readLeafBatch is how many pages cross from the reader to the workers at once.
const readLeafBatch = 64

type bounds struct {
	lo, hi       int64 // table keys: lo < key <= hi
	hasLo, hasHi bool
	loRec, hiRec *record // index entries: loRec < entry < hiRec
}

type leafJob struct {
	tree int
	b    bounds
}

type chain struct {
	first, n uint32
}

// pending is a value that lies (partly) in overflow pages: read after the scan.
type pending struct {
	table  *table
	col    *column
	rowid  int64
	first  uint32 // first overflow page
	nLocal uint64
	off, n uint64 // the value's bytes in the payload
	head   []byte // its bytes that were on the page
	typ    uint64
}

// acc is what one worker gathers.
type acc struct {
	count    []int64 // per tree: rows or entries
	act, exp [][2]uint64
	chains   []chain
	pending  []pending
	rows     []pendingRow
	pg       page
	fields   []field
	buf      []byte
}

type checker struct {
	geometry
	ctx      context.Context
	d        *dbconn
	contents []bool // per tree: check index contents (index trees, and the tables they index)
	sch      *schema
	page1    []byte
	refs     []uint8
	roles    []int32 // per page: 0 not a b-tree page so far, -1 checked already, n>0 leaves[n-1]
	leaves   []leafJob
	next     []uint32 // first four bytes of every page: the next page of an overflow chain

	mu       sync.Mutex
	problems []string
	nProb    atomic.Int32
	giveUp   error
}

// Check runs the check on c, in a read transaction it begins and ends (c must not be in one).
// Errors are SQLite's (busy, I/O, a schema it cannot read), ErrUnsupported, or ErrFileChanged.
// Everything runs on the driver connection inside one c.Raw call; a fault on a memory-mapped
// page is recovered (runtime/debug.SetPanicOnFault) and the connection handed back as bad.
func Check(ctx context.Context, c *sql.Conn, o Options) (rep Report, err error) {
	defer func() {
		if r := recover(); r != nil { // a fault while database/sql discarded the connection
			err = recovered(r)
		}
	}()
	err = c.Raw(func(dc any) (ferr error) {
		if o.MmapMax > 0 {
			defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		}
		defer func() {
			if r := recover(); r != nil {
				ferr = fmt.Errorf("%w (%w)", recovered(r), driver.ErrBadConn)
			}
		}()
		d, err := newDBConn(ctx, dc)
		if err != nil {
			return err
		}
		defer d.close()
		rep, ferr = run(d, o)
		if errors.Is(ferr, ErrFileChanged) {
			// The statement that faulted never finished: hand the connection back as bad.
			ferr = fmt.Errorf("%w (%w)", ferr, driver.ErrBadConn)
		}
		return ferr
	})
	return rep, err
}

// recovered turns a recovered panic into an error: a memory fault is ErrFileChanged; anything
// else is a bug here, and SQLite must judge (ErrUnsupported).
func recovered(r any) error {
	if e, ok := r.(interface{ Addr() uintptr }); ok {
		return fmt.Errorf("%w: fault at %#x", ErrFileChanged, e.Addr())
	}
	return fmt.Errorf("%w: page check failed: %v", ErrUnsupported, r)
}

func run(d *dbconn, o Options) (rep Report, err error) {
	if o.MmapMax > 0 {
		if err := d.exec(fmt.Sprintf("PRAGMA mmap_size=%d", o.MmapMax)); err != nil {
			return rep, err
		}
		defer func() {
			if !errors.Is(err, ErrFileChanged) { // else the connection is left alone: it is discarded
				d.exec("PRAGMA mmap_size=0")
			}
		}()
	}
	if err := d.exec("BEGIN"); err != nil {
		return rep, err
	}
	defer func() {
		if !errors.Is(err, ErrFileChanged) {
			d.exec("ROLLBACK")
		}
	}()
	ck := &checker{ctx: d.ctx, d: d}
	if err := ck.setup(); err != nil {
		return rep, err
	}
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	// Tables first (their trees come first): their leaf counts say which table is the largest,
	// before the index trees' interior entries are checked.
	main := ck.newAcc()
	ck.contents = make([]bool, len(ck.sch.trees))
	for _, tb := range ck.sch.tables {
		if err := ck.walkTree(tb.tree, main); err != nil {
			return rep, err
		}
	}
	largest, most := -1, -1
	perTree := make([]int, len(ck.sch.trees))
	for _, l := range ck.leaves {
		perTree[l.tree]++
	}
	for _, tb := range ck.sch.tables {
		if perTree[tb.tree] > most {
			largest, most = tb.tree, perTree[tb.tree]
		}
	}
	if int64(ck.nPage)*int64(ck.pageSize) < 32<<20 {
		largest = -1
	}
	for _, tb := range ck.sch.tables {
		ck.contents[tb.tree] = o.Full || (o.ContentsButLargest && tb.tree != largest)
	}
	for t, tr := range ck.sch.trees {
		if tr.index {
			ck.contents[t] = ck.contents[tr.table.tree]
			if err := ck.walkTree(t, main); err != nil {
				return rep, err
			}
		}
	}
	if TestHookBeforeScan != nil {
		TestHookBeforeScan()
	}
	accs, err := ck.scan(workers)
	if err != nil {
		return rep, err
	}
	accs = append(accs, main)
	if err := ck.finish(accs); err != nil {
		return rep, err
	}
	if ck.giveUp != nil {
		return rep, ck.giveUp
	}
	rep.Pages = ck.nPage
	for i, t := range ck.sch.trees {
		n := int64(0)
		for _, a := range accs {
			n += a.count[i]
		}
		if t.index {
			rep.Entries += n
		} else {
			rep.Rows += n
		}
	}
	rep.Problems = ck.problems
	return rep, nil
}

func (ck *checker) newAcc() *acc {
	n := len(ck.sch.trees)
	return &acc{count: make([]int64, n), act: make([][2]uint64, n), exp: make([][2]uint64, n)}
}

func (ck *checker) bad(msg string) {
	if ck.nProb.Add(1) > maxProblems {
		return
	}
	ck.mu.Lock()
	ck.problems = append(ck.problems, msg)
	ck.mu.Unlock()
}

// unsupported records that SQLite must judge this database; the first reason wins.
func (ck *checker) unsupported(format string, args ...any) {
	ck.mu.Lock()
	if ck.giveUp == nil {
		ck.giveUp = fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))
	}
	ck.mu.Unlock()
}

func (ck *checker) setup() error {
	sz, err := ck.d.all("PRAGMA page_size")
	if err != nil {
		return err
	}
	cnt, err := ck.d.all("PRAGMA page_count")
	if err != nil {
		return err
	}
	if len(sz) != 1 || len(cnt) != 1 {
		return fmt.Errorf("%w: no page size or count", ErrUnsupported)
	}
	pageSize, nPage := num(sz[0][0]), num(cnt[0][0])
	if ck.page1, err = ck.readPage(1); err != nil {
		return err
	}
	p1 := ck.page1
	switch {
	case len(p1) != int(pageSize) || pageSize < 512 || nPage < 1 || nPage > math.MaxInt32:
		return fmt.Errorf("%w: page size %d, %d pages", ErrUnsupported, pageSize, nPage)
	case get4(p1, 52) != 0:
		return fmt.Errorf("%w: auto-vacuum database (pointer-map pages)", ErrUnsupported)
	case get4(p1, 56) != 1:
		return fmt.Errorf("%w: text encoding %d (UTF-16)", ErrUnsupported, get4(p1, 56))
	case pageSize-int64(p1[20]) < 480:
		return fmt.Errorf("%w: usable page size %d", ErrUnsupported, pageSize-int64(p1[20]))
	}
	ck.pageSize = uint32(pageSize)
	ck.usable = ck.pageSize - uint32(p1[20])
	ck.nPage = uint32(nPage)
	ck.sch, err = loadSchema(ck.d)
	var u errUnsupported
	if errors.As(err, &u) {
		return fmt.Errorf("%w: %s", ErrUnsupported, u.why)
	}
	if err != nil {
		return err
	}
	ck.leaves = make([]leafJob, 0, ck.nPage)
	ck.refs = make([]uint8, ck.nPage+1)
	ck.roles = make([]int32, ck.nPage+1)
	ck.next = make([]uint32, ck.nPage+1)
	if pending := uint32(0x40000000/pageSize) + 1; pending <= ck.nPage {
		ck.refs[pending] = 1 // the lock-byte page is never used
	}
	return nil
}

func (ck *checker) readPage(n uint32) ([]byte, error) {
	b, err := ck.d.readPage(n)
	if err == nil && len(b) != int(ck.pageSize) && ck.pageSize != 0 {
		err = fmt.Errorf("page %d: %d bytes", n, len(b))
	}
	return b, err
}

// ref marks a page referenced; false (and a problem) for an invalid or second reference.
func (ck *checker) ref(n uint32, what string) bool {
	switch {
	case n == 0 || n > ck.nPage:
		ck.bad(fmt.Sprintf("%s: invalid page number %d", what, n))
		return false
	case ck.refs[n] != 0:
		ck.bad(fmt.Sprintf("%s: 2nd reference to page %d", what, n))
		return false
	}
	ck.refs[n] = 1
	return true
}

// maxDepth is the deepest b-tree SQLite's cursors can walk.
const maxDepth = 19

// walkTree checks the interior pages of one b-tree, reading them one by one, and leaves its
// leaf pages to the scan, each with the key bounds its parent sets.
func (ck *checker) walkTree(t int, a *acc) error {
	tr := ck.sch.trees[t]
	what := fmt.Sprintf("tree %d (%s)", tr.root, ck.treeName(t))
	if !ck.ref(tr.root, what) {
		return nil
	}
	// The depth of the leaves: down the leftmost edge.
	depth := 0
	n := tr.root
	for {
		b, err := ck.readPage(n)
		if err != nil {
			return err
		}
		hdr := 0
		if n == 1 {
			hdr = 100
		}
		if b[hdr]&0x08 != 0 || (b[hdr] != interiorIndex && b[hdr] != interiorTable) {
			break
		}
		child := get4(b, hdr+8)
		if get2(b, hdr+3) > 0 {
			if pc := int(get2(b, hdr+12)); pc+4 <= len(b) {
				child = get4(b, pc)
			}
		}
		depth++
		if depth > maxDepth || child == 0 || child > ck.nPage {
			break // the walk below reports it
		}
		n = child
	}
	b, err := ck.readPage(tr.root)
	if err != nil {
		return err
	}
	return ck.visit(t, tr.root, b, 0, depth, bounds{}, a)
}

func (ck *checker) treeName(t int) string {
	tr := ck.sch.trees[t]
	if tr.idx != nil {
		return tr.idx.name
	}
	return tr.table.name
}

// visit checks one page at depth d of a tree whose leaves are at depth leafDepth.
func (ck *checker) visit(t int, n uint32, b []byte, d, leafDepth int, bd bounds, a *acc) error {
	tr := ck.sch.trees[t]
	if d == leafDepth {
		// A root that is a leaf: the scan checks it with the other leaves.
		ck.leaves = append(ck.leaves, leafJob{tree: t, b: bd})
		ck.roles[n] = int32(len(ck.leaves))
		return nil
	}
	if d > maxDepth {
		ck.bad(fmt.Sprintf("tree %d: deeper than %d levels", tr.root, maxDepth))
		return nil
	}
	ck.roles[n] = -1
	var p page
	if !ck.parsePage(n, b, &p, ck.bad) {
		return nil
	}
	want := byte(interiorTable)
	if tr.index {
		want = interiorIndex
	}
	if p.typ != want {
		ck.bad(fmt.Sprintf("tree %d page %d: child page depth differs (type 0x%02x, want 0x%02x)", tr.root, n, p.typ, want))
		return nil
	}
	if d > 0 && len(p.cells) == 0 {
		ck.bad(fmt.Sprintf("tree %d page %d: empty interior page", tr.root, n))
	}
	children := make([]uint32, 0, len(p.cells)+1)
	kids := make([]bounds, 0, len(p.cells)+1)
	lo := bd
	if tr.index {
		a.count[t] += int64(len(p.cells))
		var prev *record
		if bd.loRec != nil {
			prev = bd.loRec
		}
		for i := range p.cells {
			c := &p.cells[i]
			var rec *record
			if ck.contents[t] {
				rec = ck.entry(t, c, a)
				if rec != nil && prev != nil {
					ck.order(t, n, *prev, *rec)
				}
				prev = rec
			}
			if c.ovfl != 0 {
				a.chains = append(a.chains, chain{c.ovfl, c.nOvfl})
			}
			kb := bounds{loRec: lo.loRec, hiRec: rec}
			children, kids = append(children, c.child), append(kids, kb)
			lo.loRec = rec
		}
		if ck.contents[t] && prev != nil && bd.hiRec != nil {
			ck.order(t, n, *prev, *bd.hiRec)
		}
		children, kids = append(children, p.right), append(kids, bounds{loRec: lo.loRec, hiRec: bd.hiRec})
	} else {
		for i := range p.cells {
			k := p.cells[i].key
			if (lo.hasLo && k <= lo.lo) || (bd.hasHi && k >= bd.hi) {
				ck.bad(fmt.Sprintf("tree %d page %d: rowid %d out of order", tr.root, n, k))
			}
			children = append(children, p.cells[i].child)
			kids = append(kids, bounds{lo: lo.lo, hasLo: lo.hasLo, hi: k, hasHi: true})
			lo.lo, lo.hasLo = k, true
		}
		children = append(children, p.right)
		kids = append(kids, bounds{lo: lo.lo, hasLo: lo.hasLo, hi: bd.hi, hasHi: bd.hasHi})
	}
	what := fmt.Sprintf("tree %d page %d", tr.root, n)
	for i, ch := range children {
		if !ck.ref(ch, what) {
			continue
		}
		if d+1 == leafDepth {
			ck.leaves = append(ck.leaves, leafJob{tree: t, b: kids[i]})
			ck.roles[ch] = int32(len(ck.leaves))
			continue
		}
		cb, err := ck.readPage(ch)
		if err != nil {
			return err
		}
		if err := ck.visit(t, ch, cb, d+1, leafDepth, kids[i], a); err != nil {
			return err
		}
	}
	return nil
}

// entry parses an index entry fully (full mode), adds it to the index's content hash and
// returns it; nil when it cannot (then SQLite must judge).
func (ck *checker) entry(t int, c *cell, a *acc) *record {
	if c.ovfl != 0 {
		ck.unsupported("an index entry of %s spills to overflow pages", ck.treeName(t))
		return nil
	}
	fs, ok, _ := parseHeader(c.local, c.nPayload, nil)
	if !ok {
		ck.bad(fmt.Sprintf("index %s: malformed entry", ck.treeName(t)))
		return nil
	}
	rec := &record{b: c.local, fs: fs}
	a.addEntry(t, *rec)
	return rec
}

// addEntry adds an index entry, in canonical form, to index tree t's content hash.
func (a *acc) addEntry(t int, rec record) {
	buf := a.buf[:0]
	for i := range rec.fs {
		tp, v := rec.value(i)
		buf = canon(buf, tp, v)
	}
	a.buf = buf
	addHash(&a.act[t], buf)
}

// addHash adds b's 128-bit hash to a multiset hash: the sum does not depend on order.
func addHash(sum *[2]uint64, b []byte) {
	h := xxh3.Hash128(b)
	sum[0] += h.Lo
	sum[1] += h.Hi
}

// order checks that entry x sorts before y in index tree t, and UNIQUE.
func (ck *checker) order(t int, n uint32, x, y record) {
	ix := ck.sch.trees[t].idx
	cmp, dup := compareRecords(x, y, ix.desc, ix.nKey)
	if cmp >= 0 {
		ck.bad(fmt.Sprintf("index %s page %d: entries out of order", ix.name, n))
	}
	if ix.unique && dup {
		ck.bad(fmt.Sprintf("index %s page %d: non-unique entry", ix.name, n))
	}
}

// leaf checks one leaf page of tree t and what it holds.
func (ck *checker) leaf(t int, n uint32, b []byte, bd bounds, a *acc) {
	tr := ck.sch.trees[t]
	p := &a.pg
	if !ck.parsePage(n, b, p, ck.bad) {
		return
	}
	want := byte(leafTable)
	if tr.index {
		want = leafIndex
	}
	if p.typ != want {
		ck.bad(fmt.Sprintf("tree %d page %d: child page depth differs (type 0x%02x, want 0x%02x)", tr.root, n, p.typ, want))
		return
	}
	if n != tr.root && len(p.cells) == 0 {
		ck.bad(fmt.Sprintf("tree %d page %d: empty leaf page", tr.root, n))
	}
	a.count[t] += int64(len(p.cells))
	if tr.index {
		ck.indexLeaf(t, n, p, bd, a)
		return
	}
	tb := tr.table
	prev, hasPrev := bd.lo, bd.hasLo
	for i := range p.cells {
		c := &p.cells[i]
		if (hasPrev && c.key <= prev) || (bd.hasHi && c.key > bd.hi) {
			ck.bad(fmt.Sprintf("tree %d page %d: rowid %d out of order", tr.root, n, c.key))
		}
		prev, hasPrev = c.key, true
		if c.ovfl != 0 {
			a.chains = append(a.chains, chain{c.ovfl, c.nOvfl})
		}
		ck.row(tb, n, c, a)
	}
}

func (ck *checker) indexLeaf(t int, n uint32, p *page, bd bounds, a *acc) {
	for i := range p.cells {
		if c := &p.cells[i]; c.ovfl != 0 {
			a.chains = append(a.chains, chain{c.ovfl, c.nOvfl})
		}
	}
	if !ck.contents[t] {
		return
	}
	prev := bd.loRec
	var cur record
	var prevRec record
	for i := range p.cells {
		c := &p.cells[i]
		if c.ovfl != 0 {
			ck.unsupported("an index entry of %s spills to overflow pages", ck.treeName(t))
			return
		}
		fs, ok, _ := parseHeader(c.local, c.nPayload, a.fields[:0])
		a.fields = fs
		if !ok {
			ck.bad(fmt.Sprintf("index %s page %d: malformed entry", ck.treeName(t), n))
			return
		}
		cur = record{b: c.local, fs: fs}
		a.addEntry(t, cur)
		if prev != nil {
			ck.order(t, n, *prev, cur)
		}
		// Keep cur's fields while reading the next entry: swap the field buffers.
		prevRec = record{b: cur.b, fs: append(prevRec.fs[:0], cur.fs...)}
		prev = &prevRec
	}
	if len(p.cells) == 0 && bd.loRec != nil && bd.hiRec != nil {
		ck.order(t, n, *bd.loRec, *bd.hiRec)
	}
	if prev != nil && bd.hiRec != nil {
		ck.order(t, n, *prev, *bd.hiRec)
	}
}

// row checks one table row as quick_check does (the record, NOT NULL, column types) and, in
// full mode, adds the index entries it should have to each index's expected hash.
func (ck *checker) row(tb *table, n uint32, c *cell, a *acc) {
	fs, ok, inOvfl := parseHeader(c.local, c.nPayload, a.fields[:0])
	a.fields = fs
	if !ok {
		if inOvfl {
			ck.unsupported("a record header of %s spills to overflow pages", tb.name)
			return
		}
		ck.bad(fmt.Sprintf("%s page %d: malformed record for rowid %d", tb.name, n, c.key))
		return
	}
	local := uint64(len(c.local))
	for ci := range tb.cols {
		col := &tb.cols[ci]
		if col.store < 0 || (!col.notNull && col.aff == affBlob) {
			continue
		}
		if col.store >= len(fs) {
			if col.notNull && !col.hasDefault {
				ck.bad(fmt.Sprintf("NULL value in %s.%s (rowid %d)", tb.name, col.name, c.key))
			}
			continue
		}
		f := fs[col.store]
		cls := class(f.typ)
		needValue := false
		if col.notNull {
			if f.typ == 0 {
				ck.bad(fmt.Sprintf("NULL value in %s.%s (rowid %d)", tb.name, col.name, c.key))
				continue
			}
			needValue = f.typ == 7
		}
		switch {
		case col.aff == affText && cls == 1:
			ck.bad(fmt.Sprintf("NUMERIC value in %s.%s (rowid %d)", tb.name, col.name, c.key))
			continue
		case col.aff == affNumeric && cls == 2:
			needValue = true
		}
		if !needValue {
			continue
		}
		if f.off+f.n > local {
			head := []byte(nil)
			if f.off < local {
				head = append(head, c.local[f.off:]...)
			}
			a.pending = append(a.pending, pending{table: tb, col: col, rowid: c.key, first: c.ovfl, nLocal: local,
				off: f.off, n: f.n, head: head, typ: f.typ})
			continue
		}
		ck.value(tb, col, c.key, f.typ, c.local[f.off:f.off+f.n])
	}
	if !ck.contents[tb.tree] || len(tb.indexes) == 0 {
		return
	}
	for _, ix := range tb.indexes {
		for _, st := range ix.cols {
			if st >= 0 && st < len(fs) && fs[st].off+fs[st].n > local {
				// An indexed value in overflow pages: hash this row's keys after the scan.
				a.rows = append(a.rows, pendingRow{table: tb, rowid: c.key, first: c.ovfl,
					nPayload: c.nPayload, local: append([]byte(nil), c.local...)})
				return
			}
		}
	}
	ck.indexKeys(tb, fs, c.local, c.key, a)
}

// pendingRow is a row whose indexed values are partly in overflow pages.
type pendingRow struct {
	table    *table
	rowid    int64
	first    uint32
	nPayload uint64
	local    []byte
}

// indexKeys adds the entry each index of tb should hold for this row to its expected hash.
func (ck *checker) indexKeys(tb *table, fs []field, payload []byte, rowid int64, a *acc) {
	for _, ix := range tb.indexes {
		buf := a.buf[:0]
		for _, st := range ix.cols {
			switch {
			case st < 0:
				buf = canonInt(buf, rowid)
			case st >= len(fs):
				ck.unsupported("a row of %s is shorter than the columns of index %s", tb.name, ix.name)
				return
			default:
				f := fs[st]
				buf = canon(buf, f.typ, payload[f.off:f.off+f.n])
			}
		}
		buf = canonInt(buf, rowid)
		a.buf = buf
		addHash(&a.exp[ix.tree], buf)
	}
}

// value checks a value that had to be read: a NaN float is NULL, text in a numeric column must
// not be a number.
func (ck *checker) value(tb *table, col *column, rowid int64, typ uint64, v []byte) {
	switch {
	case typ == 7:
		if col.notNull && math.IsNaN(math.Float64frombits(uint64(v[0])<<56|uint64(v[1])<<48|uint64(v[2])<<40|uint64(v[3])<<32|
			uint64(v[4])<<24|uint64(v[5])<<16|uint64(v[6])<<8|uint64(v[7]))) {
			ck.bad(fmt.Sprintf("NULL value in %s.%s (rowid %d)", tb.name, col.name, rowid))
		}
	case class(typ) == 2 && col.aff == affNumeric:
		if convertible(v) {
			ck.bad(fmt.Sprintf("TEXT value in %s.%s (rowid %d)", tb.name, col.name, rowid))
		}
	}
}

type batch struct {
	pgnos []uint32
	data  []byte // readLeafBatch pages
}

// scan reads every page in order on the connection and hands them to workers in batches.
func (ck *checker) scan(workers int) ([]*acc, error) {
	ps := int(ck.pageSize)
	free := make(chan *batch, workers*4)
	for i := 0; i < workers*4; i++ {
		free <- &batch{pgnos: make([]uint32, 0, readLeafBatch), data: make([]byte, readLeafBatch*ps)}
	}
	work := make(chan *batch, workers*2)
	accs := make([]*acc, workers)
	var wg sync.WaitGroup
	for w := range accs {
		accs[w] = ck.newAcc()
		wg.Add(1)
		go func(a *acc) {
			defer wg.Done()
			for bt := range work {
				ck.pages(bt, a)
				bt.pgnos = bt.pgnos[:0]
				free <- bt
			}
		}(accs[w])
	}
	var seen uint32
	cur := <-free
	next := func(n uint32) ([]byte, error) {
		if len(cur.pgnos) == readLeafBatch {
			if err := ck.ctx.Err(); err != nil {
				return nil, err
			}
			work <- cur
			cur = <-free
		}
		if n < 1 || n > ck.nPage {
			return nil, fmt.Errorf("sqlite_dbpage returned page %d of %d", n, ck.nPage)
		}
		i := len(cur.pgnos)
		cur.pgnos = append(cur.pgnos, n)
		seen++
		return cur.data[i*ps : (i+1)*ps], nil
	}
	readErr := func() (err error) {
		// A fault on a mapped page ends the reading, never the workers' wait: they are always
		// released below.
		defer func() {
			if r := recover(); r != nil {
				err = recovered(r)
			}
		}()
		if h, tls := handle(ck.d.dc); h != 0 {
			return rawScan(h, tls, ps, next)
		}
		return ck.driverScan(next)
	}()
	if len(cur.pgnos) > 0 && readErr == nil {
		work <- cur
	} else {
		free <- cur
	}
	close(work)
	wg.Wait()
	if readErr != nil {
		return nil, readErr
	}
	if seen != ck.nPage {
		ck.bad(fmt.Sprintf("read %d pages of %d", seen, ck.nPage))
	}
	return accs, nil
}

// driverScan reads the pages through the driver's rows, for a driver connection rawScan does
// not know.
func (ck *checker) driverScan(next func(uint32) ([]byte, error)) error {
	rows, err := ck.d.q.QueryContext(ck.ctx, "SELECT pgno, data FROM sqlite_dbpage", nil)
	if err != nil {
		return err
	}
	defer rows.Close()
	dest := make([]driver.Value, 2)
	for {
		if err := rows.Next(dest); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		n, _ := dest[0].(int64)
		b, _ := dest[1].([]byte)
		if n < 1 || n > int64(ck.nPage) || len(b) != int(ck.pageSize) {
			return fmt.Errorf("sqlite_dbpage returned page %d of %d bytes", n, len(b))
		}
		dst, err := next(uint32(n))
		if err != nil {
			return err
		}
		copy(dst, b)
	}
}

// pages checks one batch of pages. A panic (a bug here on some corrupt page) is turned into
// ErrUnsupported, so that SQLite judges, and the worker carries on draining.
func (ck *checker) pages(bt *batch, a *acc) {
	defer func() {
		if r := recover(); r != nil {
			ck.unsupported("page check failed: %v", r)
		}
	}()
	ps := int(ck.pageSize)
	for i, n := range bt.pgnos {
		b := bt.data[i*ps : (i+1)*ps]
		ck.next[n] = get4(b, 0)
		if r := ck.roles[n]; r > 0 {
			j := ck.leaves[r-1]
			ck.leaf(j.tree, n, b, j.b, a)
		}
	}
}

// finish checks what needs the whole picture: overflow chains, the freelist, that every page is
// used, entry counts and (full) index contents; then the values that were in overflow pages.
func (ck *checker) finish(accs []*acc) error {
	for _, a := range accs {
		for _, pr := range a.rows {
			whole, err := ck.overflowBytes(pending{first: pr.first, nLocal: uint64(len(pr.local)), n: pr.nPayload, head: pr.local})
			if err != nil {
				return err
			}
			if whole == nil {
				continue // a broken chain, reported with the chains
			}
			fs, ok, _ := parseHeader(whole, pr.nPayload, nil)
			if !ok {
				ck.bad(fmt.Sprintf("%s: malformed record for rowid %d", pr.table.name, pr.rowid))
				continue
			}
			ck.indexKeys(pr.table, fs, whole, pr.rowid, accs[0])
		}
	}
	for _, a := range accs {
		for _, ch := range a.chains {
			got := uint32(0)
			for p := ch.first; p != 0; p = ck.next[p] {
				if !ck.ref(p, "overflow list") {
					break
				}
				got++
			}
			if got != ch.n {
				ck.bad(fmt.Sprintf("overflow list length is %d but should be %d", got, ch.n))
			}
		}
	}
	// The freelist: trunk pages, each listing leaf pages.
	want := int64(get4(ck.page1, 36))
	left := want
	for trunk := get4(ck.page1, 32); trunk != 0; {
		if !ck.ref(trunk, "freelist") {
			break
		}
		left--
		b, err := ck.readPage(trunk)
		if err != nil {
			return err
		}
		k := get4(b, 4)
		if k > ck.usable/4-2 {
			ck.bad(fmt.Sprintf("freelist leaf count too big on page %d", trunk))
			left--
		} else {
			for i := uint32(0); i < k; i++ {
				ck.ref(get4(b, int(8+4*i)), "freelist")
			}
			left -= int64(k)
		}
		trunk = get4(b, 0)
	}
	if left != 0 {
		ck.bad(fmt.Sprintf("freelist size is %d but should be %d", want-left, want))
	}
	for p := uint32(1); p <= ck.nPage; p++ {
		if ck.refs[p] == 0 {
			ck.bad(fmt.Sprintf("page %d: never used", p))
		}
	}
	count := make([]int64, len(ck.sch.trees))
	act := make([][2]uint64, len(ck.sch.trees))
	exp := make([][2]uint64, len(ck.sch.trees))
	for _, a := range accs {
		for i := range count {
			count[i] += a.count[i]
			act[i][0] += a.act[i][0]
			act[i][1] += a.act[i][1]
			exp[i][0] += a.exp[i][0]
			exp[i][1] += a.exp[i][1]
		}
	}
	for _, tb := range ck.sch.tables {
		for _, ix := range tb.indexes {
			if count[ix.tree] != count[tb.tree] {
				ck.bad(fmt.Sprintf("wrong # of entries in index %s (%d entries, %d rows)", ix.name, count[ix.tree], count[tb.tree]))
			} else if ck.contents[ix.tree] && act[ix.tree] != exp[ix.tree] {
				ck.bad(fmt.Sprintf("index %s does not hold exactly the rows of %s", ix.name, tb.name))
			}
		}
	}
	for _, a := range accs {
		for _, pd := range a.pending {
			v, err := ck.overflowBytes(pd)
			if err != nil {
				return err
			}
			if v != nil {
				ck.value(pd.table, pd.col, pd.rowid, pd.typ, v)
			}
		}
	}
	return nil
}

// overflowBytes reads a value that lies (partly) in overflow pages, following the chain through
// the next pointers the scan kept. nil when the chain is broken (already reported).
func (ck *checker) overflowBytes(pd pending) ([]byte, error) {
	out := append([]byte(nil), pd.head...)
	per := uint64(ck.usable - 4)
	pos := max(pd.off, pd.nLocal) - pd.nLocal // offset into the overflow part
	end := pd.off + pd.n - pd.nLocal
	p := pd.first
	for i := uint64(0); i < pos/per; i++ {
		if p == 0 || p > ck.nPage {
			return nil, nil
		}
		p = ck.next[p]
	}
	for pos < end {
		if p == 0 || p > ck.nPage {
			return nil, nil
		}
		b, err := ck.readPage(p)
		if err != nil {
			return nil, err
		}
		from := 4 + pos%per
		take := min(per-pos%per, end-pos)
		out = append(out, b[from:from+take]...)
		pos += take
		p = ck.next[p]
	}
	return out, nil
}
