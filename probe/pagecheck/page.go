package pagecheck

import (
	"encoding/binary"
	"fmt"
	"slices"
)

func get2(b []byte, i int) uint32 { return uint32(b[i])<<8 | uint32(b[i+1]) }
func get4(b []byte, i int) uint32 { return binary.BigEndian.Uint32(b[i:]) }

// Page types (the flag byte of a b-tree page).
const (
	interiorIndex = 0x02
	interiorTable = 0x05
	leafIndex     = 0x0a
	leafTable     = 0x0d
)

// cell is one parsed cell of a b-tree page.
type cell struct {
	pc, size uint32
	key      int64  // rowid (table pages)
	child    uint32 // left child (interior pages)
	local    []byte // the payload bytes stored on the page
	nPayload uint64
	ovfl     uint32 // first overflow page, 0 if none
	nOvfl    uint32 // overflow pages the payload needs
}

// page is a parsed b-tree page.
type page struct {
	pgno  uint32
	typ   byte
	hdr   int
	right uint32 // right child (interior pages)
	cells []cell
}

func (p *page) leaf() bool   { return p.typ&0x08 != 0 }
func (p *page) intKey() bool { return p.typ == leafTable || p.typ == interiorTable }

// geometry is what every page check needs to know about the file.
type geometry struct {
	pageSize, usable uint32
	nPage            uint32
}

// parsePage checks one b-tree page as SQLite's btreeInitPage, btreeComputeFreeSpace and
// checkTreePage do (header, cell pointers, cell extents, free blocks, overlap and fragment
// count) and parses its cells into p.cells (reusing its storage). It reports each problem it
// finds through bad; ok is false when the page cannot be used at all.
func (g *geometry) parsePage(pgno uint32, b []byte, p *page, bad func(string)) (ok bool) {
	p.pgno, p.cells = pgno, p.cells[:0]
	hdr := 0
	if pgno == 1 {
		hdr = 100
	}
	p.hdr = hdr
	p.typ = b[hdr]
	switch p.typ {
	case interiorIndex, interiorTable, leafIndex, leafTable:
	default:
		bad(fmt.Sprintf("page %d: not a b-tree page (type byte 0x%02x)", pgno, p.typ))
		return false
	}
	leaf := p.leaf()
	childPtr := 4
	if leaf {
		childPtr = 0
	}
	usable := g.usable
	nCell := get2(b, hdr+3)
	if nCell > (g.pageSize-8)/6 {
		bad(fmt.Sprintf("page %d: %d cells cannot fit", pgno, nCell))
		return false
	}
	// btreeComputeFreeSpace.
	top := get2(b, hdr+5)
	if top == 0 {
		top = 65536
	}
	cellFirst := uint32(hdr+8+childPtr) + 2*nCell
	cellLast := usable - 4
	pc := get2(b, hdr+1)
	nFree := uint32(b[hdr+7]) + top
	if pc > 0 {
		if pc < top {
			bad(fmt.Sprintf("page %d: free block before the cell content area", pgno))
			return false
		}
		var next, size uint32
		for {
			if pc > cellLast {
				bad(fmt.Sprintf("page %d: free block off the end of the page", pgno))
				return false
			}
			next, size = get2(b, int(pc)), get2(b, int(pc)+2)
			nFree += size
			if next <= pc+size+3 {
				break
			}
			pc = next
		}
		if next > 0 {
			bad(fmt.Sprintf("page %d: free blocks not in ascending order", pgno))
			return false
		}
		if pc+size > usable {
			bad(fmt.Sprintf("page %d: last free block extends past the page end", pgno))
			return false
		}
	}
	if nFree > usable || nFree < cellFirst {
		bad(fmt.Sprintf("page %d: free space corruption", pgno))
		return false
	}
	if !leaf {
		p.right = get4(b, hdr+8)
	}

	// The cells (checkTreePage).
	var maxLocal, minLocal uint32
	if p.typ == leafTable {
		maxLocal = usable - 35
	} else {
		maxLocal = (usable-12)*64/255 - 23
	}
	minLocal = (usable-12)*32/255 - 23
	contentOffset := top
	cellStart := hdr + 8 + childPtr
	coverage := true
	ok = true
	for i := 0; i < int(nCell); i++ {
		pc := get2(b, cellStart+2*i)
		if pc < contentOffset || pc > usable-4 {
			bad(fmt.Sprintf("page %d cell %d: offset %d out of range %d..%d", pgno, i, pc, contentOffset, usable-4))
			coverage, ok = false, false
			continue
		}
		c, fits := parseCell(b, int(pc), p.typ, usable, maxLocal, minLocal)
		if !fits || pc+c.size > usable {
			bad(fmt.Sprintf("page %d cell %d: extends off the end of the page", pgno, i))
			coverage, ok = false, false
			continue
		}
		if c.nPayload != 0 && c.local[0] < 2 {
			bad(fmt.Sprintf("page %d cell %d: bad cell header size", pgno, i))
			coverage, ok = false, false
			continue
		}
		p.cells = append(p.cells, c)
	}
	if !coverage {
		return ok
	}
	// Every byte of the content area is a cell, a free block or a counted fragment, once.
	spans := make([]uint32, 0, len(p.cells)+4)
	for _, c := range p.cells {
		spans = append(spans, c.pc<<16|(c.pc+c.size-1))
	}
	for i := get2(b, hdr+1); i > 0; i = get2(b, int(i)) {
		size := get2(b, int(i)+2)
		spans = append(spans, i<<16|(i+size-1))
	}
	slices.Sort(spans)
	prev := contentOffset - 1
	var nFrag uint32
	for _, x := range spans {
		if prev&0xffff >= x>>16 {
			bad(fmt.Sprintf("page %d: multiple uses for byte %d", pgno, x>>16))
			return false
		}
		nFrag += x>>16 - prev&0xffff - 1
		prev = x
	}
	nFrag += usable - prev&0xffff - 1
	if nFrag != uint32(b[hdr+7]) {
		bad(fmt.Sprintf("page %d: fragmentation of %d bytes reported as %d", pgno, nFrag, b[hdr+7]))
		return false
	}
	return ok
}

