// Package watch is the sidecar that sees corrupt-backup storms as they start, asks the probe (in a
// child process) whether the live database is really sick, and contains storms of identical backups.
//
// Data flow: fsnotify events (or --poll scans) and rescans -> backup arrivals per board (units,
// counted by main file) -> storm detector -> actions (verify child, exec, containment) -> JSON
// events and Prometheus metrics. The watcher never opens a live database, its -wal or its -shm:
// it only stats them, and the probe runs in a separate process.
package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/kanban-doctor/kanban-doctor/board"
)

// ErrOptions is returned by New when the options are inconsistent.
var ErrOptions = errors.New("invalid watch options")

// Options configure a Watcher. Zero values mean the documented defaults.
type Options struct {
	// Paths are kanban.db files, board directories or hermes roots (a root's boards under
	// kanban/boards/ are watched, including boards created later).
	Paths    []string
	Archived bool // also watch kanban/boards/_archived/*

	StormCount  int           // a storm is more than StormCount new units within StormWindow; 0 means 10
	StormWindow time.Duration // 0 means 60s
	Quiet       time.Duration // a storm ends after this long without a new unit; 0 means StormWindow

	Rescan time.Duration // periodic full rescan; 0 means 5m, negative disables
	Poll   time.Duration // > 0: no inotify, a stat-only scan every Poll

	WALThreshold int64         // wal-growth alarm at this -wal size; 0 means 64 MiB, negative disables
	WALEvery     time.Duration // stat every -wal this often (besides inotify writes); 0 means 10s

	// OnStorm actions, run in order when a storm starts: "verify" (probe the live board in a child
	// process) and "exec:CMD" (sh -c CMD with the event in its environment).
	OnStorm       []string
	VerifyCommand []string      // argv the board's DB path is appended to; default: this binary's "verify --json"
	VerifyTimeout time.Duration // 0 means 2m
	// VerifyEvery > 0: verify every board in a child process (the VerifyCommand) once its DB
	// exists, after the initial scan, then every VerifyEvery, one child at a time (shared with
	// --on-storm verify); a verdict event on each change. 0 (the library's default) is off.
	VerifyEvery  time.Duration
	ExecTimeout  time.Duration // 0 means 30s
	ActionOutput io.Writer     // stdout/stderr of exec actions and verify's stderr; nil discards

	Contain bool          // collapse identical arrivals into hard links of the first copy
	Settle  time.Duration // a unit is contained once no part changed for this long; 0 means 2s

	Events   io.Writer    // JSON lines; nil discards
	Listener net.Listener // serve /metrics, /livez, /readyz here when set
	Version  string       // build_info label
	Revision string       // build_info label; "" means unknown
	Logger   *slog.Logger // nil: silent

	// hook sees every event after it is written (tests).
	hook func(Event)
}

