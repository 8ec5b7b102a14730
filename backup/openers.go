package backup

import (
	"github.com/kanban-doctor/kanban-doctor/internal/procfs"
)

// Openers is who has a board's files open, from /proc/*/fd.
type Openers struct {
	Pids []int `json:"pids,omitempty"`
	// Unchecked counts processes whose fd table could not be read (another user's, as non-root):
	// they might hold the board open.
	Unchecked int `json:"unchecked,omitempty"`
}

// InUse reports whether the files may be open somewhere.
func (o Openers) InUse() bool { return len(o.Pids) > 0 || o.Unchecked > 0 }

// FindOpeners lists the processes that hold any of paths open, including processes still holding
// a deleted or replaced generation of them (a stale -wal is as much "in use" as a live one). It
// only stats and reads /proc: it opens none of the files.
func FindOpeners(paths ...string) (Openers, error) {
	s, err := procfs.Holders(paths...)
	if err != nil {
		return Openers{}, err
	}
	return Openers{Pids: s.Pids(), Unchecked: s.Unchecked}, nil
}

// openInodes reports which of paths some process holds open (the file now at the path).
func openInodes(paths []string) (map[string]bool, error) {
	s, err := procfs.Holders(paths...)
	if err != nil {
		return nil, err
	}
	open := map[string]bool{}
	for _, h := range s.Holders {
		if !h.Stale {
			open[h.Path] = true
		}
	}
	return open, nil
}
