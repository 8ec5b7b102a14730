// Package board finds kanban boards on disk (a DB path, a board directory or a hermes root) and
// describes each one's files and corrupt-backup inventory without opening a SQLite connection.
package board

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// DBName is the database file name hermes uses for every board.
const DBName = "kanban.db"

// Errors returned by Discover; each is wrapped with the path it concerns.
var (
	ErrNotFound = errors.New("no such file or directory")  // returned when the path does not exist
	ErrNoBoard  = errors.New("no kanban board found here") // returned when a directory holds no board
)

// SlugPattern is what hermes accepts as a board slug.
var SlugPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9\-_]{0,63}$`)

// Board is one kanban board's file set.
type Board struct {
	Name     string `json:"name"`
	Dir      string `json:"dir"`
	DB       string `json:"db"`
	Archived bool   `json:"archived,omitempty"`
	// Note says what is unusual about how the board was found (a directory under kanban/boards/
	// whose name hermes would not accept, or a symlink), so nothing is checked or skipped in silence.
	Note string `json:"note,omitempty"`

	WAL          string `json:"wal_path"`
	SHM          string `json:"shm_path"`
	InitLock     string `json:"init_lock_path"`
	DispatchLock string `json:"dispatch_lock_path"`

	// Filled by Stat.
	Exists      bool    `json:"exists"`
	Size        int64   `json:"size"`
	WALSize     int64   `json:"wal_size"`
	SHMSize     int64   `json:"shm_size"`
	HasWAL      bool    `json:"has_wal"`
	HasSHM      bool    `json:"has_shm"`
	JournalMode string  `json:"journal_mode"`
	HeaderError string  `json:"header_error,omitempty"`
	Header      *Header `json:"-"`
}

// New describes the board whose database is dbPath, named name. It touches no file.
func New(name, dbPath string) Board {
	return Board{
		Name: name, Dir: filepath.Dir(dbPath), DB: dbPath,
		WAL: dbPath + "-wal", SHM: dbPath + "-shm",
		InitLock: dbPath + ".init.lock", DispatchLock: dbPath + ".dispatch.lock",
	}
}

// AwaitingDB reports whether the board is one hermes has made but not used yet: board.json in its
// directory and no database file. That is a normal state, not an error: hermes creates kanban.db
// on the board's first use. It only stats.
func (b Board) AwaitingDB() bool {
	if _, err := os.Lstat(b.DB); !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	fi, err := os.Lstat(filepath.Join(b.Dir, "board.json"))
	return err == nil && !fi.IsDir()
}

// AwaitingDBNote is how every command describes such a board.
const AwaitingDBNote = "no database yet (board.json only; hermes creates kanban.db on first use)"

// StatFiles fills sizes and presence from stat calls only: no file is opened.
func (b *Board) StatFiles() {
	b.Exists, b.Size = statSize(b.DB)
	b.HasWAL, b.WALSize = statSize(b.WAL)
	b.HasSHM, b.SHMSize = statSize(b.SHM)
}

// Stat fills sizes and reads the journal mode from the header. It opens the DB file: never call it
// from a process that holds a SQLite connection to this board (see ReadHeader).
func (b *Board) Stat() {
	b.StatFiles()
	b.Header, b.HeaderError = nil, ""
	switch {
	case !b.Exists:
		b.JournalMode = JournalMissing
		if why := unusable(b.DB); why != "" {
			b.JournalMode, b.HeaderError = JournalUnusable, why
		}
		return
	case b.Size == 0:
		b.JournalMode = JournalEmpty
		return
	}
	h, err := ReadHeader(b.DB)
	if err != nil {
		b.JournalMode, b.HeaderError = JournalInvalid, err.Error()
		if !errors.Is(err, ErrNotDatabase) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			b.JournalMode = JournalUnusable // unreadable, not "not a database"
		}
		return
	}
	b.Header = &h
	b.JournalMode = h.JournalMode()
}

// unusable says what is at p when it is not a regular file a database could be in, or "" when
// nothing is there.
func unusable(p string) string {
	fi, err := os.Lstat(p)
	if err != nil {
		return ""
	}
	m := fi.Mode()
	switch {
	case m&fs.ModeSymlink != 0:
		if _, err := os.Stat(p); err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return "a symlink that leads nowhere: " + err.Error()
		}
		return "a symlink to something that is not a regular file"
	case m.IsDir():
		return "a directory, not a database file"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO (named pipe), not a database file"
	case m&fs.ModeDevice != 0, m&fs.ModeCharDevice != 0:
		return "a device, not a database file"
	case m&fs.ModeSocket != 0:
		return "a socket, not a database file"
	}
	return ""
}

func statSize(p string) (bool, int64) {
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return false, 0
	}
	return true, fi.Size()
}

// Options for Discover.
type Options struct {
	Archived bool // include boards under kanban/boards/_archived/
	// Getenv and HomeDir default to os.Getenv and os.UserHomeDir (tests inject their own).
	Getenv  func(string) string
	HomeDir func() (string, error)
}

// DefaultPath is where Discover looks with no argument: $HERMES_KANBAN_DB, else
// $HERMES_KANBAN_HOME, else ~/.hermes.
func DefaultPath(opts Options) (string, error) {
	getenv, home := opts.Getenv, opts.HomeDir
	if getenv == nil {
		getenv = os.Getenv
	}
	if home == nil {
		home = os.UserHomeDir
	}
	if p := getenv("HERMES_KANBAN_DB"); p != "" {
		return p, nil
	}
	if p := getenv("HERMES_KANBAN_HOME"); p != "" {
		return p, nil
	}
	h, err := home()
	if err != nil {
		return "", fmt.Errorf("find home directory: %w", err)
	}
	return filepath.Join(h, ".hermes"), nil
}

// Discover finds the boards at path: a database file, a board directory or a hermes root. An empty
// path means DefaultPath. Symlinks given as the path are followed (SQLite resolves them too, and
// keeps -wal/-shm beside the target). Boards are returned default first, then by name. Discover
// only stats: call Stat on each board to read headers.
func Discover(path string, opts Options) ([]Board, error) {
	if path == "" {
		p, err := DefaultPath(opts)
		if err != nil {
			return nil, err
		}
		path = p
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, pathError(path, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, pathError(path, err)
	}
	abs, err := filepath.Abs(real)
	if err != nil {
		return nil, pathError(path, err)
	}
	if fi.Mode().IsRegular() {
		if filepath.Base(abs) != DBName {
			// Any other SQLite database (hermes' state.db, say) is named by its file name.
			return []Board{New(filepath.Base(abs), abs)}, nil
		}
		return []Board{New(NameFor(filepath.Dir(abs)), abs)}, nil
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: not a regular file or directory", path)
	}
	return discoverDir(path, abs, opts)
}

func discoverDir(given, dir string, opts Options) ([]Board, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, pathError(given, err)
	}
	has := map[string]fs.DirEntry{}
	for _, e := range entries {
		has[e.Name()] = e
	}
	var boards []Board
	if e, ok := has[DBName]; ok && !e.IsDir() {
		boards = append(boards, New(NameFor(dir), filepath.Join(dir, DBName)))
	} else if e, ok := has["board.json"]; ok && !e.IsDir() {
		boards = append(boards, New(NameFor(dir), filepath.Join(dir, DBName)))
	}
	boardsDir := filepath.Join(dir, "kanban", "boards")
	if fi, err := os.Stat(boardsDir); err == nil && fi.IsDir() {
		more, err := boardsUnder(boardsDir, opts)
		if err != nil {
			return nil, err
		}
		boards = append(boards, more...)
	}
	if len(boards) == 0 {
		return nil, fmt.Errorf("%s: %w (expected %s, board.json or kanban/boards/)", given, ErrNoBoard, DBName)
	}
	return boards, nil
}

func boardsUnder(boardsDir string, opts Options) ([]Board, error) {
	entries, err := os.ReadDir(boardsDir)
	if err != nil {
		return nil, pathError(boardsDir, err)
	}
	var out []Board
	for _, e := range entries {
		name := e.Name()
		if name == "_archived" && e.IsDir() {
			if opts.Archived {
				arch, err := archivedUnder(filepath.Join(boardsDir, name))
				if err != nil {
					return nil, err
				}
				out = append(out, arch...)
			}
			continue
		}
		d := filepath.Join(boardsDir, name)
		var notes []string
		if e.Type()&fs.ModeSymlink != 0 {
			fi, err := os.Stat(d)
			if err != nil || !fi.IsDir() {
				continue
			}
			target, _ := filepath.EvalSymlinks(d)
			notes = append(notes, "a symlink to "+target+": followed")
		} else if !e.IsDir() {
			continue
		}
		if !isBoardDir(d) {
			continue
		}
		if !SlugPattern.MatchString(name) {
			notes = append(notes, fmt.Sprintf("%q is not a board slug hermes accepts (lower-case letters, digits, - and _): hermes does not open this board; checked anyway", name))
		}
		b := New(name, filepath.Join(d, DBName))
		b.Note = strings.Join(notes, "; ")
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func archivedUnder(dir string) ([]Board, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, pathError(dir, err)
	}
	var out []Board
	for _, e := range entries {
		d := filepath.Join(dir, e.Name())
		if e.IsDir() && isBoardDir(d) {
			b := New("_archived/"+e.Name(), filepath.Join(d, DBName))
			b.Archived = true
			out = append(out, b)
		}
	}
	return out, nil
}

func isBoardDir(d string) bool {
	for _, n := range []string{DBName, "board.json"} {
		if fi, err := os.Lstat(filepath.Join(d, n)); err == nil && !fi.IsDir() {
			return true
		}
	}
	return false
}

// NameFor names the board living in dir as Discover does: its slug under kanban/boards/,
// "_archived/<dir>" under kanban/boards/_archived/, else "default".
func NameFor(dir string) string {
	parent := filepath.Dir(dir)
	if filepath.Base(parent) == "boards" && filepath.Base(filepath.Dir(parent)) == "kanban" {
		return filepath.Base(dir)
	}
	if filepath.Base(parent) == "_archived" {
		return "_archived/" + filepath.Base(dir)
	}
	return "default"
}

// pathError turns a filesystem error into a one-line "path: what is wrong" error.
func pathError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		err = le.Err
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: %w", path, ErrNotFound)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s: %w", path, fs.ErrPermission)
	}
	msg := err.Error()
	if strings.Contains(msg, "too many links") || strings.Contains(msg, "too many levels") {
		return fmt.Errorf("%s: symlink loop (too many levels of symbolic links)", path)
	}
	return fmt.Errorf("%s: %w", path, err)
}

// OwnFile names which of db's own files path is (the database itself, or its -wal, -shm or
// -journal), by path or by file identity (a hard link or symlink to it), or returns "". Those
// names belong to the board's writers: nothing of ours may be written there.
func OwnFile(path, db string) string {
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return filepath.Clean(a)
		}
		return filepath.Clean(p)
	}
	fp, errP := os.Stat(path)
	for _, suf := range []string{"", "-wal", "-shm", "-journal"} {
		f := db + suf
		same := abs(path) == abs(f)
		if !same && errP == nil {
			if fi, err := os.Stat(f); err == nil && os.SameFile(fp, fi) {
				same = true
			}
		}
		if same {
			if suf == "" {
				return "database file"
			}
			return suf + " file"
		}
	}
	return ""
}
