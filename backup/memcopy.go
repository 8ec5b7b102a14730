package backup

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
	"modernc.org/libc"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// MemoryCopyLimit is the largest board (its file plus its -wal, by stat) that Snapshot copies into
// memory first; larger boards, and boards when less than twice their size is available
// (MemAvailable), are copied straight into the temp file. The copy needs about the board's size
// in RAM while it is written, hashed and checked.
const MemoryCopyLimit = 768 << 20

// errTooBig: the board is larger than the memory limit; the caller copies into a file instead.
var errTooBig = errors.New("board larger than the memory copy limit")

// memSeq makes the name of each in-memory database unique in this process.
var memSeq atomic.Int64

// memCopy is a consistent copy of a board in a private memdb database (SQLite's in-memory VFS)
// of the one connection that wrote it. data are its bytes, owned by SQLite: valid until Close.
type memCopy struct {
	db   *sql.DB
	conn *sql.Conn
	data []byte
}

// Close frees the in-memory copy; data must not be used afterwards.
func (m *memCopy) Close() error {
	m.data = nil
	return errors.Join(m.conn.Close(), m.db.Close())
}

// copyToMemory copies the board at src (about size bytes, from stat) into a new in-memory database
// through SQLite's online backup API, in one step, so inside one read transaction of the board:
// one consistent snapshot. The memory for the copy is allocated up front (size plus slack),
// sparing SQLite's memdb its repeated doubling and copying (half the copy's CPU time on a 350 MB
// board). It returns errTooBig when size is over limit. It reads the board only through a
// read-only SQLite connection (restore direction: the in-memory database pulls the pages).
func copyToMemory(ctx context.Context, src string, size, limit int64, busyTimeout int, srcPragmas ...string) (_ *memCopy, err error) {
	if size > limit || size*2 > availableMemory() {
		return nil, errTooBig
	}
	// _error_rc: errors of the backup steps, reported on this connection, carry SQLite's own text
	// for their code (this connection has no message of its own for them).
	db, err := sql.Open("sqlite", fmt.Sprintf("file:kd-backup-%d?vfs=memdb&_error_rc=1", memSeq.Add(1)))
	if err != nil {
		return nil, fmt.Errorf("open memory copy: %w", err)
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open memory copy: %w", err)
	}
	m := &memCopy{db: db, conn: conn}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	// The source connection is opened inside the backup API, where SQLite's busy wait cannot see
	// ctx: it waits briefly per step and the retries spend the caller's busy timeout, so Ctrl-C
	// ends a wait for a locked board at once.
	srcURI := sqlitex.DSN(src, sqlitex.Options{BusyTimeout: sqlitex.StepBusyTimeout, Pragmas: srcPragmas})
	err = conn.Raw(func(dc any) error {
		h, err := dbHandle(dc)
		if err != nil {
			return err
		}
		return presize(h, size+size/16+1<<20)
	})
	if err == nil { // all pages in one step: one read transaction, one snapshot
		err = sqlitex.RestoreFrom(ctx, conn, srcURI, sqlitex.StepOptions{BusyWait: sqlitex.BusyWait(busyTimeout)})
	}
	if err == nil {
		err = conn.Raw(func(dc any) error {
			var err error
			m.data, err = memBytes(dc)
			return err
		})
	}
	if err != nil {
		if sqlitex.Classify(err) == sqlitex.KindBusy {
			return nil, fmt.Errorf("read %s: %w (another process holds a lock on it: retry, or raise --busy-timeout)", src, err)
		}
		return nil, fmt.Errorf("back up %s: %w", src, err)
	}
	if len(m.data) < 512 {
		return nil, fmt.Errorf("back up %s: copy holds only %d bytes", src, len(m.data))
	}
	return m, ctx.Err()
}

// availableMemory is MemAvailable from /proc/meminfo in bytes, or the most an int64 holds when it
// cannot be read. A copy goes through memory only when twice its size is available.
func availableMemory() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return math.MaxInt64
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemAvailable:" {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				return kb << 10
			}
		}
	}
	return math.MaxInt64
}

