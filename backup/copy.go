package backup

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// DefaultPagesPerStep is how many pages one backup step copies between context checks (16 MiB of
// 4 KiB pages). All steps run inside one read transaction, so the copy is one consistent snapshot
// and never restarts when other processes commit.
const DefaultPagesPerStep = 4096

// destPragmas are set on the connection that writes a copy: no rollback journal beside the temp
// file (it is thrown away on failure anyway) and no syncs (the finished file is fsynced once).
var destPragmas = []string{"journal_mode(OFF)", "synchronous(OFF)"}

// copyInto copies the database at src into the empty file dst through SQLite: the online backup
// API (pages verbatim, inside one read transaction) or, with compact, VACUUM INTO. It holds one
// read-only connection to src and never touches src's files itself.
func copyInto(ctx context.Context, src, dst string, compact bool, pagesPerStep, busyTimeout int, srcPragmas ...string) error {
	conn, closeFn, err := sqlitex.Conn(ctx, src, sqlitex.Options{BusyTimeout: busyTimeout, Pragmas: srcPragmas})
	if err != nil {
		return err
	}
	defer closeFn()
	if compact {
		if _, err := conn.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
			return fmt.Errorf("vacuum %s into copy: %w", src, err)
		}
		return closeFn()
	}
	// One read transaction for every step: the snapshot stays fixed while writers commit.
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		return fmt.Errorf("begin read of %s: %w", src, err)
	}
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n); err != nil {
		conn.ExecContext(context.Background(), "ROLLBACK")
		if sqlitex.Classify(err) == sqlitex.KindBusy {
			return fmt.Errorf("read %s: %w (another process holds a lock on it: retry, or raise --busy-timeout)", src, err)
		}
		return fmt.Errorf("read %s: %w", src, err)
	}
	err = sqlitex.BackupTo(ctx, conn, destURI(dst), sqlitex.StepOptions{PagesPerStep: steps(pagesPerStep)})
	conn.ExecContext(context.Background(), "ROLLBACK")
	if err != nil {
		return fmt.Errorf("back up %s: %w", src, err)
	}
	return closeFn()
}

// destURI is the file: URI of a copy's destination: escaped path, read-write, no journal, no sync.
func destURI(path string) string {
	return sqlitex.DSN(path, sqlitex.Options{ReadWrite: true, BusyTimeout: -1, Pragmas: destPragmas})
}

// steps maps a PagesPerStep option to sqlitex's step size: 0 is DefaultPagesPerStep, negative is
// everything in one step.
func steps(n int) int {
	if n == 0 {
		return DefaultPagesPerStep
	}
	return n
}

// checkFile runs quick_check (or integrity_check with full) on a fresh read-only connection to path
// and returns the findings (nil when the answer is "ok") and the page size and count.
func checkFile(ctx context.Context, path string, full bool, pragmas ...string) (findings []string, pageSize, pages int, err error) {
	conn, closeFn, err := sqlitex.Conn(ctx, path, sqlitex.Options{Pragmas: pragmas})
	if err != nil {
		return nil, 0, 0, err
	}
	defer closeFn()
	if err := conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		return nil, 0, 0, fmt.Errorf("check %s: %w", path, err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		return nil, 0, 0, fmt.Errorf("check %s: %w", path, err)
	}
	pragma := "PRAGMA quick_check"
	if full {
		pragma = "PRAGMA integrity_check"
	}
	findings, err = checkRows(ctx, conn, pragma)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("check %s: %w", path, err)
	}
	return findings, pageSize, pages, closeFn()
}

