package backup

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
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

// SourceSuffix ends the name of the record Snapshot writes beside each backup it names by content
// (<backup>.source): which board the backup was made from. --keep prunes only backups whose record
// names the same board, so boards whose files share a name (every board's file is kanban.db) can
// share a directory without one pruning the other's backups.
const SourceSuffix = ".source"

const sourceHeader = "kanban-doctor backup source v1"

// maxSourceRecord bounds how much of a record is read: a path and a name, a few KiB at most.
const maxSourceRecord = 64 << 10

// sourceID is the board path a source record names: absolute, symlinks resolved when they can be,
// so the same board reached by another spelling of its path is the same source.
func sourceID(dbPath string) string {
	p, err := filepath.Abs(dbPath)
	if err != nil {
		p = filepath.Clean(dbPath)
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	return p
}

// writeSource records, beside the backup at backupPath, that it was made from the board source and
// has the content sum. The record is built in a temp file, fsynced and renamed into place. Paths are
// Go-quoted, so any byte of a path survives exactly.
func writeSource(backupPath, source, sum string) error {
	f, err := atomicfile.Create(backupPath+SourceSuffix, 0o644)
	if err != nil {
		return err
	}
	defer f.Abort()
	rec := sourceHeader + "\n" +
		"source " + strconv.Quote(source) + "\n" +
		"backup " + strconv.Quote(filepath.Base(backupPath)) + "\n" +
		"sha256 " + sum + "\n"
	if _, err := f.WriteString(rec); err != nil {
		return fmt.Errorf("record source of %s: %w", backupPath, err)
	}
	return f.Commit()
}

// readSource returns the board the backup at backupPath was made from, from its source record, and
// false when there is no record or it cannot be trusted (unreadable, malformed, or written for
// another file name or content).
func readSource(backupPath string, hash16 string) (string, bool) {
	fh, err := os.Open(backupPath + SourceSuffix)
	if err != nil {
		return "", false
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxSourceRecord+1))
	if err != nil || len(b) > maxSourceRecord {
		return "", false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 || lines[0] != sourceHeader {
		return "", false
	}
	var source, name, sum string
	var okSource, okName bool
	for _, l := range lines[1:] {
		switch {
		case strings.HasPrefix(l, "source "):
			source, err = strconv.Unquote(strings.TrimPrefix(l, "source "))
			okSource = err == nil
		case strings.HasPrefix(l, "backup "):
			name, err = strconv.Unquote(strings.TrimPrefix(l, "backup "))
			okName = err == nil
		case strings.HasPrefix(l, "sha256 "):
			sum = strings.TrimPrefix(l, "sha256 ")
		}
	}
	if !okSource || !okName || source == "" || name != filepath.Base(backupPath) || !strings.HasPrefix(sum, hash16) {
		return "", false
	}
	return source, true
}

// prune removes our backups of dbName in dir made from the board source beyond the newest keep of
// those, never the file just written, and returns what it removed (or, with dryRun, would remove).
// A backup counts as made from source only when its source record (see SourceSuffix) says so:
// backups of other boards and backups without a record (written before records existed, or by
// hand) are neither counted nor removed. Companions -wal/-shm and the record of a pruned backup go
// with it. The directory is listed again right before removing, and only names that parse as ours
// are candidates.
func prune(dir, dbName, source string, keep int, written string, dryRun bool) ([]string, error) {
	if keep < 0 {
		return nil, nil
	}
	all, err := List(dir, dbName)
	if err != nil {
		return nil, err
	}
	var mine []Listed
	for _, l := range all {
		if s, ok := readSource(l.Path, l.Hash); ok && s == source {
			mine = append(mine, l)
		}
	}
	if len(mine) <= keep {
		return nil, nil
	}
	var removed []string
	for _, l := range mine[:len(mine)-keep] {
		if sameFile(l.Path, written) {
			continue
		}
		if !dryRun {
			if err := os.Remove(l.Path); err != nil && !os.IsNotExist(err) {
				return removed, fmt.Errorf("prune %s: %w", l.Path, err)
			}
			os.Remove(l.Path + "-wal")
			os.Remove(l.Path + "-shm")
			os.Remove(l.Path + SourceSuffix)
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