// dbHandle is the sqlite3* handle of a modernc driver connection (sqlitex.Handle).
func dbHandle(dc any) (uintptr, error) {
	if h, _ := sqlitex.Handle(dc); h != 0 {
		return h, nil
	}
	return 0, fmt.Errorf("unknown driver connection %T", dc)
}

// presize turns the connection's main database into an empty private memdb database backed by
// capacity bytes allocated now (it can still grow beyond them).
func presize(h uintptr, capacity int64) error {
	tls := libc.NewTLS()
	defer tls.Close()
	p := sqlite3.Xsqlite3_malloc64(tls, uint64(capacity))
	if p == 0 {
		return fmt.Errorf("allocate %d bytes for the memory copy: out of memory", capacity)
	}
	hugePages(p, capacity)
	// FREEONCLOSE: SQLite frees p when the connection closes, or now if this fails.
	if rc := sqlite3.Xsqlite3_deserialize(tls, h, 0, p, 0, capacity,
		sqlite3.SQLITE_DESERIALIZE_RESIZEABLE|sqlite3.SQLITE_DESERIALIZE_FREEONCLOSE); rc != sqlite3.SQLITE_OK {
		return fmt.Errorf("prepare the memory copy: SQLite error %d", rc)
	}
	return nil
}

// hugePages asks the kernel to back the copy's memory with transparent huge pages: a fresh
// process otherwise takes one page fault per 4 KiB page while the copy fills it (85,000 on a
// 350 MB board). Advice only: where huge pages are off or the call fails, nothing changes.
func hugePages(p uintptr, n int64) {
	const huge = 2 << 20
	start := (p + huge - 1) &^ (huge - 1)
	end := (p + uintptr(n)) &^ (huge - 1)
	if end <= start {
		return
	}
	unix.Madvise(unsafe.Slice((*byte)(*(*unsafe.Pointer)(unsafe.Pointer(&start))), end-start), unix.MADV_HUGEPAGE)
}

// memBytes returns the bytes of the private memdb database behind driver connection dc without
// copying them (sqlite3_serialize with SQLITE_SERIALIZE_NOCOPY); if that is not possible, the
// driver's Serialize (a copy).
func memBytes(dc any) ([]byte, error) {
	if h, err := dbHandle(dc); err == nil {
		tls := libc.NewTLS()
		defer tls.Close()
		pLen := tls.Alloc(8)
		defer tls.Free(8)
		p := sqlite3.Xsqlite3_serialize(tls, h, 0, pLen, sqlite3.SQLITE_SERIALIZE_NOCOPY)
		n := *(*int64)(*(*unsafe.Pointer)(unsafe.Pointer(&pLen)))
		if p != 0 && n > 0 {
			return unsafe.Slice((*byte)(*(*unsafe.Pointer)(unsafe.Pointer(&p))), n), nil
		}
	}
	s, ok := dc.(interface{ Serialize() ([]byte, error) })
	if !ok {
		return nil, errors.New("driver cannot serialize a database")
	}
	return s.Serialize()
}

// copyCheckHash copies the board at dbPath into the temp file f through SQLite and checks and
// hashes the copy: through memory (copyToMemory, then writeCheckHash) when it is a backup-API copy
// of at most memLimit bytes, else straight into the file (copyInto, then checkAndHash).
func copyCheckHash(ctx context.Context, dbPath string, f *atomicfile.File, compact bool, pagesPerStep, busyTimeout int, memLimit int64) (findings []string, pageSize, pages int, sum string, size int64, err error) {
	if !compact && memLimit > 0 {
		m, err := copyToMemory(ctx, dbPath, boardSize(dbPath), memLimit, busyTimeout, snapshotPragmas...)
		if err == nil {
			defer m.Close()
			return writeCheckHash(ctx, m, f)
		}
		if !errors.Is(err, errTooBig) {
			return nil, 0, 0, "", 0, notDatabase(dbPath, err)
		}
	}
	if err := copyInto(ctx, dbPath, f.TempPath(), compact, pagesPerStep, busyTimeout, snapshotPragmas...); err != nil {
		return nil, 0, 0, "", 0, notDatabase(dbPath, err)
	}
	if err := sqlitex.MarkRollback(f.File); err != nil {
		return nil, 0, 0, "", 0, err
	}
	return checkAndHash(ctx, f)
}

