package watch

import (
	"os"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
)

// Verify reasons (Event.Reason on a verdict event that no storm asked for).
const (
	ReasonStartup = "startup" // the first verify of a board: after the initial scan, or when its DB appeared
	// ReasonPeriodic ("periodic") is shared with rescans: a --verify-every verify.
)

// verifyDone is what a periodic verify reports back to the loop, which owns the schedule.
type verifyDone struct {
	st *boardState
}

// planVerify arms t for the next periodic verify, unless one is running. A board gets its first
// verify as soon as its DB exists (after the initial scan, one board after another). After that a
// board's verifies start --verify-every apart (start to start, so a board that turns corrupt is
// seen within one interval plus the verify's own time), and the first periodic round is spread:
// the k-th of n boards verified at start-up is next due k/n of the interval later.
func (w *Watcher) planVerify(t *time.Timer, now time.Time) {
	if w.opts.VerifyEvery <= 0 || w.verifyBusy {
		return
	}
	var next *boardState
	for _, st := range w.boards {
		if st.verifyDue.IsZero() {
			if fi, err := os.Stat(st.b.DB); err != nil || !fi.Mode().IsRegular() {
				continue // no DB yet (board.json only, or a root without its default board)
			}
			st.verifyDue = now
			if !st.verifyTimed {
				// Before the first verdict the timestamp says since when one is due, so a verifier
				// that never answers shows as a growing age.
				st.verifyTimed = true
				w.m.lastVerify.WithLabelValues(st.b.Name).Set(float64(now.UnixNano()) / 1e9)
			}
		}
		if next == nil || st.verifyDue.Before(next.verifyDue) {
			next = st
		}
	}
	if next == nil {
		return
	}
	t.Reset(max(time.Until(next.verifyDue), time.Millisecond))
	w.verifyNext = next
}

// withDB counts the boards whose DB exists now.
func (w *Watcher) withDB() int {
	n := 0
	for _, st := range w.boards {
		if fi, err := os.Stat(st.b.DB); err == nil && fi.Mode().IsRegular() {
			n++
		}
	}
	return n
}

// startVerify runs the planned verify in the background; the loop hears back on w.verified.
func (w *Watcher) startVerify(now time.Time) {
	st := w.verifyNext
	w.verifyNext = nil
	if st == nil || w.verifyBusy || w.boards[st.b.DB] != st {
		return
	}
	if fi, err := os.Stat(st.b.DB); err != nil || !fi.Mode().IsRegular() {
		// The DB went away (a board archived or deleted): its verdict no longer describes anything,
		// and an ageing timestamp would raise KanbanVerifyStale. Scheduled again when it is back.
		st.verifyDue, st.verified, st.verifyTimed = time.Time{}, false, false
		w.m.forgetVerdict(st.b.Name)
		w.vmu.Lock()
		delete(w.verdicts, st.b.DB)
		w.vmu.Unlock()
		return
	}
	reason := ReasonPeriodic
	if !st.verified {
		reason = ReasonStartup
	}
	w.verifyBusy = true
	if st.verified {
		st.verifyDue = now.Add(w.opts.VerifyEvery)
	} else {
		w.startups++
		k, n := w.startups, max(w.withDB(), 1)
		st.verifyDue = now.Add(w.opts.VerifyEvery * time.Duration(min(k, n)) / time.Duration(n))
	}
	b := st.b
	w.actions.Add(1)
	go func() {
		defer w.actions.Done()
		ev := w.verify(w.runCtx, b, 0)
		ev.Reason = reason
		if w.runCtx.Err() != nil {
			return // stopping: a killed child is no verdict
		}
		if w.recordVerdict(b, ev) {
			w.em.emit(ev)
		}
		select {
		case w.verified <- verifyDone{st: st}:
		case <-w.runCtx.Done():
		}
	}()
}

// finishVerify lets the next verify start; a board that is already due again (a verify longer
// than the interval) waits at least a tenth of the interval, so verifies never run back to back.
func (w *Watcher) finishVerify(d verifyDone, now time.Time) {
	w.verifyBusy = false
	d.st.verified = true
	if floor := now.Add(w.opts.VerifyEvery / 10); d.st.verifyDue.Before(floor) {
		d.st.verifyDue = floor
	}
}

// recordVerdict updates the metrics from a verify's event and says whether the board's verdict
// (or class) changed since its last verify, the first verdict included. A verify that gave no
// verdict (the child could not run, timed out, exited 8) counts as an error and changes no other
// metric: the last verdict stands and its timestamp ages; the event is announced when the
// failure is new (a different error, or the first after a verdict).
func (w *Watcher) recordVerdict(b board.Board, ev Event) bool {
	took := time.Duration(ev.DurationMS) * time.Millisecond
	key := ev.Verdict + "/" + ev.Class
	if ev.Error != "" || ev.Verdict == "error" {
		w.m.setVerdict(b.Name, "", "", time.Time{}, took, true)
		key = "failed/" + ev.Error // the first failure of a kind is announced, its repeats are not
	} else {
		w.m.setVerdict(b.Name, ev.Verdict, ev.Class, time.Now(), took, false)
	}
	w.vmu.Lock()
	defer w.vmu.Unlock()
	changed := w.verdicts[b.DB] != key
	w.verdicts[b.DB] = key
	return changed
}