// checkRows runs a quick_check/integrity_check pragma and splits its rows into lines (page-level
// findings arrive as one multi-line row); an error after some rows is returned.
func checkRows(ctx context.Context, conn *sql.Conn, pragma string) ([]string, error) {
	rows, err := conn.QueryContext(ctx, pragma)
	if err != nil {
		return damage(nil, err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return damage(lines, err)
		}
		for _, l := range strings.Split(s, "\n") {
			// "*** in database main ***" heads page-level findings: a header, not a finding, and
			// quoting it as "the first error" says nothing.
			if l = strings.TrimSpace(l); l != "" && !(strings.HasPrefix(l, "*** in database ") && strings.HasSuffix(l, " ***")) {
				lines = append(lines, l)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return damage(lines, err)
	}
	if len(lines) == 1 && lines[0] == "ok" {
		return nil, nil
	}
	if len(lines) == 0 {
		return nil, errors.New("no result rows")
	}
	return lines, nil
}

// damage turns a check that failed with SQLITE_CORRUPT or SQLITE_NOTADB into findings (that is
// its answer); any other error stays an error.
func damage(lines []string, err error) ([]string, error) {
	if k := sqlitex.Classify(err); k == sqlitex.KindCorrupt || k == sqlitex.KindNotADatabase {
		return append(lines, err.Error()), nil
	}
	return nil, err
}

// hashFile is the sha256 of f's content, read through f (never a second open of the file).
func hashFile(f *os.File) (string, int64, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, io.NewSectionReader(f, 0, 1<<62), make([]byte, 1<<20))
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", f.Name(), err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// checkAndHash fsyncs and hashes a finished temp file in one goroutine while the quick_check runs
// on a fresh connection in this one: all three only need the complete file, none changes it.
func checkAndHash(ctx context.Context, f *atomicfile.File) (findings []string, pageSize, pages int, sum string, size int64, err error) {
	var wg sync.WaitGroup
	var herr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := f.Sync(); err != nil {
			herr = fmt.Errorf("sync %s: %w", f.TempPath(), err)
			return
		}
		sum, size, herr = hashFile(f.File)
	}()
	findings, pageSize, pages, err = checkFile(ctx, f.TempPath(), false, checkPragmas...)
	removeCompanions(f.TempPath())
	wg.Wait()
	if err == nil {
		err = herr
	}
	return
}

// snapshotPragmas let a snapshot read the board's pages through a memory map instead of one pread
// per page (about 15% less CPU on a 350 MB board). The map goes through SQLite's own locking: the
// read transaction the copy holds keeps writers and checkpointers from shrinking the file under it.
// Quarantine, which reads boards that may be damaged or truncated, does not use it.
var snapshotPragmas = []string{"mmap_size(2147483648)"}

// checkPragmas speed up the check of our own finished temp file: memory-mapped reads (nobody else
// has the file, so nobody can shrink it under the mapping).
var checkPragmas = []string{"mmap_size(2147483648)"}

// publish links the finished, synced temp to final without replacing anything, removes the temp
// name and fsyncs the directory. The temp stays open (so no other run mistakes it for debris)
// until it is published. When final exists with the same sha256, nothing new is made and existed
// is true.
func publish(f *atomicfile.File, final, sum string) (existed bool, err error) {
	tmp := f.TempPath()
	defer f.Abort() // closes the file and removes the temp name if it is still there
	if err := os.Link(tmp, final); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return false, fmt.Errorf("publish %s: %w", final, err)
		}
		other, oerr := hashPath(final)
		if oerr != nil || other != sum {
			return false, fmt.Errorf("publish %s: %w", final, ErrExists)
		}
		existed = true
	}
	if err := os.Remove(tmp); err != nil {
		return existed, fmt.Errorf("remove %s: %w", tmp, err)
	}
	return existed, atomicfile.SyncDir(filepath.Dir(final))
}

// hashPath hashes a file we hold no SQLite connection to (an existing backup).
func hashPath(p string) (string, error) {
	fh, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	sum, _, err := hashFile(fh)
	return sum, err
}

// cleanTemps removes leftover temp files (and their -wal/-shm/-journal) in dir whose final name
// starts with prefix, but only those no process holds open: a temp of a run still in progress is
// open until it is published, a killed run's temps are not.
func cleanTemps(dir, prefix string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("clean temps in %s: %w", dir, err)
	}
	var cands []string
	for _, e := range entries {
		if n := e.Name(); atomicfile.IsTemp(n) && strings.HasPrefix(n, "."+prefix) && e.Type().IsRegular() {
			cands = append(cands, filepath.Join(dir, n))
		}
	}
	if len(cands) == 0 {
		return nil, nil
	}
	open, err := openInodes(cands)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, p := range cands {
		if open[p] {
			continue
		}
		if err := os.Remove(p); err == nil {
			removed = append(removed, p)
		}
	}
	return removed, nil
}

// removeCompanions removes the -wal/-shm/-journal a closed connection to our own temp file left
// (a read-only connection to a WAL-mode file cannot delete them itself).
func removeCompanions(tmp string) {
	for _, suf := range []string{"-wal", "-shm", "-journal"} {
		os.Remove(tmp + suf)
	}
}