// boardSize is the size of the board's file plus its -wal (stat only): at least the size of any
// snapshot of it.
func boardSize(db string) int64 {
	var n int64
	for _, p := range []string{db, db + "-wal"} {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// writeCheckHash finishes a copy made in memory. The header's format version bytes are first set
// to rollback (as sqlitex.MarkRollback does for a file copy); from then on nothing changes the bytes. Side
// by side: one goroutine writes them to the empty temp file f in large chunks and fsyncs it,
// another hashes them, and this one runs quick_check on a fresh read-only connection that reads
// the same bytes in place (checkMemory). The file, the hash and the check therefore all concern
// one sequence of bytes; a failed write or fsync fails the backup.
func writeCheckHash(ctx context.Context, m *memCopy, f *atomicfile.File) (findings []string, pageSize, pages int, sum string, size int64, err error) {
	if len(m.data) > 19 && m.data[18] == 2 && m.data[19] == 2 {
		m.data[18], m.data[19] = 1, 1
	}
	var wg sync.WaitGroup
	var werr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		h := sha256.Sum256(m.data)
		sum = hex.EncodeToString(h[:])
	}()
	go func() {
		defer wg.Done()
		if werr = writeAll(ctx, f.File, m.data); werr == nil {
			if err := f.Sync(); err != nil {
				werr = fmt.Errorf("sync %s: %w", f.TempPath(), err)
			}
		}
	}()
	findings, pageSize, pages, err = checkMemory(ctx, m.data, f.TempPath()+" (the copy in memory)")
	wg.Wait() // the caller frees m.data once this returns
	if err == nil {
		err = werr
	}
	return findings, pageSize, pages, sum, int64(len(m.data)), err
}

// writeAll writes data to the empty file f in large chunks, checking ctx between them.
func writeAll(ctx context.Context, f *os.File, data []byte) error {
	const chunk = 8 << 20
	for off := 0; off < len(data); off += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(off+chunk, len(data))
		if _, err := f.WriteAt(data[off:end], int64(off)); err != nil {
			return fmt.Errorf("write %s: %w", f.Name(), err)
		}
	}
	return nil
}

// checkMemory runs quick_check on a fresh connection whose database is data, read in place
// (sqlite3_deserialize read-only, no copy); label names the copy in errors. As checkFile, a check
// that SQLite answers with SQLITE_CORRUPT or SQLITE_NOTADB gives findings, not an error.
func checkMemory(ctx context.Context, data []byte, label string) (findings []string, pageSize, pages int, err error) {
	db, err := sql.Open("sqlite", fmt.Sprintf("file:kd-check-%d?vfs=memdb", memSeq.Add(1)))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("open %s: %w", label, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("open %s: %w", label, err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		h, err := dbHandle(dc)
		if err != nil {
			return err
		}
		tls := libc.NewTLS()
		defer tls.Close()
		// No FREEONCLOSE: data belongs to the memory copy, which outlives this connection.
		rc := sqlite3.Xsqlite3_deserialize(tls, h, 0, uintptr(unsafe.Pointer(&data[0])), int64(len(data)), int64(len(data)), sqlite3.SQLITE_DESERIALIZE_READONLY)
		if rc != 0 {
			return fmt.Errorf("deserialize: SQLite error %d", rc)
		}
		return nil
	})
	if err != nil {
		return nil, 0, 0, fmt.Errorf("open %s: %w", label, err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		return nil, 0, 0, fmt.Errorf("check %s: %w", label, err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		return nil, 0, 0, fmt.Errorf("check %s: %w", label, err)
	}
	if findings, err = checkRows(ctx, conn, "PRAGMA quick_check"); err != nil {
		return nil, 0, 0, fmt.Errorf("check %s: %w", label, err)
	}
	return findings, pageSize, pages, nil
}
