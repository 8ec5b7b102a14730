package watch

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// The event names written on the event stream. They are a contract (README, deploy/ alert examples).
const (
	EventBackupCreated = "backup-created"
	EventStormStarted  = "storm-started"
	EventStormEnded    = "storm-ended"
	EventVerdict       = "verdict"
	EventContained     = "contained"
	EventWALGrowth     = "wal-growth"
	EventRescan        = "rescan"
)

// How a backup arrival was seen (Event.Via).
const (
	ViaNotify = "fsnotify" // an inotify event
	ViaRescan = "rescan"   // a rescan found it (initial, overflow, periodic, directory recreated)
	ViaPoll   = "poll"     // a --poll scan found it
)

// Rescan reasons (Event.Reason).
const (
	ReasonInitial   = "initial"
	ReasonOverflow  = "overflow"
	ReasonPeriodic  = "periodic"
	ReasonDirectory = "directory" // a board directory appeared, or was deleted and recreated
)

// Event is one JSON line on the event stream. Which fields are set depends on Event.
type Event struct {
	Time  time.Time `json:"time"`
	Event string    `json:"event"`
	Board string    `json:"board"`
	DB    string    `json:"db"`

	// backup-created, contained: the unit's main file name; storm-started: the unit that crossed
	// the threshold.
	Unit       string `json:"unit,omitempty"`
	Generation string `json:"generation,omitempty"`
	Via        string `json:"via,omitempty"`
	// Seen is the board's backups_seen_total after this event.
	Seen int64 `json:"seen,omitempty"`

	// Storms: Storm numbers storms per watcher from 1; Units is the units in the window at the
	// start, or in the whole storm at the end; Threshold and WindowMS are the detector's settings.
	Storm      int64  `json:"storm,omitempty"`
	Units      int    `json:"units,omitempty"`
	Threshold  int    `json:"threshold,omitempty"`
	WindowMS   int64  `json:"window_ms,omitempty"`
	Started    string `json:"started,omitempty"`
	DurationMS int64  `json:"duration_ms,omitempty"`

	// verdict: what the probe child said about the live board.
	Verdict  string `json:"verdict,omitempty"`
	Class    string `json:"class,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Action   string `json:"action,omitempty"` // verdict: "verify" or "exec"; contained: "hardlink"
	Error    string `json:"error,omitempty"`

	// contained: the unit kept (every part of Unit is now a hard link to Kept's part).
	Kept  string `json:"kept,omitempty"`
	Bytes int64  `json:"bytes,omitempty"` // contained: bytes freed; wal-growth: WAL size

	// wal-growth
	WALBytes     int64 `json:"wal_bytes,omitempty"`
	WALThreshold int64 `json:"wal_threshold,omitempty"`

	// rescan
	Reason   string `json:"reason,omitempty"`
	Found    int    `json:"found,omitempty"`    // units found by this scan that were not known
	Vanished int    `json:"vanished,omitempty"` // known units no longer on disk
	Total    int    `json:"total"`              // units on disk (rescan); omitted meaning 0 elsewhere
}

// MarshalJSON drops Total from every event but rescan.
func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event
	if e.Event == EventRescan {
		return json.Marshal(plain(e))
	}
	type noTotal struct {
		plain
		Total int `json:"total,omitempty"`
	}
	return json.Marshal(noTotal{plain: plain(e)})
}

// emitter writes events as JSON lines; safe for concurrent use.
type emitter struct {
	mu   sync.Mutex
	w    io.Writer
	err  error
	hook func(Event) // tests and the watcher itself observe every event
}

func (em *emitter) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	b = append(b, '\n')
	em.mu.Lock()
	if em.w != nil && em.err == nil {
		_, em.err = em.w.Write(b)
	}
	hook := em.hook
	em.mu.Unlock()
	if hook != nil {
		hook(e)
	}
}
