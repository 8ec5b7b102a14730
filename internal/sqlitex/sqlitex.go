// Package sqlitex opens SQLite databases the way kanban-doctor must (locked, read-only by default)
// and classifies SQLite errors by their extended result codes.
package sqlitex

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"modernc.org/sqlite"
	lib "modernc.org/sqlite/lib"
)

// Options controls how a connection is opened. The zero value is a read-only, locked connection
// with a 5 s busy timeout.
type Options struct {
	ReadWrite   bool     // open read-write (default read-only: mode=ro)
	Create      bool     // with ReadWrite, create the file if missing
	BusyTimeout int      // milliseconds; 0 means 5000, negative means none
	Pragmas     []string // extra pragmas, each "name(value)", applied on every new connection
	Params      []string // extra SQLite URI parameters, "key=value" (e.g. "immutable=1" for the repro harness only)
	TxLock      string   // "immediate" or "exclusive" for read-write writers
}

// EscapePath turns a file path into the path part of a SQLite file: URI, percent-encoding every byte
// that is not unreserved so names with '?', '#', '%', spaces or non-ASCII bytes open the right file.
func EscapePath(p string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '/', c == '-', c == '_', c == '.', c == '~':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// DSN builds a modernc DSN for path with opts.
func DSN(path string, opts Options) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	var q []string
	switch {
	case !opts.ReadWrite:
		q = append(q, "mode=ro")
	case opts.Create:
		q = append(q, "mode=rwc")
	default:
		q = append(q, "mode=rw")
	}
	q = append(q, opts.Params...)
	// Without _error_rc modernc may append the handle's stale message to a different result code
	// ("database is locked: not an error (5)"); with it, the message always matches the code.
	q = append(q, "_error_rc=1")
	bt := opts.BusyTimeout
	if bt == 0 {
		bt = 5000
	}
	if bt > 0 {
		q = append(q, fmt.Sprintf("_pragma=busy_timeout(%d)", bt))
	}
	for _, p := range opts.Pragmas {
		q = append(q, "_pragma="+EscapePragma(p))
	}
	if opts.TxLock != "" {
		q = append(q, "_txlock="+opts.TxLock)
	}
	return "file:" + EscapePath(abs) + "?" + strings.Join(q, "&")
}

// EscapePragma percent-encodes the characters of a pragma that a URI query would misread.
func EscapePragma(p string) string {
	r := strings.NewReplacer("%", "%25", "&", "%26", "=", "%3D", "#", "%23", " ", "%20", "+", "%2B")
	return r.Replace(p)
}

