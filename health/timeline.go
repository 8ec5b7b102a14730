package health

import (
	"sort"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
)

// Timeline is when a board's corrupt backups were made: counts per time bucket and the bursts
// (storms) among them.
type Timeline struct {
	Start time.Time `json:"start,omitzero"` // start of the first bucket; absent with no backups
	End   time.Time `json:"end,omitzero"`   // end of the last bucket
	// BucketSeconds is the width of one bucket, chosen so the span fits in about MaxBuckets bars.
	BucketSeconds int64    `json:"bucket_seconds"`
	Buckets       []Bucket `json:"buckets"`
	Bursts        []Burst  `json:"bursts"`
}

// Bucket is one bar of the timeline.
type Bucket struct {
	Start time.Time `json:"start"`
	Units int       `json:"units"`
	Bytes int64     `json:"bytes"`
	// Burst is the 1-based number of the burst this bucket belongs to, 0 when none.
	Burst int `json:"burst,omitempty"`
}

// Burst is a run of at least MinBurst backups, each made within BurstGap of the previous one: the
// signature of a guard that cried wolf in a retry loop.
type Burst struct {
	Start time.Time `json:"start"` // first backup
	End   time.Time `json:"end"`   // last backup
	Units int       `json:"units"`
	Bytes int64     `json:"bytes"`
	// PerMinute is the creation rate over the burst (units per minute; a burst inside one second
	// counts as one second long).
	PerMinute float64 `json:"per_minute"`
}

// Timeline defaults.
const (
	DefaultBurstGap   = 2 * time.Minute
	DefaultMinBurst   = 3
	DefaultMaxBuckets = 60
)

// bucketSizes are the widths a timeline may use, smallest first.
var bucketSizes = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
	2 * 24 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour, 30 * 24 * time.Hour,
	90 * 24 * time.Hour, 365 * 24 * time.Hour,
}

// TimelineOptions shapes BuildTimeline; zero values mean the defaults above.
type TimelineOptions struct {
	BurstGap   time.Duration
	MinBurst   int
	MaxBuckets int
}

// BuildTimeline buckets units by creation time (Unit.Time: the name's time for timestamped
// backups, else the main file's mtime) and finds the bursts. No units: an empty timeline.
func BuildTimeline(units []board.Unit, o TimelineOptions) Timeline {
	if o.BurstGap <= 0 {
		o.BurstGap = DefaultBurstGap
	}
	if o.MinBurst <= 0 {
		o.MinBurst = DefaultMinBurst
	}
	if o.MaxBuckets <= 0 {
		o.MaxBuckets = DefaultMaxBuckets
	}
	tl := Timeline{Buckets: []Bucket{}, Bursts: []Burst{}}
	if len(units) == 0 {
		return tl
	}
	us := append([]board.Unit(nil), units...)
	sort.SliceStable(us, func(i, j int) bool { return us[i].Time.Before(us[j].Time) })
	first, last := us[0].Time, us[len(us)-1].Time

	// Bursts: split the sorted times wherever the gap exceeds BurstGap.
	startIdx := 0
	var spans [][2]int
	for i := 1; i <= len(us); i++ {
		if i < len(us) && us[i].Time.Sub(us[i-1].Time) <= o.BurstGap {
			continue
		}
		if i-startIdx >= o.MinBurst {
			spans = append(spans, [2]int{startIdx, i})
		}
		startIdx = i
	}
	for _, sp := range spans {
		b := Burst{Start: us[sp[0]].Time, End: us[sp[1]-1].Time, Units: sp[1] - sp[0]}
		for _, u := range us[sp[0]:sp[1]] {
			b.Bytes += u.Bytes()
		}
		secs := b.End.Sub(b.Start).Seconds()
		if secs < 1 {
			secs = 1
		}
		b.PerMinute = float64(b.Units) * 60 / secs
		tl.Bursts = append(tl.Bursts, b)
	}

	// Buckets: the smallest standard width that fits the span in MaxBuckets bars, aligned to it.
	span := last.Sub(first)
	width := bucketSizes[len(bucketSizes)-1]
	for _, w := range bucketSizes {
		if span/w < time.Duration(o.MaxBuckets) {
			width = w
			break
		}
	}
	tl.BucketSeconds = int64(width / time.Second)
	tl.Start = first.Truncate(width)
	n := int(last.Sub(tl.Start)/width) + 1
	tl.End = tl.Start.Add(time.Duration(n) * width)
	tl.Buckets = make([]Bucket, n)
	for i := range tl.Buckets {
		tl.Buckets[i].Start = tl.Start.Add(time.Duration(i) * width)
	}
	for _, u := range us {
		i := int(u.Time.Sub(tl.Start) / width)
		tl.Buckets[i].Units++
		tl.Buckets[i].Bytes += u.Bytes()
	}
	for bi, b := range tl.Bursts {
		lo := int(b.Start.Sub(tl.Start) / width)
		hi := int(b.End.Sub(tl.Start) / width)
		for i := lo; i <= hi; i++ {
			if tl.Buckets[i].Burst == 0 {
				tl.Buckets[i].Burst = bi + 1
			}
		}
	}
	return tl
}
