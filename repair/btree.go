package repair

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"unicode/utf16"
)

// This file reads SQLite b-trees page by page from a file no connection has open (our own
// snapshot), for the tables SQLite's cursors cannot read to the end. It follows
// https://sqlite.org/fileformat.html and trusts nothing: every page number, offset, count and
// record is bounds-checked, and a page whose header is damaged is decoded leniently, keeping only
// the cells that validate (record sizes that add up exactly, rowids ascending inside the range
// the parent page assigns).

var be = binary.BigEndian

// Page types (the first byte of a b-tree page header).
const (
	pageIndexInterior = 0x02
	pageTableInterior = 0x05
	pageIndexLeaf     = 0x0a
	pageTableLeaf     = 0x0d
)

var (
	errPageRange   = errors.New("page number out of range")
	errShortPage   = errors.New("page lies past the end of the file")
	errPageVisited = errors.New("page already in use (a cycle or a shared page)")
	errBadPage     = errors.New("page is not a b-tree page of the expected kind")
	errBadRecord   = errors.New("malformed record")
	errOverflow    = errors.New("overflow chain broken")
)

// pager reads raw pages from a database file.
type pager struct {
	f        *os.File
	pageSize int
	usable   int
	nPages   uint32 // pages the file holds
	enc      uint32 // text encoding: 1 UTF-8, 2 UTF-16le, 3 UTF-16be
}

func openPager(path string) (*pager, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	var h [100]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("read header of %s: %w", path, err)
	}
	ps := int(be.Uint16(h[16:]))
	if ps == 1 {
		ps = 65536
	}
	if ps < 512 || ps&(ps-1) != 0 {
		f.Close()
		return nil, fmt.Errorf("read header of %s: page size %d is not a power of two", path, ps)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	enc := be.Uint32(h[56:])
	if enc < 1 || enc > 3 {
		enc = 1
	}
	return &pager{f: f, pageSize: ps, usable: ps - int(h[20]), nPages: uint32(fi.Size() / int64(ps)), enc: enc}, nil
}

func (p *pager) Close() error { return p.f.Close() }

// page returns page n (1-based). The returned slice is fresh.
func (p *pager) page(n uint32) ([]byte, error) {
	if n < 1 {
		return nil, errPageRange
	}
	if n > p.nPages {
		return nil, errShortPage
	}
	b := make([]byte, p.pageSize)
	if _, err := p.f.ReadAt(b, int64(n-1)*int64(p.pageSize)); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read page %d: %w", n, err)
	}
	return b, nil
}

// varint decodes a SQLite varint at b[0:], returning the value and its length (0 on overrun).
func varint(b []byte) (int64, int) {
	var v uint64
	for i := 0; i < 8; i++ {
		if i >= len(b) {
			return 0, 0
		}
		v = v<<7 | uint64(b[i]&0x7f)
		if b[i]&0x80 == 0 {
			return int64(v), i + 1
		}
	}
	if len(b) < 9 {
		return 0, 0
	}
	return int64(v<<8 | uint64(b[8])), 9
}

// localSize is how many payload bytes of a cell are stored on its page (the rest spills to
// overflow pages).
func (p *pager) localSize(payload int64, index bool) int {
	u := int64(p.usable)
	x := u - 35
	if index {
		x = (u-12)*64/255 - 23
	}
	if payload <= x {
		return int(payload)
	}
	m := (u-12)*32/255 - 23
	k := m + (payload-m)%(u-4)
	if k <= x {
		return int(k)
	}
	return int(m)
}

// payload assembles a cell's payload: size bytes starting at page[off:], continuing on overflow
// pages when it spills. reached records the overflow pages used.
func (p *pager) payload(page []byte, off int, size int64, index bool, reached func(uint32) bool) ([]byte, error) {
	if size < 0 || size > 1<<31 {
		return nil, errBadRecord
	}
	local := p.localSize(size, index)
	if off+local > p.usable {
		return nil, errBadRecord
	}
	if int64(local) == size {
		return page[off : off+local], nil
	}
	if off+local+4 > p.usable {
		return nil, errBadRecord
	}
	out := make([]byte, 0, size)
	out = append(out, page[off:off+local]...)
	next := be.Uint32(page[off+local:])
	for int64(len(out)) < size {
		if next < 2 || reached(next) {
			return nil, errOverflow
		}
		ov, err := p.page(next)
		if err != nil {
			return nil, errOverflow
		}
		n := min(int64(p.usable-4), size-int64(len(out)))
		out = append(out, ov[4:4+n]...)
		next = be.Uint32(ov)
	}
	return out, nil
}