// Open returns a *sql.DB for path. Callers that need one connection (every diagnosis does) should
// use Conn instead, or set MaxOpenConns themselves.
func Open(path string, opts Options) (*sql.DB, error) {
	db, err := sql.Open("sqlite", DSN(path, opts))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// Conn opens path and pins one connection: everything a check does happens on it. Close the
// returned *sql.Conn first, then the *sql.DB (the close func does both).
func Conn(ctx context.Context, path string, opts Options) (*sql.Conn, func() error, error) {
	db, err := Open(path, opts)
	if err != nil {
		return nil, nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	c, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	closer := func() error {
		err1 := c.Close()
		err2 := db.Close()
		return errors.Join(err1, err2)
	}
	return c, closer, nil
}

// Code returns the extended SQLite result code carried by err, or 0 when err is not a SQLite error.
func Code(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

// Primary is the primary result code (extended & 0xff).
func Primary(err error) int { return Code(err) & 0xff }

// Kind is how a SQLite error bears on a verdict.
type Kind int

const (
	KindNone         Kind = iota // not a SQLite error (or nil)
	KindBusy                     // busy, locked, protocol, busy-recovery/snapshot: inconclusive, never corruption
	KindCorrupt                  // SQLITE_CORRUPT and its extended codes
	KindNotADatabase             // SQLITE_NOTADB
	KindIO                       // SQLITE_IOERR (short read, etc.): suspicious, needs confirmation
	KindCantOpen                 // SQLITE_CANTOPEN
	KindPerm                     // SQLITE_PERM, SQLITE_READONLY, SQLITE_AUTH
	KindInterrupt                // SQLITE_INTERRUPT (a cancelled context)
	KindOther
)

func (k Kind) String() string {
	return [...]string{"none", "busy", "corrupt", "not-a-database", "io", "cantopen", "permission", "interrupt", "other"}[k]
}

// Classify sorts err by its primary result code.
func Classify(err error) Kind {
	if err == nil {
		return KindNone
	}
	return ClassifyCode(Code(err))
}

// ClassifyCode sorts an extended result code (as carried across a process boundary) like Classify.
func ClassifyCode(code int) Kind {
	if code == 0 {
		return KindNone
	}
	switch code & 0xff {
	case lib.SQLITE_BUSY, lib.SQLITE_LOCKED, lib.SQLITE_PROTOCOL:
		return KindBusy
	case lib.SQLITE_CORRUPT:
		return KindCorrupt
	case lib.SQLITE_NOTADB:
		return KindNotADatabase
	case lib.SQLITE_IOERR:
		return KindIO
	case lib.SQLITE_CANTOPEN:
		return KindCantOpen
	case lib.SQLITE_PERM, lib.SQLITE_READONLY, lib.SQLITE_AUTH:
		return KindPerm
	case lib.SQLITE_INTERRUPT:
		return KindInterrupt
	}
	return KindOther
}

// CodeName is a short name for an extended result code, for reports ("SQLITE_CORRUPT_INDEX").
func CodeName(code int) string {
	if s, ok := codeNames[code]; ok {
		return s
	}
	if s, ok := codeNames[code&0xff]; ok {
		return fmt.Sprintf("%s(%d)", s, code)
	}
	return fmt.Sprintf("SQLITE_%d", code)
}

var codeNames = map[int]string{
	lib.SQLITE_ERROR: "SQLITE_ERROR", lib.SQLITE_PERM: "SQLITE_PERM", lib.SQLITE_BUSY: "SQLITE_BUSY",
	lib.SQLITE_LOCKED: "SQLITE_LOCKED", lib.SQLITE_READONLY: "SQLITE_READONLY", lib.SQLITE_INTERRUPT: "SQLITE_INTERRUPT",
	lib.SQLITE_IOERR: "SQLITE_IOERR", lib.SQLITE_CORRUPT: "SQLITE_CORRUPT", lib.SQLITE_CANTOPEN: "SQLITE_CANTOPEN",
	lib.SQLITE_PROTOCOL: "SQLITE_PROTOCOL", lib.SQLITE_NOTADB: "SQLITE_NOTADB", lib.SQLITE_FULL: "SQLITE_FULL",
	lib.SQLITE_AUTH: "SQLITE_AUTH", lib.SQLITE_NOMEM: "SQLITE_NOMEM",
	lib.SQLITE_CORRUPT_INDEX: "SQLITE_CORRUPT_INDEX", lib.SQLITE_CORRUPT_VTAB: "SQLITE_CORRUPT_VTAB",
	lib.SQLITE_CORRUPT_SEQUENCE: "SQLITE_CORRUPT_SEQUENCE",
	lib.SQLITE_IOERR_SHORT_READ: "SQLITE_IOERR_SHORT_READ", lib.SQLITE_IOERR_READ: "SQLITE_IOERR_READ",
	lib.SQLITE_BUSY_RECOVERY: "SQLITE_BUSY_RECOVERY", lib.SQLITE_BUSY_SNAPSHOT: "SQLITE_BUSY_SNAPSHOT",
	lib.SQLITE_BUSY_TIMEOUT:       "SQLITE_BUSY_TIMEOUT",
	lib.SQLITE_CANTOPEN_NOTEMPDIR: "SQLITE_CANTOPEN_NOTEMPDIR",
}
