package pagecheck

import (
	"fmt"
	"unsafe"

	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// sqliteError is an error from a statement run on the raw handle, with SQLite's extended code.
type sqliteError struct {
	code int
	msg  string
}

func (e *sqliteError) Error() string { return fmt.Sprintf("%s (%d)", e.msg, e.code) }

// Code is the extended result code (as modernc's own errors report it).
func (e *sqliteError) Code() int { return e.code }

// handle is the connection's sqlite3* and thread state (sqlitex.Handle); 0 unless both are
// known, so that every call here runs on the driver's own thread state.
func handle(dc any) (uintptr, *libc.TLS) {
	h, tls := sqlitex.Handle(dc)
	if tls == nil {
		return 0, nil
	}
	return h, tls
}

func ptr(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

// rawScan steps "SELECT pgno, data FROM sqlite_dbpage" on the connection's own sqlite3 handle
// (the caller holds the connection through sql.Conn.Raw, so nothing else uses it) and copies each
// page once, from SQLite's memory straight into dst(pgno): no driver value, no allocation per
// page. This is where most of the check's time goes; the driver's Rows.Next costs about twice
// as much per page.
func rawScan(h uintptr, tls *libc.TLS, pageSize int, dst func(pgno uint32) ([]byte, error)) error {
	q, err := libc.CString("SELECT pgno, data FROM sqlite_dbpage")
	if err != nil {
		return err
	}
	defer libc.Xfree(tls, q)
	pp := tls.Alloc(8)
	defer tls.Free(8)
	if rc := sqlite3.Xsqlite3_prepare_v2(tls, h, q, -1, pp, 0); rc != sqlite3.SQLITE_OK {
		return errorOf(tls, h)
	}
	stmt := *(*uintptr)(ptr(pp))
	defer sqlite3.Xsqlite3_finalize(tls, stmt)
	for {
		switch rc := sqlite3.Xsqlite3_step(tls, stmt); rc {
		case sqlite3.SQLITE_ROW:
		case sqlite3.SQLITE_DONE:
			return nil
		default:
			return errorOf(tls, h)
		}
		n := sqlite3.Xsqlite3_column_int64(tls, stmt, 0)
		p := sqlite3.Xsqlite3_column_blob(tls, stmt, 1)
		size := int(sqlite3.Xsqlite3_column_bytes(tls, stmt, 1))
		if n < 1 || n > 1<<31 || p == 0 || size != pageSize {
			return fmt.Errorf("sqlite_dbpage returned page %d of %d bytes", n, size)
		}
		b, err := dst(uint32(n))
		if err != nil {
			return err
		}
		copy(b, unsafe.Slice((*byte)(ptr(p)), size))
	}
}

func errorOf(tls *libc.TLS, h uintptr) error {
	return &sqliteError{code: int(sqlite3.Xsqlite3_extended_errcode(tls, h)), msg: libc.GoString(sqlite3.Xsqlite3_errmsg(tls, h))}
}

// rawReader reads single pages on the raw handle with one prepared statement.
type rawReader struct {
	tls  *libc.TLS
	h    uintptr
	stmt uintptr
}

func newRawReader(h uintptr, tls *libc.TLS) (*rawReader, error) {
	r := &rawReader{tls: tls, h: h}
	q, err := libc.CString("SELECT data FROM sqlite_dbpage WHERE pgno = ?")
	if err != nil {
		return nil, err
	}
	defer libc.Xfree(r.tls, q)
	pp := r.tls.Alloc(8)
	defer r.tls.Free(8)
	if rc := sqlite3.Xsqlite3_prepare_v2(r.tls, h, q, -1, pp, 0); rc != sqlite3.SQLITE_OK {
		return nil, errorOf(r.tls, h)
	}
	r.stmt = *(*uintptr)(ptr(pp))
	return r, nil
}

func (r *rawReader) read(n uint32) ([]byte, error) {
	defer sqlite3.Xsqlite3_reset(r.tls, r.stmt)
	sqlite3.Xsqlite3_bind_int64(r.tls, r.stmt, 1, int64(n))
	switch rc := sqlite3.Xsqlite3_step(r.tls, r.stmt); rc {
	case sqlite3.SQLITE_ROW:
	case sqlite3.SQLITE_DONE:
		return nil, fmt.Errorf("page %d: no such page", n)
	default:
		return nil, errorOf(r.tls, r.h)
	}
	p := sqlite3.Xsqlite3_column_blob(r.tls, r.stmt, 0)
	size := int(sqlite3.Xsqlite3_column_bytes(r.tls, r.stmt, 0))
	if p == 0 || size <= 0 {
		return nil, fmt.Errorf("page %d: empty", n)
	}
	return append([]byte(nil), unsafe.Slice((*byte)(ptr(p)), size)...), nil
}

func (r *rawReader) close() { sqlite3.Xsqlite3_finalize(r.tls, r.stmt) }
