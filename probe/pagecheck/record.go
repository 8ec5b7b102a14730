package pagecheck

import (
	"bytes"
	"encoding/binary"
	"math"
	"regexp"
)

// varint decodes SQLite's big-endian varint (1-9 bytes). n is 0 when b ends first.
func varint(b []byte) (v uint64, n int) {
	for i := 0; i < 8; i++ {
		if i >= len(b) {
			return 0, 0
		}
		v = v<<7 | uint64(b[i]&0x7f)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	if len(b) < 9 {
		return 0, 0
	}
	return v<<8 | uint64(b[8]), 9
}

// serialLen is the number of content bytes of a serial type; ok is false for the reserved
// types 10 and 11, which SQLite never writes.
func serialLen(t uint64) (n uint64, ok bool) {
	switch {
	case t <= 4:
		return [...]uint64{0, 1, 2, 3, 4}[t], true
	case t == 5:
		return 6, true
	case t == 6 || t == 7:
		return 8, true
	case t == 8 || t == 9:
		return 0, true
	case t == 10 || t == 11:
		return 0, false
	}
	return (t - 12) / 2, true
}

// field is one value of a record: its serial type and where its bytes start in the payload.
type field struct {
	typ uint64
	off uint64
	n   uint64
}

// parseHeader reads the whole header of a record whose payload is size bytes, of which local
// holds the first part. Stricter than SQLite: the header must end exactly where it says, every
// serial type must be a real one, and the content must fill the payload exactly (SQLite writes
// nothing else; anything else is left to SQLite to judge). ok is false for such a record;
// inOverflow is true when the header itself does not fit in the local bytes (rare: the caller
// lets SQLite judge).
func parseHeader(local []byte, size uint64, fs []field) (out []field, ok, inOverflow bool) {
	hs, n := varint(local)
	if n == 0 {
		return fs, false, uint64(len(local)) < size
	}
	if hs > size || hs < uint64(n) || hs > 98307 {
		return fs, false, false
	}
	if hs > uint64(len(local)) {
		return fs, false, true
	}
	h := local[n:hs]
	off := hs
	for len(h) > 0 {
		t, k := varint(h)
		if k == 0 || t > 0xffffffff {
			return fs, false, false
		}
		h = h[k:]
		l, valid := serialLen(t)
		if !valid {
			return fs, false, false
		}
		fs = append(fs, field{typ: t, off: off, n: l})
		off += l
	}
	return fs, off == size, false
}

// class orders values as SQLite does: NULL < numbers < TEXT < BLOB.
func class(t uint64) int {
	switch {
	case t == 0:
		return 0
	case t <= 9:
		return 1
	case t >= 13 && t%2 == 1:
		return 2
	}
	return 3
}

// number decodes a numeric field: an integer, or a float (isFloat).
func number(t uint64, b []byte) (i int64, f float64, isFloat bool) {
	switch t {
	case 1:
		return int64(int8(b[0])), 0, false
	case 2:
		return int64(int16(binary.BigEndian.Uint16(b))), 0, false
	case 3:
		return int64(int32(uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8) >> 8), 0, false
	case 4:
		return int64(int32(binary.BigEndian.Uint32(b))), 0, false
	case 5:
		return int64(uint64(binary.BigEndian.Uint16(b))<<48|uint64(binary.BigEndian.Uint32(b[2:]))<<16) >> 16, 0, false
	case 6:
		return int64(binary.BigEndian.Uint64(b)), 0, false
	case 7:
		return 0, math.Float64frombits(binary.BigEndian.Uint64(b)), true
	case 8:
		return 0, 0, false
	case 9:
		return 1, 0, false
	}
	return 0, 0, false
}

// intFloatCompare compares an integer with a float exactly (sqlite3IntFloatCompare).
func intFloatCompare(i int64, r float64) int {
	if math.IsNaN(r) {
		return 1 // SQLite reads a NaN as NULL; anything sorts after it
	}
	if r < -9223372036854775808.0 {
		return 1
	}
	if r >= 9223372036854775808.0 {
		return -1
	}
	y := int64(r)
	if i < y {
		return -1
	}
	if i > y {
		return 1
	}
	s := float64(i)
	switch {
	case s < r:
		return -1
	case s > r:
		return 1
	}
	return 0
}

// compareValues compares two fields (BINARY collation).
func compareValues(ta uint64, a []byte, tb uint64, b []byte) int {
	ca, cb := class(ta), class(tb)
	if ca != cb {
		if ca < cb {
			return -1
		}
		return 1
	}
	switch ca {
	case 0:
		return 0
	case 1:
		ia, fa, af := number(ta, a)
		ib, fb, bf := number(tb, b)
		switch {
		case !af && !bf:
			return cmpInt(ia, ib)
		case af && bf:
			switch {
			case fa < fb:
				return -1
			case fa > fb:
				return 1
			}
			return 0
		case af:
			return -intFloatCompare(ib, fa)
		}
		return intFloatCompare(ia, fb)
	}
	return bytes.Compare(a, b)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// record is a parsed record whose bytes are all at hand.
type record struct {
	b  []byte
	fs []field
}

func (r record) value(i int) (uint64, []byte) {
	f := r.fs[i]
	return f.typ, r.b[f.off : f.off+f.n]
}

// compareRecords compares two index entries field by field (desc reverses a key column), and
// reports whether the first nKey fields are equal with none NULL (a UNIQUE violation).
func compareRecords(a, b record, desc []bool, nKey int) (cmp int, dupKey bool) {
	n := min(len(a.fs), len(b.fs))
	dup := len(a.fs) >= nKey && len(b.fs) >= nKey
	for i := 0; i < n; i++ {
		ta, va := a.value(i)
		tb, vb := b.value(i)
		c := compareValues(ta, va, tb, vb)
		if i < nKey && (ta == 0 || tb == 0) {
			dup = false
		}
		if c != 0 {
			if i < len(desc) && desc[i] {
				c = -c
			}
			return c, false
		}
	}
	return cmpInt(int64(len(a.fs)), int64(len(b.fs))), dup
}

// canon appends a value in a form where equal values (as an index lookup compares them) have
// equal bytes: integers and integral floats alike as integers.
func canon(dst []byte, t uint64, b []byte) []byte {
	switch class(t) {
	case 0:
		return append(dst, 0)
	case 1:
		i, f, isF := number(t, b)
		if isF {
			if math.IsNaN(f) {
				return append(dst, 0) // read as NULL
			}
			if f >= -9223372036854775808.0 && f < 9223372036854775808.0 && f == math.Trunc(f) {
				i, isF = int64(f), false
			}
		}
		if isF {
			dst = append(dst, 2)
			return binary.BigEndian.AppendUint64(dst, math.Float64bits(f))
		}
		dst = append(dst, 1)
		return binary.BigEndian.AppendUint64(dst, uint64(i))
	case 2:
		dst = append(dst, 3)
	default:
		dst = append(dst, 4)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

func canonInt(dst []byte, i int64) []byte {
	dst = append(dst, 1)
	return binary.BigEndian.AppendUint64(dst, uint64(i))
}

// numericText matches text that SQLite's numeric affinity would turn into a number (the
// grammar of sqlite3AtoF, with its whitespace): such text in a numeric column is an error.
var numericText = regexp.MustCompile(`^[ \t\n\v\f\r]*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?[ \t\n\v\f\r]*$`)

func convertible(text []byte) bool {
	if len(text) > 4096 {
		return true // not worth judging here: SQLite will
	}
	return numericText.Match(text)
}