func (o *Options) defaults() error {
	if len(o.Paths) == 0 {
		return fmt.Errorf("%w: no path to watch", ErrOptions)
	}
	if o.StormCount == 0 {
		o.StormCount = 10
	}
	if o.StormWindow == 0 {
		o.StormWindow = time.Minute
	}
	if o.Quiet == 0 {
		o.Quiet = o.StormWindow
	}
	if o.Rescan == 0 {
		o.Rescan = 5 * time.Minute
	}
	if o.WALThreshold == 0 {
		o.WALThreshold = 64 << 20
	}
	if o.WALEvery == 0 {
		o.WALEvery = 10 * time.Second
	}
	if o.VerifyTimeout == 0 {
		o.VerifyTimeout = 2 * time.Minute
	}
	if o.ExecTimeout == 0 {
		o.ExecTimeout = 30 * time.Second
	}
	if o.Settle == 0 {
		o.Settle = 2 * time.Second
	}
	if o.StormCount < 1 || o.StormWindow < 0 || o.VerifyEvery < 0 || o.Quiet < 0 || o.Poll < 0 || o.Settle < 0 || o.WALEvery < 0 {
		return fmt.Errorf("%w: counts and durations must be positive", ErrOptions)
	}
	for _, a := range o.OnStorm {
		if a != "verify" && !(strings.HasPrefix(a, "exec:") && len(a) > len("exec:")) {
			return fmt.Errorf("%w: --on-storm %q: want verify or exec:CMD", ErrOptions, a)
		}
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.Revision == "" {
		o.Revision = "unknown"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// target is one path given to the watcher.
type target struct {
	path   string // absolute, symlinks resolved
	isFile bool   // a database file (else a directory)
}

// boardState is what the loop knows about one board.
type boardState struct {
	b      board.Board
	dbName string
	known  map[string]bool // main-file names of the units on disk
	seen   int64
	det    detector
	storm  int64 // id of the active storm
	dirty  bool  // backup bytes need recomputing

	walStat  time.Time
	walAlarm int64 // size at the last wal-growth event; 0 when below the threshold

	verifyDue   time.Time // next periodic verify; zero until the DB is seen
	verified    bool      // a periodic (or start-up) verify finished
	verifyTimed bool      // last_verify_timestamp_seconds has a value
}

// Watcher watches boards for corrupt-backup arrivals. Create it with New and run it with Run.
type Watcher struct {
	opts    Options
	log     *slog.Logger
	em      *emitter
	m       *metrics
	ready   atomic.Bool
	targets []target

	fs          *fsnotify.Watcher
	boards      map[string]*boardState   // by DB path
	dirs        map[string][]*boardState // board directory -> its boards
	watched     map[string]bool          // directories with an inotify watch
	wantDirs    map[string]bool          // directories whose appearance or removal triggers a sync
	boardDirs   map[string]bool          // kanban/boards (and _archived): any child directory is a board
	needSync    bool
	lastRecount time.Duration   // how long the last backup_bytes refresh took
	names       map[string]bool // board names in use
	stormSeq    int64

	cont    *container
	runCtx  context.Context // Run's context: actions and containment stop with it
	actions sync.WaitGroup
	gate    sync.Mutex // held by tests to pause the event consumer

	verifySem  chan struct{} // one verify child at a time
	verified   chan verifyDone
	verifyBusy bool        // a periodic verify is running (loop only)
	verifyNext *boardState // the board planVerify armed the timer for
	verifyPlan bool        // boards changed: plan again
	startups   int         // start-up verifies started (spreads the first periodic round)
	vmu        sync.Mutex
	verdicts   map[string]string  // DB -> "verdict/class" of the last verdict
	ping       chan chan struct{} // /livez asks the loop to answer
}

// New checks the options and resolves the paths. Nothing is watched until Run.
func New(opts Options) (*Watcher, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	w := &Watcher{opts: opts, log: opts.Logger, m: newMetrics(opts.Version, opts.Revision, opts.VerifyEvery),
		boards: map[string]*boardState{}, dirs: map[string][]*boardState{}, watched: map[string]bool{}, names: map[string]bool{},
		verifySem: make(chan struct{}, 1), verified: make(chan verifyDone), verdicts: map[string]string{},
		ping: make(chan chan struct{})}
	w.em = &emitter{w: opts.Events, hook: opts.hook}
	for _, p := range opts.Paths {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", p, err)
		}
		abs, err := filepath.Abs(real)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", p, err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", p, err)
		}
		if !fi.IsDir() && !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("watch %s: not a regular file or directory", p)
		}
		w.targets = append(w.targets, target{path: abs, isFile: !fi.IsDir()})
	}
	if opts.Contain {
		w.cont = newContainer(w)
	}
	return w, nil
}

// Handler serves /metrics (Prometheus), /livez (the event loop answers within LiveTimeout; during
// the initial scan the process answering is enough) and /readyz (ready once the initial scan is done).
func (w *Watcher) Handler() http.Handler { return w.m.handler(&w.ready, w.live) }

// LiveTimeout bounds how long /livez waits for the event loop (tests shorten it).
var LiveTimeout = 5 * time.Second

// live asks the event loop to answer: a loop stuck in a handler, a deadlock or a stopped loop
// fails /livez, so a liveness probe restarts the watcher.
func (w *Watcher) live() error {
	if !w.ready.Load() {
		return nil // the initial scan runs before the loop; it can take long on a big root
	}
	reply := make(chan struct{})
	t := time.NewTimer(LiveTimeout)
	defer t.Stop()
	select {
	case w.ping <- reply:
	case <-t.C:
		return fmt.Errorf("event loop did not answer within %s", LiveTimeout)
	}
	select {
	case <-reply:
		return nil
	case <-t.C:
		return fmt.Errorf("event loop did not answer within %s", LiveTimeout)
	}
}

