package board

import "time"

// BackupSummary is the backup inventory of one board in the shape reports print.
type BackupSummary struct {
	Count        int                `json:"count"`
	Bytes        int64              `json:"bytes"`
	ByGeneration map[Generation]int `json:"by_generation"`
	WithWAL      int                `json:"with_wal"`
	WithSHM      int                `json:"with_shm"`
	Orphans      int                `json:"orphan_companions"`
	First        *time.Time         `json:"first,omitempty"`
	Last         *time.Time         `json:"last,omitempty"`
	Units        []Unit             `json:"units,omitempty"`
}

// Summarize condenses an inventory; withUnits keeps the unit list.
func Summarize(inv Inventory, withUnits bool) BackupSummary {
	s := BackupSummary{Count: inv.Count(), Bytes: inv.Bytes(), ByGeneration: inv.ByGeneration(), Orphans: len(inv.Orphans)}
	for i, u := range inv.Units {
		if u.WAL != nil {
			s.WithWAL++
		}
		if u.SHM != nil {
			s.WithSHM++
		}
		t := u.Time
		if i == 0 || t.Before(*s.First) {
			s.First = &t
		}
		if i == 0 || t.After(*s.Last) {
			s.Last = &t
		}
	}
	if withUnits {
		s.Units = inv.Units
	}
	return s
}

// Report is a board with its backup inventory: what `kanban-doctor boards` prints.
type Report struct {
	Board
	Backups BackupSummary `json:"backups"`
}
