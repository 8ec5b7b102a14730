package probe_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
	"github.com/kanban-doctor/kanban-doctor/probe"
)

// pageWriter is a child process that writes a page image into a database file the way a writer
// that ignores SQLite's locks would: args are the DB, the byte offset and the file holding the
// bytes. It also bumps the header's change counter, as every committing writer does, so that
// readers holding pages in their cache know to drop them.
const pageWriter = "probe-test-page-writer"

func init() {
	reexec.Register(pageWriter, func(args []string) int {
		off, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		img, err := os.ReadFile(args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		f, err := os.OpenFile(args[0], os.O_RDWR, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		defer f.Close()
		var hdr [4]byte
		if _, err := f.ReadAt(hdr[:], 24); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		binary.BigEndian.PutUint32(hdr[:], binary.BigEndian.Uint32(hdr[:])+1)
		if _, err := f.WriteAt(img, off); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		if _, err := f.WriteAt(hdr[:], 24); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		return 0
	})
}

// writePage has a separate process write img at off in db (this process never writes the file
// of a database it may hold a connection to).
func writePage(t *testing.T, db string, off int64, img []byte) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "page")
	if err := os.WriteFile(src, img, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, err := reexec.Command(context.Background(), pageWriter, db, strconv.FormatInt(off, 10), src)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("page writer: %v: %s", err, out)
	}
}

// onMessage is a slog handler that calls fn on each record with message msg, in the logging
// goroutine (so Check waits for fn).
type onMessage struct {
	msg string
	fn  func()
}

func (h onMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h onMessage) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.fn()
	}
	return nil
}
func (h onMessage) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h onMessage) WithGroup(string) slog.Handler      { return h }

// TestTornPageClearedBeforeTheRecheckIsTransient drives the transient verdict with real parts: a
// separate process overwrites a table leaf of a real board with zeros (a torn page, as a writer
// that bypasses SQLite's locks leaves one for a moment), the probe's first answer sees the
// damage, and the same process restores the page before the re-check. The verdict must be
// transient after exactly one re-check on the same connection, with the first answer kept, and no
// byte of the board changed by the probe. Left damaged, the same board is confirmed corrupt by the
// clean child: the first answer was real, only the re-check cleared it.
func TestTornPageClearedBeforeTheRecheckIsTransient(t *testing.T) {
	ctx := context.Background()
	for _, restore := range []bool{true, false} {
		t.Run(map[bool]string{true: "restored", false: "left-damaged"}[restore], func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "kanban.db")
			if err := kanban.Generate(ctx, db, kanban.GenOptions{Tasks: 600, Seed: 5}); err != nil {
				t.Fatal(err)
			}
			c, closeC, err := sqlitex.Conn(ctx, db, sqlitex.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var pageno, pageSize int64
			err = c.QueryRowContext(ctx, "SELECT pageno, pgsize FROM dbstat WHERE name='task_events' AND pagetype='leaf' ORDER BY pageno LIMIT 1 OFFSET 3").Scan(&pageno, &pageSize)
			closeC()
			if err != nil {
				t.Fatal(err)
			}
			whole, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			off := (pageno - 1) * pageSize
			orig := whole[off : off+pageSize]
			writePage(t, db, off, make([]byte, pageSize))

			var restored atomic.Int32
			log := slog.New(onMessage{msg: "first answer", fn: func() {
				if restore {
					writePage(t, db, off, orig)
					restored.Add(1)
				}
			}})
			before := fileHash(t, db)
			res, err := probe.Check(ctx, boardAt(t, db), probe.Options{Reverify: 1, Backoff: 10 * time.Millisecond,
				Timeout: 20 * time.Second, Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			after := fileHash(t, db)
			if len(res.FirstAnswer) == 0 || res.FirstAnswer[0] == "ok" {
				t.Fatalf("the first answer did not see the zeroed page %d: %q", pageno, res.FirstAnswer)
			}
			if !restore {
				if res.Verdict != probe.Corrupt || res.Rechecks != 1 {
					t.Fatalf("left damaged: verdict %s after %d re-checks, child %q, want corrupt after 1", res.Verdict, res.Rechecks, res.Child)
				}
				if after != before {
					t.Fatal("the check changed the board's bytes")
				}
				return
			}
			if restored.Load() != 1 {
				t.Fatalf("the page was restored %d times, want once", restored.Load())
			}
			if res.Verdict != probe.Transient || res.Rechecks != 1 || res.Child != "" {
				t.Fatalf("verdict %s after %d re-checks (child %q), want transient after 1 and no child: %+v", res.Verdict, res.Rechecks, res.Child, res.Findings)
			}
			if len(res.Findings) != 1 || res.Findings[0].Code != "transient" || res.Findings[0].Severity != "warning" {
				t.Fatalf("findings %+v, want one transient warning", res.Findings)
			}
			got, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			if string(got[off:off+pageSize]) != string(orig) || len(got) != len(whole) {
				t.Fatal("the board does not hold the restored page")
			}
			t.Logf("page %d zeroed: first answer %q; restored before the re-check: %s", pageno, res.FirstAnswer[0], res.Verdict)
		})
	}
}
