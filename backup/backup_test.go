package backup

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
	"github.com/kanban-doctor/kanban-doctor/internal/sqlitex"
)

func TestNameRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 27, 2, 39, 15, 123e6, time.FixedZone("CET", 3600))
	n := Name("kanban.db", at, "0123456789abcdef")
	if want := "kanban.db.backup.20261127T013915.123Z.0123456789abcdef.db"; n != want {
		t.Fatalf("Name = %q, want %q", n, want)
	}
	p, ok := ParseName("kanban.db", n)
	if !ok || !p.Time.Equal(at) || p.Hash != "0123456789abcdef" {
		t.Fatalf("ParseName(%q) = %+v, %v", n, p, ok)
	}
}

func TestParseNameRejectsForeignNames(t *testing.T) {
	for _, name := range []string{
		"kanban.db",
		"kanban.db.corrupt.0123456789abcdef.bak",
		"kanban.db.backup.20261127T013915.123Z.0123456789abcdef.db-wal",
		".kanban.db.backup.kdtmp-0a1b2c3d4e5f",
		"kanban.db.backup.20261127T013915.123Z.0123456789ABCDEF.db", // upper-case hex
		"kanban.db.backup.20261127T013915Z.0123456789abcdef.db",     // no milliseconds
		"kanban.db.backup.20261327T013915.123Z.0123456789abcdef.db", // month 13
		"other.db.backup.20261127T013915.123Z.0123456789abcdef.db",
		"kanban.db.backup.20261127T013915.123Z.0123456789abcde.db",
		"kanban.db.backup..db",
	} {
		if p, ok := ParseName("kanban.db", name); ok {
			t.Errorf("ParseName(%q) = %+v, want no match", name, p)
		}
	}
}

func TestSnapshotWritesCheckedContentAddressedCopy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		wal      bool
		compact  bool
		memLimit int64 // 0: through memory; -1: straight into the temp file
		method   string
	}{
		{"rollback board, backup API through memory", false, false, 0, MethodBackupAPI},
		{"WAL board, backup API through memory", true, false, 0, MethodBackupAPI},
		{"rollback board, backup API into the file", false, false, -1, MethodBackupAPI},
		{"WAL board, backup API into the file", true, false, -1, MethodBackupAPI},
		{"WAL board, backup API over the memory limit", true, false, 4096, MethodBackupAPI},
		{"WAL board, VACUUM INTO", true, true, 0, MethodVacuumInto},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db := genBoard(t, dir, 300, tc.wal)
			want := taskIDs(t, db)
			r, err := Snapshot(context.Background(), db, Options{Compact: tc.compact, MemoryLimit: tc.memLimit})
			if err != nil {
				t.Fatal(err)
			}
			if r.Method != tc.method || r.Check != "ok" || r.Existed {
				t.Errorf("result %+v", r)
			}
			p, ok := ParseName("kanban.db", filepath.Base(r.Path))
			if !ok || filepath.Dir(r.Path) != dir {
				t.Fatalf("backup %s is not <db>.backup.<stamp>.<hash>.db beside the board", r.Path)
			}
			if got := sha256File(t, r.Path); got != r.SHA256 || got[:16] != p.Hash {
				t.Errorf("file sha256 %s, result %s, name %s", got, r.SHA256, p.Hash)
			}
			if got := cliCheck(t, r.Path); got != "ok" {
				t.Errorf("sqlite3 integrity_check of the backup: %s", got)
			}
			got := taskIDs(t, r.Path)
			if len(got) != len(want) || len(got) != 300 {
				t.Errorf("backup has %d tasks, board %d", len(got), len(want))
			}
			hdr, err := board.ReadHeader(r.Path)
			if err != nil || hdr.WriteVersion != 1 {
				t.Errorf("backup header: %+v %v (want a rollback-mode file)", hdr, err)
			}
			for _, n := range dirNames(t, dir) {
				if atomicfile.IsTemp(n) || strings.Contains(n, ".backup.") && (strings.HasSuffix(n, "-wal") || strings.HasSuffix(n, "-shm") || strings.HasSuffix(n, "-journal")) {
					t.Errorf("left behind %s", n)
				}
			}
		})
	}
}

