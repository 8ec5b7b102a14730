package watch

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
)

const containChild = "watch-test-contain" // a watcher with --contain on args[0], events on stdout

func init() {
	reexec.Register(containChild, func(args []string) int {
		w, err := New(Options{Paths: args[:1], Contain: true, Settle: 20 * time.Millisecond, StormCount: 1 << 20, Events: os.Stdout})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 8
		}
		w.Run(context.Background()) // until SIGKILL
		return 0
	})
}

// TestContainSurvivesSIGKILLAtAnyPoint kills a containing watcher process at random moments while
// identical backups (with -wal companions) arrive, restarts it, and finally checks that every name
// still holds its complete content, duplicates ended up as links, and no temporary link is left.
func TestContainSurvivesSIGKILLAtAnyPoint(t *testing.T) {
	rounds := 12
	if os.Getenv("KD_SOAK") != "" {
		rounds = 100
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 7))
	main := make([]byte, 512<<10)
	for i := range main {
		main[i] = byte(rng.IntN(256))
	}
	wal := bytes.Repeat([]byte("wal-frame"), 4000)
	seq, kills, containedBeforeKill, midway := 0, 0, 0, 0
	for r := 0; r < rounds; r++ {
		cmd, err := reexec.Command(context.Background(), containChild, dir)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() && !strings.Contains(sc.Text(), `"event":"rescan"`) {
		}
		events := make(chan struct{}, 64)
		contained := make(chan int, 1)
		go func() {
			n := 0
			for sc.Scan() {
				if strings.Contains(sc.Text(), `"event":"contained"`) {
					n++
					select {
					case events <- struct{}{}:
					default:
					}
				}
			}
			contained <- n
		}()
		for k := 0; k < 30; k++ {
			seq++
			writeBackup(t, dir, seq, main, wal)
		}
		// Odd rounds kill at a random moment, which may land before, during or after the round's
		// containment. Even rounds wait for a random number of containments (1 to 20) and then kill
		// within a millisecond, so on any machine speed some kills land in the middle of it.
		if r%2 == 1 {
			time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		} else {
			want := 1 + rng.IntN(20)
			deadline := time.After(30 * time.Second)
		wait:
			for seen := 0; seen < want; seen++ {
				select {
				case <-events:
				case <-deadline:
					break wait
				}
			}
			time.Sleep(time.Duration(rng.IntN(1000)) * time.Microsecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		kills++
		n := <-contained
		containedBeforeKill += n
		if n < 29 { // the round's 30 arrivals hold at least 29 duplicates
			midway++
		}
	}
	// A last, uninterrupted run contains whatever is left and removes leftover links.
	run := startWatcher(t, Options{Paths: []string{dir}, Contain: true, Settle: 20 * time.Millisecond, StormCount: 1 << 20})
	time.Sleep(200 * time.Millisecond)
	stormOf(t, dir, 1<<20, 1) // an unrelated arrival makes the container visit the directory
	run.log.waitFor(t, 60*time.Second, "every duplicate linked", func() bool {
		inv, _ := board.ScanBackups(filepath.Join(dir, board.DBName))
		inodes := map[uint64]bool{}
		for _, u := range inv.Units {
			if bytes.Equal(mustRead(t, u.Main.Path), main) {
				inodes[u.Main.Inode] = true
			}
		}
		return len(inodes) == 1
	})
	run.stop()
	inv, err := board.ScanBackups(filepath.Join(dir, board.DBName))
	if err != nil {
		t.Fatal(err)
	}
	if inv.Count() != seq+1 {
		t.Fatalf("%d units on disk, want %d", inv.Count(), seq+1)
	}
	for _, u := range inv.Units {
		if u.Name == board.FormatTimestamped(board.DBName, time.Date(2026, 5, 1, 12, 0, 0, 0, time.Local), 1<<20+1) {
			continue
		}
		if !bytes.Equal(mustRead(t, u.Main.Path), main) || u.WAL == nil || !bytes.Equal(mustRead(t, u.WAL.Path), wal) {
			t.Fatalf("unit %s lost content", u.Name)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), linkTag) {
			var st, tt syscall.Stat_t
			syscall.Stat(filepath.Join(dir, e.Name()), &st)
			target := strings.TrimPrefix(e.Name()[:strings.Index(e.Name(), linkTag)], ".")
			terr := syscall.Stat(filepath.Join(dir, target), &tt)
			t.Fatalf("leftover temporary link %s (inode %d, %d links, %d bytes); %s: inode %d, %d links, %d bytes, err %v",
				e.Name(), st.Ino, st.Nlink, st.Size, target, tt.Ino, tt.Nlink, tt.Size, terr)
		}
	}
	t.Logf("%d SIGKILLs (%d before the round's containment finished), %d containments finished before a kill, %d units intact",
		kills, midway, containedBeforeKill, inv.Count())
	if containedBeforeKill == 0 || midway == 0 {
		t.Fatal("no kill landed during containment: the test proved nothing")
	}
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
