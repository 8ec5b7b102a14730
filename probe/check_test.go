package probe_test

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kanban-doctor/kanban-doctor/board"
	"github.com/kanban-doctor/kanban-doctor/internal/fixture"
	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
	"github.com/kanban-doctor/kanban-doctor/probe"
)

// TestMain lets the test binary act as the confirmation child and the writer processes.
func TestMain(m *testing.M) {
	reexec.Init()
	os.Exit(m.Run())
}

func fileHash(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func boardAt(t *testing.T, db string) board.Board {
	t.Helper()
	bs, err := board.Discover(db, board.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return bs[0]
}

// TestEveryFixtureGetsItsExpectedVerdict is acceptance 1: each testdata/corrupt fixture gets the
// verdict, class and exit code its expect file names, in both modes (quick, and the parallel full
// check), and a check changes no byte of the fixture's files.
func TestEveryFixtureGetsItsExpectedVerdict(t *testing.T) {
	all, err := fixture.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 16 {
		t.Fatalf("only %d fixtures", len(all))
	}
	for _, f := range all {
		for _, full := range []bool{false, true} {
			name := f.Name + map[bool]string{false: "/quick", true: "/full"}[full]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				db, err := f.CopyDir(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				before := map[string][32]byte{}
				for _, n := range f.Expect.Files {
					before[n] = fileHash(t, filepath.Join(filepath.Dir(db), n))
				}
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				res, err := probe.Check(ctx, boardAt(t, db), probe.Options{Full: full, Backoff: time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				if string(res.Verdict) != f.Expect.Verdict || string(res.Class) != f.Expect.Class || res.Verdict.ExitCode() != f.Expect.Exit {
					t.Errorf("got %s/%q exit %d, want %s/%q exit %d; findings %+v", res.Verdict, res.Class, res.Verdict.ExitCode(),
						f.Expect.Verdict, f.Expect.Class, f.Expect.Exit, res.Findings)
				}
				if res.Verdict == probe.Corrupt && (len(res.Findings) == 0 || res.Findings[0].Hint == "") {
					t.Errorf("corrupt without a finding that carries a hint: %+v", res.Findings)
				}
				for _, n := range f.Expect.Files {
					if fileHash(t, filepath.Join(filepath.Dir(db), n)) != before[n] {
						t.Errorf("%s changed", n)
					}
				}
				if res.Backup != "" {
					t.Errorf("backup written without --backup: %s", res.Backup)
				}
			})
		}
	}
}