// Ready reports whether the initial scan is done.
func (w *Watcher) Ready() bool { return w.ready.Load() }

// Run watches until ctx is done, then stops its children, flushes and returns nil. It returns an
// error only when watching cannot start.
func (w *Watcher) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w.runCtx = ctx
	var srv *http.Server
	if w.opts.Listener != nil {
		srv = &http.Server{Handler: w.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(w.opts.Listener)
		defer func() {
			sctx, c := context.WithTimeout(context.Background(), time.Second)
			srv.Shutdown(sctx)
			c()
		}()
	}
	var contDone chan struct{}
	if w.cont != nil {
		contDone = make(chan struct{})
		go func() { defer close(contDone); w.cont.run(ctx) }()
	}
	var evCh <-chan fsnotify.Event
	var errCh <-chan error
	if w.opts.Poll == 0 {
		fw, err := fsnotify.NewBufferedWatcher(1024)
		if err != nil {
			return fmt.Errorf("start inotify: %w (try --poll)", err)
		}
		w.fs = fw
		defer fw.Close()
		evCh, errCh = fw.Events, fw.Errors
	}
	start := time.Now()
	w.sync(ReasonInitial, true)
	w.ready.Store(true)
	w.log.Info("watching", "boards", len(w.boards), "dirs", len(w.watched), "poll", w.opts.Poll, "took", time.Since(start))

	stormTimer := time.NewTimer(time.Hour)
	stormTimer.Stop()
	bytesTimer := time.NewTimer(time.Hour)
	bytesTimer.Stop()
	bytesArmed := false
	var rescanC, pollC <-chan time.Time
	if w.opts.Rescan > 0 && w.opts.Poll == 0 {
		t := time.NewTicker(w.opts.Rescan)
		defer t.Stop()
		rescanC = t.C
	}
	if w.opts.Poll > 0 {
		t := time.NewTicker(w.opts.Poll)
		defer t.Stop()
		pollC = t.C
	}
	walT := time.NewTicker(w.opts.WALEvery)
	defer walT.Stop()
	verifyTimer := time.NewTimer(time.Hour)
	verifyTimer.Stop()
	w.verifyPlan = true

	after := func() {
		if w.needSync {
			w.needSync = false
			w.sync(ReasonDirectory, false)
		}
		w.armStorm(stormTimer)
		if w.verifyPlan {
			w.verifyPlan = false
			w.planVerify(verifyTimer, time.Now())
		}
		if !bytesArmed && w.anyDirty() {
			// At most one stat scan per second, and never more than a tenth of the time.
			bytesTimer.Reset(max(time.Second, 10*w.lastRecount))
			bytesArmed = true
		}
	}
	after()
	for {
		select {
		case <-ctx.Done():
			return w.shutdown(cancel, contDone)
		case ev, ok := <-evCh:
			if !ok {
				evCh = nil
				continue
			}
			w.gate.Lock()
			now := time.Now()
			w.handle(ev, now)
			for n := 0; n < 512; n++ { // drain what is already queued before the follow-up work
				select {
				case ev, ok = <-evCh:
					if ok {
						w.handle(ev, now)
						continue
					}
				default:
				}
				break
			}
			w.gate.Unlock()
			after()
		case err, ok := <-errCh:
			if !ok {
				errCh = nil
				continue
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.log.Warn("inotify queue overflowed: rescanning every board")
				w.sync(ReasonOverflow, true)
			} else {
				w.log.Error("inotify", "err", err)
			}
			after()
		case now := <-stormTimer.C:
			w.endStorms(now)
			after()
		case <-bytesTimer.C:
			bytesArmed = false
			w.recountBytes()
			after()
		case <-rescanC:
			w.sync(ReasonPeriodic, true)
			after()
		case <-pollC:
			w.sync(ViaPoll, true)
			w.checkWALs(time.Now())
			after()
		case now := <-walT.C:
			w.checkWALs(now)
		case now := <-verifyTimer.C:
			w.startVerify(now)
			w.verifyPlan = true
			after()
		case reply := <-w.ping:
			close(reply)
		case d := <-w.verified:
			w.finishVerify(d, time.Now())
			w.verifyPlan = true
			after()
		}
	}
}

