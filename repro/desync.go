package repro

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

// desyncIndexes are the indexes index-desync damages: one the writers update with every claim
// and completion, one they never touch.
var desyncIndexes = []string{"idx_tasks_status", "idx_links_child"}

// desyncEntries is how many entries of each index get a wrong rowid.
const desyncEntries = 3

// beginImmediate takes the write lock, polling tightly: the writers leave it free only between
// transactions (SQLite's own busy handler backs off to 100 ms sleeps and keeps missing those gaps).
func beginImmediate(ctx context.Context, conn *sql.Conn) error {
	start := time.Now()
	for {
		_, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE")
		if err == nil {
			return nil
		}
		if sqlitex.Classify(err) != sqlitex.KindBusy || time.Since(start) > 10*time.Second {
			return err
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// injectDesync rewrites, in one write transaction through sqlite_dbpage, the rowid stored in a few
// entries of a leaf page of each index in desyncIndexes to its negation (no row has a negative
// rowid): the table is intact, the index points at rows that do not exist and misses the rows it
// should hold. integrity_check then says "row N missing from index X" / "wrong # of entries in
// index X", and REINDEX repairs it. It returns what it did and the damaged index names.
func injectDesync(ctx context.Context, db string) (string, []string, error) {
	conn, closeFn, err := sqlitex.Conn(ctx, db, sqlitex.Options{ReadWrite: true, BusyTimeout: 2})
	if err != nil {
		return "", nil, err
	}
	defer closeFn()
	start := time.Now()
	if err := beginImmediate(ctx, conn); err != nil {
		return "", nil, fmt.Errorf("index-desync: %w", err)
	}
	rollback := func(err error) (string, []string, error) {
		conn.ExecContext(ctx, "ROLLBACK")
		return "", nil, err
	}
	var done []string
	for _, index := range desyncIndexes {
		// The last leaf page of the index holds the newest entries, the ones writers touch.
		var pgno int
		if err := conn.QueryRowContext(ctx, `SELECT pageno FROM dbstat WHERE name=? AND pagetype='leaf' ORDER BY pageno DESC LIMIT 1`, index).Scan(&pgno); err != nil {
			// A one-page index is its own root, which dbstat calls a leaf too; anything else is a defect.
			return rollback(fmt.Errorf("find a leaf page of %s: %w", index, err))
		}
		var data []byte
		if err := conn.QueryRowContext(ctx, `SELECT data FROM sqlite_dbpage WHERE pgno=?`, pgno).Scan(&data); err != nil {
			return rollback(fmt.Errorf("read page %d: %w", pgno, err))
		}
		rowids, err := negateRowids(data, pgno, desyncEntries)
		if err != nil {
			return rollback(fmt.Errorf("%s page %d: %w", index, pgno, err))
		}
		if _, err := conn.ExecContext(ctx, `UPDATE sqlite_dbpage SET data=? WHERE pgno=?`, data, pgno); err != nil {
			return rollback(fmt.Errorf("write page %d: %w", pgno, err))
		}
		done = append(done, fmt.Sprintf("%s page %d rowids %v", index, pgno, rowids))
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return "", nil, fmt.Errorf("index-desync: %w", err)
	}
	return fmt.Sprintf("negated the rowid of %d entries of %s (one write transaction through sqlite_dbpage, %d ms)",
		desyncEntries, strings.Join(done, ", "), time.Since(start).Milliseconds()), desyncIndexes, nil
}

// negateRowids rewrites the rowid (the record's last column) of n cells in the middle of an index
// leaf page in place, keeping its width, and returns the rowids it replaced.
func negateRowids(page []byte, pgno, n int) ([]int64, error) {
	hdr := 0
	if pgno == 1 {
		hdr = 100
	}
	if len(page) < hdr+8 || page[hdr] != 0x0a {
		return nil, errors.New("not an index leaf page")
	}
	cells := int(binary.BigEndian.Uint16(page[hdr+3:]))
	if cells < n {
		return nil, fmt.Errorf("%d cells, want at least %d", cells, n)
	}
	var got []int64
	for k := 0; k < n; k++ {
		i := (cells-n)/2 + k
		ptr := int(binary.BigEndian.Uint16(page[hdr+8+2*i:]))
		off, width, v, err := lastIntColumn(page, ptr)
		if err != nil {
			return got, fmt.Errorf("cell %d: %w", i, err)
		}
		putInt(page[off:off+width], -v)
		got = append(got, v)
	}
	return got, nil
}

// lastIntColumn finds the last column of the index record in the cell at ptr: its offset in the
// page, width and value. Only cells whose record fits on the page are handled.
func lastIntColumn(page []byte, ptr int) (off, width int, v int64, err error) {
	size, k := readVarint(page[ptr:])
	if k <= 0 || ptr+k+int(size) > len(page) {
		return 0, 0, 0, errors.New("payload size: not a record on this page")
	}
	rec := ptr + k
	hsize, k2 := readVarint(page[rec:])
	if k2 <= 0 || rec+int(hsize) > len(page) {
		return 0, 0, 0, errors.New("bad record header")
	}
	var types []int64
	for p := rec + k2; p < rec+int(hsize); {
		t, m := readVarint(page[p:])
		if m <= 0 {
			return 0, 0, 0, errors.New("bad serial type")
		}
		types = append(types, t)
		p += m
	}
	if len(types) == 0 {
		return 0, 0, 0, errors.New("empty record")
	}
	body := rec + int(hsize)
	for _, t := range types[:len(types)-1] {
		body += serialSize(t)
	}
	last := types[len(types)-1]
	widths := map[int64]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}
	w, ok := widths[last]
	if !ok || body+w > len(page) {
		return 0, 0, 0, fmt.Errorf("rowid of serial type %d: not rewritable in place", last)
	}
	return body, w, getInt(page[body : body+w]), nil
}

// readVarint decodes one SQLite varint (big-endian, 7 bits per byte, the ninth byte whole).
func readVarint(b []byte) (int64, int) {
	var v uint64
	for i := 0; i < 9 && i < len(b); i++ {
		if i == 8 {
			return int64(v<<8 | uint64(b[i])), 9
		}
		v = v<<7 | uint64(b[i]&0x7f)
		if b[i]&0x80 == 0 {
			return int64(v), i + 1
		}
	}
	return 0, 0
}

func serialSize(t int64) int {
	switch {
	case t >= 12 && t%2 == 0:
		return int(t-12) / 2
	case t >= 13:
		return int(t-13) / 2
	}
	return [...]int{0, 1, 2, 3, 4, 6, 8, 8, 0, 0, 0, 0}[t]
}

func getInt(b []byte) int64 {
	var v int64
	if b[0]&0x80 != 0 {
		v = -1
	}
	for _, c := range b {
		v = v<<8 | int64(c)
	}
	return v
}

func putInt(b []byte, v int64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

// indexOnlyLine matches the integrity_check findings REINDEX repairs.
var indexOnlyLine = regexp.MustCompile(`^(row \d+ missing from index|wrong # of entries in index|non-unique entry in index) (\S+)`)

// grownDamage returns the truth's findings that what the cell injected does not explain: those
// that are neither index-only findings on a damaged index nor among the findings right after the
// injection. (In injected, integrity_check stops with an error at the zeroed page, so growth past
// it shows only as lost commits.)
func grownDamage(lines, damaged, baseline []string) []string {
	var out []string
	for _, l := range lines {
		if m := indexOnlyLine.FindStringSubmatch(l); m != nil && containsStr(damaged, m[2]) {
			continue
		}
		if containsStr(baseline, l) {
			continue
		}
		out = append(out, l)
	}
	return out
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

const victimChild = "repro-victim"

func init() { reexec.Register(victimChild, victimMain) }

// victimRows and victimBody make the victim's transaction spill: far more dirty pages than its
// 8-page cache holds, so uncommitted frames are in the WAL when it dies.
const (
	victimRows = 200
	victimBody = 2000
)

// killWriter starts a victim writer (the writers' pragmas, a small cache), lets it write
// victimRows comments inside one transaction until its pages spilled into the WAL, and SIGKILLs
// it there, holding the write lock. Nothing it wrote was committed, so nothing is lost; the next
// writer takes the lock and writes over its frames.
func killWriter(ctx context.Context, db string) (string, error) {
	cmd, err := reexec.Command(ctx, victimChild, "-db", db)
	if err != nil {
		return "", err
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start victim: %w", err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			ready <- sc.Text()
		}
		close(ready)
	}()
	var line string
	select {
	case line = <-ready:
	case <-time.After(15 * time.Second):
	case <-ctx.Done():
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if !strings.HasPrefix(line, "in-tx") {
		return "", fmt.Errorf("victim never got inside its transaction: %s", oneLine(errb.String()))
	}
	return fmt.Sprintf("SIGKILLed a writer inside its write transaction (%s, WAL %s) after %d ms", line[len("in-tx "):],
		walSize(db), time.Since(start).Milliseconds()), nil
}

func walSize(db string) string {
	fi, err := os.Stat(db + "-wal")
	if err != nil {
		return "absent"
	}
	return fmt.Sprintf("%d bytes", fi.Size())
}

func victimMain(args []string) int {
	fs := flag.NewFlagSet(victimChild, flag.ContinueOnError)
	db := fs.String("db", "", "")
	if err := fs.Parse(args); err != nil {
		return 4
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	pragmas := append(append([]string{}, kanban.WriterPragmas...), "cache_size(8)")
	conn, closeFn, err := sqlitex.Conn(ctx, *db, sqlitex.Options{ReadWrite: true, BusyTimeout: 2, Pragmas: pragmas})
	if err != nil {
		fmt.Fprintln(os.Stderr, "victim:", err)
		return 8
	}
	defer closeFn()
	if err := beginImmediate(ctx, conn); err != nil {
		fmt.Fprintln(os.Stderr, "victim:", err)
		return 8
	}
	body := strings.Repeat("x", victimBody)
	for i := 0; i < victimRows; i++ {
		if _, err := conn.ExecContext(ctx, `INSERT INTO task_comments(task_id, author, body, created_at) VALUES ('victim', 'victim', ?, 0)`, body); err != nil {
			fmt.Fprintln(os.Stderr, "victim:", err)
			return 8
		}
	}
	fmt.Printf("in-tx %d uncommitted comments of %d bytes\n", victimRows, victimBody)
	<-ctx.Done() // the harness kills it here
	return 0
}
