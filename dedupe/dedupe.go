// Package dedupe collapses storms of corrupt-backup units to one unit per distinct content, proving
// every duplicate byte for byte against the kept unit before it removes, links or moves anything.
//
// The flow is Scan (what is on disk, content hashes) -> Plan (groups, keep rule, bursts, what an
// apply would do) -> Apply (re-check each unit, then act in an order that survives SIGKILL).
//
// A unit is a backup's main file plus its -wal/-shm companions (board.ScanBackups). Two units are
// duplicates only when both have the same parts and every part is byte-identical.
//
// Kill safety (the order of operations, see Apply): the kept unit of a content is never touched,
// so every distinct content exists completely at every instant. A removed duplicate loses its main
// file first and its companions after; a kill in between leaves companions without a main
// (orphans), which the next run recognises as byte-identical to a kept unit's companion and
// finishes. A hardlink replaces each part atomically (link the kept file to a temporary name, then
// rename it over the duplicate); a leftover temporary link from a kill is a second name of a kept
// file and is removed by the next run. A move links every part into the target directory, syncs it,
// then unlinks the sources main first, so the unit exists completely in one place or the other.
package dedupe

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/kanban-doctor/kanban-doctor/board"
)

// HashName names the content hash used in reports: XXH3-128 of each part, printed as 32 lower-case
// hex digits (high 64 bits first, as xxhsum -H2 prints it). It is not cryptographic: nothing is
// ever removed or linked on its word alone, only after a byte-for-byte comparison.
const HashName = "xxh3-128"

// Errors returned by this package.
var (
	ErrUsage   = errors.New("invalid options")           // returned when Plan or Apply options are inconsistent
	ErrOutside = errors.New("path outside scanned dirs") // returned when an action would touch a path outside the scanned directories
)

// Keep chooses which unit of a group stays.
type Keep string

const (
	KeepOldest Keep = "oldest" // the first evidence (default)
	KeepNewest Keep = "newest"
)

// Action is what Apply does with a duplicate unit.
type Action string

const (
	ActionRemove   Action = "remove"   // unlink the duplicate's files (default)
	ActionHardlink Action = "hardlink" // replace each file by a hard link to the kept unit's file
	ActionMove     Action = "move"     // move the duplicate into a quarantine directory
)

// Part indexes the files of a unit.
type Part int

const (
	PartMain Part = iota
	PartWAL
	PartSHM
	nParts
)

var partSuffix = [nParts]string{"", "-wal", "-shm"}

// String is "main", "wal" or "shm".
func (p Part) String() string { return [...]string{"main", "wal", "shm"}[p] }

// Options for Scan.
type Options struct {
	// Workers reading files in parallel; 0 means 2.
	Workers int
	// Verify keeps one in-memory copy of each distinct small content while hashing and compares
	// every other copy against it byte for byte in the same read (Apply needs that proof; a dry run
	// does not). Files or contents beyond the cache are compared from disk by Apply instead.
	Verify bool
	// CacheBytes bounds the in-memory copies Verify keeps; 0 means 64 MiB.
	CacheBytes int64
	Progress   Progress     // nil: none
	Logger     *slog.Logger // nil: silent
}

// Progress receives the progress of hashing and applying (reports.Progress draws it as a bar on a
// terminal). Its methods must be safe for concurrent use.
type Progress interface {
	Start(desc string, total int64, bytes bool)
	Add(n int64)
	Done()
}

// file is one regular file of the inventory, with what hashing learned about it.
type file struct {
	board.File
	dir   int32
	part  Part
	sum   xxh3.Uint128
	state fileState
	rep   int32 // index of the in-memory copy this file was proven equal to; -1 none
	ctime int64 // status-change time seen while hashing (ns); 0 when not hashed
	why   string
}

type fileState uint8

const (
	stUnhashed fileState = iota
	stHashed
	stChanged // changed, vanished or unreadable while hashing: never acted on
)

// unit is one backup unit: indexes into Inventory.files, -1 for an absent companion.
type unit struct {
	name  string
	dir   int32
	gen   board.Generation
	time  time.Time
	seq   int
	parts [nParts]int32
}

// Dir is one scanned directory with the live board beside its backups.
type Dir struct {
	Path string `json:"path"`
	DB   string `json:"db"`
	dev  uint64
	ino  uint64
	fd   int // O_PATH descriptor while reading or acting (openDirs), else -1
	live map[string]bool
}

// Inventory is what Scan found: every backup unit and orphan companion in the scanned
// directories, with content hashes for every file that has a possible twin.
type Inventory struct {
	Dirs   []Dir
	Files  int   // backup files (mains, companions, orphans)
	Bytes  int64 // their total size
	Hashed int64 // bytes read while hashing
	// Temps are temporary links a killed hardlink run left behind ("<dir>/.<name>.kdtmp-dedupe-*").
	Temps []string

	files   []file
	units   []unit
	orphans []int32
	reps    [][]byte
}

// Units is the number of backup units.
func (inv *Inventory) Units() int { return len(inv.units) }

func (inv *Inventory) path(i int32) string { return inv.files[i].Path }

func hexSum(s xxh3.Uint128) string { return fmt.Sprintf("%016x%016x", s.Hi, s.Lo) }
