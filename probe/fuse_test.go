package probe_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/kanban-doctor/kanban-doctor/internal/kanban"
	"github.com/kanban-doctor/kanban-doctor/internal/reexec"
	"github.com/kanban-doctor/kanban-doctor/probe"
)

// fuseChild serves a loopback (passthrough) FUSE filesystem of args[0] on args[1]. It prints
// "mounted" once the kernel has the mount, and unmounts on SIGTERM or when stdin closes. A mount
// refused with EPERM prints "eperm: ..." and exits 3, so the test can skip and say why.
const fuseChild = "probe-test-fuse-loopback"

func init() {
	reexec.Register(fuseChild, func(args []string) int {
		root, err := fs.NewLoopbackRoot(args[0])
		if err != nil {
			fmt.Println("error: loopback root:", err)
			return 8
		}
		// mount(2) directly; fall back to a fusermount helper only when one is installed, so a
		// refused mount reports the kernel's errno and not a missing binary.
		_, noHelper := exec.LookPath("fusermount3")
		if noHelper != nil {
			_, noHelper = exec.LookPath("fusermount")
		}
		srv, err := fs.Mount(args[1], root, &fs.Options{MountOptions: fuse.MountOptions{
			DirectMount: true, DirectMountStrict: noHelper != nil, FsName: "kd-loopback", Name: "kdloop"}})
		if err != nil {
			if errors.Is(err, syscall.EPERM) {
				fmt.Println("eperm:", err)
				return 3
			}
			fmt.Println("error: mount:", err)
			return 8
		}
		fmt.Println("mounted")
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM)
		go func() {
			io.Copy(io.Discard, os.Stdin)
			stop <- syscall.SIGTERM
		}()
		<-stop
		if err := srv.Unmount(); err != nil {
			fmt.Fprintln(os.Stderr, "unmount:", err, "- detaching")
			syscall.Unmount(args[1], syscall.MNT_DETACH)
		}
		return 0
	})
}

// lockedBuffer is a child's stdout, read while the child still writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// isMountPoint says whether dir is a mount point in this mount namespace.
func isMountPoint(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// mountLoopback mounts a passthrough FUSE filesystem of backing on a new directory, served by a
// child process (this process only uses the mount), and returns the mount point. Cleanup stops
// the child and makes sure the mount is gone. It skips when /dev/fuse is missing or mount(2)
// is refused with EPERM.
func mountLoopback(t *testing.T, backing string) string {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no FUSE here: /dev/fuse is missing (%v)", err)
	}
	mnt := t.TempDir() // before the cleanup below, so the unmount runs before its removal
	cmd, err := reexec.Command(context.Background(), fuseChild, backing, mnt)
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("FUSE child did not exit on SIGTERM, killed: %s", out.String())
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if isMountPoint(t, mnt) {
			t.Errorf("FUSE child left %s mounted: detaching it", mnt)
			if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
				t.Errorf("lazy unmount %s: %v", mnt, err)
			}
		}
	})
	deadline := time.After(10 * time.Second)
	for !strings.Contains(out.String(), "mounted\n") {
		select {
		case <-done:
			if s := out.String(); strings.HasPrefix(s, "eperm:") {
				t.Skipf("the kernel refused the FUSE mount (EPERM: needs CAP_SYS_ADMIN or a fusermount helper): %s", strings.TrimSpace(s))
			}
			t.Fatalf("FUSE child exited before mounting (%v): %s", waitErr, out.String())
		case <-deadline:
			t.Fatalf("FUSE child did not mount %s within 10s: %s", mnt, out.String())
		case <-time.After(5 * time.Millisecond):
		}
	}
	if !isMountPoint(t, mnt) {
		t.Fatalf("child said mounted but %s is not a mount point", mnt)
	}
	return mnt
}

// TestBoardOnFUSEIsANetworkFSHazard proves the network-fs hazard on the real kernel FUSE path,
// not a faked statfs: a WAL board checked through a loopback FUSE mount of its directory
// (served by another process) is reported as on a fuse filesystem, naming the mounted
// directory, and is still judged healthy; the same files checked through their real path get
// no network-fs hazard.
func TestBoardOnFUSEIsANetworkFSHazard(t *testing.T) {
	backing := t.TempDir()
	if err := kanban.Generate(context.Background(), filepath.Join(backing, "kanban.db"),
		kanban.GenOptions{Tasks: 200, Seed: 7, WAL: true}); err != nil {
		t.Fatal(err)
	}
	mnt := mountLoopback(t, backing)
	for _, c := range []struct {
		dir    string
		onFUSE bool
	}{{mnt, true}, {backing, false}} {
		res, err := probe.Check(context.Background(), boardAt(t, filepath.Join(c.dir, "kanban.db")), probe.Options{})
		if err != nil {
			t.Fatalf("%s: %v", c.dir, err)
		}
		if res.Verdict != probe.Healthy {
			t.Errorf("%s: verdict %s, want healthy (%v)", c.dir, res.Verdict, res.FirstAnswer)
		}
		h := hazard(res, probe.HazardNetworkFS)
		switch {
		case c.onFUSE && h == nil:
			t.Errorf("board in FUSE mount %s: no %s hazard: %+v", c.dir, probe.HazardNetworkFS, res.Hazards)
		case c.onFUSE && (len(h.Paths) != 1 || h.Paths[0] != mnt || !strings.Contains(h.Message, "fuse filesystem")):
			t.Errorf("board in FUSE mount %s: hazard names %v, %q", c.dir, h.Paths, h.Message)
		case !c.onFUSE && h != nil:
			t.Errorf("board at its real path %s: %s hazard: %+v", c.dir, probe.HazardNetworkFS, *h)
		}
	}
}