func (w *Watcher) shutdown(cancel context.CancelFunc, contDone chan struct{}) error {
	cancel() // kills action children (process groups) and stops containment between files
	done := make(chan struct{})
	go func() { w.actions.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		w.log.Warn("actions did not finish within 3s")
	}
	if contDone != nil {
		select {
		case <-contDone:
		case <-time.After(time.Second):
		}
	}
	w.log.Info("stopped")
	return nil
}

// boardCand is a board the targets name right now.
type boardCand struct{ name, db string }

// wanted lists the boards the targets name now and the directories worth watching for structure:
// each board directory's parent (deleted and recreated boards), a root's kanban/ and kanban/boards/.
func (w *Watcher) wanted() (cands []boardCand, structural []string, boardsDirs map[string]bool) {
	boardsDirs = map[string]bool{}
	for _, t := range w.targets {
		if t.isFile {
			dir := filepath.Dir(t.path)
			cands = append(cands, boardCand{board.NameFor(dir), t.path})
			structural = append(structural, filepath.Dir(dir))
			continue
		}
		cands = append(cands, boardCand{board.NameFor(t.path), filepath.Join(t.path, board.DBName)})
		bd := filepath.Join(t.path, "kanban", "boards")
		structural = append(structural, filepath.Dir(t.path), filepath.Join(t.path, "kanban"), bd)
		boardsDirs[bd] = true
		cands = append(cands, childBoards(bd, "")...)
		if w.opts.Archived {
			ad := filepath.Join(bd, "_archived")
			structural = append(structural, ad)
			boardsDirs[ad] = true
			cands = append(cands, childBoards(ad, "_archived/")...)
		}
	}
	return cands, structural, boardsDirs
}

func childBoards(dir, prefix string) []boardCand {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []boardCand
	for _, e := range entries {
		if !e.IsDir() || (prefix == "" && !board.SlugPattern.MatchString(e.Name())) {
			continue
		}
		out = append(out, boardCand{prefix + e.Name(), filepath.Join(dir, e.Name(), board.DBName)})
	}
	return out
}

// sync adds watches for every wanted directory that exists and is not watched yet (structure
// first, so nothing created meanwhile is missed), then scans each board that got a new watch, or
// every board when all is set. In poll mode it only scans.
func (w *Watcher) sync(reason string, all bool) {
	now := time.Now()
	w.verifyPlan = true // a board or its DB may have appeared
	for round := 0; round < 3; round++ {
		cands, structural, bds := w.wanted()
		w.boardDirs = bds
		w.wantDirs = map[string]bool{}
		for _, d := range structural {
			w.wantDirs[d] = true
			w.addWatch(d)
		}
		fresh := false
		for _, c := range cands {
			st := w.boards[c.db]
			if st == nil {
				name := c.name
				if w.names[name] { // two targets with a board of the same name: tell them apart
					name += "@" + filepath.Dir(c.db)
				}
				w.names[name] = true
				st = &boardState{b: board.New(name, c.db), dbName: filepath.Base(c.db), known: map[string]bool{},
					det: detector{count: w.opts.StormCount, window: w.opts.StormWindow, quiet: w.opts.Quiet}}
				w.boards[c.db] = st
				w.dirs[st.b.Dir] = append(w.dirs[st.b.Dir], st)
				w.m.board(st.b.Name)
				w.checkWAL(st, now, true)
			}
			w.wantDirs[st.b.Dir] = true
			newWatch := w.addWatch(st.b.Dir)
			if all || newWatch {
				r := reason
				if !all {
					r = ReasonDirectory
				}
				w.scan(st, r, now)
				fresh = fresh || newWatch
			}
		}
		if !fresh || all {
			return
		}
		all = false // a new board directory appeared: look again for boards created meanwhile
	}
}

// addWatch watches dir if it exists and is not watched; it says whether a watch was added.
func (w *Watcher) addWatch(dir string) bool {
	if w.fs == nil || w.watched[dir] {
		return false
	}
	fi, err := os.Stat(dir)
	if err != nil || !fi.IsDir() {
		return false
	}
	if err := w.fs.Add(dir); err != nil {
		w.log.Warn("watch directory", "dir", dir, "err", err)
		return false
	}
	w.watched[dir] = true
	w.log.Debug("watching", "dir", dir)
	return true
}

