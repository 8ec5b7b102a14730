package board

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// write creates a file with content (parents too).
func write(t *testing.T, path string, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// hermesRoot builds a hermes-shaped root: default board, boards alpha and beta-2, an archived
// board, backups of both generations (one with a -wal companion), and odd files that must not count.
func hermesRoot(t *testing.T) string {
	root := t.TempDir()
	sqlite := Magic + string(make([]byte, 84))
	write(t, filepath.Join(root, "kanban.db"), sqlite)
	write(t, filepath.Join(root, "kanban.db-wal"), "wal")
	// default: 2 timestamped (one .1 collision) + 1 content-addressed with a -wal companion = 3 units
	write(t, filepath.Join(root, "kanban.db.corrupt.20260525_101010.bak"), "a")
	write(t, filepath.Join(root, "kanban.db.corrupt.20260525_101010.1.bak"), "a")
	write(t, filepath.Join(root, "kanban.db.corrupt.0123456789abcdef.bak"), "bb")
	write(t, filepath.Join(root, "kanban.db.corrupt.0123456789abcdef.bak-wal"), "wal")
	// odd files: other names, a directory named like a backup, a symlink named like a backup
	write(t, filepath.Join(root, "kanban.db.bak"), "x")
	write(t, filepath.Join(root, "other.db.corrupt.20260525_101010.bak"), "x")
	write(t, filepath.Join(root, "kanban.db.corrupt.20260525_101011.bak.tmp"), "x")
	if err := os.MkdirAll(filepath.Join(root, "kanban.db.corrupt.20260525_101012.bak"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "kanban.db.corrupt.20260525_101010.bak"), filepath.Join(root, "kanban.db.corrupt.20260525_101013.bak")); err != nil {
		t.Fatal(err)
	}
	boards := filepath.Join(root, "kanban", "boards")
	write(t, filepath.Join(boards, "alpha", "kanban.db"), sqlite)
	write(t, filepath.Join(boards, "alpha", "board.json"), "{}")
	write(t, filepath.Join(boards, "alpha", "kanban.db.corrupt.20260601_000000.bak"), "c")
	write(t, filepath.Join(boards, "beta-2", "board.json"), "{}") // no DB yet
	write(t, filepath.Join(boards, "beta-2", "kanban.db.corrupt.fedcba9876543210.bak"), "d")
	write(t, filepath.Join(boards, "beta-2", "kanban.db.corrupt.manual-copy.bak"), "e")
	write(t, filepath.Join(boards, "_archived", "gamma-1780000000", "kanban.db"), sqlite)
	write(t, filepath.Join(boards, "Not_A_Slug", "kanban.db"), sqlite)
	write(t, filepath.Join(boards, "empty-dir", ".keep"), "")
	return root
}

func TestDiscoverHermesRoot(t *testing.T) {
	root := hermesRoot(t)
	boards, err := Discover(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Not_A_Slug is no name hermes accepts: it is found, with a note saying so, not skipped in silence.
	want := map[string]int{"default": 3, "alpha": 1, "beta-2": 2, "Not_A_Slug": 0}
	got := map[string]int{}
	for _, b := range boards {
		if (b.Name == "Not_A_Slug") != strings.Contains(b.Note, "not a board slug") {
			t.Errorf("board %s: note %q", b.Name, b.Note)
		}
		inv, err := ScanBackups(b.DB)
		if err != nil {
			t.Fatal(err)
		}
		got[b.Name] = inv.Count()
		if b.Name == "default" {
			withWAL := 0
			for _, u := range inv.Units {
				if u.WAL != nil {
					withWAL++
				}
			}
			if withWAL != 1 {
				t.Errorf("default: %d units with -wal, want 1", withWAL)
			}
			gens := inv.ByGeneration()
			if gens[GenTimestamped] != 2 || gens[GenContent] != 1 {
				t.Errorf("default generations = %v", gens)
			}
		}
	}
	if len(got) != len(want) {
		t.Fatalf("boards = %v, want %v", got, want)
	}
	for n, c := range want {
		if got[n] != c {
			t.Errorf("board %s: %d backup units, want %d", n, got[n], c)
		}
	}
	if boards[0].Name != "default" {
		t.Errorf("first board is %q, want default", boards[0].Name)
	}

	withArchived, err := Discover(root, Options{Archived: true})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range withArchived {
		names = append(names, b.Name)
	}
	sort.Strings(names)
	if len(names) != 5 || names[1] != "_archived/gamma-1780000000" {
		t.Errorf("with --archived: %v", names)
	}
}

func TestDiscoverEnvironmentOrder(t *testing.T) {
	root := hermesRoot(t)
	pinned := filepath.Join(root, "kanban", "boards", "alpha", "kanban.db")
	env := map[string]string{}
	opts := Options{Getenv: func(k string) string { return env[k] }, HomeDir: func() (string, error) { return filepath.Join(root, "nohome"), nil }}

	if _, err := Discover("", opts); err == nil {
		t.Fatal("no env and no ~/.hermes: want an error")
	}
	env["HERMES_KANBAN_HOME"] = root
	bs, err := Discover("", opts)
	if err != nil || len(bs) != 4 {
		t.Fatalf("HERMES_KANBAN_HOME: %d boards, %v", len(bs), err)
	}
	env["HERMES_KANBAN_DB"] = pinned
	bs, err = Discover("", opts)
	if err != nil || len(bs) != 1 || bs[0].DB != pinned || bs[0].Name != "alpha" {
		t.Fatalf("HERMES_KANBAN_DB beats HOME: %+v, %v", bs, err)
	}
}

func TestDiscoverBoardPaths(t *testing.T) {
	root := hermesRoot(t)
	alphaDir := filepath.Join(root, "kanban", "boards", "alpha")
	for _, tc := range []struct{ name, path, want string }{
		{"board dir", alphaDir, "alpha"},
		{"db file", filepath.Join(alphaDir, "kanban.db"), "alpha"},
		{"root db file", filepath.Join(root, "kanban.db"), "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs, err := Discover(tc.path, Options{})
			if err != nil || len(bs) != 1 || bs[0].Name != tc.want {
				t.Fatalf("got %+v, %v; want one board %q", bs, err, tc.want)
			}
			if bs[0].WAL != bs[0].DB+"-wal" || bs[0].InitLock != bs[0].DB+".init.lock" || bs[0].DispatchLock != bs[0].DB+".dispatch.lock" {
				t.Errorf("file set wrong: %+v", bs[0])
			}
		})
	}
	// Any database not named kanban.db (hermes' state.db) is named by its file name.
	state := filepath.Join(root, "state.db")
	if err := os.WriteFile(state, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if bs, err := Discover(state, Options{}); err != nil || len(bs) != 1 || bs[0].Name != "state.db" {
		t.Fatalf("state.db: got %+v, %v; want one board \"state.db\"", bs, err)
	}
	// A symlink to a DB is followed: SQLite keeps -wal/-shm beside the target.
	link := filepath.Join(t.TempDir(), "link.db")
	if err := os.Symlink(filepath.Join(alphaDir, "kanban.db"), link); err != nil {
		t.Fatal(err)
	}
	bs, err := Discover(link, Options{})
	if err != nil || bs[0].DB != filepath.Join(alphaDir, "kanban.db") {
		t.Fatalf("symlink: %+v, %v", bs, err)
	}
}

func TestDiscoverBadInput(t *testing.T) {
	dir := t.TempDir()
	loop := filepath.Join(dir, "loop")
	os.Symlink(loop, loop)
	for _, tc := range []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "missing"), "no such file or directory"},
		{"empty dir", dir, "no kanban board found here"},
		{"symlink loop", loop, "symlink loop"},
		{"device", "/dev/null", "not a regular file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Discover(tc.path, Options{})
			if err == nil {
				t.Fatal("want an error")
			}
			if msg := err.Error(); !strings.Contains(msg, tc.path) || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q should name %q and say %q", msg, tc.path, tc.want)
			}
		})
	}
}

