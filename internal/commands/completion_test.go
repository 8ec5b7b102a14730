package commands

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// cliOut runs kanban-doctor in-process and returns its stdout; any exit but 0 fails the test.
func cliOut(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, errOut)
	}
	return out
}

// The bash script, run by a real bash, completes every command from a prefix and every flag of
// every command from its own prefix.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script := filepath.Join(t.TempDir(), "kd.bash")
	if err := os.WriteFile(script, []byte(cliOut(t, "completion", "bash")), 0o644); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) []string {
		t.Helper()
		var q []string
		for _, w := range words {
			q = append(q, "'"+w+"'")
		}
		prog := "source " + script + "; COMP_WORDS=(" + strings.Join(q, " ") + "); COMP_CWORD=" +
			itoa(len(words)-1) + "; _kanban_doctor; printf '%s\\n' \"${COMPREPLY[@]}\""
		out, err := exec.Command(bash, "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v: %s", err, out)
		}
		return strings.Fields(string(out))
	}
	app := New(io.Discard, io.Discard)
	for _, cmd := range app.Commands {
		if got := complete("kanban-doctor", cmd.Name[:3]); !contains(got, cmd.Name) {
			t.Errorf("%q completes to %v, want %s among them", cmd.Name[:3], got, cmd.Name)
		}
		for _, f := range cmd.Flags {
			for _, n := range f.Names() {
				want := dashed(n)
				prefix := want[:min(len(want), 4)]
				if got := complete("kanban-doctor", cmd.Name, prefix); !contains(got, want) {
					t.Errorf("%s %s completes to %v, want %s among them", cmd.Name, prefix, got, want)
				}
			}
		}
	}
	if got := complete("kanban-doctor", "completion", "z"); !contains(got, "zsh") {
		t.Errorf("completion z completes to %v", got)
	}
	if got := complete("kanban-doctor", "verify", "--ful"); len(got) != 1 || got[0] != "--full" {
		t.Errorf("verify --ful completes to %v, want only --full", got)
	}
}

// fish gets a line for every command and every flag; the man page names every command.
func TestFishCompletionAndManPage(t *testing.T) {
	fish := cliOut(t, "completion", "fish")
	man := cliOut(t, "man")
	if !strings.HasPrefix(strings.TrimSpace(man), ".nh") || !strings.Contains(man, ".TH kanban-doctor") {
		t.Errorf("man page has no roff header: %.80q", man)
	}
	app := New(io.Discard, io.Discard)
	for _, cmd := range app.Commands {
		if !strings.Contains(fish, " -a "+cmd.Name+" ") {
			t.Errorf("fish: no completion for command %s", cmd.Name)
		}
		if !strings.Contains(man, cmd.Name) {
			t.Errorf("man page does not name %s", cmd.Name)
		}
		for _, f := range cmd.Flags {
			for _, n := range f.Names() {
				opt := "-l " + n
				if len(n) == 1 {
					opt = "-s " + n
				}
				if !strings.Contains(fish, "__fish_seen_subcommand_from "+cmd.Name+"' "+opt) {
					t.Errorf("fish: no completion for %s %s", cmd.Name, dashed(n))
				}
			}
		}
	}
	if groff, err := exec.LookPath("groff"); err == nil {
		cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
		cmd.Stdin = strings.NewReader(man)
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("groff: %v: %s", err, out)
		}
	}
	if code, _, _ := runCLI(t, "completion", "tcsh"); code != 4 {
		t.Errorf("completion tcsh: exit %d, want 4", code)
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func itoa(n int) string { return strconv.Itoa(n) }