func TestSnapshotSameContentTwiceMakesOneFile(t *testing.T) {
	dir := t.TempDir()
	db := genBoard(t, dir, 50, false)
	at := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	o := Options{Now: func() time.Time { return at }}
	r1, err := Snapshot(context.Background(), db, o)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Snapshot(context.Background(), db, o)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Path != r2.Path || r1.Existed || !r2.Existed {
		t.Fatalf("first %s existed=%v, second %s existed=%v", r1.Path, r1.Existed, r2.Path, r2.Existed)
	}
}

func TestSnapshotOutFileAndDirectory(t *testing.T) {
	dir := t.TempDir()
	db := genBoard(t, dir, 50, true)
	outDir := filepath.Join(dir, "out")
	os.Mkdir(outDir, 0o755)
	r, err := Snapshot(context.Background(), db, Options{Out: outDir})
	if err != nil || filepath.Dir(r.Path) != outDir {
		t.Fatalf("--out DIR: %s %v", r.Path, err)
	}
	named := filepath.Join(dir, "odd name #1?.db")
	r, err = Snapshot(context.Background(), db, Options{Out: named})
	if err != nil || r.Path != named || cliCheck(t, named) != "ok" {
		t.Fatalf("--out FILE: %+v %v", r, err)
	}
	before := sha256File(t, named)
	if _, err := Snapshot(context.Background(), db, Options{Out: named}); !errors.Is(err, ErrExists) {
		t.Fatalf("second --out FILE: %v, want ErrExists", err)
	}
	if sha256File(t, named) != before {
		t.Fatal("refused snapshot changed the existing file")
	}
}

func TestSnapshotKeepPrunesOnlyOurOlderBackups(t *testing.T) {
	dir := t.TempDir()
	db := genBoard(t, dir, 50, false)
	foreign := []string{"kanban.db.corrupt.0123456789abcdef.bak", "kanban.db.backup.notours.db", "other.db.backup.20260101T000000.000Z.0123456789abcdef.db"}
	for _, n := range foreign {
		os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644)
	}
	clock := pinnedClock()
	var last Result
	for i := 0; i < 5; i++ {
		execSQL(t, db, "UPDATE tasks SET priority = priority + 1") // new content each time
		r, err := Snapshot(context.Background(), db, Options{Keep: 2, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		if i >= 2 && len(r.Pruned) != 1 {
			t.Errorf("snapshot %d pruned %v, want one", i, r.Pruned)
		}
		last = r
	}
	ours, _ := List(dir, "kanban.db")
	if len(ours) != 2 || ours[1].Path != last.Path {
		t.Fatalf("after --keep 2: %v", ours)
	}
	for _, n := range foreign {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("pruned a file that is not ours: %s", n)
		}
	}
	// The one just written is never pruned, even when the clock says it is the oldest.
	old := func() time.Time { return time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC) }
	execSQL(t, db, "UPDATE tasks SET priority = priority + 1")
	r, err := Snapshot(context.Background(), db, Options{Keep: 1, Now: old})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.Path); err != nil {
		t.Fatalf("just-written backup was pruned: %v", err)
	}
}

func TestSnapshotBadInputIsOneClearError(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "notsqlite.db")
	os.WriteFile(notDB, []byte(strings.Repeat("not a database ", 10)), 0o644)
	empty := filepath.Join(dir, "empty.db")
	os.WriteFile(empty, nil, 0o644)
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "missing.db"), "missing.db: no such file or directory"},
		{"directory", dir, "is a directory"},
		{"not sqlite", notDB, "not a SQLite database"},
		{"empty", empty, "empty file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Snapshot(context.Background(), tc.path, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line containing %q", err, tc.want)
			}
		})
	}
}

func TestSnapshotOfDamagedBoardFailsCheckAndNamesNothing(t *testing.T) {
	for _, memLimit := range []int64{0, -1} { // through memory, straight into the file
		dir := t.TempDir()
		db := genBoard(t, dir, 400, false)
		zeroPageType(t, db, leafPage(t, db, "tasks"), 4096)
		_, err := Snapshot(context.Background(), db, Options{MemoryLimit: memLimit})
		if !errors.Is(err, ErrCheckFailed) {
			t.Fatalf("memory limit %d: err = %v, want ErrCheckFailed", memLimit, err)
		}
		if l, _ := List(dir, "kanban.db"); len(l) != 0 {
			t.Fatalf("memory limit %d: a copy that failed its check got a final name: %v", memLimit, l)
		}
		for _, n := range dirNames(t, dir) {
			if atomicfile.IsTemp(n) {
				t.Errorf("memory limit %d: temp left behind: %s", memLimit, n)
			}
		}
	}
}

