package board

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// File is one regular file of a backup unit.
type File struct {
	Path    string    `json:"path"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
	Inode   uint64    `json:"inode"`
	Nlink   uint64    `json:"nlink"`
}

// Unit is one corrupt backup: a main file and the -wal/-shm companions that were copied with it.
type Unit struct {
	Name string     `json:"name"` // base name of the main file
	Gen  Generation `json:"generation"`
	Time time.Time  `json:"time"` // timestamped: name time; otherwise the main file's mtime
	Seq  int        `json:"seq,omitempty"`
	Hash string     `json:"hash_prefix,omitempty"`
	Main File       `json:"main"`
	WAL  *File      `json:"wal,omitempty"`
	SHM  *File      `json:"shm,omitempty"`
}

// Bytes is the unit's total size.
func (u Unit) Bytes() int64 {
	n := u.Main.Size
	if u.WAL != nil {
		n += u.WAL.Size
	}
	if u.SHM != nil {
		n += u.SHM.Size
	}
	return n
}

// Files lists the unit's parts, main first.
func (u Unit) Files() []File {
	fs := []File{u.Main}
	if u.WAL != nil {
		fs = append(fs, *u.WAL)
	}
	if u.SHM != nil {
		fs = append(fs, *u.SHM)
	}
	return fs
}

// Inventory is every corrupt backup beside one database.
type Inventory struct {
	Units []Unit `json:"units"`
	// Orphans are -wal/-shm companions whose main file is gone.
	Orphans []File `json:"orphans,omitempty"`
}

// Count is the number of backup units.
func (inv Inventory) Count() int { return len(inv.Units) }

// Bytes is the total size of all units and orphans.
func (inv Inventory) Bytes() int64 {
	var n int64
	for _, u := range inv.Units {
		n += u.Bytes()
	}
	for _, o := range inv.Orphans {
		n += o.Size
	}
	return n
}

// ByGeneration counts units per naming generation.
func (inv Inventory) ByGeneration() map[Generation]int {
	m := map[Generation]int{}
	for _, u := range inv.Units {
		m[u.Gen]++
	}
	return m
}

// ScanBackups lists the corrupt backups of the database dbPath in its directory. Only regular files
// count: symlinks, directories and other names are ignored. It never opens any file.
func ScanBackups(dbPath string) (Inventory, error) {
	dir, dbName := filepath.Split(dbPath)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return Inventory{}, fmt.Errorf("scan backups in %s: %w", dir, err)
	}
	units := map[string]*Unit{}
	var comps []struct {
		name BackupName
		file File
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		bn, ok := ParseBackupName(dbName, e.Name())
		if !ok {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // vanished between readdir and stat
		}
		f := fileOf(filepath.Join(dir, e.Name()), info)
		if bn.Part != PartMain {
			comps = append(comps, struct {
				name BackupName
				file File
			}{bn, f})
			continue
		}
		u := &Unit{Name: bn.Unit, Gen: bn.Gen, Time: bn.Time, Seq: bn.Seq, Hash: bn.Hash, Main: f}
		if u.Gen != GenTimestamped {
			u.Time = f.ModTime
		}
		units[bn.Unit] = u
	}
	var inv Inventory
	for _, c := range comps {
		u, ok := units[c.name.Unit]
		if !ok {
			inv.Orphans = append(inv.Orphans, c.file)
			continue
		}
		f := c.file
		if c.name.Part == PartWAL {
			u.WAL = &f
		} else {
			u.SHM = &f
		}
	}
	for _, u := range units {
		inv.Units = append(inv.Units, *u)
	}
	sort.Slice(inv.Units, func(i, j int) bool {
		a, b := inv.Units[i], inv.Units[j]
		if !a.Time.Equal(b.Time) {
			return a.Time.Before(b.Time)
		}
		if a.Seq != b.Seq {
			return a.Seq < b.Seq
		}
		return a.Name < b.Name
	})
	sort.Slice(inv.Orphans, func(i, j int) bool { return inv.Orphans[i].Path < inv.Orphans[j].Path })
	return inv, nil
}

func fileOf(path string, info fs.FileInfo) File {
	f := File{Path: path, Size: info.Size(), ModTime: info.ModTime()}
	f.Inode, f.Nlink = statIDs(info)
	return f
}
