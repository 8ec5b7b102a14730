// Package reexec runs parts of kanban-doctor as child processes of the same binary (the clean
// confirmation probe, the repro harness's writers), so nothing extra is installed and versions match.
package reexec

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"syscall"
)

// EnvKey names the child entry point in the child's environment.
const EnvKey = "KANBAN_DOCTOR_CHILD"

// Main is a child entry point: it gets the child's arguments and returns its exit status.
type Main func(args []string) int

var registry = map[string]Main{}

// Register makes fn runnable as a child under name. Call it from an init function.
func Register(name string, fn Main) {
	if _, dup := registry[name]; dup {
		panic("reexec: duplicate child " + name)
	}
	registry[name] = fn
}

// Names lists the registered children.
func Names() []string {
	var n []string
	for k := range registry {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Init runs the registered child and exits when this process was started as one; otherwise it
// returns at once. Call it first in main and in TestMain of any package whose tests start children.
func Init() {
	name := os.Getenv(EnvKey)
	if name == "" {
		return
	}
	os.Unsetenv(EnvKey)
	fn, ok := registry[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "kanban-doctor: unknown child %q\n", name)
		os.Exit(8)
	}
	os.Exit(fn(os.Args[1:]))
}

// Command prepares the current binary as child name with args. The child dies with its parent
// (Pdeathsig) and gets its own process group, so a harness can stop a whole tree.
func Command(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	if _, ok := registry[name]; !ok {
		return nil, fmt.Errorf("reexec: unknown child %q", name)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("reexec: find own binary: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Args[0] = "kanban-doctor"
	cmd.Env = append(os.Environ(), EnvKey+"="+name)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		// Kill the whole group: the child and anything it started.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	return cmd, nil
}
