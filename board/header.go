package board

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Magic is the first 16 bytes of every SQLite 3 database file.
const Magic = "SQLite format 3\x00"

// Journal modes as read from the header (bytes 18 and 19). The header cannot tell DELETE from
// TRUNCATE or PERSIST, so those are all "rollback".
const (
	JournalWAL      = "wal"
	JournalRollback = "rollback"
	JournalEmpty    = "empty"   // a 0-byte file: SQLite treats it as a new database
	JournalMissing  = "missing" // no DB file (a board.json without kanban.db)
	JournalInvalid  = "invalid" // not a SQLite header
	// JournalUnusable: something is at the DB path but it cannot be a database or cannot be read
	// (a FIFO, device, directory, dangling symlink or symlink loop, permission denied); HeaderError
	// says which.
	JournalUnusable = "unusable"
)

// ErrNotDatabase is returned when a file does not start with a valid SQLite header.
var ErrNotDatabase = errors.New("not a SQLite database")

// Header is what kanban-doctor reads from the first 100 bytes of a database file.
type Header struct {
	PageSize      int    // bytes 16-17 (1 means 65536)
	WriteVersion  byte   // byte 18: 1 legacy, 2 WAL
	ReadVersion   byte   // byte 19
	ChangeCounter uint32 // bytes 24-27
	PageCount     uint32 // bytes 28-31 (in-header database size)
	FreelistTrunk uint32 // bytes 32-35
	FreelistCount uint32 // bytes 36-39
	SchemaCookie  uint32 // bytes 40-43
	TextEncoding  uint32 // bytes 56-59
	VersionValid  uint32 // bytes 92-95
	SQLiteVersion uint32 // bytes 96-99
}

// JournalMode is "wal" or "rollback" from the version bytes.
func (h Header) JournalMode() string {
	if h.WriteVersion == 2 && h.ReadVersion == 2 {
		return JournalWAL
	}
	return JournalRollback
}

// ParseHeader decodes a database header. It fails with ErrNotDatabase on a bad magic, page size
// or version bytes, and io.ErrUnexpectedEOF on fewer than 100 bytes.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < 100 {
		return Header{}, fmt.Errorf("%w: header is %d bytes, want 100: %w", ErrNotDatabase, len(b), io.ErrUnexpectedEOF)
	}
	if string(b[:16]) != Magic {
		return Header{}, fmt.Errorf("%w: bad header magic", ErrNotDatabase)
	}
	h := Header{
		PageSize:      int(binary.BigEndian.Uint16(b[16:18])),
		WriteVersion:  b[18],
		ReadVersion:   b[19],
		ChangeCounter: binary.BigEndian.Uint32(b[24:28]),
		PageCount:     binary.BigEndian.Uint32(b[28:32]),
		FreelistTrunk: binary.BigEndian.Uint32(b[32:36]),
		FreelistCount: binary.BigEndian.Uint32(b[36:40]),
		SchemaCookie:  binary.BigEndian.Uint32(b[40:44]),
		TextEncoding:  binary.BigEndian.Uint32(b[56:60]),
		VersionValid:  binary.BigEndian.Uint32(b[92:96]),
		SQLiteVersion: binary.BigEndian.Uint32(b[96:100]),
	}
	if h.PageSize == 1 {
		h.PageSize = 65536
	}
	if h.PageSize < 512 || h.PageSize > 65536 || h.PageSize&(h.PageSize-1) != 0 {
		return h, fmt.Errorf("%w: invalid page size %d", ErrNotDatabase, h.PageSize)
	}
	if h.WriteVersion < 1 || h.WriteVersion > 2 || h.ReadVersion < 1 || h.ReadVersion > 2 {
		return h, fmt.Errorf("%w: invalid file format version bytes %d/%d", ErrNotDatabase, h.WriteVersion, h.ReadVersion)
	}
	return h, nil
}

// ReadHeader reads the header of the database file at path.
//
// It opens and closes the file: never call it from a process that holds a SQLite connection to
// the same database (closing any descriptor of the file drops that process's POSIX locks).
func ReadHeader(path string) (Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return Header{}, err
	}
	defer f.Close()
	var b [100]byte
	n, err := io.ReadFull(f, b[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return Header{}, err
	}
	return ParseHeader(b[:n])
}