// payloadVarint reads a payload size as btreeParseCellPtr does (at most 9 bytes, 7 bits each,
// kept to 32 bits).
func payloadVarint(b []byte, i int) (v uint32, next int, ok bool) {
	if i >= len(b) {
		return 0, 0, false
	}
	v = uint32(b[i])
	if v >= 0x80 {
		end := i + 8
		v &= 0x7f
		for {
			i++
			if i >= len(b) {
				return 0, 0, false
			}
			v = v<<7 | uint32(b[i]&0x7f)
			if b[i] < 0x80 || i >= end {
				break
			}
		}
	}
	return v, i + 1, true
}

// parseCell parses the cell at pc (btreeParseCellPtr and friends). fits is false when its
// header runs off the buffer.
func parseCell(b []byte, pc int, typ byte, usable, maxLocal, minLocal uint32) (c cell, fits bool) {
	c.pc = uint32(pc)
	i := pc
	if typ == interiorTable || typ == interiorIndex {
		if i+4 > len(b) {
			return c, false
		}
		c.child = get4(b, i)
		i += 4
	}
	if typ == interiorTable {
		k, n := varint(b[i:])
		if n == 0 {
			return c, false
		}
		c.key = int64(k)
		c.size = uint32(i + n - pc)
		return c, true
	}
	nPayload, i, ok := payloadVarint(b, i)
	if !ok {
		return c, false
	}
	if typ == leafTable {
		k, n := varint(b[i:])
		if n == 0 {
			return c, false
		}
		c.key = int64(k)
		i += n
	}
	c.nPayload = uint64(nPayload)
	nLocal := nPayload
	if nPayload <= maxLocal {
		c.size = uint32(i-pc) + nPayload
		if c.size < 4 {
			c.size = 4
		}
	} else {
		surplus := minLocal + (nPayload-minLocal)%(usable-4)
		if surplus <= maxLocal {
			nLocal = surplus
		} else {
			nLocal = minLocal
		}
		c.size = uint32(i-pc) + nLocal + 4
	}
	end := i + int(nLocal)
	if end > len(b) || pc+int(c.size) > len(b) {
		return c, false
	}
	c.local = b[i:end]
	if nPayload > nLocal {
		c.ovfl = get4(b, end)
		c.nOvfl = (nPayload - nLocal + usable - 5) / (usable - 4)
	}
	return c, true
}
