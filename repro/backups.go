package repro

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/kanban-doctor/kanban-doctor/board"
)

// backupWatch counts the corrupt backups any strategy writes in a cell's board directory as they
// appear (fsnotify on the directory: it never opens the database or its -wal/-shm). Each new
// backup file is hard-linked into a directory of the harness's own at once, so a backup the
// guard prunes a moment later is still there to be checked and weighed.
type backupWatch struct {
	w      *fsnotify.Watcher
	dir    string // the board directory
	db     string // the database's base name
	linked string // where the hard links go (same filesystem)
	done   chan struct{}

	mu     sync.Mutex
	live   map[string]int // unit name -> index in units, while it exists in dir
	units  []seenBackup
	errs   []string
	closed bool
}

// seenBackup is one backup unit as it appeared: when, and the harness's link to it.
type seenBackup struct {
	name   string
	at     time.Time
	link   string // "" when it was gone before it could be linked
	pruned bool
}

// backupCount is what a cell's watch saw.
type backupCount struct {
	written, pruned, left int
	bytes                 int64
	links                 []string // the linked units to check
	at                    []time.Time
	notes                 []string
}

func watchBackups(db, linked string) (*backupWatch, error) {
	if err := os.MkdirAll(linked, 0o755); err != nil {
		return nil, err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch backups: %w", err)
	}
	b := &backupWatch{w: w, dir: filepath.Dir(db), db: filepath.Base(db), linked: linked, done: make(chan struct{}), live: map[string]int{}}
	if err := w.Add(b.dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch backups in %s: %w", b.dir, err)
	}
	go b.loop()
	return b, nil
}

func (b *backupWatch) loop() {
	defer close(b.done)
	for {
		select {
		case ev, ok := <-b.w.Events:
			if !ok {
				return
			}
			b.event(ev)
		case err, ok := <-b.w.Errors:
			if !ok {
				return
			}
			b.mu.Lock()
			b.errs = append(b.errs, err.Error()) // an overflow means counts may be short: say so
			b.mu.Unlock()
		}
	}
}

func (b *backupWatch) event(ev fsnotify.Event) {
	name := filepath.Base(ev.Name)
	bn, ok := board.ParseBackupName(b.db, name)
	if !ok {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case ev.Has(fsnotify.Create):
		if bn.Part != board.PartMain {
			if i, ok := b.live[bn.Unit]; ok && b.units[i].link != "" {
				os.Link(ev.Name, b.units[i].link+"-"+string(bn.Part))
			}
			return
		}
		if _, ok := b.live[name]; ok {
			return // replaced in place: the same backup
		}
		u := seenBackup{name: name, at: time.Now(), link: filepath.Join(b.linked, fmt.Sprintf("%04d-%s", len(b.units), name))}
		if err := os.Link(ev.Name, u.link); err != nil {
			u.link = ""
			if !errors.Is(err, os.ErrNotExist) {
				b.errs = append(b.errs, fmt.Sprintf("link %s: %v", name, err))
			}
		}
		// Companions written before the main file (or in the same instant) are linked too.
		for _, part := range []board.Companion{board.PartWAL, board.PartSHM} {
			if u.link != "" {
				os.Link(ev.Name+"-"+string(part), u.link+"-"+string(part))
			}
		}
		b.live[name] = len(b.units)
		b.units = append(b.units, u)
	case ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename):
		if bn.Part != board.PartMain {
			return
		}
		if i, ok := b.live[name]; ok {
			b.units[i].pruned = true
			delete(b.live, name)
		}
	}
}

// stop ends the watch and returns the counts; left is what is in the directory now, and a note
// says so when it differs from written minus pruned.
func (b *backupWatch) stop() backupCount {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		b.mu.Unlock()
		b.w.Close()
		<-b.done
		b.mu.Lock()
	}
	defer b.mu.Unlock()
	var c backupCount
	for _, u := range b.units {
		c.written++
		c.at = append(c.at, u.at)
		if u.pruned {
			c.pruned++
		}
		if u.link == "" {
			continue
		}
		c.links = append(c.links, u.link)
		for _, suf := range []string{"", "-wal", "-shm"} {
			if fi, err := os.Stat(u.link + suf); err == nil {
				c.bytes += fi.Size()
			}
		}
	}
	if ents, err := os.ReadDir(b.dir); err == nil {
		for _, e := range ents {
			if bn, ok := board.ParseBackupName(b.db, e.Name()); ok && bn.Part == board.PartMain {
				c.left++
			}
		}
	}
	if c.left != c.written-c.pruned {
		c.notes = append(c.notes, fmt.Sprintf("backups: %d written, %d pruned, but %d left in the board directory", c.written, c.pruned, c.left))
	}
	if n := c.written - len(c.links); n > 0 {
		c.notes = append(c.notes, fmt.Sprintf("backups: %d pruned before the harness could link them: not checked", n))
	}
	for _, e := range b.errs {
		c.notes = append(c.notes, "backup watch: "+e)
	}
	return c
}