// handle processes one fsnotify event.
func (w *Watcher) handle(ev fsnotify.Event, now time.Time) {
	name := ev.Name
	dir, base := filepath.Dir(name), filepath.Base(name)
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		if w.watched[name] { // a watched directory went away (its watch is gone with it)
			delete(w.watched, name)
			w.fs.Remove(name)
			for _, st := range w.dirs[name] {
				w.log.Info("board directory gone", "board", st.b.Name, "dir", name)
				clear(st.known)
				st.dirty = true
			}
			w.needSync = true
		}
	}
	if (ev.Has(fsnotify.Create) || ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)) &&
		(w.wantDirs[name] || w.boardDirs[dir]) {
		w.needSync = true
	}
	for _, st := range w.dirs[dir] {
		if base == st.dbName && ev.Has(fsnotify.Create) {
			w.verifyPlan = true // a board's DB appeared: its first verify is due now
			continue
		}
		if base == st.dbName+"-wal" {
			if ev.Has(fsnotify.Write) || ev.Has(fsnotify.Create) {
				w.checkWAL(st, now, false)
			}
			continue
		}
		bn, ok := board.ParseBackupName(st.dbName, base)
		if !ok {
			continue
		}
		st.dirty = true
		if bn.Part != board.PartMain {
			if w.cont != nil && (ev.Has(fsnotify.Create) || ev.Has(fsnotify.Write)) {
				w.cont.touch(filepath.Join(dir, bn.Unit), now)
			}
			continue
		}
		switch {
		case ev.Has(fsnotify.Create):
			if st.known[base] {
				continue
			}
			fi, err := os.Lstat(name)
			if err != nil || !fi.Mode().IsRegular() {
				continue // gone already, or a symlink/directory: not a backup
			}
			w.arrive(st, bn.Unit, bn.Gen, now, ViaNotify, now)
		case ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename):
			delete(st.known, base)
		case ev.Has(fsnotify.Write):
			if w.cont != nil {
				w.cont.touch(name, now)
			}
		}
	}
}

// arrive records a new unit on st. t is its arrival time: now for an inotify event, its mtime for a
// scan (so a storm that overflowed the queue is still seen, and old files are history).
func (w *Watcher) arrive(st *boardState, unit string, gen board.Generation, t time.Time, via string, now time.Time) {
	st.known[unit] = true
	st.seen++
	w.m.seen.WithLabelValues(st.b.Name).Inc()
	if via == ReasonInitial {
		if w.cont != nil {
			// Units that landed within a storm window before the start (a restart mid-storm) are
			// contained like arrivals; older ones are history, indexed only as kept candidates.
			w.cont.add(st, unit, now.Sub(t) < w.opts.StormWindow, now)
		}
		return
	}
	w.em.emit(Event{Time: now, Event: EventBackupCreated, Board: st.b.Name, DB: st.b.DB, Unit: unit,
		Generation: string(gen), Via: via, Seen: st.seen})
	if t.After(now) {
		t = now
	}
	if st.det.arrive(t, now) {
		w.stormSeq++
		st.storm = w.stormSeq
		w.m.storms.WithLabelValues(st.b.Name).Inc()
		w.m.stormActive.WithLabelValues(st.b.Name).Set(1)
		ev := Event{Time: time.Now(), Event: EventStormStarted, Board: st.b.Name, DB: st.b.DB, Unit: unit,
			Storm: st.storm, Units: st.det.units, Threshold: w.opts.StormCount, WindowMS: w.opts.StormWindow.Milliseconds()}
		w.em.emit(ev)
		w.log.Warn("backup storm started", "board", st.b.Name, "storm", st.storm, "units", st.det.units)
		if len(w.opts.OnStorm) > 0 {
			w.startActions(st.b, ev)
		}
	}
	if w.cont != nil {
		w.cont.add(st, unit, true, now)
	}
}

