package watch

import "time"

// detector finds storms on one board: more than count new units within window starts one; no new
// unit for quiet ends it. It is driven by the watcher's loop and owns no goroutine.
type detector struct {
	count  int
	window time.Duration
	quiet  time.Duration

	recent  []time.Time // arrivals within window while no storm is active (at most count+1)
	active  bool
	started time.Time
	last    time.Time // latest arrival while active
	units   int       // arrivals since the storm started (including the window that started it)
}

// arrive records a unit that arrived at t (now, or its mtime when a rescan found it) and says
// whether it started a storm.
func (d *detector) arrive(t, now time.Time) bool {
	if d.active {
		d.units++
		if t.After(d.last) {
			d.last = t
		}
		return false
	}
	if now.Sub(t) >= d.window {
		return false // history, not an arrival in any current window
	}
	cut := now.Add(-d.window)
	kept := d.recent[:0]
	for _, r := range d.recent {
		if r.After(cut) {
			kept = append(kept, r)
		}
	}
	d.recent = append(kept, t)
	if len(d.recent) <= d.count {
		return false
	}
	d.active, d.started, d.last, d.units = true, now, t, len(d.recent)
	for _, r := range d.recent {
		if r.After(d.last) {
			d.last = r
		}
	}
	d.recent = d.recent[:0]
	return true
}

// end says whether an active storm has been quiet long enough at now to end.
func (d *detector) end(now time.Time) bool {
	if !d.active || now.Sub(d.last) < d.quiet {
		return false
	}
	d.active = false
	return true
}

// deadline is when an active storm ends if nothing else arrives (zero when none is active).
func (d *detector) deadline() time.Time {
	if !d.active {
		return time.Time{}
	}
	return d.last.Add(d.quiet)
}
