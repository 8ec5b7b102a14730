package board

import (
	"strconv"
	"strings"
	"time"
)

// Generation is the naming scheme a corrupt-backup file belongs to.
type Generation string

const (
	GenTimestamped Generation = "timestamped" // <db>.corrupt.YYYYmmdd_HHMMSS[.N].bak (local time)
	GenContent     Generation = "content"     // <db>.corrupt.<16 hex>.bak
	GenGeneric     Generation = "generic"     // any other <db>.corrupt.*.bak
)

// Companion says which part of a backup unit a file is.
type Companion string

const (
	PartMain Companion = ""
	PartWAL  Companion = "wal"
	PartSHM  Companion = "shm"
)

// BackupName is a parsed corrupt-backup file name.
type BackupName struct {
	Unit string     // the unit's main file name (the name without a -wal/-shm suffix)
	Part Companion  // which part this file is
	Gen  Generation // naming generation
	Time time.Time  // timestamped: the time in the name (local time zone)
	Seq  int        // timestamped: the .N collision suffix, 0 when absent
	Hash string     // content: the 16 hex digits
}

// ParseBackupName parses name as a corrupt backup of the database whose base name is dbName
// (normally "kanban.db"). It returns false for every other name. It never panics.
func ParseBackupName(dbName, name string) (BackupName, bool) {
	if dbName == "" {
		return BackupName{}, false
	}
	bn := BackupName{Unit: name}
	switch {
	case strings.HasSuffix(name, ".bak-wal"):
		bn.Part, bn.Unit = PartWAL, strings.TrimSuffix(name, "-wal")
	case strings.HasSuffix(name, ".bak-shm"):
		bn.Part, bn.Unit = PartSHM, strings.TrimSuffix(name, "-shm")
	}
	prefix := dbName + ".corrupt."
	// The prefix and the ".bak" suffix must not overlap, and something must stand between them.
	if len(bn.Unit) <= len(prefix)+len(".bak") || !strings.HasPrefix(bn.Unit, prefix) || !strings.HasSuffix(bn.Unit, ".bak") {
		return BackupName{}, false
	}
	mid := bn.Unit[len(prefix) : len(bn.Unit)-len(".bak")]
	if IsHash16(mid) {
		bn.Gen, bn.Hash = GenContent, mid
		return bn, true
	}
	if t, seq, ok := parseStamp(mid); ok {
		bn.Gen, bn.Time, bn.Seq = GenTimestamped, t, seq
		return bn, true
	}
	bn.Gen = GenGeneric
	return bn, true
}

// IsHash16 reports whether s is the 16 lowercase hex digits of a content-addressed name.
func IsHash16(s string) bool {
	if len(s) != 16 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// parseStamp parses "YYYYmmdd_HHMMSS" or "YYYYmmdd_HHMMSS.N" (N >= 1).
func parseStamp(s string) (time.Time, int, bool) {
	stamp, seqStr, hasSeq := strings.Cut(s, ".")
	if len(stamp) != 15 || stamp[8] != '_' {
		return time.Time{}, 0, false
	}
	t, err := time.ParseInLocation("20060102_150405", stamp, time.Local)
	if err != nil {
		return time.Time{}, 0, false
	}
	seq := 0
	if hasSeq {
		if seqStr == "" || len(seqStr) > 9 || seqStr[0] == '0' {
			return time.Time{}, 0, false
		}
		for i := 0; i < len(seqStr); i++ {
			if seqStr[i] < '0' || seqStr[i] > '9' {
				return time.Time{}, 0, false
			}
		}
		seq, _ = strconv.Atoi(seqStr)
	}
	return t, seq, true
}

// FormatTimestamped is the timestamped-generation name for t (local time) and seq.
func FormatTimestamped(dbName string, t time.Time, seq int) string {
	s := dbName + ".corrupt." + t.In(time.Local).Format("20060102_150405")
	if seq > 0 {
		s += "." + strconv.Itoa(seq)
	}
	return s + ".bak"
}

// FormatContent is the content-addressed name for a 16-hex-digit hash prefix.
func FormatContent(dbName, hash16 string) string {
	return dbName + ".corrupt." + hash16 + ".bak"
}