// scan lists st's backups from disk (stat only) and reconciles: unknown units are arrivals,
// vanished ones are forgotten.
func (w *Watcher) scan(st *boardState, reason string, now time.Time) {
	via := ViaRescan
	switch reason {
	case ReasonInitial:
		via = ReasonInitial
	case ViaPoll:
		via = ViaPoll
	}
	inv, err := board.ScanBackups(st.b.DB)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			w.log.Warn("scan backups", "board", st.b.Name, "err", err)
		}
		clear(st.known)
		w.m.backupBytes.WithLabelValues(st.b.Name).Set(0)
		return
	}
	onDisk := make(map[string]bool, len(inv.Units))
	found, vanished := 0, 0
	for _, u := range inv.Units {
		onDisk[u.Name] = true
		if !st.known[u.Name] {
			found++
			w.arrive(st, u.Name, u.Gen, u.Main.ModTime, via, now)
		}
	}
	for n := range st.known {
		if !onDisk[n] {
			delete(st.known, n)
			vanished++
		}
	}
	st.dirty = false
	w.m.backupBytes.WithLabelValues(st.b.Name).Set(float64(diskBytes(inv)))
	w.m.rescans.WithLabelValues(st.b.Name, reason).Inc()
	if reason != ViaPoll || found > 0 || vanished > 0 {
		w.em.emit(Event{Time: time.Now(), Event: EventRescan, Board: st.b.Name, DB: st.b.DB, Reason: reason,
			Found: found, Vanished: vanished, Total: len(inv.Units), Seen: st.seen})
	}
}

// diskBytes is what the inventory occupies, each inode counted once (hard links are free).
func diskBytes(inv board.Inventory) int64 {
	seen := map[uint64]bool{}
	var n int64
	add := func(f board.File) {
		if f.Inode != 0 {
			if seen[f.Inode] {
				return
			}
			seen[f.Inode] = true
		}
		n += f.Size
	}
	for _, u := range inv.Units {
		for _, f := range u.Files() {
			add(f)
		}
	}
	for _, f := range inv.Orphans {
		add(f)
	}
	return n
}

func (w *Watcher) anyDirty() bool {
	for _, st := range w.boards {
		if st.dirty {
			return true
		}
	}
	return false
}

// recountBytes refreshes the backup_bytes gauge of boards whose backups changed (stat only).
func (w *Watcher) recountBytes() {
	start := time.Now()
	defer func() { w.lastRecount = time.Since(start) }()
	for _, st := range w.boards {
		if !st.dirty {
			continue
		}
		st.dirty = false
		inv, err := board.ScanBackups(st.b.DB)
		if err != nil {
			continue
		}
		w.m.backupBytes.WithLabelValues(st.b.Name).Set(float64(diskBytes(inv)))
	}
}

// armStorm sets the timer to the earliest end of an active storm.
func (w *Watcher) armStorm(t *time.Timer) {
	var next time.Time
	for _, st := range w.boards {
		if d := st.det.deadline(); !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	if next.IsZero() {
		return
	}
	t.Reset(max(time.Until(next), time.Millisecond))
}

func (w *Watcher) endStorms(now time.Time) {
	for _, st := range w.boards {
		if !st.det.end(now) {
			continue
		}
		w.m.stormActive.WithLabelValues(st.b.Name).Set(0)
		w.em.emit(Event{Time: now, Event: EventStormEnded, Board: st.b.Name, DB: st.b.DB, Storm: st.storm,
			Units: st.det.units, Started: st.det.started.UTC().Format(time.RFC3339Nano),
			DurationMS: now.Sub(st.det.started).Milliseconds(), Seen: st.seen})
		w.log.Info("backup storm ended", "board", st.b.Name, "storm", st.storm, "units", st.det.units)
		st.storm = 0
	}
}

func (w *Watcher) checkWALs(now time.Time) {
	for _, st := range w.boards {
		w.checkWAL(st, now, true)
	}
}

// checkWAL stats the board's -wal (never opens it) at most once a second unless forced, and emits
// wal-growth when it crosses the threshold, and again each time it doubles.
func (w *Watcher) checkWAL(st *boardState, now time.Time, force bool) {
	if !force && now.Sub(st.walStat) < time.Second {
		return
	}
	st.walStat = now
	var size int64
	if fi, err := os.Stat(st.b.WAL); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	w.m.walBytes.WithLabelValues(st.b.Name).Set(float64(size))
	th := w.opts.WALThreshold
	if th <= 0 {
		return
	}
	if size < th {
		st.walAlarm = 0
		return
	}
	if st.walAlarm == 0 || size >= 2*st.walAlarm {
		st.walAlarm = size
		w.em.emit(Event{Time: now, Event: EventWALGrowth, Board: st.b.Name, DB: st.b.DB, WALBytes: size, WALThreshold: th})
		w.log.Warn("WAL above threshold", "board", st.b.Name, "wal_bytes", size, "threshold", th)
	}
}