// serialSize is the content length of a record serial type (-1: invalid).
func serialSize(t int64) int64 {
	switch {
	case t < 0:
		return -1
	case t <= 4:
		return [...]int64{0, 1, 2, 3, 4}[t]
	case t == 5:
		return 6
	case t == 6, t == 7:
		return 8
	case t == 8, t == 9:
		return 0
	case t == 10, t == 11:
		return -1
	}
	return (t - 12) / 2
}

// decodeRecord decodes a record into Go values (nil, int64, float64, string, []byte). It fails
// unless the header and the contents add up to exactly len(rec) bytes.
func decodeRecord(rec []byte, enc uint32, maxFields int) ([]any, error) {
	hs, n := varint(rec)
	if n == 0 || hs < int64(n) || hs > int64(len(rec)) {
		return nil, errBadRecord
	}
	var types []int64
	for off := n; off < int(hs); {
		t, k := varint(rec[off:hs])
		if k == 0 {
			return nil, errBadRecord
		}
		types = append(types, t)
		off += k
		if len(types) > maxFields {
			return nil, errBadRecord
		}
	}
	if len(types) == 0 {
		return nil, errBadRecord
	}
	total := hs
	for _, t := range types {
		s := serialSize(t)
		if s < 0 {
			return nil, errBadRecord
		}
		total += s
	}
	if total != int64(len(rec)) {
		return nil, errBadRecord
	}
	vals := make([]any, len(types))
	off := hs
	for i, t := range types {
		s := serialSize(t)
		b := rec[off : off+s]
		off += s
		switch {
		case t == 0:
			vals[i] = nil
		case t >= 1 && t <= 6:
			var v int64
			for _, c := range b {
				v = v<<8 | int64(c)
			}
			shift := 64 - 8*uint(len(b))
			vals[i] = v << shift >> shift // sign-extend
		case t == 7:
			vals[i] = math.Float64frombits(be.Uint64(b))
		case t == 8:
			vals[i] = int64(0)
		case t == 9:
			vals[i] = int64(1)
		case t%2 == 0:
			vals[i] = append([]byte{}, b...)
		default:
			vals[i] = decodeText(b, enc)
		}
	}
	return vals, nil
}

func decodeText(b []byte, enc uint32) string {
	if enc == 1 || len(b)%2 != 0 {
		return string(b)
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		if enc == 2 {
			u[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
		} else {
			u[i] = be.Uint16(b[2*i:])
		}
	}
	return string(utf16.Decode(u))
}

// LostRange is an interval of rowids (inclusive) that lay on pages that could not be read. Open
// ends (the first or last subtree of a table) are reported as the smallest or largest rowid.
type LostRange struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
}

// PageIssue is one page that could not be read, or was read only in part.
type PageIssue struct {
	Page   uint32 `json:"page"`
	Reason string `json:"reason"`
}

// walker walks the b-trees of one file, remembering every page it reached. A walk stops early
// (delivering nothing more) once stop reports true.
type walker struct {
	p       *pager
	reached map[uint32]bool
	stop    func() bool
}

func newWalker(p *pager) *walker {
	return &walker{p: p, reached: map[uint32]bool{}, stop: func() bool { return false }}
}

// reach marks page n used and reports whether it already was.
func (w *walker) reach(n uint32) bool {
	if w.reached[n] {
		return true
	}
	w.reached[n] = true
	return false
}

// tableVisitor receives what a table walk finds.
type tableVisitor struct {
	maxFields int
	row       func(rowid int64, vals []any)
	lost      []LostRange
	issues    []PageIssue
	badRows   []int64 // rowids whose cell could not be decoded (e.g. a broken overflow chain)
	rejected  int     // cells on damaged pages that did not validate
}

func (v *tableVisitor) lose(page uint32, lo, hi int64, why error) {
	from := lo + 1
	if lo == math.MinInt64 {
		from = math.MinInt64
	}
	v.lost = append(v.lost, LostRange{From: from, To: hi})
	v.issues = append(v.issues, PageIssue{Page: page, Reason: why.Error()})
}

