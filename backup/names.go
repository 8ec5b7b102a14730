package backup

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/atomicfile"
)

// StampLayout is the UTC timestamp in a backup name: sortable, millisecond precision, no colons.
const StampLayout = "20060102T150405.000Z"

// Name is the default file name of a backup of the database named dbName taken at t whose
// content's sha256 starts with hash16: <db>.backup.<UTC timestamp>.<16 hex>.db.
func Name(dbName string, t time.Time, hash16 string) string {
	return dbName + ".backup." + t.UTC().Format(StampLayout) + "." + hash16 + ".db"
}

// ParsedName is a backup file name taken apart.
type ParsedName struct {
	Time time.Time // UTC
	Hash string    // 16 hex digits
}

// ParseName parses name as one of our backups of the database named dbName. It returns false for
// every other name (corrupt backups, temp files, companions, foreign files). It never panics.
func ParseName(dbName, name string) (ParsedName, bool) {
	prefix := dbName + ".backup."
	if dbName == "" || !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, ".db") {
		return ParsedName{}, false
	}
	mid := strings.TrimSuffix(strings.TrimPrefix(name, prefix), ".db")
	if len(mid) != len(StampLayout)+1+16 || mid[len(StampLayout)] != '.' {
		return ParsedName{}, false
	}
	stamp, hash := mid[:len(StampLayout)], mid[len(StampLayout)+1:]
	if !board.IsHash16(hash) {
		return ParsedName{}, false
	}
	t, err := time.ParseInLocation(StampLayout, stamp, time.UTC)
	if err != nil || t.Format(StampLayout) != stamp {
		return ParsedName{}, false
	}
	return ParsedName{Time: t, Hash: hash}, true
}

// Listed is one of our backups found in a directory.
type Listed struct {
	Path string
	ParsedName
}

// List returns our backups of the database named dbName in dir, oldest first (by the time in the
// name, then by name). Only regular files count.
func List(dir, dbName string) ([]Listed, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list backups in %s: %w", dir, err)
	}
	var out []Listed
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if p, ok := ParseName(dbName, e.Name()); ok {
			out = append(out, Listed{Path: filepath.Join(dir, e.Name()), ParsedName: p})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].Path < out[j].Path
	})
	return out, nil
}

// prune removes our backups of dbName in dir beyond the newest keep, never the file just written,
// and returns what it removed (or, with dryRun, would remove). Companions -wal/-shm of a pruned
// backup go with it. The directory is listed again right before removing, and only names that
// parse as ours are candidates.
func prune(dir, dbName string, keep int, written string, dryRun bool) ([]string, error) {
	if keep < 0 {
		return nil, nil
	}
	all, err := List(dir, dbName)
	if err != nil {
		return nil, err
	}
	if len(all) <= keep {
		return nil, nil
	}
	var removed []string
	for _, l := range all[:len(all)-keep] {
		if sameFile(l.Path, written) {
			continue
		}
		if !dryRun {
			if err := os.Remove(l.Path); err != nil && !os.IsNotExist(err) {
				return removed, fmt.Errorf("prune %s: %w", l.Path, err)
			}
			os.Remove(l.Path + "-wal")
			os.Remove(l.Path + "-shm")
		}
		removed = append(removed, l.Path)
	}
	if len(removed) > 0 && !dryRun {
		if err := atomicfile.SyncDir(dir); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}
