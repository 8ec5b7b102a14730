package watch

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
)

// truncateHalf makes a real board really corrupt (class truncated).
func truncateHalf(t *testing.T, db string) {
	t.Helper()
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(db, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// TestPeriodicVerifyGivesEveryBoardAVerdictWithoutAStorm is acceptance 1 of issue 18: on a hermes
// root with a corrupt board and a healthy one and no storm, the start-up verify (real child
// processes running the probe) puts the corrupt verdict and its class on /metrics; a board that
// turns corrupt later is seen within one --verify-every; an unchanged verdict is not re-announced.
func TestPeriodicVerifyGivesEveryBoardAVerdictWithoutAStorm(t *testing.T) {
	t.Setenv(reexec.EnvKey, verifyChild) // the verify command below is this test binary as that child
	exe, _ := os.Executable()
	root := t.TempDir()
	liveBoard(t, root, 0, kanban.WriterOptions{})
	truncateHalf(t, filepath.Join(root, board.DBName))
	beta := mkdir(t, root, "kanban", "boards", "beta")
	liveBoard(t, beta, 0, kanban.WriterOptions{})
	mkdir(t, root, "kanban", "boards", "gamma") // no DB yet: never verified, no error
	if err := os.WriteFile(filepath.Join(root, "kanban", "boards", "gamma", "board.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}

	const every = 2 * time.Second
	start := time.Now()
	r := startWatcher(t, Options{Paths: []string{root}, VerifyEvery: every, VerifyCommand: []string{exe}, VerifyTimeout: time.Minute})
	verdictOf := func(b string) []Event {
		var out []Event
		for _, e := range r.log.all(EventVerdict) {
			if e.Board == b {
				out = append(out, e)
			}
		}
		return out
	}
	r.log.waitFor(t, 60*time.Second, "start-up verdicts for both boards", func() bool {
		return len(verdictOf("default")) == 1 && len(verdictOf("beta")) == 1
	})
	t.Logf("start-up verdicts for 2 boards %s after start", time.Since(start).Round(time.Millisecond))
	d, b := verdictOf("default")[0], verdictOf("beta")[0]
	if d.Verdict != "corrupt" || d.Class != "truncated" || d.Reason != ReasonStartup || d.Storm != 0 {
		t.Fatalf("default's verdict %+v, want corrupt/truncated from the start-up verify", d)
	}
	if b.Verdict != "healthy" || b.Reason != ReasonStartup {
		t.Fatalf("beta's verdict %+v, want healthy from the start-up verify", b)
	}
	for series, want := range map[string]float64{
		`kanban_doctor_board_verdict{board="default",verdict="corrupt"}`:       1,
		`kanban_doctor_board_verdict{board="default",verdict="healthy"}`:       0,
		`kanban_doctor_board_corrupt_class{board="default",class="truncated"}`: 1,
		`kanban_doctor_board_healthy{board="default"}`:                         0,
		`kanban_doctor_board_verdict{board="beta",verdict="healthy"}`:          1,
		`kanban_doctor_board_healthy{board="beta"}`:                            1,
		`kanban_doctor_verify_errors_total{board="default"}`:                   0,
		`kanban_doctor_verify_every_seconds`:                                   2,
		`kanban_doctor_board_verdict{board="gamma",verdict="healthy"}`:         -1,
		`kanban_doctor_last_verify_timestamp_seconds{board="gamma"}`:           -1,
		`kanban_doctor_verify_duration_seconds_count{board="default"}`:         1,
	} {
		if got := r.metric(t, series); got != want && !(series == `kanban_doctor_verify_duration_seconds_count{board="default"}` && got >= 1) {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if ts := r.metric(t, labels("kanban_doctor_last_verify_timestamp_seconds", "beta")); ts < float64(start.Unix()) {
		t.Errorf("last_verify_timestamp_seconds for beta %v, before the start %d", ts, start.Unix())
	}

	// gamma's DB appears (hermes made the board, then its DB): verified at once, not at the next rescan.
	staging := mkdir(t, root, "staging") // same filesystem: the DB appears whole, by rename
	liveBoard(t, staging, 0, kanban.WriterOptions{})
	appeared := time.Now()
	if err := os.Rename(filepath.Join(staging, board.DBName), filepath.Join(root, "kanban", "boards", "gamma", board.DBName)); err != nil {
		t.Fatal(err)
	}
	r.log.waitFor(t, every+30*time.Second, "gamma's first verdict", func() bool { return len(verdictOf("gamma")) == 1 })
	if g := verdictOf("gamma")[0]; g.Verdict != "healthy" || g.Reason != ReasonStartup {
		t.Fatalf("gamma's verdict %+v, want healthy from its start-up verify", g)
	}
	t.Logf("a board's DB created later: verdict %s after", time.Since(appeared).Round(time.Millisecond))

	// beta turns corrupt: seen within one --verify-every (plus the verify itself).
	truncateHalf(t, filepath.Join(beta, board.DBName))
	broke := time.Now()
	r.log.waitFor(t, every+30*time.Second, "beta's corrupt verdict", func() bool { return len(verdictOf("beta")) == 2 })
	took := time.Since(broke)
	v := verdictOf("beta")[1]
	if v.Verdict != "corrupt" || v.Reason != ReasonPeriodic {
		t.Fatalf("beta's second verdict %+v, want corrupt from a periodic verify", v)
	}
	if took > every+time.Duration(v.DurationMS)*time.Millisecond+time.Second {
		t.Fatalf("corruption seen after %s, more than --verify-every %s plus the verify's %d ms", took, every, v.DurationMS)
	}
	t.Logf("board corrupted later: verdict after %s (verify took %d ms)", took.Round(time.Millisecond), v.DurationMS)
	if got := r.metric(t, `kanban_doctor_board_corrupt_class{board="beta",class="truncated"}`); got != 1 {
		t.Fatalf("beta's corrupt_class = %v, want 1", got)
	}
	// default stayed corrupt through several rounds: no new verdict event, more verifies counted.
	if n := len(verdictOf("default")); n != 1 {
		t.Fatalf("%d verdict events for default's unchanged verdict, want 1", n)
	}
	deadline := start.Add(2*every + 30*time.Second)
	for r.metric(t, `kanban_doctor_verify_duration_seconds_count{board="default"}`) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("default not verified again within %s of the start", time.Since(start))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(verdictOf("default")); n != 1 {
		t.Fatalf("%d verdict events for default's unchanged verdict after its second verify, want 1", n)
	}

	// beta's DB goes away (archived, deleted): within one interval its verdict series are gone, so
	// neither KanbanBoardCorrupt nor KanbanVerifyStale keeps firing for a board that is no more.
	for _, f := range []string{"", "-wal", "-shm"} {
		os.Remove(filepath.Join(beta, board.DBName+f))
	}
	deadline = time.Now().Add(every + 30*time.Second)
	for r.metric(t, `kanban_doctor_board_verdict{board="beta",verdict="corrupt"}`) != -1 ||
		r.metric(t, labels("kanban_doctor_last_verify_timestamp_seconds", "beta")) != -1 {
		if time.Now().After(deadline) {
			t.Fatal("beta's verdict series still exported after its DB was removed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := r.metric(t, `kanban_doctor_board_verdict{board="default",verdict="corrupt"}`); got != 1 {
		t.Fatalf("default's verdict %v after beta went away, want 1", got)
	}
}

// TestLivezFailsWhenTheEventLoopIsStuck: /livez answers from the event loop, so a loop that is
// stuck (here: paused by the test in the middle of handling an inotify event) fails the liveness
// probe, and it answers again once the loop moves.
func TestLivezFailsWhenTheEventLoopIsStuck(t *testing.T) {
	old := LiveTimeout
	LiveTimeout = 300 * time.Millisecond
	t.Cleanup(func() { LiveTimeout = old })
	root := t.TempDir()
	r := startWatcher(t, Options{Paths: []string{root}})
	get := func() int {
		resp, err := http.Get(r.url + "/livez")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := get(); c != 200 {
		t.Fatalf("/livez on an idle watcher: %d, want 200", c)
	}
	r.w.gate.Lock()
	writeBackup(t, root, 1, []byte("x"), nil)    // the loop takes the event and blocks on the gate
	deadline := time.Now().Add(10 * time.Second) // until the event reached the loop
	for get() != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			r.w.gate.Unlock()
			t.Fatal("/livez still 200 10s after the loop got stuck, want 503")
		}
	}
	r.w.gate.Unlock()
	if c := get(); c != 200 {
		t.Fatalf("/livez after the loop moved on: %d, want 200", c)
	}
}

// TestStuckVerifierLeavesTheTimestampToAge: a verify child that hangs is killed at
// --verify-timeout and counted in verify_errors_total; no verdict is invented, and the last-verify
// timestamp stays where it was, so KanbanVerifyStale fires after twice --verify-every.
func TestStuckVerifierLeavesTheTimestampToAge(t *testing.T) {
	root := t.TempDir()
	liveBoard(t, root, 0, kanban.WriterOptions{})
	start := time.Now()
	r := startWatcher(t, Options{Paths: []string{root}, VerifyEvery: 300 * time.Millisecond,
		VerifyCommand: []string{"/bin/sh", "-c", "sleep 60", "verify"}, VerifyTimeout: 200 * time.Millisecond})
	deadline := time.Now().Add(30 * time.Second)
	for r.metric(t, labels("kanban_doctor_verify_errors_total", "default")) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("hanging verifies not counted as errors")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts := r.metric(t, labels("kanban_doctor_last_verify_timestamp_seconds", "default"))
	if ts < float64(start.Unix()) || ts > float64(start.Add(2*time.Second).Unix()) {
		t.Fatalf("last_verify_timestamp_seconds %v, want the time verifies became due (%d)", ts, start.Unix())
	}
	if got := r.metric(t, `kanban_doctor_board_verdict{board="default",verdict="healthy"}`); got != -1 {
		t.Fatalf("a verdict series (%v) after verifies that never answered", got)
	}
	// The failure is announced once (its repeats are the same failure), with its error.
	vs := r.log.all(EventVerdict)
	if len(vs) != 1 || vs[0].Error == "" || vs[0].Verdict != "inconclusive" {
		t.Fatalf("verdict events %+v from verifies that never answered, want one inconclusive with the error", vs)
	}
}