func TestStatReadsJournalModeFromHeader(t *testing.T) {
	dir := t.TempDir()
	hdr := func(w, r byte) string {
		b := make([]byte, 100)
		copy(b, Magic)
		b[16], b[17] = 0x10, 0x00 // 4096
		b[18], b[19] = w, r
		return string(b)
	}
	for _, tc := range []struct{ name, content, want string }{
		{"wal", hdr(2, 2), JournalWAL},
		{"rollback", hdr(1, 1), JournalRollback},
		{"empty", "", JournalEmpty},
		{"text", "hello this is not sqlite", JournalInvalid},
		{"bad version bytes", hdr(7, 7), JournalInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".db")
			write(t, p, tc.content)
			b := New("x", p)
			b.Stat()
			if b.JournalMode != tc.want {
				t.Errorf("journal mode %q, want %q (%s)", b.JournalMode, tc.want, b.HeaderError)
			}
		})
	}
	b := New("x", filepath.Join(dir, "absent.db"))
	b.Stat()
	if b.JournalMode != JournalMissing {
		t.Errorf("absent: %q", b.JournalMode)
	}
}

func TestParseBackupName(t *testing.T) {
	loc := time.Local
	for _, tc := range []struct {
		name string
		ok   bool
		want BackupName
	}{
		{"kanban.db.corrupt.20260525_101010.bak", true, BackupName{Unit: "kanban.db.corrupt.20260525_101010.bak", Gen: GenTimestamped, Time: time.Date(2026, 5, 25, 10, 10, 10, 0, loc)}},
		{"kanban.db.corrupt.20260525_101010.7.bak", true, BackupName{Unit: "kanban.db.corrupt.20260525_101010.7.bak", Gen: GenTimestamped, Time: time.Date(2026, 5, 25, 10, 10, 10, 0, loc), Seq: 7}},
		{"kanban.db.corrupt.20260525_101010.7.bak-wal", true, BackupName{Unit: "kanban.db.corrupt.20260525_101010.7.bak", Part: PartWAL, Gen: GenTimestamped, Time: time.Date(2026, 5, 25, 10, 10, 10, 0, loc), Seq: 7}},
		{"kanban.db.corrupt.0123456789abcdef.bak", true, BackupName{Unit: "kanban.db.corrupt.0123456789abcdef.bak", Gen: GenContent, Hash: "0123456789abcdef"}},
		{"kanban.db.corrupt.0123456789abcdef.bak-shm", true, BackupName{Unit: "kanban.db.corrupt.0123456789abcdef.bak", Part: PartSHM, Gen: GenContent, Hash: "0123456789abcdef"}},
		{"kanban.db.corrupt.0123456789ABCDEF.bak", true, BackupName{Unit: "kanban.db.corrupt.0123456789ABCDEF.bak", Gen: GenGeneric}},
		{"kanban.db.corrupt.20261340_101010.bak", true, BackupName{Unit: "kanban.db.corrupt.20261340_101010.bak", Gen: GenGeneric}},
		{"kanban.db.corrupt.20260525_101010.0.bak", true, BackupName{Unit: "kanban.db.corrupt.20260525_101010.0.bak", Gen: GenGeneric}},
		{"kanban.db.corrupt.x.bak", true, BackupName{Unit: "kanban.db.corrupt.x.bak", Gen: GenGeneric}},
		{"kanban.db.corrupt..bak", false, BackupName{}},
		{"kanban.db.corrupt.bak", false, BackupName{}},
		{"kanban.db.bak", false, BackupName{}},
		{"kanban.db-wal", false, BackupName{}},
		{"other.db.corrupt.20260525_101010.bak", false, BackupName{}},
		{"kanban.db.corrupt.20260525_101010.bak.tmp", false, BackupName{}},
	} {
		got, ok := ParseBackupName("kanban.db", tc.name)
		if ok != tc.ok || !got.Time.Equal(tc.want.Time) || got.Unit != tc.want.Unit || got.Part != tc.want.Part || got.Gen != tc.want.Gen || got.Seq != tc.want.Seq || got.Hash != tc.want.Hash {
			t.Errorf("ParseBackupName(%q) = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzParseBackupName: never panics, and whatever parses round-trips through its formatter.
func FuzzParseBackupName(f *testing.F) {
	for _, s := range []string{"kanban.db.corrupt.20260525_101010.bak", "kanban.db.corrupt.20260525_101010.12.bak-wal",
		"kanban.db.corrupt.0123456789abcdef.bak-shm", "kanban.db.corrupt..bak", "kanban.db.corrupt.\xff.bak", ""} {
		f.Add("kanban.db", s)
	}
	f.Fuzz(func(t *testing.T, db, name string) {
		bn, ok := ParseBackupName(db, name)
		if !ok {
			return
		}
		if bn.Part == PartMain && bn.Unit != name {
			t.Fatalf("main part: unit %q != name %q", bn.Unit, name)
		}
		switch bn.Gen {
		case GenContent:
			if FormatContent(db, bn.Hash) != bn.Unit {
				t.Fatalf("content name does not round-trip: %q", bn.Unit)
			}
		case GenTimestamped:
			if bn.Seq < 0 {
				t.Fatalf("negative seq in %q", name)
			}
		}
	})
}

// A board hermes made but has not used (board.json, no kanban.db) is awaiting its DB; one with a
// DB, or a missing DB without board.json, is not.
func TestAwaitingDB(t *testing.T) {
	root := hermesRoot(t)
	bs, err := Discover(root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, b := range bs {
		got[b.Name] = b.AwaitingDB()
	}
	want := map[string]bool{"default": false, "alpha": false, "beta-2": true}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: AwaitingDB = %v, want %v", name, got[name], w)
		}
	}
	lone := New("lone", filepath.Join(t.TempDir(), "kanban.db")) // neither file
	if lone.AwaitingDB() {
		t.Error("a board with neither kanban.db nor board.json is not awaiting its DB")
	}
}

// TestDiscoverFollowsASymlinkedBoardDirectory: a board directory under kanban/boards/ that is a
// symlink is followed (hermes opens it through the link) and the note says so.
func TestDiscoverFollowsASymlinkedBoardDirectory(t *testing.T) {
	root := t.TempDir()
	elsewhere := filepath.Join(t.TempDir(), "team")
	if err := os.MkdirAll(elsewhere, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(elsewhere, "board.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "kanban", "boards"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(root, "kanban", "boards", "team")); err != nil {
		t.Fatal(err)
	}
	bs, err := Discover(root, Options{})
	if err != nil || len(bs) != 1 || bs[0].Name != "team" || !strings.Contains(bs[0].Note, "a symlink to "+elsewhere) {
		t.Fatalf("boards %+v, %v: want team, noted as a symlink to %s", bs, err, elsewhere)
	}
}

// TestStatSaysWhatIsAtAnUnusableDBPath: a FIFO, a dangling symlink, a symlink loop or a directory at
// the DB path is not "missing" (something is there): it is unusable, and the header error says what.
func TestStatSaysWhatIsAtAnUnusableDBPath(t *testing.T) {
	cases := map[string]func(p string) error{
		"a FIFO":           func(p string) error { return syscall.Mkfifo(p, 0o644) },
		"leads nowhere":    func(p string) error { return os.Symlink("nowhere", p) },
		"too many levels":  func(p string) error { return os.Symlink(filepath.Base(p), p) },
		"a directory, not": func(p string) error { return os.Mkdir(p, 0o755) },
	}
	for want, make := range cases {
		p := filepath.Join(t.TempDir(), DBName)
		if err := make(p); err != nil {
			t.Fatal(err)
		}
		b := New("default", p)
		b.Stat()
		if b.JournalMode != JournalUnusable || !strings.Contains(b.HeaderError, want) {
			t.Errorf("%s: journal %q, header error %q: want unusable, saying %q", want, b.JournalMode, b.HeaderError, want)
		}
	}
	b := New("default", filepath.Join(t.TempDir(), DBName))
	b.Stat()
	if b.JournalMode != JournalMissing || b.HeaderError != "" {
		t.Errorf("nothing there: journal %q, header error %q: want missing", b.JournalMode, b.HeaderError)
	}
}