// The copy made through memory is byte for byte the copy the backup API writes into a file, also
// when the newest pages are still in the board's -wal (a reader holds it open, so it is not
// checkpointed away).
func TestSnapshotThroughMemoryIsTheFileCopyByteForByte(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := genBoard(t, dir, 300, true)
	hold, err := sql.Open("sqlite", sqlitex.DSN(db, sqlitex.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	if err := hold.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	execSQL(t, db, "UPDATE tasks SET title = title || ' (edited)' WHERE rowid % 3 = 0")
	if fi, err := os.Stat(db + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("no pages in the -wal to copy: %v", err)
	}
	want := taskIDs(t, db)
	var sums []string
	for _, memLimit := range []int64{0, -1} {
		out := t.TempDir()
		r, err := Snapshot(ctx, db, Options{Out: out, MemoryLimit: memLimit})
		if err != nil {
			t.Fatal(err)
		}
		if got := sha256File(t, r.Path); got != r.SHA256 {
			t.Fatalf("memory limit %d: file sha256 %s, result %s", memLimit, got, r.SHA256)
		}
		if got := cliCheck(t, r.Path); got != "ok" {
			t.Fatalf("memory limit %d: integrity_check %s", memLimit, got)
		}
		if got := taskIDs(t, r.Path); len(got) != len(want) {
			t.Fatalf("memory limit %d: %d tasks, board %d", memLimit, len(got), len(want))
		}
		if edited := countEdited(t, r.Path); edited == 0 || edited != countEdited(t, db) {
			t.Fatalf("memory limit %d: %d edited tasks, board %d: the -wal's pages are missing", memLimit, edited, countEdited(t, db))
		}
		sums = append(sums, r.SHA256)
	}
	if sums[0] != sums[1] {
		t.Fatalf("through memory %s, into the file %s: not the same bytes", sums[0], sums[1])
	}
}

func TestQuarantineIsContentAddressedAndNeverDuplicates(t *testing.T) {
	ctx := context.Background()
	t.Run("damaged board", func(t *testing.T) {
		dir := t.TempDir()
		db := genBoard(t, dir, 400, true)
		zeroPageType(t, db, leafPage(t, db, "tasks"), 4096)
		p1, created1, err := Quarantine(ctx, db)
		if err != nil || !created1 {
			t.Fatalf("first quarantine: %s %v %v", p1, created1, err)
		}
		bn, ok := board.ParseBackupName("kanban.db", filepath.Base(p1))
		if !ok || bn.Gen != board.GenContent || sha256File(t, p1)[:16] != bn.Hash {
			t.Fatalf("quarantine name %s does not carry its content's sha256", p1)
		}
		if cliCheck(t, p1) == "ok" {
			t.Error("the quarantine copy lost the damage (it must be page-for-page)")
		}
		for i := 0; i < 3; i++ {
			p2, created2, err := Quarantine(ctx, db)
			if err != nil || created2 || p2 != p1 {
				t.Fatalf("repeat quarantine: %s %v %v", p2, created2, err)
			}
		}
		inv, _ := board.ScanBackups(db)
		if inv.Count() != 1 {
			t.Fatalf("%d quarantine units, want 1", inv.Count())
		}
	})
	t.Run("not a database", func(t *testing.T) {
		dir := t.TempDir()
		db := filepath.Join(dir, "kanban.db")
		data := []byte(strings.Repeat("garbage!", 600))
		os.WriteFile(db, data, 0o644)
		p, created, err := Quarantine(ctx, db)
		if err != nil || !created {
			t.Fatalf("quarantine: %v", err)
		}
		if got, want := sha256File(t, p), sha256File(t, db); got != want {
			t.Fatalf("byte copy differs from the file")
		}
	})
}

// FuzzParseName: never panics, and every name it accepts is exactly the one Name builds back.
func FuzzParseName(f *testing.F) {
	f.Add("kanban.db", "kanban.db.backup.20261127T013915.123Z.0123456789abcdef.db")
	f.Add("kanban.db", "kanban.db.backup.20261127T013915.123Z.0123456789abcdef.db-wal")
	f.Add("kanban.db", "kanban.db.corrupt.0123456789abcdef.bak")
	f.Add("x", "x.backup.99991231T235959.999Z.ffffffffffffffff.db")
	f.Fuzz(func(t *testing.T, db, name string) {
		p, ok := ParseName(db, name)
		if ok && Name(db, p.Time, p.Hash) != name {
			t.Fatalf("ParseName(%q, %q) = %+v, but Name gives %q", db, name, p, Name(db, p.Time, p.Hash))
		}
	})
}

func TestSnapshotDryRunWritesAndRemovesNothing(t *testing.T) {
	dir := t.TempDir()
	db := genBoard(t, dir, 50, false)
	clock := pinnedClock()
	for i := 0; i < 3; i++ {
		execSQL(t, db, "UPDATE tasks SET priority = priority + 1")
		if _, err := Snapshot(context.Background(), db, Options{Now: clock}); err != nil {
			t.Fatal(err)
		}
	}
	names := dirNames(t, dir)
	r, err := Snapshot(context.Background(), db, Options{DryRun: true, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	all, _ := List(dir, "kanban.db")
	if !r.DryRun || r.Path != dir || len(r.Pruned) != 2 || r.Pruned[0] != all[0].Path || r.Pruned[1] != all[1].Path {
		t.Fatalf("dry run %+v, want the two oldest of %v", r, all)
	}
	if got := dirNames(t, dir); strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("dry run changed the directory: %v -> %v", names, got)
	}
}

// countEdited counts the tasks TestSnapshotThroughMemoryIsTheFileCopyByteForByte edited.
func countEdited(t *testing.T, path string) int {
	t.Helper()
	ctx := context.Background()
	conn, closeFn, err := sqlitex.Conn(ctx, path, sqlitex.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM tasks WHERE title LIKE '%(edited)'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Two boards (both files are kanban.db) backed up alternately into one --out DIR with --keep 1:
// each keeps its own newest backup, neither prunes the other's, and a backup without a source
// record (an older one) is left alone.
func TestSnapshotKeepNeverPrunesAnotherBoardsBackups(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	var boards [2]string
	for i, name := range []string{"alpha", "beta"} {
		d := filepath.Join(root, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		boards[i] = genBoard(t, d, 50, true)
		execSQL(t, boards[i], fmt.Sprintf("UPDATE tasks SET title = title || ' (%s)'", name)) // distinct content
	}
	// An older backup with no source record: whose it is, nothing says.
	legacy := filepath.Join(out, Name("kanban.db", time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), "0123456789abcdef"))
	if err := os.WriteFile(legacy, []byte("older backup"), 0o644); err != nil {
		t.Fatal(err)
	}
	clock := pinnedClock()
	var newest [2]Result
	for round := 0; round < 3; round++ {
		for i, db := range boards {
			execSQL(t, db, "UPDATE tasks SET priority = priority + 1") // new content each round
			r, err := Snapshot(context.Background(), db, Options{Out: out, Keep: 1, Now: clock})
			if err != nil {
				t.Fatal(err)
			}
			if r.Existed {
				t.Fatalf("round %d board %d: new content reported as already there: %s", round, i, r.Path)
			}
			for _, p := range r.Pruned {
				if p != newest[i].Path {
					t.Errorf("round %d: backup of %s pruned %s, not its own previous backup %q", round, db, p, newest[i].Path)
				}
			}
			if round > 0 && len(r.Pruned) != 1 {
				t.Errorf("round %d: backup of %s pruned %v, want its own previous backup", round, db, r.Pruned)
			}
			newest[i] = r
			// After each backup, each board that has been backed up still has its newest one.
			for j := range newest {
				if newest[j].Path == "" {
					continue // not backed up yet
				}
				if _, err := os.Stat(newest[j].Path); err != nil {
					t.Fatalf("round %d, after backing up %s: the only backup of %s is gone: %v", round, db, boards[j], err)
				}
			}
		}
	}
	for i, r := range newest {
		ids := taskIDs(t, r.Path)
		if len(ids) != 50 {
			t.Errorf("backup of %s holds %d tasks, want 50", boards[i], len(ids))
		}
		if got, ok := readSource(r.Path, r.SHA256[:16]); !ok || got != sourceID(boards[i]) {
			t.Errorf("source record of %s: %q %v, want %q", r.Path, got, ok, sourceID(boards[i]))
		}
	}
	if _, err := os.Stat(legacy); err != nil {
		t.Errorf("backup without a source record was pruned: %v", err)
	}
	all, _ := List(out, "kanban.db")
	if len(all) != 3 {
		t.Errorf("left %d backups in --out, want 3 (one per board and the older one): %v", len(all), all)
	}
}
