package reports

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Progress shows the progress of long work (large scans, big checks, a harness run) as a bar on a
// terminal. It is meant for stderr: on anything that is not a terminal it writes nothing, so
// redirected output and JSON on stdout stay clean. A nil *Progress is valid and silent, and every
// method is safe for concurrent use.
type Progress struct {
	mu  sync.Mutex
	w   io.Writer
	bar *progressbar.ProgressBar
}

// NewProgress returns a Progress writing to w (normally os.Stderr), or nil when w is not a
// terminal, so callers can pass the result on unconditionally.
func NewProgress(w io.Writer) *Progress {
	if !isTerminal(w) {
		return nil
	}
	return &Progress{w: w}
}

// Start begins a stage: desc names it ("hashing backups"), total is its size (bytes when bytes is
// true, else items); total < 0 shows a spinner. A stage still running is finished first.
func (p *Progress) Start(desc string, total int64, bytes bool) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finishLocked()
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionUseANSICodes(true),
	}
	if bytes {
		opts = append(opts, progressbar.OptionShowBytes(true), progressbar.OptionUseIECUnits(true))
	} else {
		opts = append(opts, progressbar.OptionShowCount())
	}
	p.bar = progressbar.NewOptions64(total, opts...)
	p.bar.RenderBlank()
}

// Add advances the current stage by n.
func (p *Progress) Add(n int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Add64(n)
	}
}

// Done finishes the current stage and clears its line.
func (p *Progress) Done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finishLocked()
}

func (p *Progress) finishLocked() {
	if p.bar != nil {
		p.bar.Finish()
		p.bar = nil
	}
}

// isTerminal reports whether w is a terminal (not merely a character device such as /dev/null).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && f != nil && term.IsTerminal(int(f.Fd()))
}
