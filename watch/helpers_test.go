package watch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
)

func TestMain(m *testing.M) {
	reexec.Init()
	os.Exit(m.Run())
}

// eventLog collects the events a watcher emits.
type eventLog struct {
	mu     sync.Mutex
	events []Event
	notify chan struct{}
}

func newEventLog() *eventLog { return &eventLog{notify: make(chan struct{}, 1)} }

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	select {
	case l.notify <- struct{}{}:
	default:
	}
}

// all returns the events named name (all when name is empty).
func (l *eventLog) all(name string) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, e := range l.events {
		if name == "" || e.Event == name {
			out = append(out, e)
		}
	}
	return out
}

// waitFor waits until cond holds on the log, failing the test after timeout.
func (l *eventLog) waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(timeout)
	for !cond() {
		select {
		case <-l.notify:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
	}
}

// running is a watcher started by startWatcher.
type running struct {
	w      *Watcher
	log    *eventLog
	url    string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// startWatcher runs a watcher over opts.Paths with a real HTTP listener on loopback and waits
// until it is ready.
func startWatcher(t testing.TB, opts Options) *running {
	t.Helper()
	l := newEventLog()
	opts.hook = l.add
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.Listener = ln
	if opts.Events == nil {
		opts.Events = io.Discard
	}
	w, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, log: l, url: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	t.Cleanup(r.stop)
	deadline := time.Now().Add(10 * time.Second)
	for !w.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("watcher not ready after 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return r
}

func (r *running) stop() {
	r.once.Do(func() {
		r.cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			panic("watcher did not stop within 10s")
		}
	})
}

// metric fetches /metrics over HTTP and returns the value of the series named by name and labels
// ({board="x"}), or -1 when absent.
func (r *running) metric(t testing.TB, series string) float64 {
	t.Helper()
	resp, err := http.Get(r.url + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatalf("metric %s: %v", series, err)
	}
	return v
}

// mkBoardDir makes a directory with an (empty) kanban.db placeholder-free layout: backups need no
// live DB beside them to be counted, and the watcher never opens the DB.
func mkdir(t testing.TB, parts ...string) string {
	t.Helper()
	d := filepath.Join(parts...)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// writeBackup writes a timestamped-generation backup unit named by seq, as the guard's plain copy
// does (create, write, close), with an optional -wal companion.
func writeBackup(t testing.TB, dir string, seq int, data []byte, wal []byte) string {
	t.Helper()
	name := board.FormatTimestamped(board.DBName, time.Date(2026, 5, 1, 12, 0, 0, 0, time.Local), seq)
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if wal != nil {
		if err := os.WriteFile(filepath.Join(dir, name+"-wal"), wal, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return name
}

// unitsOnDisk counts backup units in dir the way the inventory does.
func unitsOnDisk(t testing.TB, dir string) int {
	t.Helper()
	inv, err := board.ScanBackups(filepath.Join(dir, board.DBName))
	if err != nil {
		t.Fatal(err)
	}
	return inv.Count()
}

func labels(name, board string) string { return fmt.Sprintf(`%s{board=%q}`, name, board) }

func goVersion() string { return runtime.Version() }

type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(c int)           { r.code = c }

func mustRequest(t testing.TB, path string) *http.Request {
	req, err := http.NewRequest("GET", "http://x"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