// walkTable walks the table b-tree rooted at page n whose rowids lie in (lo, hi].
func (w *walker) walkTable(n uint32, lo, hi int64, depth int, v *tableVisitor) {
	if w.stop() {
		return
	}
	if depth > 40 {
		v.lose(n, lo, hi, errors.New("b-tree deeper than 40 levels"))
		return
	}
	if n < 2 && n != 1 || n > w.p.nPages {
		why := errPageRange
		if n > w.p.nPages {
			why = errShortPage
		}
		v.lose(n, lo, hi, why)
		return
	}
	if w.reach(n) {
		v.lose(n, lo, hi, errPageVisited)
		return
	}
	pg, err := w.p.page(n)
	if err != nil {
		v.lose(n, lo, hi, err)
		return
	}
	hdr := 0
	if n == 1 {
		hdr = 100
	}
	switch pg[hdr] {
	case pageTableLeaf:
		if got := w.leafCells(pg, n, hdr, lo, hi, v); got < 0 {
			v.lose(n, lo, hi, errBadPage)
		}
		return
	case pageTableInterior:
		if w.interior(pg, hdr, lo, hi, depth, v) {
			return
		}
		v.lose(n, lo, hi, errBadPage)
		return
	}
	// Damaged page type: try it as a leaf, keeping only cells that validate. It is never guessed to
	// be an interior page: garbage child pointers could lead into other tables' pages. The leaves
	// under a lost interior page are found later as unattached pages (adoptOrphans).
	trial := &tableVisitor{maxFields: v.maxFields, row: func(int64, []any) {}}
	var good int
	w.scratch(func() { good = w.leafCells(pg, n, hdr, lo, hi, trial) })
	if good > 0 {
		got := w.leafCells(pg, n, hdr, lo, hi, v)
		v.issues = append(v.issues, PageIssue{Page: n, Reason: fmt.Sprintf("page type byte 0x%02x damaged: read as a table leaf, %d rows validated", pg[hdr], got)})
		return
	}
	v.lose(n, lo, hi, fmt.Errorf("%w (type byte 0x%02x)", errBadPage, pg[hdr]))
}

// cellPointers returns the cell offsets of a page whose header starts at hdr. A cell count that
// cannot fit the page is distrusted (lenient): pointers are then read while they point inside the
// cell content area.
func (w *walker) cellPointers(pg []byte, hdr, hlen int, lenient bool) ([]int, bool) {
	count := int(be.Uint16(pg[hdr+3:]))
	arr := hdr + hlen
	maxCells := (w.p.usable - arr) / 6
	damaged := count > maxCells
	if damaged {
		if !lenient {
			return nil, false
		}
		count = maxCells
	}
	out := make([]int, 0, count)
	for i := 0; i < count; i++ {
		o := arr + 2*i
		ptr := int(be.Uint16(pg[o:]))
		if ptr < arr+2*(i+1) || ptr >= w.p.usable {
			if lenient {
				break
			}
			return nil, false
		}
		out = append(out, ptr)
	}
	return out, !damaged
}

// scratch runs f with a throwaway reached set, so a trial decode marks no page used.
func (w *walker) scratch(f func()) {
	saved := w.reached
	w.reached = map[uint32]bool{}
	for k := range saved {
		w.reached[k] = true
	}
	f()
	w.reached = saved
}

// leafCells decodes the cells of table leaf page n, keeping those that validate. It returns how
// many rows it delivered, or -1 when the page has cells and none of them validates.
func (w *walker) leafCells(pg []byte, n uint32, hdr int, lo, hi int64, v *tableVisitor) int {
	ptrs, ok := w.cellPointers(pg, hdr, 8, true)
	if !ok {
		v.issues = append(v.issues, PageIssue{Page: n, Reason: fmt.Sprintf("cell count %d cannot fit the page: read the cell pointers that validate", be.Uint16(pg[hdr+3:]))})
	}
	good, prev := 0, lo
	for _, off := range ptrs {
		size, k1 := varint(pg[off:min(off+9, w.p.usable)])
		if k1 == 0 {
			v.rejected++
			continue
		}
		rowid, k2 := varint(pg[off+k1 : min(off+k1+9, w.p.usable)])
		if k2 == 0 || rowid <= prev || rowid > hi {
			v.rejected++
			continue
		}
		rec, err := w.p.payload(pg, off+k1+k2, size, false, w.reach)
		if err != nil {
			if errors.Is(err, errOverflow) {
				v.badRows = append(v.badRows, rowid)
				prev = rowid
				continue
			}
			v.rejected++
			continue
		}
		vals, err := decodeRecord(rec, w.p.enc, v.maxFields)
		if err != nil {
			v.rejected++
			continue
		}
		prev = rowid
		v.row(rowid, vals)
		good++
	}
	if good == 0 && len(ptrs) > 0 && len(v.badRows) == 0 {
		return -1
	}
	return good
}

// interior walks a table-interior page's children in order. It returns false when the page does
// not look like an interior page at all.
func (w *walker) interior(pg []byte, hdr int, lo, hi int64, depth int, v *tableVisitor) bool {
	ptrs, ok := w.cellPointers(pg, hdr, 12, false)
	if !ok {
		return false
	}
	type child struct {
		page uint32
		key  int64
	}
	var kids []child
	prev := lo
	for _, off := range ptrs {
		if off+5 > w.p.usable {
			continue
		}
		c := be.Uint32(pg[off:])
		key, k := varint(pg[off+4 : min(off+13, w.p.usable)])
		if k == 0 || key < prev || key > hi {
			continue // a key out of order: its child's range is unknown, so it is lost with the next
		}
		kids = append(kids, child{c, key})
		prev = key
	}
	if len(kids) == 0 && len(ptrs) > 0 {
		return false
	}
	from := lo
	for _, c := range kids {
		w.walkTable(c.page, from, c.key, depth+1, v)
		from = c.key
	}
	w.walkTable(be.Uint32(pg[hdr+8:]), from, hi, depth+1, v)
	return true
}

// indexVisitor receives the records of an index b-tree (and of WITHOUT ROWID tables).
type indexVisitor struct {
	maxFields int
	entry     func(vals []any)
	issues    []PageIssue
	rejected  int
	badCells  int
}

// walkIndex walks the index b-tree rooted at page n, delivering every record in key order.
func (w *walker) walkIndex(n uint32, depth int, v *indexVisitor) {
	if w.stop() {
		return
	}
	if depth > 40 {
		v.issues = append(v.issues, PageIssue{Page: n, Reason: "b-tree deeper than 40 levels"})
		return
	}
	if n < 1 || n > w.p.nPages {
		v.issues = append(v.issues, PageIssue{Page: n, Reason: errShortPage.Error()})
		return
	}
	if w.reach(n) {
		v.issues = append(v.issues, PageIssue{Page: n, Reason: errPageVisited.Error()})
		return
	}
	pg, err := w.p.page(n)
	if err != nil {
		v.issues = append(v.issues, PageIssue{Page: n, Reason: err.Error()})
		return
	}
	hdr := 0
	if n == 1 {
		hdr = 100
	}
	typ := pg[hdr]
	if typ != pageIndexLeaf && typ != pageIndexInterior {
		v.issues = append(v.issues, PageIssue{Page: n, Reason: fmt.Sprintf("%s (type byte 0x%02x)", errBadPage, typ)})
		return
	}
	interior := typ == pageIndexInterior
	hlen := 8
	if interior {
		hlen = 12
	}
	ptrs, ok := w.cellPointers(pg, hdr, hlen, true)
	if !ok {
		v.issues = append(v.issues, PageIssue{Page: n, Reason: "cell count damaged"})
	}
	for _, off := range ptrs {
		if interior {
			if off+4 > w.p.usable {
				v.rejected++
				continue
			}
			w.walkIndex(be.Uint32(pg[off:]), depth+1, v)
			off += 4
		}
		size, k := varint(pg[off:min(off+9, w.p.usable)])
		if k == 0 {
			v.rejected++
			continue
		}
		rec, err := w.p.payload(pg, off+k, size, true, w.reach)
		if err != nil {
			v.badCells++
			continue
		}
		vals, err := decodeRecord(rec, w.p.enc, v.maxFields)
		if err != nil {
			v.rejected++
			continue
		}
		v.entry(vals)
	}
	if interior {
		w.walkIndex(be.Uint32(pg[hdr+8:]), depth+1, v)
	}
}

// walkFreelist marks the freelist's trunk and leaf pages reached (they hold no live rows).
func (w *walker) walkFreelist(trunk uint32) {
	for i := 0; trunk >= 2 && trunk <= w.p.nPages && i < int(w.p.nPages); i++ {
		if w.reach(trunk) {
			return
		}
		pg, err := w.p.page(trunk)
		if err != nil {
			return
		}
		n := int(be.Uint32(pg[4:]))
		for j := 0; j < n && 8+4*j+4 <= w.p.usable; j++ {
			if l := be.Uint32(pg[8+4*j:]); l >= 2 && l <= w.p.nPages {
				w.reached[l] = true
			}
		}
		trunk = be.Uint32(pg)
	}
}

// orphanLeaf decodes page n as a table leaf page that no b-tree reached, returning its rows (nil
// when it is not one or no cell validates).
func (w *walker) orphanLeaf(n uint32, maxFields int) (rowids []int64, rows [][]any) {
	pg, err := w.p.page(n)
	if err != nil || pg[0] != pageTableLeaf {
		return nil, nil
	}
	v := &tableVisitor{maxFields: maxFields, row: func(id int64, vals []any) {
		rowids = append(rowids, id)
		rows = append(rows, vals)
	}}
	// Reading an orphan's overflow chain must not mark pages used.
	w.scratch(func() { w.leafCells(pg, n, 0, math.MinInt64, math.MaxInt64, v) })
	if v.rejected > 0 || len(v.badRows) > 0 {
		return nil, nil
	}
	return rowids, rows
}
